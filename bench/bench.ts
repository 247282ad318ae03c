/**
 * `deno task bench`: ggaoed side by side with vblade, the original C ggaoed (when `GGAOED_C`
 * names its binary) and an echo responder (the ceiling), measured by two initiators.
 *
 * For each MTU (1500 and 9000) a throw-away network namespace holds the targets, each on its
 * own veth pair to this process's namespace, all serving the same 64 MiB image in /var/tmp:
 *
 * - ggaoed (`ggaoed.ts`, direct-io false; a second one with true for the direct row),
 * - vblade (`-b 64`; `-d` for the direct row),
 * - the C ggaoed (`$GGAOED_C -c FILE -n`, direct-io false; true for the direct row),
 * - echo (`bench/kecho.c`: answers reads from memory and acks writes, no disk).
 *
 * Two series measure them, interleaved (for each workload, each initiator, each target, so that a
 * slow minute of a shared machine falls on every target alike):
 *
 * - `kinit` (primary): `bench/kinit.c`, which receives the way the Linux aoe driver does (a plain
 *   AF_PACKET socket, batched sendmmsg/recvmmsg, no ring, blocking receive),
 * - `ring`: the project's TypeScript initiator on TPACKET rings, in this process.
 *
 * Both keep 32 requests outstanding (no congestion control). Each measurement runs a short warm-up
 * and then a timed workload; the target's CPU time per thread is read from /proc around it. Then
 * the "many initiators" rows: 4 kinit processes on 4 links at once into one target. A target
 * that fails to start, or a workload that throws, becomes a FAILED row. Everything (processes by
 * PID, namespaces, the image) is removed at the end, also on Ctrl-C.
 *
 * Run `deno task bench --help` for the options.
 *
 * @module
 */

import { Initiator } from "../src/initiator/mod.ts";
import type { TargetInfo, WorkloadKind, WorkloadResult } from "../src/initiator/mod.ts";
import { NetLab } from "../tests/helpers/netns.ts";
import {
  chart,
  find,
  LABELS,
  type ManyRow,
  type ManyShare,
  manyTable,
  type Row,
  SERIES,
  type Series,
  SERIES_LABELS,
  syscallTable,
  table,
  type TargetName,
  TARGETS,
  UNITS,
  type WorkloadName,
  WORKLOADS,
} from "./report.ts";
import {
  cells,
  MECH_WORKLOADS,
  type MechRun,
  mechTable,
  type Variant,
  VARIANTS,
} from "./mechanisms.ts";
import {
  buildTools,
  isDataPathWorker,
  type KinitResult,
  KinitRun,
  PerfSession,
  perfSummary,
  perRequest,
  sampleThreads,
  threadIds,
  threadUse,
  type Tools,
  totalUse,
} from "./kernel.ts";

const REPO = new URL("../", import.meta.url).pathname;
const DENO = Deno.execPath();
const DAEMON_FLAGS = [
  "--allow-ffi",
  "--allow-read",
  "--allow-write",
  "--allow-env",
  "--allow-sys",
  "--allow-net",
];
const IMAGE_BYTES = 64 * 1024 * 1024;
const WINDOW = 32;
const SHELF = 0;
const SLOTS: Record<TargetName, number> = {
  ggaoed: 1,
  vblade: 2,
  echo: 3,
  "ggaoed-c": 4,
  "echo-ts": 5,
};
/** The original C ggaoed's binary, from the environment (never built by this repository). */
const GGAOED_C = Deno.env.get("GGAOED_C") || null;

const HELP = `deno task bench [options]   (as root)

ggaoed, vblade, the original C ggaoed (with GGAOED_C set) and an echo responder (bench/kecho.c,
the ceiling) on one 64 MiB image in /var/tmp, each target on its own veth pair into a network
namespace. Two initiators measure every row, interleaved (per workload: each initiator, each
target), ${WINDOW} requests outstanding, no congestion control:

  kinit  bench/kinit.c (primary): receives the way the Linux aoe driver does: a plain AF_PACKET
         socket bound to the link and ethertype 0x88A2, no TPACKET ring, batched
         sendmmsg/recvmmsg, blocking receive; discovery by Query Config broadcast
  ring   the project's TypeScript initiator (src/initiator) on TPACKET rings, in this process
  kinit-ring   (only on request) bench/kinit.c receiving through a TPACKET_V2 RX ring instead
         of recvmmsg: the C loop with the ring's receive path

bench/kinit.c and bench/kecho.c are compiled with gcc -O2 into bench/.build/ when missing or
stale. Workloads: sequential read and write (largest request for the MTU: 8.5 KiB at 9000,
1 KiB at 1500), 4 KiB random read, 4 KiB mixed 70/30, sequential write with direct I/O. At MTU
1500 kinit's 4K requests are 1 KiB (one frame; the note column says so); the ring initiator
splits a 4 KiB I/O into 4 requests. Then the many-initiator rows: 4 kinit processes on 4 links
at once into one target (ggaoed and the C ggaoed: one process on all links; vblade and echo:
one process per link), window ${WINDOW} each: total, each initiator's share and min/max.

Per row: throughput, p50/p99 latency, retransmits, the target's CPU per request (every thread,
from /proc/PID/task/*/schedstat; ggaoed's data-path worker thread alone too), the initiator's,
context switches per request, and × vblade, × C ggaoed, × echo (same initiator and MTU).

  --quick            smoke run: MTU 9000 only, 1 s per measurement, writes results/quick.*
  --seconds N        seconds per measurement (default 2.5)
  --warmup N         seconds of warm-up before each measurement (default 0.5)
  --mtu LIST         MTUs, comma-separated (default 1500,9000)
  --only LIST        targets among ${TARGETS.join(",")}
                     (default ggaoed,vblade,echo, and ggaoed-c when GGAOED_C is set;
                     echo-ts is bench/echo.ts, the TypeScript echo on TPACKET rings)
  --workloads LIST   among ${WORKLOADS.join(",")} (default all)
  --initiator LIST   series among kinit,ring,kinit-ring (default kinit,ring; --mechanisms: kinit)
  --repeat N         rounds, interleaved; each cell is the median round, each × column the
                     median of the ratios within a round (default 1; --mechanisms: 3)
  --many LIST        workloads of the many-initiator rows (default rand_read_4k; none: skip)
  --initiators N     initiators (and links) of the many-initiator rows (default 4)
  --verify           also run kinit's verifying workload (random 4 KiB reads and writes, every
                     read of a sector written in the run checked) against each target but echo
  --syscalls         count system calls (by name), context switches and CPU per request of the
                     target, ggaoed's worker and the initiator with perf stat over each window
                     (--per-thread, started and stopped through perf's control FIFO)
  --perf-record DIR  perf record -g of the target over each window: DIR/<row>.data and a
                     summary DIR/<row>.txt (self time by command, object, symbol)
  --mechanisms       the data path's mechanisms one at a time instead (bench/mechanisms.ts):
                     ggaoed with each switched off against its defaults, plus echo; MTU 9000,
                     2 s per measurement, --repeat rounds (median), writes results/mechanisms.*
  --variants LIST    only these variants of --mechanisms (ids in bench/mechanisms.ts; the
                     default variant is always run); the table then has only their lines
  --memory           also drive 10^5 then 10^6 4 KiB reads at ggaoed (ring initiator) and
                     compare its VmRSS
  --memory-requests N   requests of the second memory point (default 1000000; first = N/10)
  --profile DIR      run ggaoed under --cpu-prof, one start (and one profile) per row, written
                     to DIR/mtuM-WORKLOAD-SERIES-ggaoed[-rROUND]/ (--mechanisms: one per variant
                     and round, DIR/mtuM-c|d-SERIES-VARIANT-rROUND/); summarise them with
                     deno run --allow-read bench/profile.ts DIR/.../*.cpuprofile
  --out DIR          where latest.json / latest.svg go (default bench/results)
  --no-write         print the tables only
  -h, --help         this text

Environment:
  GGAOED_C=/path/to/ggaoed   the original C ggaoed as a target (run in the foreground, -n);
                             e.g. built by the reference build script outside this repository
  GGAOED_DENO_FLAGS          extra Deno flags for the daemon, e.g.
                             "--v8-flags=--perf-basic-prof" for perf(1) to name JIT code

The Markdown tables of a results file (for the README):
  deno run --allow-read bench/report.ts bench/results/latest.json
`;

interface Options {
  mtus: number[];
  seconds: number;
  warmup: number;
  only: TargetName[];
  workloads: WorkloadName[];
  series: Series[];
  repeat: number;
  many: WorkloadName[];
  manyCount: number;
  verify: boolean;
  syscalls: boolean;
  perfRecord: string | null;
  memory: boolean;
  memoryRequests: number;
  profile: string | null;
  out: string;
  name: string;
  write: boolean;
  mechanisms: boolean;
  /** --variants: ids of the mechanism variants to run (null: all). */
  variants: string[] | null;
}

function parseArgs(args: string[]): Options {
  const o: Options = {
    mtus: [1500, 9000],
    seconds: 2.5,
    warmup: 0.5,
    only: GGAOED_C ? ["ggaoed", "vblade", "ggaoed-c", "echo"] : ["ggaoed", "vblade", "echo"],
    workloads: [...WORKLOADS],
    series: ["kinit", "ring"],
    repeat: 1,
    many: ["rand_read_4k"],
    manyCount: 4,
    verify: false,
    syscalls: false,
    perfRecord: null,
    memory: false,
    memoryRequests: 1_000_000,
    profile: null,
    out: `${REPO}bench/results`,
    name: "latest",
    write: true,
    mechanisms: false,
    variants: null,
  };
  let secondsGiven = false;
  let warmupGiven = false;
  let mtuGiven = false;
  let repeatGiven = false;
  let seriesGiven = false;
  const list = (s: string | undefined, flag: string) => {
    if (s === undefined) throw new Error(`${flag} needs a value`);
    return s.split(",").map((x) => x.trim()).filter((x) => x);
  };
  const num = (s: string | undefined, flag: string) => {
    const n = Number(s);
    if (s === undefined || !Number.isFinite(n) || n <= 0) {
      throw new Error(`${flag} needs a positive number`);
    }
    return n;
  };
  const dir = (s: string | undefined, flag: string) => {
    if (!s) throw new Error(`${flag} needs a directory`);
    return s.startsWith("/") ? s : `${Deno.cwd()}/${s}`;
  };
  const workloads = (s: string | undefined, flag: string) =>
    list(s, flag).map((w) => {
      if (!(WORKLOADS as readonly string[]).includes(w)) {
        throw new Error(`unknown workload ${w} (known: ${WORKLOADS.join(", ")})`);
      }
      return w as WorkloadName;
    });
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    switch (a) {
      case "-h":
      case "--help":
        console.log(HELP);
        Deno.exit(0);
        break;
      case "--quick":
        o.mtus = [9000];
        if (!secondsGiven) o.seconds = 1;
        o.warmup = Math.min(o.warmup, 0.3);
        o.name = "quick";
        break;
      case "--seconds":
        o.seconds = num(args[++i], a);
        secondsGiven = true;
        break;
      case "--warmup":
        o.warmup = Number(args[++i]);
        warmupGiven = true;
        if (!(o.warmup >= 0)) throw new Error("--warmup needs a number >= 0");
        break;
      case "--mtu":
        mtuGiven = true;
        o.mtus = list(args[++i], a).map((m) => {
          const n = Number(m);
          if (!Number.isInteger(n) || n < 1280 || n > 65535) throw new Error(`bad MTU ${m}`);
          return n;
        });
        break;
      case "--only":
        o.only = list(args[++i], a).map((t) => {
          if (!(TARGETS as readonly string[]).includes(t)) {
            throw new Error(`unknown target ${t} (known: ${TARGETS.join(", ")})`);
          }
          return t as TargetName;
        });
        break;
      case "--workloads":
        o.workloads = workloads(args[++i], a);
        break;
      case "--initiator":
        seriesGiven = true;
        o.series = list(args[++i], a).map((x) => {
          if (!(SERIES as readonly string[]).includes(x)) {
            throw new Error(`unknown initiator ${x} (known: ${SERIES.join(", ")})`);
          }
          return x as Series;
        });
        break;
      case "--repeat":
        o.repeat = Math.round(num(args[++i], a));
        repeatGiven = true;
        break;
      case "--many":
        o.many = args[i + 1] === "none" ? (i++, []) : workloads(args[++i], a);
        break;
      case "--initiators":
        o.manyCount = Math.round(num(args[++i], a));
        break;
      case "--verify":
        o.verify = true;
        break;
      case "--syscalls":
        o.syscalls = true;
        break;
      case "--perf-record":
        o.perfRecord = dir(args[++i], a);
        break;
      case "--memory":
        o.memory = true;
        break;
      case "--memory-requests":
        o.memoryRequests = Math.round(num(args[++i], a));
        o.memory = true;
        break;
      case "--profile":
        o.profile = dir(args[++i], a);
        break;
      case "--out":
        o.out = args[++i];
        if (!o.out) throw new Error("--out needs a directory");
        break;
      case "--mechanisms":
        o.mechanisms = true;
        break;
      case "--variants":
        o.variants = list(args[++i], a).map((id) => {
          if (!VARIANTS.some((v) => v.id === id)) {
            throw new Error(
              `unknown variant ${id} (known: ${VARIANTS.map((v) => v.id).join(", ")})`,
            );
          }
          return id;
        });
        o.mechanisms = true;
        break;
      case "--no-write":
        o.write = false;
        break;
      default:
        throw new Error(`unknown option ${a} (see --help)`);
    }
  }
  if (o.only.includes("ggaoed-c") && !GGAOED_C) {
    throw new Error(
      "target ggaoed-c needs GGAOED_C=/path/to/ggaoed (the original C ggaoed's binary)",
    );
  }
  if (o.syscalls && o.perfRecord) {
    throw new Error("--syscalls and --perf-record each attach perf: use one at a time");
  }
  if (o.mechanisms) {
    if (!mtuGiven) o.mtus = [9000];
    if (!secondsGiven) o.seconds = 2;
    if (!warmupGiven) o.warmup = 0.3;
    if (!repeatGiven) o.repeat = 3;
    if (!seriesGiven) o.series = ["kinit"];
    o.name = "mechanisms";
  }
  return o;
}

// --- Cleanup ---------------------------------------------------------------------------------

const cleanups: (() => void | Promise<void>)[] = [];
let cleaning: Promise<void> | null = null;
let interrupted = false;

function cleanup(): Promise<void> {
  cleaning ??= (async () => {
    while (cleanups.length) {
      try {
        await cleanups.pop()!();
      } catch (e) {
        console.error(`cleanup: ${e instanceof Error ? e.message : e}`);
      }
    }
  })();
  return cleaning;
}

// --- Small helpers ---------------------------------------------------------------------------

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function command(cmd: string, ...args: string[]): { ok: boolean; out: string; err: string } {
  try {
    const o = new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).outputSync();
    const d = new TextDecoder();
    return { ok: o.success, out: d.decode(o.stdout).trim(), err: d.decode(o.stderr).trim() };
  } catch (e) {
    return { ok: false, out: "", err: e instanceof Error ? e.message : String(e) };
  }
}

const CLK_TCK = Number(command("getconf", "CLK_TCK").out) || 100;

/** Busy CPU seconds of the whole machine (every core; /proc/stat minus idle and iowait). */
function machineBusySeconds(): number {
  const line = Deno.readTextFileSync("/proc/stat").split("\n")[0];
  const v = line.trim().split(/\s+/).slice(1, 9).map(Number);
  const total = v.reduce((a, b) => a + b, 0);
  return (total - v[3] - v[4]) / CLK_TCK;
}

/**
 * Extra Deno flags for the daemon from GGAOED_DENO_FLAGS (space-separated), e.g.
 * `--v8-flags=--perf-basic-prof` so that `perf report` names its JIT-compiled functions.
 */
function extraDenoFlags(): string[] {
  return (Deno.env.get("GGAOED_DENO_FLAGS") ?? "").split(" ").filter(Boolean);
}

/** Another process using more than this many cores during a run is reported in its note. */
const BUSY_CORES = 0.25;
/** Measurements repeated at most this often when the machine was busy. */
const BUSY_RETRIES = 2;

/** VmRSS of `pid` in KiB. */
function rssKiB(pid: number): number {
  const m = Deno.readTextFileSync(`/proc/${pid}/status`).match(/^VmRSS:\s+(\d+)\s+kB/m);
  if (!m) throw new Error(`no VmRSS in /proc/${pid}/status`);
  return Number(m[1]);
}

function message(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

const median = <T>(xs: T[], key: (x: T) => number): T => {
  const s = [...xs].sort((a, b) => key(a) - key(b));
  return s[(s.length - 1) >> 1];
};

// --- Targets ---------------------------------------------------------------------------------

/** A target process running in the namespace. */
class RunningTarget {
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
interface Lab {
  lab: NetLab;
  ns: string;
  mtu: number;
}

/** A veth pair: `host` in this namespace (the initiator's end), `target` in the lab's. */
interface Link {
  host: string;
  target: string;
}

interface Setup {
  dir: string;
  image: string;
  sectors: number;
  opts: Options;
  tools: Tools;
}

async function makeLab(mtu: number): Promise<Lab> {
  const lab = new NetLab();
  cleanups.push(() => lab.cleanup());
  const ns = await lab.namespace();
  return { lab, ns, mtu };
}

async function makeLink(lab: Lab): Promise<Link> {
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
const DEFAULT_VARIANT: Variant = VARIANTS.find((v) => v.id === "default")!;

/** A target serving the image on its links: one process, or one per link (vblade, echo). */
interface Instance {
  target: TargetName;
  direct: boolean;
  variant: Variant;
  links: Link[];
  procs: RunningTarget[];
}

let instanceCounter = 0;

/**
 * Starts `name` serving the image (direct I/O or page cache) on `links` and waits until it is
 * up; ggaoed with the environment and extra `[defaults]` keys of `variant`, under --cpu-prof into
 * `profileDir` when given.
 */
async function startInstance(
  lab: Lab,
  setup: Setup,
  name: TargetName,
  direct: boolean,
  links: Link[],
  variant: Variant = DEFAULT_VARIANT,
  profileDir: string | null = null,
): Promise<Instance> {
  const slot = SLOTS[name];
  const inst: Instance = { target: name, direct, variant, links, procs: [] };
  const ifaces = links.map((l) => l.target);
  const dir = `${setup.dir}/${name}-${lab.mtu}-${
    direct ? "direct" : "cached"
  }-${variant.id}-${instanceCounter++}`;
  Deno.mkdirSync(`${dir}/state`, { recursive: true });
  try {
    if (name === "ggaoed") {
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
          ...(links.length > 1 ? [`queue-length = ${32 * links.length}`] : []),
          ...Object.entries(variant.config).map(([k, v]) => `${k} = ${v}`),
          "",
          "[devices.bench]",
          `path = "${setup.image}"`,
          `shelf = ${SHELF}`,
          `slot = ${slot}`,
          "",
        ].join("\n"),
      );
      const prof = profileDir ? ["--cpu-prof", "--cpu-prof-dir", profileDir] : [];
      const t = spawn(
        lab,
        name,
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
    } else if (name === "ggaoed-c") {
      // GKeyFile syntax; lists separated by ',' (the C ggaoed sets that separator).
      const conf = `${dir}/ggaoed-c.conf`;
      Deno.writeTextFileSync(
        conf,
        [
          "[defaults]",
          `queue-length = ${Math.max(64, 32 * links.length)}`,
          `interfaces = ${ifaces.join(",")}`,
          `state-directory = ${dir}/state`,
          `pid-file = ${dir}/ggaoed.pid`,
          `control-socket = ${dir}/ggaoed.sock`,
          `direct-io = ${direct}`,
          "",
          `[e${SHELF}.${slot}]`,
          `path = ${setup.image}`,
          `shelf = ${SHELF}`,
          `slot = ${slot}`,
          "",
        ].join("\n"),
      );
      const t = spawn(lab, name, [GGAOED_C!, "-c", conf, "-n"]);
      inst.procs.push(t);
      // It logs to syslog only: give it a moment, then the initiator's discovery waits for it.
      await sleep(300);
      if (t.exited) throw new Error(`ggaoed-c exited at start: ${t.tail()}`);
    } else if (name === "vblade") {
      for (const i of ifaces) {
        inst.procs.push(spawn(lab, name, [
          "vblade",
          "-b",
          "64",
          ...(direct ? ["-d"] : []),
          String(SHELF),
          String(slot),
          i,
          setup.image,
        ]));
      }
      await sleep(100);
      for (const t of inst.procs) if (t.exited) throw new Error(`vblade exited: ${t.tail()}`);
    } else if (name === "echo") {
      for (const i of ifaces) {
        const t = spawn(lab, name, [
          setup.tools.kecho,
          i,
          String(SHELF),
          String(slot),
          String(setup.sectors),
        ]);
        inst.procs.push(t);
        await t.waitForLog(/kecho is running/, 10_000);
      }
    } else {
      for (const i of ifaces) {
        const t = spawn(lab, name, [
          DENO,
          "run",
          "--allow-all",
          `${REPO}bench/echo.ts`,
          i,
          String(SHELF),
          String(slot),
          String(setup.sectors),
          "64",
        ]);
        inst.procs.push(t);
        await t.waitForLog(/echo is running/, 30_000);
      }
    }
  } catch (e) {
    await stopInstance(inst);
    throw e;
  }
  return inst;
}

async function stopInstance(inst: Instance): Promise<void> {
  await Promise.all(inst.procs.map((p) => p.stop()));
  // Dirty pages of one target's writes must not be written back during the next one's run.
  command("sync");
}

function instanceError(inst: Instance): string | null {
  const dead = inst.procs.find((p) => p.exited);
  return dead ? `${dead.name} exited: ${dead.tail()}` : null;
}

const pidsOf = (inst: Instance) => inst.procs.map((p) => p.pid);

/** Polls discovery until the target answers (or `timeoutMs`). */
async function discover(
  ini: Initiator,
  inst: Instance,
  timeoutMs = 10_000,
): Promise<TargetInfo> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const dead = instanceError(inst);
    if (dead) throw new Error(dead);
    const found =
      ini.discover({ shelf: SHELF, slot: SLOTS[inst.target], waitMs: 200, first: true })[
        0
      ];
    if (found) return found;
    await sleep(50);
  }
  throw new Error(`${inst.target} did not answer discovery within ${timeoutMs / 1000} s`);
}

// --- Workloads -------------------------------------------------------------------------------

interface Spec {
  kind: WorkloadKind;
  /** kinit's --workload. */
  kinit: string;
  /** Bytes per I/O; 0 = one request of the largest size. */
  ioBytes: number;
}

const SPECS: Record<WorkloadName, Spec> = {
  seq_read: { kind: "seq-read", kinit: "seq-read", ioBytes: 0 },
  seq_write: { kind: "seq-write", kinit: "seq-write", ioBytes: 0 },
  rand_read_4k: { kind: "rand-read", kinit: "rand-read", ioBytes: 4096 },
  mixed: { kind: "mixed", kinit: "mixed", ioBytes: 4096 },
  seq_write_direct: { kind: "seq-write", kinit: "seq-write", ioBytes: 0 },
};

function emptyRow(
  series: Series,
  mtu: number,
  workload: WorkloadName,
  target: TargetName,
  error: string,
): Row {
  return {
    series,
    mtu,
    workload,
    target,
    value: null,
    unit: UNITS[workload],
    mbPerSec: null,
    iops: null,
    requestsPerSec: null,
    ioBytes: 0,
    requestBytes: 0,
    sectorsPerRequest: 0,
    seconds: null,
    ios: null,
    requests: null,
    p50Ms: null,
    p99Ms: null,
    maxMs: null,
    retransmits: null,
    errors: null,
    cpuSecPerGB: null,
    cpuSeconds: null,
    cpuCores: null,
    targetUsPerRequest: null,
    workerUsPerRequest: null,
    targetSwitchesPerRequest: null,
    initiatorUsPerRequest: null,
    initiatorSwitchesPerRequest: null,
    initiatorSyscallsPerRequest: null,
    initiatorCores: null,
    otherCores: null,
    syscalls: null,
    perfData: null,
    note: null,
    error,
  };
}

let seed = 1;

/** What a measurement needs to know beyond the instance. */
interface Measure {
  setup: Setup;
  mtu: number;
  workload: WorkloadName;
  /** Name of the row for perf and profile files. */
  tag: string;
}

/** A perf session for the row, if --syscalls or --perf-record asked for one. */
async function perfFor(m: Measure): Promise<PerfSession | null> {
  const o = m.setup.opts;
  if (o.syscalls) return await PerfSession.create("stat");
  if (o.perfRecord) {
    Deno.mkdirSync(o.perfRecord, { recursive: true });
    const data = `${o.perfRecord}/${m.tag}.data`;
    try {
      Deno.removeSync(data); // a busy-machine retry: the profile is the last attempt's
    } catch { /* none yet */ }
    return await PerfSession.create("record", data);
  }
  return null;
}

/** Fills `row.syscalls` / `row.perfData` from a finished perf session. */
async function finishPerf(
  perf: PerfSession,
  row: Row,
  targetTids: Set<number>,
  workerTids: Set<number>,
  initiatorTids: Set<number>,
): Promise<void> {
  const counts = await perf.stop();
  if (perf.output) {
    const summary = await perfSummary(perf.output);
    Deno.writeTextFileSync(perf.output.replace(/\.data$/, ".txt"), summary + "\n");
    row.perfData = perf.output;
    return;
  }
  const n = row.requests ?? 0;
  row.syscalls = {
    target: perRequest(counts, targetTids, n),
    worker: workerTids.size ? perRequest(counts, workerTids, n) : null,
    initiator: perRequest(counts, initiatorTids, n),
  };
  if (row.syscalls.initiator) {
    row.initiatorSyscallsPerRequest = row.syscalls.initiator.syscallsPerRequest;
  }
}

/** Thread ids of ggaoed's data-path worker among `pids`. */
function workerTids(pids: number[]): Set<number> {
  return new Set(
    sampleThreads(pids).filter((t) => /^worker-\d+$/.test(t.comm)).map((t) => t.tid),
  );
}

/** kinit's arguments for `workload` against `target` over link end `host` (a fresh seed each). */
function kinitArgs(host: string, target: TargetName, workload: WorkloadName, o: Options): string[] {
  const spec = SPECS[workload];
  return [
    "-i",
    host,
    "--shelf",
    String(SHELF),
    "--slot",
    String(SLOTS[target]),
    "--workload",
    spec.kinit,
    "--window",
    String(WINDOW),
    "--seconds",
    String(o.seconds),
    "--warmup",
    String(o.warmup),
    "--seed",
    String(seed++),
    ...(spec.ioBytes ? ["--io-bytes", String(spec.ioBytes)] : []),
  ];
}

/** One measurement with kinit (`--rx-ring` for the kinit-ring series) on the instance's link. */
async function measureKinit(inst: Instance, m: Measure, series: Series): Promise<Row> {
  const { setup, mtu, workload } = m;
  const o = setup.opts;
  const pids = pidsOf(inst);
  const perf = await perfFor(m);
  const args = [
    ...kinitArgs(inst.links[0].host, inst.target, workload, o),
    "--watch",
    pids.join(","),
    "--discover-ms",
    "10000",
    ...(perf ? ["--perf-fifo", perf.fifos] : []),
    ...(series === "kinit-ring" ? ["--rx-ring"] : []),
  ];
  const run = new KinitRun(setup.tools.kinit, args, (o.seconds + o.warmup) * 1000 + 60_000);
  let r: KinitResult;
  try {
    if (perf) await perf.attach(perf.output ? pids : [...pids, run.pid]);
    r = await run.result;
  } catch (e) {
    run.kill();
    await run.result.catch(() => {});
    await perf?.stop();
    throw e;
  }
  const threads = r.watched ?? [];
  const all = totalUse(threads);
  const worker = inst.target === "ggaoed" ? totalUse(threads, isDataPathWorker) : null;
  const n = r.requests || 0;
  const unit = UNITS[workload];
  const notes: string[] = [];
  if (r.errors > 0) notes.push(`${r.errors} failed: ${r.firstError}`);
  if (n === 0) notes.push("no request completed");
  const other = Math.max(0, (r.machineBusySeconds - all.cpuSeconds - r.cpu.seconds) / r.seconds);
  if (other > BUSY_CORES) notes.push(`machine busy: ${other.toFixed(2)} cores elsewhere`);
  const row: Row = {
    series,
    mtu,
    workload,
    target: inst.target,
    value: n === 0 ? null : unit === "IOPS" ? r.requestsPerSec : r.mbPerSec,
    unit,
    mbPerSec: r.mbPerSec,
    iops: r.requestsPerSec,
    requestsPerSec: r.requestsPerSec,
    ioBytes: r.requestBytes,
    requestBytes: r.requestBytes,
    sectorsPerRequest: r.sectorsPerRequest,
    seconds: r.seconds,
    ios: n,
    requests: n,
    p50Ms: r.latencyMs.p50,
    p99Ms: r.latencyMs.p99,
    maxMs: r.latencyMs.max,
    retransmits: r.retransmits,
    errors: r.errors,
    cpuSecPerGB: r.bytes > 0 ? all.cpuSeconds / (r.bytes / 1e9) : null,
    cpuSeconds: all.cpuSeconds,
    cpuCores: all.cpuSeconds / r.seconds,
    targetUsPerRequest: n ? all.cpuSeconds * 1e6 / n : null,
    workerUsPerRequest: worker && worker.threads && n ? worker.cpuSeconds * 1e6 / n : null,
    targetSwitchesPerRequest: n ? all.switches / n : null,
    initiatorUsPerRequest: n ? r.cpu.usPerRequest : null,
    initiatorSwitchesPerRequest: n ? r.contextSwitches.perRequest : null,
    initiatorSyscallsPerRequest: n ? r.syscalls.perRequest : null,
    initiatorCores: r.cpu.seconds / r.seconds,
    otherCores: other,
    syscalls: null,
    perfData: null,
    note: r.note,
    error: notes.length ? notes.join("; ") : null,
  };
  if (perf) {
    const tids = new Set(threads.map((t) => t.tid));
    const wt = new Set(threads.filter(isDataPathWorker).map((t) => t.tid));
    await finishPerf(
      perf,
      row,
      tids,
      inst.target === "ggaoed" ? wt : new Set(),
      new Set([run.pid]), // kinit is one thread (and has exited by now)
    );
    // kinit counts its own sendmmsg/recvmmsg exactly; perf adds the reads of /proc at the edges.
    row.initiatorSyscallsPerRequest = n ? r.syscalls.perRequest : null;
  }
  return row;
}

/** One measurement with the TypeScript ring initiator (in this process). */
async function measureRing(inst: Instance, m: Measure): Promise<Row> {
  const { setup, mtu, workload } = m;
  const o = setup.opts;
  const spec = SPECS[workload];
  const pids = pidsOf(inst);
  // The ring socket exists only during the measurement: while it is bound, every reply on the
  // link is also delivered into its RX ring, which the target would pay for in kinit's rows.
  const ini = Initiator.open(inst.links[0].host, {
    window: WINDOW,
    congestionControl: false,
    retries: 5,
    ringBytes: 8 * 1024 * 1024,
  });
  let perf: PerfSession | null = null;
  try {
    const target = await discover(ini, inst);
    const per = ini.maxSectors(target);
    const ioBytes = spec.ioBytes || per * 512;
    const partsPerIo = Math.ceil(ioBytes / 512 / per);
    const base = {
      target,
      kind: spec.kind,
      ioBytes,
      window: WINDOW,
      readPercent: 70,
      regionSectors: setup.sectors,
    };
    perf = await perfFor(m);
    if (perf) await perf.attach(perf.output ? pids : [...pids, Deno.pid]);
    const workers = inst.target === "ggaoed" ? workerTids(pids) : new Set<number>();
    if (o.warmup > 0) ini.runWorkload({ ...base, durationMs: o.warmup * 1000, seed: seed++ });
    const t0 = sampleThreads(pids);
    const s0 = sampleThreads([Deno.pid]);
    const busy0 = machineBusySeconds();
    perf?.command("enable");
    const r: WorkloadResult = ini.runWorkload({
      ...base,
      durationMs: o.seconds * 1000,
      seed: seed++,
    });
    perf?.command("disable");
    const busy = machineBusySeconds() - busy0;
    const self = totalUse(threadUse(s0, sampleThreads([Deno.pid])));
    const threads = threadUse(t0, sampleThreads(pids));
    const all = totalUse(threads);
    const worker = inst.target === "ggaoed" ? totalUse(threads, isDataPathWorker) : null;
    const requests = r.ios * partsPerIo;
    // What neither the target nor this process (the initiator) used: other processes, and
    // interrupt time the kernel charges to no task.
    const other = r.seconds > 0
      ? Math.max(0, (busy - all.cpuSeconds - self.cpuSeconds) / r.seconds)
      : 0;
    const unit = UNITS[workload];
    const notes: string[] = [];
    if (r.errors > 0) notes.push(`${r.errors} failed: ${r.firstError}`);
    if (r.ios === 0) notes.push("no I/O completed");
    if (other > BUSY_CORES) notes.push(`machine busy: ${other.toFixed(2)} cores elsewhere`);
    const row: Row = {
      series: "ring",
      mtu,
      workload,
      target: inst.target,
      value: r.ios === 0 ? null : unit === "IOPS" ? r.iops : r.mbPerSec,
      unit,
      mbPerSec: r.mbPerSec,
      iops: r.iops,
      requestsPerSec: r.seconds > 0 ? requests / r.seconds : null,
      ioBytes,
      requestBytes: Math.min(ioBytes, per * 512),
      sectorsPerRequest: per,
      seconds: r.seconds,
      ios: r.ios,
      requests,
      p50Ms: r.latency.p50,
      p99Ms: r.latency.p99,
      maxMs: r.latency.max,
      retransmits: r.retransmits,
      errors: r.errors,
      cpuSecPerGB: r.bytes > 0 ? all.cpuSeconds / (r.bytes / 1e9) : null,
      cpuSeconds: all.cpuSeconds,
      cpuCores: r.seconds > 0 ? all.cpuSeconds / r.seconds : null,
      targetUsPerRequest: requests ? all.cpuSeconds * 1e6 / requests : null,
      workerUsPerRequest: worker && worker.threads && requests
        ? worker.cpuSeconds * 1e6 / requests
        : null,
      targetSwitchesPerRequest: requests ? all.switches / requests : null,
      initiatorUsPerRequest: requests ? self.cpuSeconds * 1e6 / requests : null,
      initiatorSwitchesPerRequest: requests ? self.switches / requests : null,
      initiatorSyscallsPerRequest: null,
      initiatorCores: r.seconds > 0 ? self.cpuSeconds / r.seconds : null,
      otherCores: other,
      syscalls: null,
      perfData: null,
      note: partsPerIo > 1 ? `${ioBytes}-byte I/Os of ${partsPerIo} requests` : null,
      error: notes.length ? notes.join("; ") : null,
    };
    if (perf) {
      const p = perf;
      perf = null;
      await finishPerf(p, row, threadIds(pids), workers, threadIds([Deno.pid]));
    }
    return row;
  } finally {
    ini.close();
    await perf?.stop();
  }
}

/** A measurement with `series`, repeated (BUSY_RETRIES) when other processes took CPU. */
async function measure(series: Series, inst: Instance, m: Measure): Promise<Row> {
  const once = async () => {
    const dead = instanceError(inst);
    if (dead) throw new Error(dead);
    return series === "ring" ? await measureRing(inst, m) : await measureKinit(inst, m, series);
  };
  let row: Row;
  try {
    row = await once();
    // Another process took CPU during the run (the machine is shared): measure again, up
    // to BUSY_RETRIES times, and keep the least disturbed run.
    for (let i = 0; i < BUSY_RETRIES && (row.otherCores ?? 0) > BUSY_CORES && !interrupted; i++) {
      console.log(`  (busy machine: ${row.otherCores!.toFixed(2)} cores elsewhere, again)`);
      await sleep(1000);
      const again = await once();
      if ((again.otherCores ?? 0) < (row.otherCores ?? 0)) row = again;
    }
  } catch (e) {
    row = emptyRow(series, m.mtu, m.workload, inst.target, message(e));
  }
  return row;
}

function printRow(r: Row, tag = ""): void {
  const v = r.value === null
    ? `FAILED ${r.error ?? ""}`
    : r.unit === "IOPS"
    ? `${Math.round(r.value)} IOPS`
    : `${r.value.toFixed(1)} MB/s`;
  const us = (x: number | null) => x === null ? "-" : x.toFixed(2);
  const extra = r.value === null
    ? ""
    : `  p50 ${r.p50Ms?.toFixed(3)} ms  p99 ${
      r.p99Ms?.toFixed(3)
    } ms  retx ${r.retransmits}  µs/req: target ${us(r.targetUsPerRequest)}${
      r.workerUsPerRequest !== null ? ` (worker ${us(r.workerUsPerRequest)})` : ""
    } initiator ${us(r.initiatorUsPerRequest)}  cores: target ${r.cpuCores?.toFixed(2)} initiator ${
      r.initiatorCores?.toFixed(2)
    } other ${r.otherCores?.toFixed(2)}` +
      (r.syscalls?.target
        ? `  syscalls/req: target ${r.syscalls.target.syscallsPerRequest} initiator ${
          r.syscalls.initiator?.syscallsPerRequest ?? "-"
        }`
        : "") +
      (r.error ? `  (${r.error})` : "");
  console.log(
    `  MTU ${r.mtu}  ${r.series.padEnd(5)} ${LABELS[r.workload].padEnd(17)} ${r.target.padEnd(8)} ${
      tag ? `${tag.padEnd(19)} ` : ""
    }${v}${extra}`,
  );
}

// --- The main table ----------------------------------------------------------------------------

const isWrite = (w: WorkloadName) => w === "seq_write" || w === "mixed" || w === "seq_write_direct";

/**
 * Every row of one MTU, `opts.repeat` rounds: per round, per workload, per initiator, per target.
 * Targets start once (each on its own link) and stay up, except ggaoed under --profile, which
 * starts once per row so that each row has its own profile.
 */
async function mainRows(lab: Lab, setup: Setup): Promise<{ rows: Row[]; verify: VerifyResult[] }> {
  const o = setup.opts;
  const instances = new Map<string, Instance | Error>();
  const get = async (t: TargetName, direct: boolean, profileDir: string | null) => {
    const key = `${t}-${direct}`;
    const have = instances.get(key);
    if (have instanceof Error) throw have;
    if (have) return have;
    try {
      const inst = await startInstance(
        lab,
        setup,
        t,
        direct,
        [await makeLink(lab)],
        DEFAULT_VARIANT,
        profileDir,
      );
      instances.set(key, inst);
      return inst;
    } catch (e) {
      const err = new Error(`start: ${message(e)}`);
      instances.set(key, err);
      throw err;
    }
  };
  const links = new Map<string, Link>();
  const getProfiled = async (t: TargetName, direct: boolean, tag: string) => {
    // ggaoed under --profile: a fresh start per row, on the same link each time.
    const key = `${t}-${direct}`;
    let link = links.get(key);
    if (!link) {
      link = await makeLink(lab);
      links.set(key, link);
    }
    const dir = `${o.profile}/${tag}`;
    return await startInstance(lab, setup, t, direct, [link], DEFAULT_VARIANT, dir);
  };
  const all: Row[][] = [];
  try {
    for (let round = 1; round <= o.repeat && !interrupted; round++) {
      if (o.repeat > 1) console.log(`  round ${round} of ${o.repeat}`);
      const rows: Row[] = [];
      for (const w of o.workloads) {
        const direct = w === "seq_write_direct";
        for (const series of o.series) {
          for (const t of o.only) {
            if (interrupted) break;
            if (direct && (t === "echo" || t === "echo-ts")) continue;
            await sleep(0); // let a pending Ctrl-C run
            const tag = `mtu${lab.mtu}-${w}-${series}-${t}${o.repeat > 1 ? `-r${round}` : ""}`;
            const m: Measure = { setup, mtu: lab.mtu, workload: w, tag };
            let row: Row;
            const profiled = o.profile !== null && t === "ggaoed";
            let inst: Instance | null = null;
            try {
              inst = profiled ? await getProfiled(t, direct, tag) : await get(t, direct, null);
              row = await measure(series, inst, m);
            } catch (e) {
              row = emptyRow(series, lab.mtu, w, t, message(e));
            } finally {
              if (profiled && inst) await stopInstance(inst);
            }
            if (isWrite(w)) command("sync");
            printRow(row);
            rows.push(row);
          }
        }
      }
      all.push(rows);
    }
    const verify: VerifyResult[] = [];
    if (o.verify && !interrupted) {
      for (const t of o.only) {
        if (t === "echo" || t === "echo-ts") continue;
        try {
          verify.push(await verifyTarget(await get(t, false, null), setup, lab.mtu));
        } catch (e) {
          verify.push({ mtu: lab.mtu, target: t, error: message(e) } as VerifyResult);
        }
        printVerify(verify[verify.length - 1]);
      }
    }
    return { rows: medianRows(all), verify };
  } finally {
    for (const inst of instances.values()) if (!(inst instanceof Error)) await stopInstance(inst);
  }
}

/** Per cell (series, workload, target), the median round's row, with every round's value. */
function medianRows(rounds: Row[][]): Row[] {
  if (rounds.length === 1) return rounds[0];
  const out: Row[] = [];
  for (const r of rounds[0]) {
    const same = rounds.map((rs) =>
      rs.find((x) => x.series === r.series && x.workload === r.workload && x.target === r.target)
    ).filter((x): x is Row => x !== undefined);
    const ok = same.filter((x) => x.value !== null);
    const pick = ok.length ? median(ok, (x) => x.value!) : same[0];
    out.push({ ...pick, runs: same.map((x) => x.value) });
  }
  return out;
}

// --- Verify ------------------------------------------------------------------------------------

interface VerifyResult {
  mtu: number;
  target: TargetName;
  requests: number;
  checkedReads: number;
  mismatches: number;
  errors: number;
  retransmits: number;
  error: string | null;
}

async function verifyTarget(inst: Instance, setup: Setup, mtu: number): Promise<VerifyResult> {
  const secs = Math.min(2, setup.opts.seconds);
  const run = new KinitRun(setup.tools.kinit, [
    "-i",
    inst.links[0].host,
    "--shelf",
    String(SHELF),
    "--slot",
    String(SLOTS[inst.target]),
    "--workload",
    "verify",
    "--window",
    String(WINDOW),
    "--seconds",
    String(secs),
    "--warmup",
    "0.5",
    "--seed",
    String(seed++),
    "--discover-ms",
    "10000",
  ], secs * 1000 + 60_000);
  const r = await run.result;
  command("sync");
  return {
    mtu,
    target: inst.target,
    requests: r.requests,
    checkedReads: r.verify?.checkedReads ?? 0,
    mismatches: r.verify?.mismatches ?? 0,
    errors: r.errors,
    retransmits: r.retransmits,
    error: r.firstError,
  };
}

function printVerify(v: VerifyResult): void {
  console.log(
    v.requests === undefined
      ? `  MTU ${v.mtu}  verify ${v.target}: FAILED ${v.error}`
      : `  MTU ${v.mtu}  verify ${v.target.padEnd(8)} ${v.checkedReads} reads checked, ` +
        `${v.mismatches} mismatches, ${v.errors} errors, ${v.retransmits} retransmits` +
        (v.error ? ` (${v.error})` : ""),
  );
}

// --- Many initiators ---------------------------------------------------------------------------

/**
 * `--initiators` kinit processes at once, each on its own link into one target, each with a
 * window of 32; they start their warm-up at the same wall-clock instant (--start-at).
 */
async function manyRow(
  lab: Lab,
  links: Link[],
  setup: Setup,
  t: TargetName,
  w: WorkloadName,
): Promise<ManyRow> {
  const o = setup.opts;
  const unit = UNITS[w];
  const row: ManyRow = {
    mtu: lab.mtu,
    workload: w,
    target: t,
    initiators: links.length,
    window: WINDOW,
    value: null,
    unit,
    requestsPerSec: null,
    perInitiator: [],
    fairness: null,
    p50Ms: null,
    p99Ms: null,
    retransmits: null,
    errors: null,
    targetUsPerRequest: null,
    workerUsPerRequest: null,
    targetCores: null,
    startSkewMs: null,
    otherCores: null,
    error: null,
  };
  let inst: Instance | null = null;
  const runs: KinitRun[] = [];
  try {
    inst = await startInstance(lab, setup, t, w === "seq_write_direct", links);
    const pids = pidsOf(inst);
    const startAt = Date.now() + 3000; // discovery of every initiator fits well before
    links.forEach((l, i) => {
      runs.push(
        new KinitRun(setup.tools.kinit, [
          ...kinitArgs(l.host, t, w, o),
          "--start-at",
          String(startAt),
          "--discover-ms",
          "2500",
          ...(i === 0 ? ["--watch", pids.join(",")] : []),
        ], (o.seconds + o.warmup) * 1000 + 60_000),
      );
    });
    const results = await Promise.all(runs.map((r) => r.result));
    const total = results.reduce((a, r) => a + r.requestsPerSec, 0);
    const mb = results.reduce((a, r) => a + r.mbPerSec, 0);
    const requests = results.reduce((a, r) => a + r.requests, 0);
    const vals = results.map((r) => unit === "IOPS" ? r.requestsPerSec : r.mbPerSec);
    const sum = vals.reduce((a, b) => a + b, 0);
    row.value = unit === "IOPS" ? total : mb;
    row.requestsPerSec = total;
    row.perInitiator = results.map((r, i): ManyShare => ({
      iface: r.iface,
      value: vals[i],
      requestsPerSec: r.requestsPerSec,
      share: sum > 0 ? vals[i] / sum : 0,
      p50Ms: r.latencyMs.p50,
      p99Ms: r.latencyMs.p99,
      retransmits: r.retransmits,
      errors: r.errors,
      initiatorUsPerRequest: r.cpu.usPerRequest,
    }));
    row.fairness = Math.max(...vals) > 0 ? Math.min(...vals) / Math.max(...vals) : null;
    row.p50Ms = median(results, (r) => r.latencyMs.p50).latencyMs.p50;
    row.p99Ms = Math.max(...results.map((r) => r.latencyMs.p99));
    row.retransmits = results.reduce((a, r) => a + r.retransmits, 0);
    row.errors = results.reduce((a, r) => a + r.errors, 0);
    const threads = results[0].watched ?? [];
    const use = totalUse(threads);
    const secs = results[0].seconds;
    // The watched window is the first initiator's; the others' requests in it are assumed at
    // their own average rate (they measured the same seconds: see startSkewMs).
    const inWindow = results.reduce((a, r) => a + r.requestsPerSec * secs, 0);
    row.targetUsPerRequest = inWindow > 0 ? use.cpuSeconds * 1e6 / inWindow : null;
    if (t === "ggaoed") {
      const wk = totalUse(threads, isDataPathWorker);
      row.workerUsPerRequest = wk.threads && inWindow > 0 ? wk.cpuSeconds * 1e6 / inWindow : null;
    }
    row.targetCores = use.cpuSeconds / secs;
    const starts = results.map((r) => r.startedAtMs);
    row.startSkewMs = Math.max(...starts) - Math.min(...starts);
    const initiatorCpu = results.reduce((a, r) => a + r.cpu.seconds, 0);
    row.otherCores = Math.max(
      0,
      (results[0].machineBusySeconds - use.cpuSeconds - initiatorCpu) / secs,
    );
    const notes: string[] = [];
    if (row.errors) {
      notes.push(`${row.errors} failed: ${results.find((r) => r.firstError)?.firstError}`);
    }
    if (requests === 0) notes.push("no request completed");
    if (row.startSkewMs > 100) {
      notes.push(`initiators started ${row.startSkewMs.toFixed(0)} ms apart`);
    }
    if (notes.length) row.error = notes.join("; ");
  } catch (e) {
    for (const r of runs) r.kill();
    row.error = message(e);
  } finally {
    await Promise.all(runs.map((r) => r.result.catch(() => {})));
    if (inst) await stopInstance(inst);
  }
  return row;
}

function printMany(r: ManyRow): void {
  const show = (v: number | null) =>
    v === null ? "-" : r.unit === "IOPS" ? `${Math.round(v)} IOPS` : `${v.toFixed(1)} MB/s`;
  console.log(
    `  MTU ${r.mtu}  ${r.initiators}×kinit ${LABELS[r.workload].padEnd(17)} ${
      r.target.padEnd(8)
    } ` +
      (r.value === null
        ? `FAILED ${r.error}`
        : `${show(r.value)} (${r.perInitiator.map((p) => show(p.value)).join(" / ")})  min/max ${
          r.fairness?.toFixed(2)
        }  p99 ${r.p99Ms?.toFixed(3)} ms  retx ${r.retransmits}  target ${
          r.targetUsPerRequest?.toFixed(2)
        } µs/req${r.error ? `  (${r.error})` : ""}`),
  );
}

async function manyRows(lab: Lab, setup: Setup): Promise<ManyRow[]> {
  const o = setup.opts;
  if (o.many.length === 0) return [];
  const links: Link[] = [];
  for (let i = 0; i < o.manyCount; i++) links.push(await makeLink(lab));
  const all: ManyRow[][] = [];
  for (let round = 1; round <= o.repeat && !interrupted; round++) {
    const rows: ManyRow[] = [];
    for (const w of o.many) {
      for (const t of o.only) {
        if (interrupted) break;
        if (t === "echo-ts" || (w === "seq_write_direct" && t === "echo")) continue;
        const r = await manyRow(lab, links, setup, t, w);
        printMany(r);
        rows.push(r);
      }
    }
    all.push(rows);
  }
  if (all.length <= 1) return all[0] ?? [];
  return all[0].map((r) => {
    const same = all.map((rs) => rs.find((x) => x.workload === r.workload && x.target === r.target))
      .filter((x): x is ManyRow => x !== undefined);
    const ok = same.filter((x) => x.value !== null);
    return {
      ...(ok.length ? median(ok, (x) => x.value!) : same[0]),
      runs: same.map((x) => x.value),
    };
  });
}

// --- Memory check --------------------------------------------------------------------------

interface MemoryResult {
  mtu: number;
  ioBytes: number;
  requestsPerIo: number;
  points: { requests: number; vmRssKiB: number; seconds: number; iops: number }[];
  growthPercent: number | null;
  retransmits: number;
  errors: number;
  error: string | null;
}

async function memoryCheck(lab: Lab, setup: Setup): Promise<MemoryResult> {
  const res: MemoryResult = {
    mtu: lab.mtu,
    ioBytes: 4096,
    requestsPerIo: 1,
    points: [],
    growthPercent: null,
    retransmits: 0,
    errors: 0,
    error: null,
  };
  let inst: Instance | null = null;
  let ini: Initiator | null = null;
  try {
    inst = await startInstance(lab, setup, "ggaoed", false, [await makeLink(lab)]);
    ini = Initiator.open(inst.links[0].host, {
      window: WINDOW,
      congestionControl: false,
      retries: 5,
      ringBytes: 8 * 1024 * 1024,
    });
    const target = await discover(ini, inst);
    const per = ini.maxSectors(target);
    res.requestsPerIo = Math.ceil(8 / per);
    const marks = [Math.round(setup.opts.memoryRequests / 10), setup.opts.memoryRequests];
    let done = 0;
    for (const mark of marks) {
      if (interrupted) break;
      await sleep(0);
      const ios = Math.ceil((mark - done) / res.requestsPerIo);
      const r = ini.runWorkload({
        target,
        kind: "rand-read",
        ioBytes: 4096,
        window: WINDOW,
        totalBytes: ios * 4096,
        regionSectors: setup.sectors,
        seed: seed++,
      });
      done += r.ios * res.requestsPerIo;
      res.retransmits += r.retransmits;
      res.errors += r.errors;
      const rss = rssKiB(inst.procs[0].pid);
      res.points.push({ requests: done, vmRssKiB: rss, seconds: r.seconds, iops: r.iops });
      console.log(
        `  after ${done} requests: VmRSS ${(rss / 1024).toFixed(1)} MiB ` +
          `(${Math.round(r.iops)} IOPS, ${r.retransmits} retransmits, ${r.errors} errors)`,
      );
    }
    if (res.points.length === 2) {
      res.growthPercent = (res.points[1].vmRssKiB / res.points[0].vmRssKiB - 1) * 100;
    }
  } catch (e) {
    res.error = message(e);
    console.log(`  memory check failed: ${res.error}`);
  } finally {
    ini?.close();
    if (inst) await stopInstance(inst);
  }
  return res;
}

// --- Main ------------------------------------------------------------------------------------

function machine() {
  const cpuinfo = (() => {
    try {
      return Deno.readTextFileSync("/proc/cpuinfo");
    } catch {
      return "";
    }
  })();
  return {
    cpu: cpuinfo.match(/^model name\s*:\s*(.*)$/m)?.[1] ?? "unknown",
    cores: navigator.hardwareConcurrency,
    kernel: Deno.osRelease(),
    memoryMiB: Math.round(Deno.systemMemoryInfo().total / 1048576),
    clkTck: CLK_TCK,
  };
}

function versions() {
  const vblade = command("dpkg-query", "-W", "-f=${Version}", "vblade");
  const gcc = command("gcc", "-dumpfullversion");
  return {
    deno: Deno.version.deno,
    v8: Deno.version.v8,
    vblade: vblade.ok ? vblade.out : "unknown",
    ggaoed: command("git", "-C", REPO, "rev-parse", "--short", "HEAD").out || "unknown",
    ggaoedC: GGAOED_C ? (command(GGAOED_C, "-V").out.split("\n")[0] || GGAOED_C) : null,
    gcc: gcc.ok ? gcc.out : "unknown",
  };
}

function createImage(path: string): void {
  // Real data (not a sparse file): every block allocated and in the page cache.
  const f = Deno.openSync(path, { create: true, write: true, truncate: true });
  const chunk = new Uint8Array(1 << 20);
  for (let i = 0; i < chunk.length; i++) chunk[i] = (i * 2654435761) >>> 24;
  for (let off = 0; off < IMAGE_BYTES; off += chunk.length) {
    chunk[0] = off >>> 20;
    f.writeSync(chunk);
  }
  f.syncSync();
  f.close();
}

async function main(): Promise<number> {
  let opts: Options;
  try {
    opts = parseArgs(Deno.args);
  } catch (e) {
    console.error(`bench: ${message(e)}`);
    return 2;
  }
  if (Deno.uid() !== 0) {
    console.error("bench: needs root (network namespaces, packet sockets): sudo deno task bench");
    return 1;
  }
  const onSignal = () => {
    if (interrupted) return;
    interrupted = true;
    console.log("\ninterrupted: cleaning up");
    cleanup().then(() => Deno.exit(130));
  };
  Deno.addSignalListener("SIGINT", onSignal);
  Deno.addSignalListener("SIGTERM", onSignal);

  let tools: Tools;
  try {
    tools = await buildTools();
  } catch (e) {
    console.error(`bench: ${message(e)}`);
    return 1;
  }
  const started = new Date();
  const dir = Deno.makeTempDirSync({ dir: "/var/tmp", prefix: "ggaoed-bench-" });
  cleanups.push(() => Deno.removeSync(dir, { recursive: true }));
  if (opts.profile) Deno.mkdirSync(opts.profile, { recursive: true });
  const image = `${dir}/disk.img`;
  createImage(image);
  const busy0 = machineBusySeconds();
  await sleep(1000);
  const idleLoad = machineBusySeconds() - busy0;
  if (idleLoad > BUSY_CORES) {
    console.log(
      `warning: before the bench, other processes keep ${idleLoad.toFixed(2)} cores busy: ` +
        "the numbers will be low and noisy",
    );
  }
  const setup: Setup = { dir, image, sectors: IMAGE_BYTES / 512, opts, tools };
  if (opts.mechanisms) return await mechanisms(setup, started, idleLoad);

  console.log(
    `ggaoed bench: ${opts.only.join(", ")} on a 64 MiB image in /var/tmp; initiators ${
      opts.series.join(", ")
    }, window ${WINDOW}, ${opts.seconds} s per measurement after ${opts.warmup} s warm-up, ` +
      `${opts.repeat} round(s); MTU ${opts.mtus.join(", ")}`,
  );
  const rows: Row[] = [];
  const many: ManyRow[] = [];
  const verify: VerifyResult[] = [];
  let memory: MemoryResult | null = null;
  for (const mtu of opts.mtus) {
    if (interrupted) break;
    console.log(`\nMTU ${mtu}`);
    let lab: Lab;
    try {
      lab = await makeLab(mtu);
    } catch (e) {
      for (const w of opts.workloads) {
        for (const s of opts.series) {
          for (const t of opts.only) rows.push(emptyRow(s, mtu, w, t, `network: ${message(e)}`));
        }
      }
      console.log(`  network setup failed: ${message(e)}`);
      continue;
    }
    const main = await mainRows(lab, setup);
    rows.push(...main.rows);
    verify.push(...main.verify);
    if (opts.many.length && !interrupted) {
      console.log(
        `  many initiators: ${opts.manyCount} kinit on ${opts.manyCount} links at once, ` +
          `window ${WINDOW} each`,
      );
      many.push(...await manyRows(lab, setup));
    }
    if (opts.memory && opts.only.includes("ggaoed") && mtu === Math.max(...opts.mtus)) {
      console.log(
        `  memory check: ggaoed, 4 KiB random reads, window ${WINDOW}, ` +
          `${opts.memoryRequests / 10} then ${opts.memoryRequests} requests`,
      );
      memory = await memoryCheck(lab, setup);
    }
  }
  if (interrupted) return 130;

  rows.sort((a, b) =>
    SERIES.indexOf(a.series) - SERIES.indexOf(b.series) || a.mtu - b.mtu ||
    WORKLOADS.indexOf(a.workload) - WORKLOADS.indexOf(b.workload) ||
    TARGETS.indexOf(a.target) - TARGETS.indexOf(b.target)
  );
  for (const s of opts.series) console.log(`\n${SERIES_LABELS[s]}:\n\n${table(rows, s)}`);
  if (many.length) console.log(`\nMany initiators:\n\n${manyTable(many)}`);
  if (rows.some((r) => r.syscalls)) console.log(`\nPer request:\n\n${syscallTable(rows)}`);
  if (memory) {
    const [a, b] = memory.points;
    console.log(
      a && b
        ? `\nggaoed VmRSS: ${(a.vmRssKiB / 1024).toFixed(1)} MiB after ${a.requests} requests, ` +
          `${(b.vmRssKiB / 1024).toFixed(1)} MiB after ${b.requests}: ` +
          `${memory.growthPercent! >= 0 ? "+" : ""}${memory.growthPercent!.toFixed(1)} %`
        : `\nmemory check: ${memory.error ?? "incomplete"}`,
    );
  }

  if (opts.write) {
    const summary = (series: Series) => {
      const out: Record<string, Record<string, Record<string, number | null>>> = {};
      for (const mtu of opts.mtus) {
        const m: Record<string, Record<string, number | null>> = {};
        for (const w of opts.workloads) {
          const entry: Record<string, number | null> = {};
          for (const t of TARGETS) {
            const r = find(rows, mtu, w, t, series);
            if (r) {
              entry[t] = r.value === null
                ? null
                : Number(r.value.toFixed(r.unit === "IOPS" ? 0 : 1));
            }
          }
          m[w] = entry;
        }
        out[String(mtu)] = m;
      }
      return out;
    };
    const primary = opts.series[0];
    const json = {
      /** The primary series (kinit unless --initiator says otherwise): MTU → workload → target. */
      mtu: summary(primary),
      primarySeries: primary,
      series: Object.fromEntries(opts.series.map((s) => [s, summary(s)])),
      units: UNITS,
      details: rows,
      many,
      verify,
      memory,
      settings: {
        ...commonSettings(opts),
        rounds: opts.repeat,
        initiators: Object.fromEntries(opts.series.map((s) => [s, SERIES_LABELS[s]])),
        vblade: "-b 64 (-d for seq_write_direct); one process per link in the many rows",
        ggaoed: "direct-io = false (true for seq_write_direct), defaults otherwise",
        "ggaoed-c": GGAOED_C
          ? `${GGAOED_C} -n, queue-length 64, direct-io false (true for seq_write_direct)`
          : null,
        echo: "bench/kecho.c: reads from one buffer, writes acked at once",
        mixedReadPercent: 70,
        manyInitiators: opts.many.length ? opts.manyCount : 0,
      },
      ...provenance(started, idleLoad),
    };
    Deno.mkdirSync(opts.out, { recursive: true });
    const m = json.machine;
    Deno.writeTextFileSync(`${opts.out}/${opts.name}.json`, JSON.stringify(json, null, 2) + "\n");
    Deno.writeTextFileSync(
      `${opts.out}/${opts.name}.svg`,
      chart(
        rows,
        opts.mtus,
        `${m.cpu}, ${m.cores} cores (initiator and target share them), Linux ${m.kernel}, ` +
          `Deno ${json.versions.deno}, vblade ${json.versions.vblade}, ${json.date.slice(0, 10)}`,
        primary,
      ),
    );
    console.log(`\nwrote ${opts.out}/${opts.name}.json and ${opts.name}.svg`);
  }
  const failed = rows.filter((r) => r.value === null).length +
    many.filter((r) => r.value === null).length;
  if (failed) console.log(`${failed} measurement(s) failed: see the note column`);
  const bad = verify.filter((v) => v.mismatches || v.error);
  if (bad.length) {
    console.log(`verify: ${bad.map((v) => `${v.target} at MTU ${v.mtu}`).join(", ")} failed`);
  }
  return bad.length ? 1 : 0;
}

/** The settings every results file records: what was measured, and how long. */
function commonSettings(opts: Options) {
  return {
    window: WINDOW,
    congestionControl: false,
    imageBytes: IMAGE_BYTES,
    imageDir: "/var/tmp",
    seconds: opts.seconds,
    warmupSeconds: opts.warmup,
  };
}

/** Where and when a results file was measured: machine, versions, date, duration. */
function provenance(started: Date, idleLoad: number) {
  return {
    machine: { ...machine(), busyCoresBeforeStart: Number(idleLoad.toFixed(2)) },
    versions: versions(),
    date: started.toISOString(),
    durationSeconds: Math.round((Date.now() - started.getTime()) / 1000),
  };
}

// --- Mechanisms ---------------------------------------------------------------------------

/**
 * `--mechanisms`: every variant of bench/mechanisms.ts (and echo) once per round, the rounds
 * one after the other; the median of the rounds per variant and workload. Measured with the
 * first initiator of --initiator (kinit by default).
 */
async function mechanisms(setup: Setup, started: Date, idleLoad: number): Promise<number> {
  const opts = setup.opts;
  const mtu = opts.mtus[0];
  const series = opts.series[0];
  const chosen = opts.variants;
  const variants = chosen
    ? VARIANTS.filter((v) => v.id === "default" || chosen.includes(v.id))
    : VARIANTS;
  // With --variants, the workloads those variants bear on (the default runs them too).
  const wanted = chosen
    ? new Set(variants.filter((v) => v.id !== "default").flatMap((v) => v.workloads))
    : null;
  console.log(
    `ggaoed bench --mechanisms: ${variants.length} ggaoed variants and echo, MTU ${mtu}, ` +
      `${series} initiator, ${opts.repeat} rounds of ${opts.seconds} s per measurement after ` +
      `${opts.warmup} s warm-up`,
  );
  const lab = await makeLab(mtu);
  const link = await makeLink(lab);
  const runs: MechRun[] = [];
  const cached = (ws: readonly WorkloadName[]) => ws.filter((w) => w !== "seq_write_direct");
  const runInstance = async (
    target: TargetName,
    direct: boolean,
    ws: WorkloadName[],
    v: Variant,
    round: number,
  ) => {
    if (ws.length === 0 || interrupted) return;
    const id = target === "ggaoed" ? v.id : "echo";
    let inst: Instance | null = null;
    let startError: string | null = null;
    try {
      const prof = opts.profile && target === "ggaoed"
        ? `${opts.profile}/mtu${mtu}-${direct ? "d" : "c"}-${series}-${v.id}-r${round}`
        : null;
      inst = await startInstance(lab, setup, target, direct, [link], v, prof);
    } catch (e) {
      startError = `start: ${message(e)}`;
    }
    try {
      for (const w of ws) {
        if (interrupted) break;
        await sleep(0);
        const tag = `mtu${mtu}-${w}-${series}-${id}-r${round}`;
        const row = inst
          ? await measure(series, inst, { setup, mtu, workload: w, tag })
          : emptyRow(series, mtu, w, target, startError!);
        if (isWrite(w)) command("sync");
        printRow(row, target === "ggaoed" ? v.id : "");
        runs.push({ variant: id, round, row });
      }
    } finally {
      if (inst) await stopInstance(inst);
    }
  };
  for (let round = 1; round <= opts.repeat && !interrupted; round++) {
    console.log(`\nround ${round} of ${opts.repeat}`);
    for (const v of variants) {
      for (const direct of [false, true]) {
        const all = v.workloads.filter((w) => !wanted || wanted.has(w));
        const ws = direct ? all.filter((w) => w === "seq_write_direct") : cached(all);
        await runInstance("ggaoed", direct, ws, v, round);
      }
    }
    await runInstance(
      "echo",
      false,
      cached(MECH_WORKLOADS.filter((w) => !wanted || wanted.has(w))),
      DEFAULT_VARIANT,
      round,
    );
  }
  if (interrupted) return 130;
  const cs = cells(runs);
  const text = mechTable(cs, chosen ? variants.map((v) => v.id) : null);
  console.log(`
MTU ${mtu}, ${series} initiator, median of ${opts.repeat} rounds:

${text}`);
  if (opts.write) {
    const json = {
      mtu,
      initiator: series,
      units: Object.fromEntries(MECH_WORKLOADS.map((w) => [w, UNITS[w]])),
      table: text,
      medians: cs,
      variants,
      runs,
      settings: {
        ...commonSettings(opts),
        rounds: opts.repeat,
        initiator: SERIES_LABELS[series],
        ggaoed: "direct-io = false (true for seq_write_direct), defaults except the variant's",
        echo: "bench/kecho.c: reads from one buffer, writes acked at once",
      },
      ...provenance(started, idleLoad),
    };
    Deno.mkdirSync(opts.out, { recursive: true });
    Deno.writeTextFileSync(`${opts.out}/${opts.name}.json`, JSON.stringify(json, null, 2) + "\n");
    console.log(`\nwrote ${opts.out}/${opts.name}.json`);
  }
  const failed = runs.filter((r) => r.row.value === null).length;
  if (failed) console.log(`${failed} measurement(s) failed: see runs[].row.error in the JSON`);
  return 0;
}

let code = 1;
try {
  code = await main();
} catch (e) {
  console.error(`bench: ${e instanceof Error ? e.stack : e}`);
} finally {
  await cleanup();
}
Deno.exit(code);
