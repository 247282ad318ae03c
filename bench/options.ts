/**
 * The benchmark's command line: the help text, the options and their parsing.
 *
 * @module
 */

import {
  type Layout,
  LAYOUTS,
  SERIES,
  type Series,
  type TargetName,
  TARGETS,
  type WorkloadName,
  WORKLOADS,
} from "./report.ts";
import { VARIANTS } from "./mechanisms.ts";
import { DEFAULTS_KEYS, findKey } from "../src/config/schema.ts";
import { GGAOED_C, REPO, WINDOW } from "./common.ts";

export const HELP = `deno task bench [options]   (as root)

ggaoed, vblade, the original C ggaoed (with GGAOED_C set) and an echo responder (bench/kecho.c,
the ceiling, answering in batches and, as echo-frame, frame by frame) on one 64 MiB image in /var/tmp, each target on its own veth pair into a network
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
at once into one target (ggaoed and the C ggaoed: one process on all links; vblade and the
echoes: one process per link), window ${WINDOW} each, in two layouts: 4 devices × 4 initiators
(each initiator its own device) and 4 initiators on 1 device; total, each initiator's share,
min/max (fairness), retransmits.

Per row: throughput, p50/p99 latency, retransmits, the target's CPU per request (every thread,
from /proc/PID/task/*/schedstat; ggaoed's data-path worker thread alone too), the initiator's,
context switches per request, busy cores (target and initiator CPU time over wall time), and
× vblade, × C ggaoed, × ceiling (the better of the two echoes
in that row), p99 × vblade (same initiator and MTU). Every table's heading names the CPU; the
results file records its model, family/model/stepping, mitigations and the kernel release.

  --quick            smoke run: MTU 9000 only, 1 s per measurement, writes results/quick.*
  --seconds N        seconds per measurement (default 2.5)
  --warmup N         seconds of warm-up before each measurement (default 0.5)
  --mtu LIST         MTUs, comma-separated (default 1500,9000)
  --only LIST        targets among ${TARGETS.join(",")}
                     (default ggaoed,vblade,echo,echo-frame, and ggaoed-c when GGAOED_C is set;
                     echo is bench/kecho.c answering in batches (recvmmsg/sendmmsg),
                     echo-frame the same answering frame by frame (recvfrom/sendto, like
                     vblade); echo-ts is bench/echo.ts, the TypeScript echo on TPACKET rings)
  --workloads LIST   among ${WORKLOADS.join(",")} (default all)
  --initiator LIST   series among kinit,ring,kinit-ring (default kinit,ring; --mechanisms: kinit)
  --repeat N         rounds, interleaved; each cell is the median round, each × column the
                     median of the ratios within a round (default 1; --mechanisms: 3)
  --many LIST        workloads of the many-initiator rows (default rand_read_4k; none: skip)
  --initiators N     initiators (and links) of the many-initiator rows (default 4, at most 15)
  --many-layout LIST among devices (each initiator its own device), shared (all on one
                     device) (default devices,shared)
  --workers LIST     ggaoed's many-initiator rows once per value, with workers = N in its
                     configuration (default: the key not set, the daemon's default); a daemon
                     without the key runs one data-path worker: there only 1 is accepted
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

export interface Options {
  mtus: number[];
  seconds: number;
  warmup: number;
  only: TargetName[];
  workloads: WorkloadName[];
  series: Series[];
  repeat: number;
  many: WorkloadName[];
  manyCount: number;
  /** The many-initiator rows' layouts. */
  manyLayouts: Layout[];
  /** --workers: ggaoed's many-initiator rows once per value (null: the key not set). */
  workers: (number | null)[];
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

/** The options without any flag. */
function defaults(): Options {
  return {
    mtus: [1500, 9000],
    seconds: 2.5,
    warmup: 0.5,
    only: GGAOED_C
      ? ["ggaoed", "vblade", "ggaoed-c", "echo", "echo-frame"]
      : ["ggaoed", "vblade", "echo", "echo-frame"],
    workloads: [...WORKLOADS],
    series: ["kinit", "ring"],
    repeat: 1,
    many: ["rand_read_4k"],
    manyCount: 4,
    manyLayouts: ["devices", "shared"],
    workers: [null],
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
}

function list(s: string | undefined, flag: string): string[] {
  if (s === undefined) throw new Error(`${flag} needs a value`);
  return s.split(",").map((x) => x.trim()).filter((x) => x);
}

function positive(s: string | undefined, flag: string): number {
  const n = Number(s);
  if (s === undefined || !Number.isFinite(n) || n <= 0) {
    throw new Error(`${flag} needs a positive number`);
  }
  return n;
}

function directory(s: string | undefined, flag: string): string {
  if (!s) throw new Error(`${flag} needs a directory`);
  return s.startsWith("/") ? s : `${Deno.cwd()}/${s}`;
}

/** `known` members only, else an error naming `what` and the known ones. */
function among<T extends string>(
  s: string | undefined,
  flag: string,
  known: readonly T[],
  what: string,
): T[] {
  return list(s, flag).map((x) => {
    if (!(known as readonly string[]).includes(x)) {
      throw new Error(`unknown ${what} ${x} (known: ${known.join(", ")})`);
    }
    return x as T;
  });
}

/** Whether ggaoed's configuration knows the `workers` key (several data-path workers). */
export const DAEMON_HAS_WORKERS = findKey(DEFAULTS_KEYS, "workers") !== undefined;

/**
 * --workers' values: whole numbers >= 1, each once. A daemon without the `workers` key has one
 * data-path worker: 1 is then measured without the key, anything else is refused up front.
 */
export function workerCounts(
  values: string[],
  flag: string,
  daemonHasWorkers = DAEMON_HAS_WORKERS,
): (number | null)[] {
  if (values.length === 0) throw new Error(`${flag} needs at least one number`);
  const out: (number | null)[] = [];
  for (const v of values) {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 1 || n > 1024) {
      throw new Error(`${flag}: ${v} is not a number of workers (a whole number, 1 to 1024)`);
    }
    if (!daemonHasWorkers && n !== 1) {
      throw new Error(
        `${flag} ${v}: this ggaoed has no "workers" key (one data-path worker only); ` +
          `leave ${flag} out or give ${flag} 1`,
      );
    }
    const w = daemonHasWorkers ? n : null;
    if (!out.includes(w)) out.push(w);
  }
  return out;
}

/** Flags without a value; `given` holds the flags seen so far. */
const SWITCHES: Record<string, (o: Options, given: Set<string>) => void> = {
  "--quick": (o, given) => {
    o.mtus = [9000];
    if (!given.has("--seconds")) o.seconds = 1;
    o.warmup = Math.min(o.warmup, 0.3);
    o.name = "quick";
  },
  "--verify": (o) => o.verify = true,
  "--syscalls": (o) => o.syscalls = true,
  "--memory": (o) => o.memory = true,
  "--mechanisms": (o) => o.mechanisms = true,
  "--no-write": (o) => o.write = false,
};

/** Flags with a value (the next argument, undefined when missing). */
const VALUED: Record<string, (o: Options, v: string | undefined, flag: string) => void> = {
  "--seconds": (o, v, flag) => o.seconds = positive(v, flag),
  "--warmup": (o, v) => {
    o.warmup = Number(v);
    if (!(o.warmup >= 0)) throw new Error("--warmup needs a number >= 0");
  },
  "--mtu": (o, v, flag) =>
    o.mtus = list(v, flag).map((m) => {
      const n = Number(m);
      if (!Number.isInteger(n) || n < 1280 || n > 65535) throw new Error(`bad MTU ${m}`);
      return n;
    }),
  "--only": (o, v, flag) => o.only = among(v, flag, TARGETS, "target"),
  "--workloads": (o, v, flag) => o.workloads = among(v, flag, WORKLOADS, "workload"),
  "--initiator": (o, v, flag) => o.series = among(v, flag, SERIES, "initiator"),
  "--repeat": (o, v, flag) => o.repeat = Math.round(positive(v, flag)),
  "--many": (o, v, flag) => o.many = v === "none" ? [] : among(v, flag, WORKLOADS, "workload"),
  "--initiators": (o, v, flag) => {
    o.manyCount = Math.round(positive(v, flag));
    if (o.manyCount > 15) throw new Error(`${flag}: at most 15 (one slot each, 16 apart)`);
  },
  "--many-layout": (o, v, flag) => o.manyLayouts = among(v, flag, LAYOUTS, "layout"),
  "--workers": (o, v, flag) => o.workers = workerCounts(list(v, flag), flag),
  "--perf-record": (o, v, flag) => o.perfRecord = directory(v, flag),
  "--memory-requests": (o, v, flag) => {
    o.memoryRequests = Math.round(positive(v, flag));
    o.memory = true;
  },
  "--profile": (o, v, flag) => o.profile = directory(v, flag),
  "--out": (o, v) => {
    if (!v) throw new Error("--out needs a directory");
    o.out = v;
  },
  "--variants": (o, v, flag) => {
    o.variants = list(v, flag).map((id) => {
      if (!VARIANTS.some((x) => x.id === id)) {
        throw new Error(`unknown variant ${id} (known: ${VARIANTS.map((x) => x.id).join(", ")})`);
      }
      return id;
    });
    o.mechanisms = true;
  },
};

/** Parses the command line (prints the help and exits for -h); throws on a bad option. */
export function parseArgs(args: string[]): Options {
  const o = defaults();
  const given = new Set<string>();
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === "-h" || a === "--help") {
      console.log(HELP);
      Deno.exit(0);
    }
    if (SWITCHES[a]) SWITCHES[a](o, given);
    else if (VALUED[a]) VALUED[a](o, args[++i], a);
    else throw new Error(`unknown option ${a} (see --help)`);
    given.add(a);
  }
  if (o.only.includes("ggaoed-c") && !GGAOED_C) {
    throw new Error(
      "target ggaoed-c needs GGAOED_C=/path/to/ggaoed (the original C ggaoed's binary)",
    );
  }
  if (o.syscalls && o.perfRecord) {
    throw new Error("--syscalls and --perf-record each attach perf: use one at a time");
  }
  if (o.mechanisms) mechanismDefaults(o, given);
  return o;
}

/** --mechanisms: MTU 9000, 2 s, 0.3 s warm-up, 3 rounds, kinit, unless given. */
function mechanismDefaults(o: Options, given: Set<string>): void {
  if (!given.has("--mtu")) o.mtus = [9000];
  if (!given.has("--seconds")) o.seconds = 2;
  if (!given.has("--warmup")) o.warmup = 0.3;
  if (!given.has("--repeat")) o.repeat = 3;
  if (!given.has("--initiator")) o.series = ["kinit"];
  o.name = "mechanisms";
}
