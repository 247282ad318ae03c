/**
 * Several ggaoed daemons ("hosts") serving one device to the kernel initiator, each on its own
 * tap: starting, crashing, freezing and thawing them, and following their counters through a
 * kept-open control socket. Used by rbd_multipath_test.ts and shared_freeze_test.ts.
 */
import { DAEMON_FLAGS } from "../../src/permissions.ts";
import { ControlClient } from "../../src/control/client.ts";
import { join } from "node:path";
import { withTestWorkers } from "../../lab/target.ts";
import { type NamespacedProcess, REPO_ROOT, spawnInNamespace } from "./harness.ts";

export type Stats = Record<string, number>;

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** One daemon ("host") serving the device on one tap. */
export class Host {
  readonly name: string;
  readonly dir: string;
  readonly conf: string;
  readonly socket: string;
  readonly netns: string;
  process: NamespacedProcess | null = null;
  /** Output of earlier runs (it may be started more than once). */
  earlier = "";
  /** True between freeze() and thaw(): its control socket would not answer. */
  frozen = false;
  /** Its control socket, kept open: counters in about a millisecond. */
  #client: ControlClient | null = null;

  /**
   * `device` is the body of its one device section (`path`, `shelf`, `slot`, ...);
   * `defaults` more lines for [defaults] (e.g. `ceph-conf`).
   */
  constructor(
    name: string,
    dir: string,
    netns: string,
    tap: string,
    device: string[],
    defaults: string[] = [],
  ) {
    this.name = name;
    this.dir = join(dir, name);
    this.netns = netns;
    this.conf = join(this.dir, "ggaoed.conf");
    this.socket = join(this.dir, "ggaoed.sock");
    Deno.mkdirSync(join(this.dir, "state"), { recursive: true });
    Deno.writeTextFileSync(
      this.conf,
      withTestWorkers([
        "[defaults]",
        `interfaces = ["${tap}"]`,
        `pid-file = "${this.dir}/ggaoed.pid"`,
        `control-socket = "${this.socket}"`,
        `state-directory = "${this.dir}/state"`,
        ...defaults,
        "",
        "[devices.shared]",
        ...device,
        "",
      ].join("\n")),
    );
  }

  async start(): Promise<void> {
    if (this.process) this.earlier += this.process.output();
    const p = spawnInNamespace(this.netns, Deno.execPath(), [
      "run",
      ...DAEMON_FLAGS,
      join(REPO_ROOT, "ggaoed.ts"),
      "-c",
      this.conf,
    ]);
    this.process = p;
    let exited = false;
    p.status.then(() => (exited = true));
    const deadline = Date.now() + 30_000;
    while (!/ggaoed is running/.test(p.output())) {
      if (exited || Date.now() > deadline) {
        throw new Error(`daemon ${this.name} did not come up:\n${p.output()}`);
      }
      await sleep(50);
    }
  }

  /** The device's counters, or null when the daemon does not answer (or is frozen). */
  async stats(): Promise<Stats | null> {
    if (this.frozen) return null;
    try {
      this.#client ??= await ControlClient.connect(this.socket);
      return (await this.#client.request("stats", {})).devices[0].stats;
    } catch {
      this.#client?.close();
      this.#client = null;
      return null;
    }
  }

  /** Kills it as in a crash (SIGKILL) and waits for the end. */
  async crash(): Promise<void> {
    this.frozen = false;
    this.process!.kill("SIGKILL");
    await this.process!.status;
    this.#client?.close();
    this.#client = null;
  }

  /** Stops every thread of it at once (SIGSTOP: a hung process, a paused VM). */
  freeze(): void {
    this.frozen = true;
    this.process!.kill("SIGSTOP");
  }

  /** Lets it run again (SIGCONT). */
  thaw(): void {
    this.process!.kill("SIGCONT");
    this.frozen = false;
  }

  async stop(): Promise<void> {
    if (this.frozen) this.thaw();
    this.#client?.close();
    this.#client = null;
    await this.process?.stop(5000);
  }

  log(): string {
    return this.earlier + (this.process?.output() ?? "");
  }
}

/** The host's view of a run: when things happened. */
export interface Timeline {
  started: number;
  events: string[];
}

export function note(t: Timeline, what: string): void {
  const line = `${((performance.now() - t.started) / 1000).toFixed(1)} s  ${what}`;
  t.events.push(line);
}

/**
 * Waits until `field` of the hosts together reaches `threshold`, sampling every 5 ms;
 * returns the last samples.
 */
export async function waitForTraffic(
  hosts: Host[],
  field: "read_bytes" | "write_bytes",
  threshold: number,
  done: () => boolean,
): Promise<(Stats | null)[]> {
  for (;;) {
    const samples = await Promise.all(hosts.map((h) => h.stats()));
    const total = samples.reduce((sum, s) => sum + (s?.[field] ?? 0), 0);
    if (total >= threshold || done()) return samples;
    await sleep(5);
  }
}

/**
 * Samples `survivor`'s `field` every 20 ms until `done`, and returns the longest time it did
 * not grow (the I/O stall the guest saw, approximately) and the bytes it served.
 */
export async function watchSurvivor(
  survivor: Host,
  field: "read_bytes" | "write_bytes",
  done: () => boolean,
): Promise<{ stallMs: number; bytes: number }> {
  let last = (await survivor.stats())?.[field] ?? 0;
  const first = last;
  let since = performance.now();
  let stallMs = 0;
  while (!done()) {
    await sleep(20);
    const now = (await survivor.stats())?.[field] ?? last;
    const t = performance.now();
    if (now > last) {
      stallMs = Math.max(stallMs, t - since);
      since = t;
      last = now;
    }
  }
  return { stallMs, bytes: last - first };
}
