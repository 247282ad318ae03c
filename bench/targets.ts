/**
 * The targets of the benchmark: ggaoed, the C ggaoed, vblade and the echo responders, each
 * started in the lab's network namespace on its own links, watched, and stopped.
 *
 * @module
 */

import type { Initiator, TargetInfo } from "../src/initiator/mod.ts";
import { DAEMON_FLAGS } from "../src/permissions.ts";
import { NetLab } from "../lab/netns.ts";
import type { Tools } from "./kernel.ts";
import { type Variant, VARIANTS } from "./mechanisms.ts";
import type { Layout, TargetName } from "./report.ts";
import type { Options } from "./options.ts";
import {
  cleanups,
  command,
  DENO,
  deviceSlot,
  extraDenoFlags,
  GGAOED_C,
  REPO,
  SHELF,
  sleep,
  SLOTS,
} from "./common.ts";

/** A target process running in the namespace. */
export class RunningTarget {
  readonly name: string;
  readonly child: Deno.ChildProcess;
  log = "";
  readonly #done: Promise<void>;
  exited = false;

  constructor(name: string, child: Deno.ChildProcess) {
    this.name = name;
    this.child = child;
    const collect = async (s: ReadableStream<Uint8Array>) => {
      const d = new TextDecoder();
      for await (const c of s) {
        this.log += d.decode(c, { stream: true });
        if (this.log.length > 200_000) this.log = this.log.slice(-100_000);
      }
    };
    this.#done = Promise.all([collect(child.stdout), collect(child.stderr)]).then(() => {});
    child.status.then(() => this.exited = true);
  }

  /** `ip netns exec` execs the command, so this is the target's own PID. */
  get pid(): number {
    return this.child.pid;
  }

  async waitForLog(pattern: RegExp, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!pattern.test(this.log)) {
      if (this.exited) throw new Error(`${this.name} exited at start: ${this.tail()}`);
      if (Date.now() > deadline) {
        throw new Error(`${this.name} did not log ${pattern} in ${timeoutMs / 1000} s`);
      }
      await sleep(50);
    }
  }

  tail(): string {
    return this.log.trim().split("\n").slice(-3).join(" / ") || "(no output)";
  }

  /** SIGTERM (graceful: ggaoed writes its CPU profile then), SIGKILL after `graceMs`. */
  async stop(graceMs = 5000): Promise<void> {
    if (!this.exited) {
      try {
        this.child.kill("SIGTERM");
      } catch { /* gone */ }
      const timer = setTimeout(() => {
        try {
          this.child.kill("SIGKILL");
        } catch { /* gone */ }
      }, graceMs);
      await this.child.status;
      clearTimeout(timer);
    }
    await this.#done.catch(() => {});
  }
}

/** One MTU's namespace; links are made on demand. */
export interface Lab {
  lab: NetLab;
  ns: string;
  mtu: number;
}

/** A veth pair: `host` in this namespace (the initiator's end), `target` in the lab's. */
export interface Link {
  host: string;
  target: string;
}

export interface Setup {
  dir: string;
  image: string;
  sectors: number;
  opts: Options;
  tools: Tools;
}

export async function makeLab(mtu: number): Promise<Lab> {
  const lab = new NetLab();
  cleanups.push(() => lab.cleanup());
  const ns = await lab.namespace();
  return { lab, ns, mtu };
}

export async function makeLink(lab: Lab): Promise<Link> {
  const [host, target] = await lab.lab.hostVethPair(lab.ns, { mtu: lab.mtu });
  return { host, target };
}

function spawn(
  lab: Lab,
  name: string,
  argv: string[],
  env: Record<string, string> = {},
): RunningTarget {
  const child = new Deno.Command("ip", {
    args: ["netns", "exec", lab.ns, ...argv],
    env, // `ip netns exec` passes its environment on
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const t = new RunningTarget(name, child);
  const kill = async () => {
    if (!t.exited) {
      try {
        child.kill("SIGKILL");
      } catch { /* gone */ }
    }
    await child.status;
  };
  cleanups.push(kill);
  return t;
}

/** The daemon's defaults: no extra environment, no extra configuration. */
export const DEFAULT_VARIANT: Variant = VARIANTS.find((v) => v.id === "default")!;

/**
 * How a target serves its links: `shared`, one device on every link; `devices`, one device per
 * link (slot {@link deviceSlot}, the same image behind each), for a many-initiator row whose
 * initiators each have their own. `workers`: ggaoed's `workers` key (null: not written).
 */
export interface Shape {
  layout: Layout;
  workers: number | null;
}

const SHARED: Shape = { layout: "shared", workers: null };

/** A target serving the image on its links: one process, or one per link (vblade, echo). */
export interface Instance {
  target: TargetName;
  direct: boolean;
  variant: Variant;
  links: Link[];
  procs: RunningTarget[];
  shape: Shape;
}

/** The slot the initiator on link `i` of `inst` addresses. */
export const slotOf = (inst: Instance, i: number): number =>
  inst.shape.layout === "devices" ? deviceSlot(inst.target, i) : SLOTS[inst.target];

let instanceCounter = 0;

/** What starting one target needs: where, its files' directory, its links' ends in the lab. */
interface Start {
  lab: Lab;
  setup: Setup;
  inst: Instance;
  dir: string;
  ifaces: string[];
  /** The slot served on each of `ifaces` (all equal in the shared layout). */
  slots: number[];
}

/**
 * Starts `name` serving the image (direct I/O or page cache) on `links` and waits until it is
 * up; ggaoed with the environment and extra `[defaults]` keys of `variant`, under --cpu-prof into
 * `profileDir` when given.
 */
export async function startInstance(
  lab: Lab,
  setup: Setup,
  name: TargetName,
  direct: boolean,
  links: Link[],
  variant: Variant = DEFAULT_VARIANT,
  profileDir: string | null = null,
  shape: Shape = SHARED,
): Promise<Instance> {
  const inst: Instance = { target: name, direct, variant, links, procs: [], shape };
  const dir = `${setup.dir}/${name}-${lab.mtu}-${
    direct ? "direct" : "cached"
  }-${variant.id}-${instanceCounter++}`;
  Deno.mkdirSync(`${dir}/state`, { recursive: true });
  const start: Start = {
    lab,
    setup,
    inst,
    dir,
    ifaces: links.map((l) => l.target),
    slots: links.map((_, i) => slotOf(inst, i)),
  };
  try {
    switch (name) {
      case "ggaoed":
        await startGgaoed(start, profileDir);
        break;
      case "ggaoed-c":
        await startGgaoedC(start);
        break;
      case "vblade":
        await startVblade(start);
        break;
      case "echo":
        await startKecho(start, false);
        break;
      case "echo-frame":
        await startKecho(start, true);
        break;
      default:
        await startEchoTs(start);
    }
  } catch (e) {
    await stopInstance(inst);
    throw e;
  }
  return inst;
}

/** ggaoed (this repository's), with the variant's environment and `[defaults]` keys. */
async function startGgaoed(s: Start, profileDir: string | null): Promise<void> {
  const { lab, setup, inst, dir, ifaces, slots } = s;
  const { direct, links, variant, shape } = inst;
  const devices = shape.layout === "devices"
    ? ifaces.flatMap((iface, i) => [
      `[devices.bench${i}]`,
      `path = "${setup.image}"`,
      `shelf = ${SHELF}`,
      `slot = ${slots[i]}`,
      `interfaces = ["${iface}"]`,
      "",
    ])
    : ["[devices.bench]", `path = "${setup.image}"`, `shelf = ${SHELF}`, `slot = ${slots[0]}`, ""];
  const conf = `${dir}/ggaoed.conf`;
  Deno.writeTextFileSync(
    conf,
    [
      "[defaults]",
      `interfaces = [${ifaces.map((i) => `"${i}"`).join(", ")}]`,
      `pid-file = "${dir}/ggaoed.pid"`,
      `control-socket = "${dir}/ggaoed.sock"`,
      `state-directory = "${dir}/state"`,
      `direct-io = ${direct}`,
      // Several initiators at once (the many-initiator rows): a Buffer Count for all of
      // them, 32 each, as an administrator sizes it; beyond it AoE r11 lets frames drop.
      ...(links.length > 1 && shape.layout === "shared"
        ? [`queue-length = ${32 * links.length}`]
        : []),
      ...(shape.workers !== null ? [`workers = ${shape.workers}`] : []),
      ...Object.entries(variant.config).map(([k, v]) => `${k} = ${v}`),
      "",
      ...devices,
    ].join("\n"),
  );
  const prof = profileDir ? ["--cpu-prof", "--cpu-prof-dir", profileDir] : [];
  const t = spawn(
    lab,
    inst.target,
    [
      DENO,
      "run",
      ...DAEMON_FLAGS,
      ...prof,
      ...extraDenoFlags(),
      `${REPO}ggaoed.ts`,
      "-c",
      conf,
    ],
    variant.env,
  );
  inst.procs.push(t);
  await t.waitForLog(/ggaoed is running/, 30_000);
}

/** The original C ggaoed ($GGAOED_C), in the foreground. */
async function startGgaoedC(s: Start): Promise<void> {
  const { lab, setup, inst, dir, ifaces, slots } = s;
  const perLink = inst.shape.layout === "devices";
  // GKeyFile syntax; lists separated by ',' (the C ggaoed sets that separator).
  const conf = `${dir}/ggaoed-c.conf`;
  Deno.writeTextFileSync(
    conf,
    [
      "[defaults]",
      `queue-length = ${Math.max(64, perLink ? 32 : 32 * inst.links.length)}`,
      `interfaces = ${ifaces.join(",")}`,
      `state-directory = ${dir}/state`,
      `pid-file = ${dir}/ggaoed.pid`,
      `control-socket = ${dir}/ggaoed.sock`,
      `direct-io = ${inst.direct}`,
      "",
      ...(perLink ? ifaces : [null]).flatMap((iface, i) => [
        `[e${SHELF}.${slots[i]}]`,
        `path = ${setup.image}`,
        `shelf = ${SHELF}`,
        `slot = ${slots[i]}`,
        ...(iface ? [`interfaces = ${iface}`] : []),
        "",
      ]),
    ].join("\n"),
  );
  const t = spawn(lab, inst.target, [GGAOED_C!, "-c", conf, "-n"]);
  inst.procs.push(t);
  // It logs to syslog only: give it a moment, then the initiator's discovery waits for it.
  await sleep(300);
  if (t.exited) throw new Error(`ggaoed-c exited at start: ${t.tail()}`);
}

/** vblade, one process per link. */
async function startVblade(s: Start): Promise<void> {
  const { lab, setup, inst, ifaces, slots } = s;
  for (const [n, i] of ifaces.entries()) {
    inst.procs.push(spawn(lab, inst.target, [
      "vblade",
      "-b",
      "64",
      ...(inst.direct ? ["-d"] : []),
      String(SHELF),
      String(slots[n]),
      i,
      setup.image,
    ]));
  }
  await sleep(100);
  for (const t of inst.procs) if (t.exited) throw new Error(`vblade exited: ${t.tail()}`);
}

/** bench/kecho.c, one process per link; `perFrame`: one recvfrom/sendto per frame. */
async function startKecho(s: Start, perFrame: boolean): Promise<void> {
  const { lab, setup, inst, ifaces, slots } = s;
  for (const [n, i] of ifaces.entries()) {
    const t = spawn(lab, inst.target, [
      setup.tools.kecho,
      i,
      String(SHELF),
      String(slots[n]),
      String(setup.sectors),
      ...(perFrame ? ["--per-frame"] : []),
    ]);
    inst.procs.push(t);
    await t.waitForLog(/kecho is running/, 10_000);
  }
}

/** bench/echo.ts (the TypeScript echo on TPACKET rings), one process per link. */
async function startEchoTs(s: Start): Promise<void> {
  const { lab, setup, inst, ifaces, slots } = s;
  for (const [n, i] of ifaces.entries()) {
    const t = spawn(lab, inst.target, [
      DENO,
      "run",
      "--allow-all",
      `${REPO}bench/echo.ts`,
      i,
      String(SHELF),
      String(slots[n]),
      String(setup.sectors),
      "64",
    ]);
    inst.procs.push(t);
    await t.waitForLog(/echo is running/, 30_000);
  }
}

export async function stopInstance(inst: Instance): Promise<void> {
  await Promise.all(inst.procs.map((p) => p.stop()));
  // Dirty pages of one target's writes must not be written back during the next one's run.
  command("sync");
}

export function instanceError(inst: Instance): string | null {
  const dead = inst.procs.find((p) => p.exited);
  return dead ? `${dead.name} exited: ${dead.tail()}` : null;
}

export const pidsOf = (inst: Instance) => inst.procs.map((p) => p.pid);

/** Polls discovery until the target answers (or `timeoutMs`). */
export async function discover(
  ini: Initiator,
  inst: Instance,
  timeoutMs = 10_000,
): Promise<TargetInfo> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const dead = instanceError(inst);
    if (dead) throw new Error(dead);
    const found = ini.discover({ shelf: SHELF, slot: slotOf(inst, 0), waitMs: 200, first: true })[
      0
    ];
    if (found) return found;
    await sleep(50);
  }
  throw new Error(`${inst.target} did not answer discovery within ${timeoutMs / 1000} s`);
}
