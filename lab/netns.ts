/**
 * Throw-away network namespaces for tests: the one helper every network test uses.
 *
 * A {@link NetLab} creates namespaces and veth pairs with short unique names (IFNAMSIZ is 16
 * including the NUL), runs commands inside them (`ip netns exec`), and removes everything it
 * created in {@link NetLab.cleanup} — call it in `finally`, or use {@link withNetLab}. Cleanup
 * kills the processes the lab spawned by PID (never by name), then deletes the namespaces,
 * which takes their interfaces with them. Traffic never leaves the namespaces.
 *
 * ```ts
 * await withNetLab(async (lab) => {
 *   const [a, b] = [await lab.namespace(), await lab.namespace()];
 *   const [ifA, ifB] = await lab.vethPair(a, b, { mtu: 9000 });
 *   const child = lab.spawn(a, ["deno", "run", "-A", "fixture.ts", ifA]);
 * });
 * ```
 *
 * @module
 */

import { type Output, run as runCommand, type RunOptions } from "./command.ts";

/** Default bound on every `ip` command and on {@link NetLab.exec}. */
const COMMAND_TIMEOUT_MS = 10_000;

let labCounter = 0;

/** Namespaces, veth pairs and child processes owned by one test; removed by `cleanup()`. */
export class NetLab {
  /** Short prefix unique to this lab: process id and a counter, in base 36. */
  readonly id: string;
  readonly #namespaces: string[] = [];
  readonly #children = new Set<Deno.ChildProcess>();
  #names = 0;

  constructor() {
    const random = Math.floor(Math.random() * 36 * 36).toString(36).padStart(2, "0");
    this.id = `g${(Deno.pid % 36 ** 4).toString(36)}${(labCounter++ % 36).toString(36)}${random}`;
  }

  #name(): string {
    return `${this.id}${(this.#names++).toString(36)}`;
  }

  /** Creates a namespace with its loopback up; returns its name. */
  async namespace(): Promise<string> {
    const name = `${this.#name()}n`;
    await run(["ip", "netns", "add", name]);
    this.#namespaces.push(name);
    await this.exec(name, ["ip", "link", "set", "lo", "up"], { check: true });
    return name;
  }

  /**
   * Creates a veth pair with one end in namespace `a` and the other in `b`, both up, with the
   * given MTU; returns the two interface names (at most 8 characters).
   */
  async vethPair(a: string, b: string, options: { mtu?: number } = {}): Promise<[string, string]> {
    const base = this.#name();
    const [nameA, nameB] = [`${base}a`, `${base}b`];
    await run([
      "ip",
      "link",
      "add",
      nameA,
      "netns",
      a,
      "type",
      "veth",
      "peer",
      "name",
      nameB,
      "netns",
      b,
    ]);
    for (const [ns, ifname] of [[a, nameA], [b, nameB]]) {
      if (options.mtu) await this.setMtu(ns, ifname, options.mtu);
      await this.exec(ns, ["ip", "link", "set", ifname, "up"], { check: true });
    }
    return [nameA, nameB];
  }

  /**
   * Creates a veth pair with one end here (in the test process's own namespace, so that an
   * in-process initiator can use it) and the other in namespace `ns`, both up; returns
   * `[hostEnd, nsEnd]`. Deleting the namespace removes the pair.
   */
  async hostVethPair(ns: string, options: { mtu?: number } = {}): Promise<[string, string]> {
    const base = this.#name();
    const [host, inner] = [`${base}h`, `${base}t`];
    await run(["ip", "link", "add", host, "type", "veth", "peer", "name", inner, "netns", ns]);
    if (options.mtu) await run(["ip", "link", "set", host, "mtu", String(options.mtu)]);
    await run(["ip", "link", "set", host, "up"]);
    if (options.mtu) await this.setMtu(ns, inner, options.mtu);
    await this.exec(ns, ["ip", "link", "set", inner, "up"], { check: true });
    return [host, inner];
  }

  /** Sets an interface's MTU inside a namespace. */
  async setMtu(ns: string, ifname: string, mtu: number): Promise<void> {
    await this.exec(ns, ["ip", "link", "set", ifname, "mtu", String(mtu)], { check: true });
  }

  /**
   * Runs `command` inside namespace `ns` to completion (bounded by `timeoutMs`); with
   * `check`, a non-zero exit throws with the command's stderr.
   */
  async exec(
    ns: string,
    command: string[],
    options: { check?: boolean; timeoutMs?: number } = {},
  ): Promise<Output> {
    const result = await run(["ip", "netns", "exec", ns, ...command], {
      check: options.check ?? false,
      timeoutMs: options.timeoutMs,
    });
    return result;
  }

  /**
   * Starts `command` inside namespace `ns` with piped stdin/stdout (stderr inherited, so a
   * crashing fixture explains itself). The lab kills it in cleanup if it is still running.
   */
  spawn(ns: string, command: string[]): Deno.ChildProcess {
    const child = new Deno.Command("ip", {
      args: ["netns", "exec", ns, ...command],
      stdin: "piped",
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    this.#children.add(child);
    child.status.finally(() => this.#children.delete(child));
    return child;
  }

  /** Kills this lab's remaining children (by PID), then deletes its namespaces. Idempotent. */
  async cleanup(): Promise<void> {
    for (const child of [...this.#children]) {
      try {
        child.kill("SIGKILL");
      } catch {
        // Already exited.
      }
      await child.status;
      await child.stdout.cancel().catch(() => {});
      await child.stdin.close().catch(() => {});
    }
    this.#children.clear();
    const errors: string[] = [];
    for (const ns of this.#namespaces.splice(0)) {
      const result = await run(["ip", "netns", "delete", ns], { check: false });
      if (result.code !== 0) errors.push(`${ns}: ${result.stderr.trim()}`);
    }
    if (errors.length) throw new Error(`NetLab cleanup failed: ${errors.join("; ")}`);
  }
}

/** Runs `body` with a fresh {@link NetLab} and always cleans it up. */
export async function withNetLab<T>(body: (lab: NetLab) => Promise<T>): Promise<T> {
  const lab = new NetLab();
  try {
    return await body(lab);
  } finally {
    await lab.cleanup();
  }
}

/** Runs a command to completion, by default within {@link COMMAND_TIMEOUT_MS}; a failure throws. */
function run(args: string[], options: RunOptions = {}): Promise<Output> {
  return runCommand(args, { ...options, timeoutMs: options.timeoutMs ?? COMMAND_TIMEOUT_MS });
}
