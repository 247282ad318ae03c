/**
 * End-to-end test fixture: the real daemon (`ggaoed.ts` in a child process) inside a throw-away
 * network namespace, joined by a veth pair to the test process, which talks to it with the
 * project's initiator, aoetools or tshark on the host end.
 *
 * ```ts
 * await withTarget({ mtu: 9000, devices: [{ name: "disk1", sizeMiB: 64 }] }, async (t) => {
 *   const ini = t.initiator();
 *   const disk = ini.find(0, 1);
 *   ...
 * });
 * ```
 *
 * Everything (daemon, namespace, veth, temporary directory) is removed afterwards, also when the
 * body throws. The daemon's log is kept and printed when the body fails.
 *
 * @module
 */

import { Initiator, type TargetInfo } from "../src/initiator/mod.ts";
import { deepStrictEqual as assertEquals } from "node:assert/strict";
import { type Output, run, stopProcess } from "./command.ts";
import { NetLab } from "./netns.ts";
import { DAEMON_FLAGS } from "../src/permissions.ts";

export const REPO = new URL("../", import.meta.url).pathname;
export const DENO = Deno.execPath();
export { DAEMON_FLAGS } from "../src/permissions.ts";
import { firstDifference, readFileRange } from "./files.ts";
export { firstDifference, readFileRange };

/** One exported device of a test target. */
export interface DeviceSpec {
  name: string;
  shelf?: number;
  slot?: number;
  /** Size of a fresh sparse image (ignored when `path` is given). */
  sizeMiB?: number;
  /** Size in bytes (overrides sizeMiB), e.g. for huge sparse images. */
  sizeBytes?: number;
  path?: string;
  /** Extra TOML lines for this device's table. */
  extra?: string;
}

export interface TargetOptions {
  mtu?: number;
  devices?: DeviceSpec[];
  /** `ring-buffer-size` in KiB (0 = recvfrom/sendto). */
  ringKiB?: number;
  directIo?: boolean;
  /** Extra TOML lines for [defaults]. */
  defaults?: string;
  /** Extra TOML appended to the file (e.g. [acls]). */
  tail?: string;
  /** Wait for the daemon to answer discovery before running the body (default true). */
  waitReady?: boolean;
  /** Extra daemon arguments (e.g. "-d"). */
  args?: string[];
  /** Veth pairs between the test process and the daemon, which listens on all (default 1). */
  links?: number;
  /** Variables added to the daemon's environment (e.g. NOTIFY_SOCKET). */
  env?: Record<string, string>;
  /** A command the daemon runs under inside the namespace (e.g. `setpriv --reuid=...`). */
  wrapper?: string[];
  /** Runs once the files exist, before the daemon starts (e.g. to chown them). */
  beforeStart?: (t: TestTarget) => void | Promise<void>;
  /** The program run instead of ggaoed.ts, given the same arguments (a fixture around it). */
  entry?: string;
}

/** A running test target. */
export class TestTarget {
  readonly lab: NetLab;
  readonly ns: string;
  /** The veth end in the test process's namespace. */
  readonly hostIf: string;
  /** The veth end in the daemon's namespace. */
  readonly targetIf: string;
  readonly dir: string;
  readonly configPath: string;
  readonly socketPath: string;
  readonly pidPath: string;
  readonly images: Map<string, string>;
  /** Every veth pair, the first being hostIf/targetIf. */
  readonly links: { hostIf: string; targetIf: string }[];
  process: Deno.ChildProcess | null = null;
  /** See {@link TargetOptions.env} and {@link TargetOptions.wrapper}. */
  env: Record<string, string> = {};
  wrapper: string[] = [];
  /** See {@link TargetOptions.entry}. */
  entry = `${REPO}ggaoed.ts`;
  #log = "";
  #logDone: Promise<void> = Promise.resolve();
  #initiators: Initiator[] = [];

  constructor(
    lab: NetLab,
    ns: string,
    hostIf: string,
    targetIf: string,
    dir: string,
    images: Map<string, string>,
    links = [{ hostIf, targetIf }],
  ) {
    this.lab = lab;
    this.links = links;
    this.ns = ns;
    this.hostIf = hostIf;
    this.targetIf = targetIf;
    this.dir = dir;
    this.configPath = `${dir}/ggaoed.conf`;
    this.socketPath = `${dir}/ggaoed.sock`;
    this.pidPath = `${dir}/ggaoed.pid`;
    this.images = images;
  }

  /** Everything the daemon wrote to stderr/stdout so far. */
  get log(): string {
    return this.#log;
  }

  /** Starts the daemon with the current configuration file. */
  start(args: string[] = []): Deno.ChildProcess {
    const child = new Deno.Command("ip", {
      args: [
        "netns",
        "exec",
        this.ns,
        ...this.wrapper,
        DENO,
        "run",
        // Extra Deno flags for the daemon, e.g. GGAOED_DENO_FLAGS="--cpu-prof --cpu-prof-dir=DIR".
        ...(Deno.env.get("GGAOED_DENO_FLAGS") ?? "").split(" ").filter(Boolean),
        ...DAEMON_FLAGS,
        this.entry,
        "-c",
        this.configPath,
        ...args,
      ],
      env: this.env,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.process = child;
    const collect = async (stream: ReadableStream<Uint8Array>) => {
      const decoder = new TextDecoder();
      for await (const chunk of stream) this.#log += decoder.decode(chunk, { stream: true });
    };
    this.#logDone = Promise.all([collect(child.stdout), collect(child.stderr)]).then(() => {});
    return child;
  }

  /** Waits until a log line matches, or throws after `timeoutMs`. */
  async waitForLog(pattern: RegExp, timeoutMs = 15000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!pattern.test(this.#log)) {
      if (Date.now() > deadline) {
        throw new Error(`daemon log never matched ${pattern}; log:\n${this.#log}`);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** Sends a signal and waits for the exit status (bounded). */
  async stop(signal: Deno.Signal = "SIGTERM", timeoutMs = 10000): Promise<Deno.CommandStatus> {
    const child = this.process;
    if (!child) throw new Error("the daemon is not running");
    const status = await stopProcess(child, signal, timeoutMs);
    await this.#logDone;
    this.process = null;
    return status;
  }

  /** An initiator on the host end of a veth, the first by default (closed with the target). */
  initiator(options: Parameters<typeof Initiator.open>[1] = {}, hostIf = this.hostIf): Initiator {
    const ini = Initiator.open(hostIf, options);
    this.#initiators.push(ini);
    return ini;
  }

  /** Runs ggaoectl against this daemon. */
  ctl(...args: string[]): Promise<Output> {
    const ggaoectl = [DENO, "run", ...DAEMON_FLAGS, `${REPO}ggaoectl.ts`, "-s", this.socketPath];
    return run([...ggaoectl, ...args], { check: false, timeoutMs: 20_000 });
  }

  /**
   * Writes a new configuration file (then SIGHUP the daemon to apply it), with the test
   * suite's number of workers ({@link withTestWorkers}).
   */
  writeConfig(text: string): void {
    Deno.writeTextFileSync(this.configPath, withTestWorkers(text));
  }

  async close(): Promise<void> {
    for (const ini of this.#initiators.splice(0)) {
      try {
        ini.close();
      } catch { /* already closed */ }
    }
    if (this.process) await this.stop("SIGKILL").catch(() => {});
  }
}

/**
 * The one switch that runs the tests with several data-path workers: `GGAOED_TEST_WORKERS=N`
 * adds `workers = N` to the [defaults] of every daemon configuration the tests write (unless
 * the text sets `workers` itself, or has no [defaults]). An explicit count is obeyed even above
 * the number of devices, so a one-device test runs with N workers, N - 1 of them idle. Unset:
 * the text unchanged.
 */
export function withTestWorkers(text: string): string {
  if (!Deno.env.get("GGAOED_TEST_WORKERS")) return text;
  if (/^\s*workers\s*=/m.test(text) || !/^\[defaults\]\s*$/m.test(text)) return text;
  return text.replace(/^\[defaults\]\s*$/m, `[defaults]\nworkers = ${testWorkers()}`);
}

/** The suite's number of workers, `GGAOED_TEST_WORKERS` (null: unset). */
function testWorkers(): number | null {
  const n = Deno.env.get("GGAOED_TEST_WORKERS");
  if (!n) return null;
  if (!/^[1-9][0-9]*$/.test(n)) {
    throw new Error(`GGAOED_TEST_WORKERS=${n}: expected a whole number of workers, at least 1`);
  }
  return Number(n);
}

/**
 * What the daemon adds to its status line ("serving 1 device(s) on 1 interface(s)") under the
 * suite's number of workers ({@link withTestWorkers}): " with N workers" when N > 1.
 */
export function testWorkersStatus(): string {
  const n = testWorkers() ?? 1;
  return n > 1 ? ` with ${n} workers` : "";
}

/** Builds the TOML configuration of a test target. */
export function targetConfig(
  t: { targetIf: string; dir: string; images: Map<string, string>; links?: { targetIf: string }[] },
  options: TargetOptions,
): string {
  const devices = options.devices ?? [{ name: "disk1", sizeMiB: 64 }];
  const ifs = (t.links ?? [t]).map((l) => `"${l.targetIf}"`);
  const lines = [
    "[defaults]",
    `interfaces = [${ifs.join(", ")}]`,
    `pid-file = "${t.dir}/ggaoed.pid"`,
    `control-socket = "${t.dir}/ggaoed.sock"`,
    `state-directory = "${t.dir}/state"`,
    `direct-io = ${options.directIo ?? false}`,
  ];
  if (options.ringKiB !== undefined) lines.push(`ring-buffer-size = ${options.ringKiB}`);
  if (options.defaults) lines.push(options.defaults);
  devices.forEach((d, i) => {
    lines.push(
      "",
      `[devices.${d.name}]`,
      `path = "${t.images.get(d.name)}"`,
      `shelf = ${d.shelf ?? 0}`,
      `slot = ${d.slot ?? i + 1}`,
    );
    if (d.extra) lines.push(d.extra);
  });
  if (options.tail) lines.push("", options.tail);
  return lines.join("\n") + "\n";
}

/** Runs `body` against a fresh daemon; cleans everything up afterwards. */
export async function withTarget<T>(
  options: TargetOptions,
  body: (t: TestTarget) => Promise<T>,
): Promise<T> {
  const lab = new NetLab();
  const dir = Deno.makeTempDirSync({ dir: "/var/tmp", prefix: "ggaoed-e2e-" });
  let target: TestTarget | null = null;
  try {
    const ns = await lab.namespace();
    const links = [];
    for (let i = 0; i < (options.links ?? 1); i++) {
      const [hostIf, targetIf] = await lab.hostVethPair(ns, { mtu: options.mtu ?? 1500 });
      links.push({ hostIf, targetIf });
    }
    Deno.mkdirSync(`${dir}/state`);
    const images = new Map<string, string>();
    for (const d of options.devices ?? [{ name: "disk1", sizeMiB: 64 }]) {
      if (d.path) {
        images.set(d.name, d.path);
        continue;
      }
      const path = `${dir}/${d.name}.img`;
      const f = Deno.openSync(path, { create: true, write: true });
      f.truncateSync(d.sizeBytes ?? (d.sizeMiB ?? 64) * 1024 * 1024);
      f.close();
      images.set(d.name, path);
    }
    target = new TestTarget(lab, ns, links[0].hostIf, links[0].targetIf, dir, images, links);
    target.writeConfig(targetConfig(target, options));
    target.env = options.env ?? {};
    target.wrapper = options.wrapper ?? [];
    if (options.entry) target.entry = options.entry;
    await options.beforeStart?.(target);
    target.start(options.args ?? []);
    if (options.waitReady ?? true) await target.waitForLog(/ggaoed is running/);
    return await body(target);
  } catch (e) {
    if (target) console.error(`--- daemon log ---\n${target.log}--- end of daemon log ---`);
    throw e;
  } finally {
    await target?.close();
    await lab.cleanup();
    Deno.removeSync(dir, { recursive: true });
  }
}

/** A deterministic pattern: every 512-byte sector carries its LBA and a seed. */
export function pattern(bytes: number, seed: number, firstLba = 0): Uint8Array {
  const out = new Uint8Array(bytes);
  const view = new DataView(out.buffer);
  for (let off = 0; off < bytes; off += 4) {
    const lba = firstLba + Math.floor(off / 512);
    view.setUint32(off, (Math.imul(lba ^ seed, 2654435761) + off) >>> 0);
  }
  return out;
}

/**
 * Writes 1 MiB at LBA 2048 through `ini`, reads it back, flushes, and checks that the exported
 * file or device at `path` holds it.
 */
export function assertRoundTrip(ini: Initiator, disk: TargetInfo, path: string): void {
  const data = pattern(1 << 20, 11);
  ini.writeRange(disk, 2048, data);
  assertEquals(firstDifference(ini.readRange(disk, 2048, data.length / 512), data), -1);
  ini.flush(disk);
  assertEquals(firstDifference(readFileRange(path, 2048 * 512, data.length), data), -1);
}
