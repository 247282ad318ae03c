/**
 * The kernel-like side of `deno task bench`: building and running `bench/kinit.c` (the
 * initiator that receives the way the Linux aoe driver does) and `bench/kecho.c` (its echo), the
 * per-thread CPU and context switches of the target from /proc, and `perf stat`/`perf record`
 * sessions bounded to a measurement's window through perf's control FIFO.
 *
 * @module
 */

import type { SyscallFigures } from "./report.ts";

const REPO = new URL("../", import.meta.url).pathname;
/** Where the compiled programs go (ignored by git). */
export const BUILD_DIR = `${REPO}bench/.build`;
const CFLAGS = ["-O2", "-Wall", "-Wextra"];

/** Paths of the compiled tools. */
export interface Tools {
  kinit: string;
  kecho: string;
}

/**
 * Compiles kinit and kecho with gcc into {@link BUILD_DIR} when missing or stale (the stamp
 * beside each binary is a hash of its sources, the flags and the compiler's version).
 */
export async function buildTools(): Promise<Tools> {
  Deno.mkdirSync(BUILD_DIR, { recursive: true });
  const gcc = await run("gcc", ["--version"]);
  if (!gcc.ok) {
    throw new Error(
      `gcc is needed to build bench/kinit.c and bench/kecho.c: ${gcc.err || "not found"} — ` +
        "run scripts/install-deps.sh --bench (or apt-get install gcc libc6-dev)",
    );
  }
  const out: Record<string, string> = {};
  for (const name of ["kinit", "kecho"]) {
    const sources = [`${REPO}bench/${name}.c`, `${REPO}bench/kaoe.h`];
    const text = sources.map((p) => Deno.readTextFileSync(p)).join("\0") +
      CFLAGS.join(" ") + gcc.out.split("\n")[0];
    const hash = await sha256(text);
    const bin = `${BUILD_DIR}/${name}`;
    const stamp = `${bin}.stamp`;
    let fresh = false;
    try {
      fresh = Deno.readTextFileSync(stamp) === hash && Deno.statSync(bin).isFile;
    } catch { /* missing */ }
    if (!fresh) {
      const r = await run("gcc", [...CFLAGS, "-o", bin, sources[0]]);
      if (!r.ok) throw new Error(`gcc ${CFLAGS.join(" ")} bench/${name}.c failed:\n${r.err}`);
      if (r.err) console.log(`warning: gcc on bench/${name}.c:\n${r.err}`);
      Deno.writeTextFileSync(stamp, hash);
    }
    out[name] = bin;
  }
  return { kinit: out.kinit, kecho: out.kecho };
}

async function sha256(s: string): Promise<string> {
  const d = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(s));
  return [...new Uint8Array(d)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

async function run(
  cmd: string,
  args: string[],
): Promise<{ ok: boolean; out: string; err: string }> {
  try {
    const o = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).output();
    const d = new TextDecoder();
    return { ok: o.success, out: d.decode(o.stdout).trim(), err: d.decode(o.stderr).trim() };
  } catch (e) {
    return { ok: false, out: "", err: e instanceof Error ? e.message : String(e) };
  }
}

// --- kinit -----------------------------------------------------------------------------------

/** One thread of a watched process over the measured window (kinit --watch). */
export interface ThreadUse {
  pid: number;
  tid: number;
  comm: string;
  cpuSeconds: number;
  voluntary: number;
  involuntary: number;
}

/** What kinit prints (see bench/kinit.c). */
export interface KinitResult {
  initiator: "kinit";
  iface: string;
  mtu: number;
  target: {
    mac: string;
    shelf: number;
    slot: number;
    bufferCount: number;
    maxSectors: number;
    capacitySectors: number;
  };
  workload: string;
  requestBytes: number;
  sectorsPerRequest: number;
  note: string | null;
  window: number;
  seconds: number;
  startedAtMs: number;
  machineBusySeconds: number;
  requests: number;
  reads: number;
  writes: number;
  bytes: number;
  requestsPerSec: number;
  mbPerSec: number;
  latencyMs: { p50: number; p99: number; max: number; mean: number; samples: number };
  retransmits: number;
  errors: number;
  stale: number;
  sendErrors: number;
  unansweredAtEnd: number;
  firstError: string | null;
  verify?: { checkedReads: number; mismatches: number; uncheckedReads: number };
  cpu: { seconds: number; userSeconds: number; systemSeconds: number; usPerRequest: number };
  rxRing: boolean;
  syscalls: {
    sendmmsg: number;
    recvmmsg: number;
    /** Waits that ended with no reply (the 20 ms tick, for retransmissions). */
    recvmmsgEmpty: number;
    perRequest: number;
    repliesPerRecvmmsg: number;
  };
  contextSwitches: { voluntary: number; involuntary: number; perRequest: number };
  watched?: ThreadUse[];
}

/** A kinit process; `result` resolves with its JSON (or rejects with its error). */
export class KinitRun {
  readonly child: Deno.ChildProcess;
  readonly result: Promise<KinitResult>;
  stderr = "";

  constructor(bin: string, args: string[], timeoutMs: number) {
    const child = new Deno.Command(bin, {
      args,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.child = child;
    const timer = setTimeout(() => {
      try {
        child.kill("SIGKILL");
      } catch { /* gone */ }
    }, timeoutMs);
    const collect = async (s: ReadableStream<Uint8Array>, sink: (t: string) => void) => {
      const d = new TextDecoder();
      for await (const c of s) sink(d.decode(c, { stream: true }));
    };
    let stdout = "";
    const out = collect(child.stdout, (t) => stdout += t);
    const err = collect(child.stderr, (t) => this.stderr += t);
    this.result = (async () => {
      const [status] = await Promise.all([child.status, out, err]);
      clearTimeout(timer);
      const why = this.stderr.split("\n").filter((l) => l && !/^kinit: measur/.test(l)).join(
        " / ",
      );
      if (!status.success) {
        throw new Error(
          status.signal === "SIGKILL"
            ? `kinit did not finish within ${timeoutMs / 1000} s`
            : `kinit exited with ${status.code}: ${why || "(no message)"}`,
        );
      }
      try {
        return JSON.parse(stdout) as KinitResult;
      } catch {
        throw new Error(`kinit printed no JSON: ${stdout.slice(0, 200)} ${why}`);
      }
    })();
  }

  get pid(): number {
    return this.child.pid;
  }

  kill(): void {
    try {
      this.child.kill("SIGKILL");
    } catch { /* gone */ }
  }
}

// --- /proc -----------------------------------------------------------------------------------

/** CPU (ns, from schedstat) and context switches of one thread. */
interface ThreadSample {
  pid: number;
  tid: number;
  comm: string;
  cpuNs: number;
  voluntary: number;
  involuntary: number;
}

/** Every thread of `pids` now (threads that vanish meanwhile are skipped). */
export function sampleThreads(pids: number[]): ThreadSample[] {
  const out: ThreadSample[] = [];
  for (const pid of pids) {
    let tids: string[] = [];
    try {
      tids = [...Deno.readDirSync(`/proc/${pid}/task`)].map((e) => e.name);
    } catch {
      continue;
    }
    for (const t of tids) {
      try {
        const base = `/proc/${pid}/task/${t}`;
        const cpuNs = Number(Deno.readTextFileSync(`${base}/schedstat`).split(" ")[0]);
        const status = Deno.readTextFileSync(`${base}/status`);
        const field = (k: string) => Number(status.match(new RegExp(`^${k}:\\s+(\\d+)`, "m"))?.[1]);
        out.push({
          pid,
          tid: Number(t),
          comm: status.match(/^Name:\s*(.*)$/m)?.[1] ?? "?",
          cpuNs,
          voluntary: field("voluntary_ctxt_switches"),
          involuntary: field("nonvoluntary_ctxt_switches"),
        });
      } catch { /* exited */ }
    }
  }
  return out;
}

/** What each thread used between two samples (threads new in `b` count from zero). */
export function threadUse(a: ThreadSample[], b: ThreadSample[]): ThreadUse[] {
  return b.map((x) => {
    const y = a.find((s) => s.tid === x.tid);
    return {
      pid: x.pid,
      tid: x.tid,
      comm: x.comm,
      cpuSeconds: (x.cpuNs - (y?.cpuNs ?? 0)) / 1e9,
      voluntary: x.voluntary - (y?.voluntary ?? 0),
      involuntary: x.involuntary - (y?.involuntary ?? 0),
    };
  });
}

/** Sum of CPU seconds and context switches over `threads` (optionally only those matching). */
export function totalUse(
  threads: ThreadUse[],
  match: (t: ThreadUse) => boolean = () => true,
): { cpuSeconds: number; switches: number; voluntary: number; threads: number } {
  let cpu = 0, sw = 0, vol = 0, n = 0;
  for (const t of threads) {
    if (!match(t)) continue;
    cpu += t.cpuSeconds;
    sw += t.voluntary + t.involuntary;
    vol += t.voluntary;
    n++;
  }
  return { cpuSeconds: cpu, switches: sw, voluntary: vol, threads: n };
}

/** ggaoed's data-path worker thread(s): Deno names a Worker's thread "worker-N". */
export const isDataPathWorker = (t: ThreadUse) => /^worker-\d+$/.test(t.comm);

// --- perf --------------------------------------------------------------------------------------

/** System calls counted per name by `--syscalls` (those that exist on this kernel). */
const SYSCALLS = [
  "sendto",
  "recvfrom",
  "sendmsg",
  "recvmsg",
  "sendmmsg",
  "recvmmsg",
  "read",
  "write",
  "readv",
  "writev",
  "pread64",
  "pwrite64",
  "preadv",
  "pwritev",
  "preadv2",
  "pwritev2",
  "poll",
  "ppoll",
  "select",
  "pselect6",
  "epoll_wait",
  "epoll_pwait",
  "epoll_pwait2",
  "io_submit",
  "io_getevents",
  "io_pgetevents",
  "io_uring_enter",
  "futex",
  "clock_gettime",
  "nanosleep",
  "clock_nanosleep",
  "sched_yield",
  "ioctl",
  "mprotect",
  "madvise",
];

/**
 * The tracefs directory whose `events/` lists the tracepoints perf can count. perf mounts
 * tracefs itself on first use, so on a freshly booted machine nothing may be mounted before the
 * first perf session: then mount it where perf would (root only, as perf is here), or the
 * per-syscall and scheduler events would silently be left out of that first session.
 */
let tracingRootCache: string | null | undefined;
function tracingRoot(): string | null {
  if (tracingRootCache !== undefined) return tracingRootCache;
  const roots = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];
  const found = () =>
    roots.find((r) => {
      try {
        return Deno.statSync(`${r}/events`).isDirectory;
      } catch {
        return false;
      }
    }) ?? null;
  let root = found();
  if (root === null) {
    try {
      new Deno.Command("mount", {
        args: ["-t", "tracefs", "nodev", roots[0]],
        stdout: "null",
        stderr: "null",
      }).outputSync();
    } catch { /* no mount(8): perf counts what it can */ }
    root = found();
  }
  tracingRootCache = root;
  return root;
}

function availableSyscalls(): string[] {
  const root = tracingRoot();
  if (root === null) return [];
  try {
    const have = new Set(
      [...Deno.readDirSync(`${root}/events/syscalls`)].map((e) =>
        e.name.replace(/^sys_enter_/, "")
      ),
    );
    return SYSCALLS.filter((s) => have.has(s));
  } catch {
    return []; // a kernel without syscall tracepoints
  }
}

/** Counts of one thread in a `perf stat --per-thread` session. */
export interface PerfThreadCounts {
  tid: number;
  comm: string;
  /** Every system call (raw_syscalls:sys_enter). */
  syscalls: number;
  contextSwitches: number;
  taskClockMs: number;
  /** Wake-ups this thread performed (sched:sched_waking in its context). */
  wakeups: number;
  /** Inter-processor interrupts it sent (ipi:ipi_send_cpu and ipi_send_cpumask). */
  ipis: number;
  /** Softirqs run in its context (on veth, the receive side of what it sent). */
  softirqs: number;
  /** Per system call name (those of the curated list that occurred). */
  byName: Record<string, number>;
}

/** Tracepoints counted beside the system calls, when the kernel has them. */
const EXTRA_EVENTS = [
  "sched:sched_waking",
  "ipi:ipi_send_cpu",
  "ipi:ipi_send_cpumask",
  "irq:softirq_entry",
];

function availableEvents(): string[] {
  const root = tracingRoot();
  if (root === null) return [];
  return EXTRA_EVENTS.filter((e) => {
    try {
      return Deno.statSync(`${root}/events/${e.replace(":", "/")}`).isDirectory;
    } catch {
      return false;
    }
  });
}

/**
 * `perf stat` (system calls, context switches, task clock; per thread) or `perf record -g` on a
 * set of processes, started disabled and switched on and off through its control FIFO, so that it
 * covers exactly a measurement's window: the bench writes enable/disable itself for the ring
 * initiator, kinit does it (`--perf-fifo`) at the edges of its own window.
 *
 * `create` makes the FIFOs (so that kinit can be started with them), `attach` starts perf.
 */
export class PerfSession {
  readonly #dir: string;
  readonly #mode: "stat" | "record";
  /** `record`: the perf.data path. */
  readonly output: string;
  #child: Deno.ChildProcess | null = null;
  #stderr = "";
  #collected: Promise<void> = Promise.resolve();

  private constructor(dir: string, mode: "stat" | "record", output: string) {
    this.#dir = dir;
    this.#mode = mode;
    this.output = output;
  }

  /** `ctl,ack` FIFO paths, for kinit's --perf-fifo. */
  get fifos(): string {
    return `${this.#dir}/ctl,${this.#dir}/ack`;
  }

  /** Makes the control FIFOs; `record` will write `output` (a perf.data path). */
  static async create(mode: "stat" | "record", output = ""): Promise<PerfSession> {
    const dir = Deno.makeTempDirSync({ prefix: "ggaoed-bench-perf-" });
    for (const f of ["ctl", "ack"]) {
      const r = await run("mkfifo", [`${dir}/${f}`]);
      if (!r.ok) throw new Error(`mkfifo ${dir}/${f}: ${r.err}`);
    }
    return new PerfSession(dir, mode, output);
  }

  /** Starts perf, disabled, on every thread of `pids`; resolves once it listens. */
  async attach(pids: number[]): Promise<void> {
    const control = ["--control", `fifo:${this.#dir}/ctl,${this.#dir}/ack`, "-D", "-1"];
    const p = pids.join(",");
    const args = this.#mode === "stat"
      ? [
        "stat",
        "-x",
        ",",
        "--per-thread",
        ...control,
        "-e",
        [
          "raw_syscalls:sys_enter",
          "context-switches",
          "task-clock",
          ...availableEvents(),
          ...availableSyscalls().map((s) => `syscalls:sys_enter_${s}`),
        ].join(","),
        "-p",
        p,
      ]
      : ["record", "-g", ...control, "-o", this.output, "-p", p];
    let child: Deno.ChildProcess;
    try {
      child = new Deno.Command("perf", {
        args,
        stdin: "null",
        stdout: "null",
        stderr: "piped",
      }).spawn();
    } catch (e) {
      throw new Error(
        `perf could not be started (${e instanceof Error ? e.message : e}) — ` +
          "run scripts/install-deps.sh --bench (Debian package linux-perf)",
      );
    }
    this.#child = child;
    const d = new TextDecoder();
    this.#collected = (async () => {
      for await (const c of child.stderr) this.#stderr += d.decode(c, { stream: true });
    })();
    // perf attaches, then reads commands: it says "Events disabled" when it listens.
    let exited = false;
    child.status.then(() => exited = true);
    const deadline = Date.now() + 15_000;
    while (!/Events disabled/.test(this.#stderr)) {
      if (exited) {
        throw new Error(`perf ${this.#mode} exited: ${this.#stderr.trim().slice(0, 300)}`);
      }
      if (Date.now() > deadline) {
        throw new Error(`perf ${this.#mode} did not start: ${this.#stderr.trim().slice(0, 300)}`);
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  /** Writes `cmd` to the control FIFO and waits for perf's ack (synchronous). */
  command(cmd: "enable" | "disable"): void {
    const ctl = Deno.openSync(`${this.#dir}/ctl`, { write: true });
    ctl.writeSync(new TextEncoder().encode(`${cmd}\n`));
    ctl.close();
    const ack = Deno.openSync(`${this.#dir}/ack`, { read: true });
    ack.readSync(new Uint8Array(8));
    ack.close();
  }

  /** Stops perf (SIGINT) and removes the FIFOs; for `stat`, the counts per thread. */
  async stop(): Promise<PerfThreadCounts[]> {
    const child = this.#child;
    if (child) {
      try {
        child.kill("SIGINT");
      } catch { /* gone */ }
      const timer = setTimeout(() => {
        try {
          child.kill("SIGKILL");
        } catch { /* gone */ }
      }, 60_000);
      await child.status;
      clearTimeout(timer);
      await this.#collected;
    }
    try {
      Deno.removeSync(this.#dir, { recursive: true });
    } catch { /* gone */ }
    return this.#mode === "stat" ? parsePerfStat(this.#stderr) : [];
  }
}

/**
 * `perf report` of a `perf record` file: the top `limit` symbols (self time, by command, shared
 * object and symbol), as text.
 */
export async function perfSummary(data: string, limit = 40): Promise<string> {
  const r = await run("perf", [
    "report",
    "-i",
    data,
    "--stdio",
    "--no-children",
    "--sort",
    "comm,dso,sym",
    "--percent-limit",
    "0.5",
    "-g",
    "none",
  ]);
  if (!r.ok) return `perf report failed: ${r.err.slice(0, 300)}`;
  return r.out.split("\n").filter((l) => l && !l.startsWith("#")).slice(0, limit).join("\n");
}

/** Parses `perf stat -x , --per-thread` lines: `comm-tid,count,unit,event,...`. */
export function parsePerfStat(text: string): PerfThreadCounts[] {
  const byTid = new Map<number, PerfThreadCounts>();
  for (const line of text.split("\n")) {
    const f = line.split(",");
    if (f.length < 4) continue;
    const m = f[0].match(/^(.*)-(\d+)$/);
    if (!m) continue;
    const tid = Number(m[2]);
    const count = Number(f[1]);
    if (!Number.isFinite(count)) continue; // <not counted>
    let t = byTid.get(tid);
    if (!t) {
      t = {
        tid,
        comm: m[1],
        syscalls: 0,
        contextSwitches: 0,
        taskClockMs: 0,
        wakeups: 0,
        ipis: 0,
        softirqs: 0,
        byName: {},
      };
      byTid.set(tid, t);
    }
    const event = f[3];
    if (event === "raw_syscalls:sys_enter") t.syscalls += count;
    else if (event === "context-switches") t.contextSwitches += count;
    else if (event === "task-clock") t.taskClockMs += count;
    else if (event === "sched:sched_waking") t.wakeups += count;
    else if (event.startsWith("ipi:ipi_send_cpu")) t.ipis += count;
    else if (event === "irq:softirq_entry") t.softirqs += count;
    else if (event.startsWith("syscalls:sys_enter_")) {
      const name = event.slice("syscalls:sys_enter_".length);
      if (count > 0) t.byName[name] = (t.byName[name] ?? 0) + count;
    }
  }
  return [...byTid.values()];
}

/** Sums the threads of `tids` and divides by `requests`. */
export function perRequest(
  counts: PerfThreadCounts[],
  tids: Set<number>,
  requests: number,
): SyscallFigures | null {
  const mine = counts.filter((c) => tids.has(c.tid));
  if (mine.length === 0 || requests <= 0) return null;
  let sys = 0, cs = 0, ms = 0, wake = 0, ipi = 0, soft = 0;
  const names: Record<string, number> = {};
  for (const c of mine) {
    sys += c.syscalls;
    cs += c.contextSwitches;
    ms += c.taskClockMs;
    wake += c.wakeups;
    ipi += c.ipis;
    soft += c.softirqs;
    for (const [k, v] of Object.entries(c.byName)) names[k] = (names[k] ?? 0) + v;
  }
  const byName = Object.fromEntries(
    Object.entries(names)
      .map(([k, v]) => [k, Number((v / requests).toFixed(4))] as const)
      .filter(([, v]) => v >= 0.005)
      .sort((a, b) => b[1] - a[1]),
  );
  return {
    syscallsPerRequest: Number((sys / requests).toFixed(4)),
    contextSwitchesPerRequest: Number((cs / requests).toFixed(4)),
    cpuUsPerRequest: Number((ms * 1000 / requests).toFixed(3)),
    wakeupsPerRequest: Number((wake / requests).toFixed(4)),
    ipisPerRequest: Number((ipi / requests).toFixed(4)),
    softirqsPerRequest: Number((soft / requests).toFixed(4)),
    byName,
  };
}

/** Thread ids of `pids` now. */
export function threadIds(pids: number[]): Set<number> {
  const out = new Set<number>();
  for (const pid of pids) {
    try {
      for (const e of Deno.readDirSync(`/proc/${pid}/task`)) out.add(Number(e.name));
    } catch { /* gone */ }
  }
  return out;
}
