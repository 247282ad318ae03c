/**
 * `deno task bench`: ggaoed side by side with vblade and with an echo responder (the ceiling).
 *
 * For each MTU (1500 and 9000) a throw-away network namespace is joined by a veth pair to this
 * process, which runs the project's initiator in-process on the host end (window 32, no
 * congestion control, so that 32 requests stay outstanding). The three targets serve the same
 * 64 MiB image in /var/tmp in turn, inside the namespace:
 *
 * - ggaoed (`ggaoed.ts`, direct-io false; true for the direct row),
 * - vblade (`-b 64`; `-d` for the direct row),
 * - echo (`bench/echo.ts`: answers reads from memory and acks writes, no disk).
 *
 * Each measurement runs a short warm-up and then a timed workload; the target's CPU time
 * (utime + stime of its process, every thread) is read from /proc before and after. A target
 * that fails to start, or a workload that throws, becomes a FAILED row. Everything (processes
 * by PID, namespaces, the image) is removed at the end, also on Ctrl-C.
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
  type Row,
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
const SLOTS: Record<TargetName, number> = { ggaoed: 1, vblade: 2, echo: 3 };

const HELP = `deno task bench [options]   (as root)

ggaoed, vblade and the echo responder (bench/echo.ts, the ceiling) on one 64 MiB image in
/var/tmp, in a network namespace joined by veth to this process, which runs the project's
initiator (window ${WINDOW}, no congestion control). Workloads: sequential read and write (largest
request for the MTU), 4 KiB random read, 4 KiB mixed 70/30, sequential write with direct I/O.

  --quick            smoke run: MTU 9000 only, 1 s per measurement, writes results/quick.*
  --seconds N        seconds per measurement (default 2.5)
  --warmup N         seconds of warm-up before each measurement (default 0.5)
  --mtu LIST         MTUs, comma-separated (default 1500,9000)
  --only LIST        targets among ggaoed,vblade,echo (default all)
  --workloads LIST   among ${WORKLOADS.join(",")} (default all)
  --mechanisms       the data path's mechanisms one at a time instead (bench/mechanisms.ts):
                     ggaoed with each switched off against its defaults, plus echo; MTU 9000,
                     2 s per measurement, --repeat rounds (median), writes results/mechanisms.*
  --repeat N         rounds of --mechanisms (default 3)
  --variants LIST    only these variants of --mechanisms (ids in bench/mechanisms.ts; the
                     default variant is always run); the table then has only their lines
  --memory           also drive 10^5 then 10^6 4 KiB reads at ggaoed and compare its VmRSS
  --memory-requests N   requests of the second memory point (default 1000000; first = N/10)
  --profile DIR      run ggaoed under --cpu-prof, profiles written to DIR
  --out DIR          where latest.json / latest.svg go (default bench/results)
  --no-write         print the table only
  -h, --help         this text

Environment: GGAOED_DENO_FLAGS adds Deno flags to the daemon's command line, e.g.
"--v8-flags=--perf-basic-prof" for perf(1) to name JIT-compiled functions.
`;

interface Options {
  mtus: number[];
  seconds: number;
  warmup: number;
  only: TargetName[];
  workloads: WorkloadName[];
  memory: boolean;
  memoryRequests: number;
  profile: string | null;
  out: string;
  name: string;
  write: boolean;
  mechanisms: boolean;
  repeat: number;
  /** --variants: ids of the mechanism variants to run (null: all). */
  variants: string[] | null;
}

function parseArgs(args: string[]): Options {
  const o: Options = {
    mtus: [1500, 9000],
    seconds: 2.5,
    warmup: 0.5,
    only: [...TARGETS],
    workloads: [...WORKLOADS],
    memory: false,
    memoryRequests: 1_000_000,
    profile: null,
    out: `${REPO}bench/results`,
    name: "latest",
    write: true,
    mechanisms: false,
    repeat: 3,
    variants: null,
  };
  let secondsGiven = false;
  let warmupGiven = false;
  let mtuGiven = false;
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
          if (!(TARGETS as readonly string[]).includes(t)) throw new Error(`unknown target ${t}`);
          return t as TargetName;
        });
        break;
      case "--workloads":
        o.workloads = list(args[++i], a).map((w) => {
          if (!(WORKLOADS as readonly string[]).includes(w)) {
            throw new Error(`unknown workload ${w}`);
          }
          return w as WorkloadName;
        });
        break;
      case "--memory":
        o.memory = true;
        break;
      case "--memory-requests":
        o.memoryRequests = Math.round(num(args[++i], a));
        o.memory = true;
        break;
      case "--profile":
        o.profile = args[++i];
        if (!o.profile) throw new Error("--profile needs a directory");
        if (!o.profile.startsWith("/")) o.profile = `${Deno.cwd()}/${o.profile}`;
        break;
      case "--out":
        o.out = args[++i];
        if (!o.out) throw new Error("--out needs a directory");
        break;
      case "--mechanisms":
        o.mechanisms = true;
        break;
      case "--repeat":
        o.repeat = Math.round(num(args[++i], a));
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
  if (o.mechanisms) {
    if (!mtuGiven) o.mtus = [9000];
    if (!secondsGiven) o.seconds = 2;
    if (!warmupGiven) o.warmup = 0.3;
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

/** utime + stime of `pid` (every thread), in seconds. */
function cpuSeconds(pid: number): number {
  const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // fields[0] is field 3 (state): utime is field 14, stime field 15.
  return (Number(fields[11]) + Number(fields[12])) / CLK_TCK;
}

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

// --- Targets ---------------------------------------------------------------------------------

/** A target process running in the namespace. */
class RunningTarget {
  readonly name: TargetName;
  readonly child: Deno.ChildProcess;
  log = "";
  readonly #done: Promise<void>;
  exited = false;

  constructor(name: TargetName, child: Deno.ChildProcess) {
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

interface Lab {
  lab: NetLab;
  ns: string;
  hostIf: string;
  targetIf: string;
  mtu: number;
}

interface Setup {
  dir: string;
  image: string;
  sectors: number;
  opts: Options;
}

function spawn(
  lab: Lab,
  name: TargetName,
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

/**
 * Starts `name` serving the image (direct I/O or page cache) and waits until it answers; ggaoed
 * with the environment and extra `[defaults]` keys of `variant`.
 */
async function startTarget(
  lab: Lab,
  setup: Setup,
  name: TargetName,
  direct: boolean,
  variant: Variant = DEFAULT_VARIANT,
): Promise<RunningTarget> {
  const slot = SLOTS[name];
  let t: RunningTarget;
  if (name === "ggaoed") {
    const dir = `${setup.dir}/ggaoed-${lab.mtu}-${direct ? "direct" : "cached"}-${variant.id}`;
    Deno.mkdirSync(`${dir}/state`, { recursive: true });
    const conf = `${dir}/ggaoed.conf`;
    Deno.writeTextFileSync(
      conf,
      [
        "[defaults]",
        `interfaces = ["${lab.targetIf}"]`,
        `pid-file = "${dir}/ggaoed.pid"`,
        `control-socket = "${dir}/ggaoed.sock"`,
        `state-directory = "${dir}/state"`,
        `direct-io = ${direct}`,
        ...Object.entries(variant.config).map(([k, v]) => `${k} = ${v}`),
        "",
        "[devices.bench]",
        `path = "${setup.image}"`,
        `shelf = ${SHELF}`,
        `slot = ${slot}`,
        "",
      ].join("\n"),
    );
    const prof = setup.opts.profile
      ? [
        "--cpu-prof",
        "--cpu-prof-dir",
        `${setup.opts.profile}/mtu${lab.mtu}-${direct ? "d" : "c"}` +
        (variant.id === "default" ? "" : `-${variant.id}`),
      ]
      : [];
    t = spawn(
      lab,
      name,
      [DENO, "run", ...DAEMON_FLAGS, ...prof, ...extraDenoFlags(), `${REPO}ggaoed.ts`, "-c", conf],
      variant.env,
    );
    await t.waitForLog(/ggaoed is running/, 30_000);
  } else if (name === "vblade") {
    t = spawn(lab, name, [
      "vblade",
      "-b",
      "64",
      ...(direct ? ["-d"] : []),
      String(SHELF),
      String(slot),
      lab.targetIf,
      setup.image,
    ]);
  } else {
    t = spawn(lab, name, [
      DENO,
      "run",
      "--allow-all",
      `${REPO}bench/echo.ts`,
      lab.targetIf,
      String(SHELF),
      String(slot),
      String(setup.sectors),
      "64",
    ]);
    await t.waitForLog(/echo is running/, 30_000);
  }
  return t;
}

/** Polls discovery until the target answers (or `timeoutMs`). */
async function discover(
  ini: Initiator,
  t: RunningTarget,
  slot: number,
  timeoutMs = 10_000,
): Promise<TargetInfo> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (t.exited) throw new Error(`${t.name} exited: ${t.tail()}`);
    const found = ini.discover({ shelf: SHELF, slot, waitMs: 200, first: true })[0];
    if (found) return found;
    await sleep(50);
  }
  throw new Error(`${t.name} did not answer discovery within ${timeoutMs / 1000} s: ${t.tail()}`);
}

// --- Workloads -------------------------------------------------------------------------------

interface Spec {
  kind: WorkloadKind;
  /** Bytes per I/O; 0 = one request of the largest size. */
  ioBytes: number;
}

const SPECS: Record<WorkloadName, Spec> = {
  seq_read: { kind: "seq-read", ioBytes: 0 },
  seq_write: { kind: "seq-write", ioBytes: 0 },
  rand_read_4k: { kind: "rand-read", ioBytes: 4096 },
  mixed: { kind: "mixed", ioBytes: 4096 },
  seq_write_direct: { kind: "seq-write", ioBytes: 0 },
};

function emptyRow(mtu: number, workload: WorkloadName, target: TargetName, error: string): Row {
  return {
    mtu,
    workload,
    target,
    value: null,
    unit: UNITS[workload],
    mbPerSec: null,
    iops: null,
    ioBytes: 0,
    sectorsPerRequest: 0,
    seconds: null,
    ios: null,
    p50Ms: null,
    p99Ms: null,
    maxMs: null,
    retransmits: null,
    errors: null,
    cpuSecPerGB: null,
    cpuSeconds: null,
    cpuCores: null,
    initiatorCores: null,
    otherCores: null,
    error,
  };
}

let seed = 1;

/** Warm-up, then the measured run, with the target's CPU time around it. */
function measure(
  ini: Initiator,
  target: TargetInfo,
  pid: number,
  mtu: number,
  workload: WorkloadName,
  name: TargetName,
  opts: Options,
  sectors: number,
): Row {
  const spec = SPECS[workload];
  const per = ini.maxSectors(target);
  const ioBytes = spec.ioBytes || per * 512;
  const base = {
    target,
    kind: spec.kind,
    ioBytes,
    window: WINDOW,
    readPercent: 70,
    regionSectors: sectors,
  };
  if (opts.warmup > 0) ini.runWorkload({ ...base, durationMs: opts.warmup * 1000, seed: seed++ });
  const cpu0 = cpuSeconds(pid);
  const self0 = cpuSeconds(Deno.pid);
  const busy0 = machineBusySeconds();
  const r: WorkloadResult = ini.runWorkload({
    ...base,
    durationMs: opts.seconds * 1000,
    seed: seed++,
  });
  const cpu = cpuSeconds(pid) - cpu0;
  const self = cpuSeconds(Deno.pid) - self0;
  // What neither the target nor this process (the initiator) used: other processes, and
  // interrupt time the kernel charges to no task.
  const other = machineBusySeconds() - busy0 - cpu - self;
  const unit = UNITS[workload];
  const notes: string[] = [];
  if (r.errors > 0) notes.push(`${r.errors} failed: ${r.firstError}`);
  if (r.ios === 0) notes.push("no I/O completed");
  const otherCores = r.seconds > 0 ? Math.max(0, other / r.seconds) : 0;
  if (otherCores > BUSY_CORES) notes.push(`machine busy: ${otherCores.toFixed(2)} cores elsewhere`);
  return {
    mtu,
    workload,
    target: name,
    value: r.ios === 0 ? null : unit === "IOPS" ? r.iops : r.mbPerSec,
    unit,
    mbPerSec: r.mbPerSec,
    iops: r.iops,
    ioBytes,
    sectorsPerRequest: per,
    seconds: r.seconds,
    ios: r.ios,
    p50Ms: r.latency.p50,
    p99Ms: r.latency.p99,
    maxMs: r.latency.max,
    retransmits: r.retransmits,
    errors: r.errors,
    cpuSecPerGB: r.bytes > 0 ? cpu / (r.bytes / 1e9) : null,
    cpuSeconds: cpu,
    cpuCores: r.seconds > 0 ? cpu / r.seconds : null,
    initiatorCores: r.seconds > 0 ? self / r.seconds : null,
    otherCores,
    error: notes.length ? notes.join("; ") : null,
  };
}

function printRow(r: Row, tag = ""): void {
  const v = r.value === null
    ? `FAILED ${r.error ?? ""}`
    : r.unit === "IOPS"
    ? `${Math.round(r.value)} IOPS`
    : `${r.value.toFixed(1)} MB/s`;
  const extra = r.value === null
    ? ""
    : `  p50 ${r.p50Ms?.toFixed(3)} ms  p99 ${r.p99Ms?.toFixed(3)} ms  retx ${r.retransmits}` +
      `  CPU ${r.cpuSecPerGB?.toFixed(2)} s/GB (target ${r.cpuCores?.toFixed(2)}, initiator ` +
      `${r.initiatorCores?.toFixed(2)}, other ${r.otherCores?.toFixed(2)} cores)` +
      (r.error ? `  (${r.error})` : "");
  console.log(
    `  MTU ${r.mtu}  ${LABELS[r.workload].padEnd(17)} ${r.target.padEnd(7)} ` +
      `${tag ? `${tag.padEnd(19)} ` : ""}${v}${extra}`,
  );
}

/** Runs `workloads` against one start of `name`; every failure becomes a row. */
async function runTarget(
  lab: Lab,
  setup: Setup,
  name: TargetName,
  direct: boolean,
  workloads: WorkloadName[],
  variant: Variant = DEFAULT_VARIANT,
): Promise<Row[]> {
  const rows: Row[] = [];
  if (workloads.length === 0 || interrupted) return rows;
  const tag = setup.opts.mechanisms && name === "ggaoed" ? variant.id : "";
  let t: RunningTarget | null = null;
  let ini: Initiator | null = null;
  try {
    t = await startTarget(lab, setup, name, direct, variant);
    ini = Initiator.open(lab.hostIf, {
      window: WINDOW,
      congestionControl: false,
      retries: 5,
      ringBytes: 8 * 1024 * 1024,
    });
    const target = await discover(ini, t, SLOTS[name]);
    for (const w of workloads) {
      if (interrupted) break;
      await sleep(0); // let a pending Ctrl-C run
      let row: Row;
      try {
        if (t.exited) throw new Error(`${name} exited: ${t.tail()}`);
        row = measure(ini, target, t.pid, lab.mtu, w, name, setup.opts, setup.sectors);
        // Another process took CPU during the run (the machine is shared): measure again, up
        // to BUSY_RETRIES times, and keep the least disturbed run.
        for (let i = 0; i < BUSY_RETRIES && (row.otherCores ?? 0) > BUSY_CORES; i++) {
          console.log(`  (busy machine: ${row.otherCores!.toFixed(2)} cores elsewhere, again)`);
          await sleep(1000);
          const again = measure(ini, target, t.pid, lab.mtu, w, name, setup.opts, setup.sectors);
          if ((again.otherCores ?? 0) < (row.otherCores ?? 0)) row = again;
        }
      } catch (e) {
        row = emptyRow(lab.mtu, w, name, message(e));
      }
      printRow(row, tag);
      rows.push(row);
    }
  } catch (e) {
    for (const w of workloads) {
      if (rows.some((r) => r.workload === w)) continue;
      const row = emptyRow(lab.mtu, w, name, `start: ${message(e)}`);
      printRow(row, tag);
      rows.push(row);
    }
  } finally {
    ini?.close();
    await t?.stop();
    // Dirty pages of one target's writes must not be written back during the next one's run.
    command("sync");
  }
  return rows;
}

async function makeLab(mtu: number): Promise<Lab> {
  const lab = new NetLab();
  cleanups.push(() => lab.cleanup());
  const ns = await lab.namespace();
  const [hostIf, targetIf] = await lab.hostVethPair(ns, { mtu });
  return { lab, ns, hostIf, targetIf, mtu };
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
  let t: RunningTarget | null = null;
  let ini: Initiator | null = null;
  try {
    t = await startTarget(lab, setup, "ggaoed", false);
    ini = Initiator.open(lab.hostIf, {
      window: WINDOW,
      congestionControl: false,
      retries: 5,
      ringBytes: 8 * 1024 * 1024,
    });
    const target = await discover(ini, t, SLOTS.ggaoed);
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
      const rss = rssKiB(t.pid);
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
    await t?.stop();
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
  return {
    deno: Deno.version.deno,
    v8: Deno.version.v8,
    vblade: vblade.ok ? vblade.out : "unknown",
    ggaoed: command("git", "-C", REPO, "rev-parse", "--short", "HEAD").out || "unknown",
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
  const setup: Setup = { dir, image, sectors: IMAGE_BYTES / 512, opts };
  if (opts.mechanisms) return await mechanisms(setup, started, idleLoad);

  console.log(
    `ggaoed bench: ${opts.only.join(", ")} on a 64 MiB image in /var/tmp; window ${WINDOW}, ` +
      `${opts.seconds} s per measurement after ${opts.warmup} s warm-up; MTU ${
        opts.mtus.join(", ")
      }`,
  );
  const rows: Row[] = [];
  let memory: MemoryResult | null = null;
  const cached = opts.workloads.filter((w) => w !== "seq_write_direct");
  const direct = opts.workloads.filter((w) => w === "seq_write_direct");
  for (const mtu of opts.mtus) {
    if (interrupted) break;
    console.log(`\nMTU ${mtu}`);
    let lab: Lab;
    try {
      lab = await makeLab(mtu);
    } catch (e) {
      for (const w of opts.workloads) {
        for (const t of opts.only) rows.push(emptyRow(mtu, w, t, `network: ${message(e)}`));
      }
      console.log(`  network setup failed: ${message(e)}`);
      continue;
    }
    for (const t of opts.only) rows.push(...await runTarget(lab, setup, t, false, cached));
    for (const t of opts.only) {
      if (t !== "echo") rows.push(...await runTarget(lab, setup, t, true, direct));
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
    a.mtu - b.mtu || WORKLOADS.indexOf(a.workload) - WORKLOADS.indexOf(b.workload) ||
    TARGETS.indexOf(a.target) - TARGETS.indexOf(b.target)
  );
  console.log(`\n${table(rows)}`);
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
    const summary: Record<string, Record<string, Record<string, number | null>>> = {};
    for (const mtu of opts.mtus) {
      const m: Record<string, Record<string, number | null>> = {};
      for (const w of opts.workloads) {
        const entry: Record<string, number | null> = {};
        for (const t of TARGETS) {
          if (w === "seq_write_direct" && t === "echo") continue;
          const r = find(rows, mtu, w, t);
          if (r) {
            entry[t] = r.value === null ? null : Number(r.value.toFixed(r.unit === "IOPS" ? 0 : 1));
          }
        }
        m[w] = entry;
      }
      summary[String(mtu)] = m;
    }
    const json = {
      mtu: summary,
      units: UNITS,
      details: rows,
      memory,
      settings: {
        ...commonSettings(opts),
        vblade: "-b 64 (-d for seq_write_direct)",
        ggaoed: "direct-io = false (true for seq_write_direct), defaults otherwise",
        echo: "bench/echo.ts: reads from memory, writes acked at once",
        mixedReadPercent: 70,
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
      ),
    );
    console.log(`\nwrote ${opts.out}/${opts.name}.json and ${opts.name}.svg`);
  }
  const failed = rows.filter((r) => r.value === null).length;
  if (failed) console.log(`${failed} measurement(s) failed: see the note column`);
  return 0;
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
 * one after the other; the median of the rounds per variant and workload.
 */
async function mechanisms(setup: Setup, started: Date, idleLoad: number): Promise<number> {
  const opts = setup.opts;
  const mtu = opts.mtus[0];
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
      `${opts.repeat} rounds of ${opts.seconds} s per measurement after ${opts.warmup} s warm-up`,
  );
  const lab = await makeLab(mtu);
  const runs: MechRun[] = [];
  const cached = (ws: readonly WorkloadName[]) => ws.filter((w) => w !== "seq_write_direct");
  for (let round = 1; round <= opts.repeat && !interrupted; round++) {
    console.log(`
round ${round} of ${opts.repeat}`);
    for (const v of variants) {
      for (const direct of [false, true]) {
        const all = v.workloads.filter((w) => !wanted || wanted.has(w));
        const ws = direct ? all.filter((w) => w === "seq_write_direct") : cached(all);
        for (const row of await runTarget(lab, setup, "ggaoed", direct, ws, v)) {
          runs.push({ variant: v.id, round, row });
        }
      }
    }
    const echoed = cached(MECH_WORKLOADS.filter((w) => !wanted || wanted.has(w)));
    for (const row of await runTarget(lab, setup, "echo", false, echoed)) {
      runs.push({ variant: "echo", round, row });
    }
  }
  if (interrupted) return 130;
  const cs = cells(runs);
  const text = mechTable(cs, chosen ? variants.map((v) => v.id) : null);
  console.log(`
MTU ${mtu}, median of ${opts.repeat} rounds:

${text}`);
  if (opts.write) {
    const json = {
      mtu,
      units: Object.fromEntries(MECH_WORKLOADS.map((w) => [w, UNITS[w]])),
      table: text,
      medians: cs,
      variants,
      runs,
      settings: {
        ...commonSettings(opts),
        rounds: opts.repeat,
        ggaoed: "direct-io = false (true for seq_write_direct), defaults except the variant's",
        echo: "bench/echo.ts: reads from memory, writes acked at once",
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
