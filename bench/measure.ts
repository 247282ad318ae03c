/**
 * One measurement: a workload of one initiator (kinit, kinit on a ring, or the TypeScript ring
 * initiator in this process) against one running target, with the target's and the initiator's
 * CPU per request and, on request, perf; the result is one row of the tables.
 *
 * @module
 */

import { Initiator } from "../src/initiator/mod.ts";
import type { WorkloadKind, WorkloadResult } from "../src/initiator/mod.ts";
import {
  busyCores,
  LABELS,
  type Row,
  type Series,
  type TargetName,
  UNITS,
  type WorkloadName,
} from "./report.ts";
import {
  isDataPathWorker,
  type KinitResult,
  KinitRun,
  PerfSession,
  perfSummary,
  perRequest,
  sampleThreads,
  threadIds,
  type ThreadUse,
  threadUse,
  totalUse,
} from "./kernel.ts";
import {
  BUSY_CORES,
  BUSY_RETRIES,
  interrupted,
  machineBusySeconds,
  message,
  nextSeed,
  SHELF,
  sleep,
  WINDOW,
} from "./common.ts";
import type { Options } from "./options.ts";
import { discover, type Instance, instanceError, pidsOf, type Setup, slotOf } from "./targets.ts";

interface Spec {
  kind: WorkloadKind;
  /** kinit's --workload. */
  kinit: string;
  /** Bytes per I/O; 0 = one request of the largest size. */
  ioBytes: number;
}

export const SPECS: Record<WorkloadName, Spec> = {
  seq_read: { kind: "seq-read", kinit: "seq-read", ioBytes: 0 },
  seq_write: { kind: "seq-write", kinit: "seq-write", ioBytes: 0 },
  rand_read_4k: { kind: "rand-read", kinit: "rand-read", ioBytes: 4096 },
  mixed: { kind: "mixed", kinit: "mixed", ioBytes: 4096 },
  seq_write_direct: { kind: "seq-write", kinit: "seq-write", ioBytes: 0 },
};

export function emptyRow(
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

/** What a measurement needs to know beyond the instance. */
export interface Measure {
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

/** kinit's arguments for `workload` against `slot` over link end `host` (a fresh seed each). */
export function kinitArgs(
  host: string,
  slot: number,
  workload: WorkloadName,
  o: Options,
): string[] {
  const spec = SPECS[workload];
  return [
    "-i",
    host,
    "--shelf",
    String(SHELF),
    "--slot",
    String(slot),
    "--workload",
    spec.kinit,
    "--window",
    String(WINDOW),
    "--seconds",
    String(o.seconds),
    "--warmup",
    String(o.warmup),
    "--seed",
    String(nextSeed()),
    ...(spec.ioBytes ? ["--io-bytes", String(spec.ioBytes)] : []),
  ];
}

/** One measurement with kinit (`--rx-ring` for the kinit-ring series) on the instance's link. */
async function measureKinit(inst: Instance, m: Measure, series: Series): Promise<Row> {
  const { setup, workload } = m;
  const o = setup.opts;
  const pids = pidsOf(inst);
  const perf = await perfFor(m);
  const args = [
    ...kinitArgs(inst.links[0].host, slotOf(inst, 0), workload, o),
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
  const row = kinitRow(series, m, inst.target, r);
  const threads = r.watched ?? [];
  const n = r.requests || 0;
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

/** The row of a kinit measurement: kinit's figures and the target's threads it watched. */
function kinitRow(series: Series, m: Measure, target: TargetName, r: KinitResult): Row {
  const { mtu, workload } = m;
  const threads = r.watched ?? [];
  const all = totalUse(threads);
  const worker = target === "ggaoed" ? totalUse(threads, isDataPathWorker) : null;
  const n = r.requests || 0;
  const unit = UNITS[workload];
  const notes: string[] = [];
  if (r.errors > 0) notes.push(`${r.errors} failed: ${r.firstError}`);
  if (n === 0) notes.push("no request completed");
  const other = Math.max(0, (r.machineBusySeconds - all.cpuSeconds - r.cpu.seconds) / r.seconds);
  if (other > BUSY_CORES) notes.push(`machine busy: ${other.toFixed(2)} cores elsewhere`);
  return {
    series,
    mtu,
    workload,
    target,
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
}

/** One measurement with the TypeScript ring initiator (in this process). */
async function measureRing(inst: Instance, m: Measure): Promise<Row> {
  const { setup, workload } = m;
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
    if (o.warmup > 0) ini.runWorkload({ ...base, durationMs: o.warmup * 1000, seed: nextSeed() });
    const t0 = sampleThreads(pids);
    const s0 = sampleThreads([Deno.pid]);
    const busy0 = machineBusySeconds();
    perf?.command("enable");
    const r: WorkloadResult = ini.runWorkload({
      ...base,
      durationMs: o.seconds * 1000,
      seed: nextSeed(),
    });
    perf?.command("disable");
    const busy = machineBusySeconds() - busy0;
    const row = ringRow(m, inst.target, r, {
      ioBytes,
      per,
      partsPerIo,
      busy,
      self: totalUse(threadUse(s0, sampleThreads([Deno.pid]))),
      threads: threadUse(t0, sampleThreads(pids)),
    });
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

/** What a ring measurement saw besides the workload's result. */
interface RingUse {
  /** Bytes per I/O, sectors per request, requests per I/O. */
  ioBytes: number;
  per: number;
  partsPerIo: number;
  /** Busy CPU seconds of the whole machine during the run. */
  busy: number;
  /** This process's CPU use (the initiator's). */
  self: ReturnType<typeof totalUse>;
  /** The target's threads' CPU use. */
  threads: ThreadUse[];
}

/** The row of a ring measurement. */
function ringRow(m: Measure, target: TargetName, r: WorkloadResult, use: RingUse): Row {
  const { mtu, workload } = m;
  const { ioBytes, per, partsPerIo, busy, self, threads } = use;
  const all = totalUse(threads);
  const worker = target === "ggaoed" ? totalUse(threads, isDataPathWorker) : null;
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
  return {
    series: "ring",
    mtu,
    workload,
    target,
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
}

/** A measurement with `series`, repeated (BUSY_RETRIES) when other processes took CPU. */
export async function measure(series: Series, inst: Instance, m: Measure): Promise<Row> {
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
    for (let i = 0; i < BUSY_RETRIES && (row.otherCores ?? 0) > BUSY_CORES && !interrupted(); i++) {
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

export function printRow(r: Row, tag = ""): void {
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
    } busy ${busyCores(r)?.toFixed(2)} other ${r.otherCores?.toFixed(2)}` +
      (r.syscalls?.target
        ? `  syscalls/req: target ${r.syscalls.target.syscallsPerRequest} initiator ${
          r.syscalls.initiator?.syscallsPerRequest ?? "-"
        }`
        : "") +
      (r.error ? `  (${r.error})` : "");
  console.log(
    `  MTU ${r.mtu}  ${r.series.padEnd(5)} ${LABELS[r.workload].padEnd(17)} ${
      r.target.padEnd(10)
    } ${tag ? `${tag.padEnd(19)} ` : ""}${v}${extra}`,
  );
}

/** Whether `w` writes (the page cache is synced after it). */
export const isWrite = (w: WorkloadName) =>
  w === "seq_write" || w === "mixed" || w === "seq_write_direct";
