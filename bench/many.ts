/**
 * The many-initiator rows: `--initiators` kinit processes at once, each on its own link into
 * one target, started at the same instant; the total, each initiator's share, min/max (the
 * fairness) and the retransmits. Two layouts (`--many-layout`): `devices`, each initiator its own
 * device (4 devices × 4 initiators), and `shared`, every initiator on the same device (4
 * initiators on 1 device). ggaoed's rows run once per `--workers` value.
 *
 * @module
 */

import {
  ECHOES,
  LABELS,
  layoutLabel,
  type ManyRow,
  type ManyShare,
  type TargetName,
  UNITS,
  type WorkloadName,
} from "./report.ts";
import { isDataPathWorker, type KinitResult, KinitRun, totalUse } from "./kernel.ts";
import { interrupted, median, message, WINDOW } from "./common.ts";
import { kinitArgs } from "./measure.ts";
import {
  DEFAULT_VARIANT,
  type Instance,
  type Lab,
  type Link,
  makeLink,
  pidsOf,
  type Setup,
  type Shape,
  slotOf,
  startInstance,
  stopInstance,
} from "./targets.ts";

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
  shape: Shape,
): Promise<ManyRow> {
  const o = setup.opts;
  const unit = UNITS[w];
  const row: ManyRow = {
    mtu: lab.mtu,
    workload: w,
    target: t,
    layout: shape.layout,
    workers: shape.workers,
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
    inst = await startInstance(
      lab,
      setup,
      t,
      w === "seq_write_direct",
      links,
      DEFAULT_VARIANT,
      null,
      shape,
    );
    const pids = pidsOf(inst);
    const started = inst;
    const startAt = Date.now() + 3000; // discovery of every initiator fits well before
    links.forEach((l, i) => {
      runs.push(
        new KinitRun(setup.tools.kinit, [
          ...kinitArgs(l.host, slotOf(started, i), w, o),
          "--start-at",
          String(startAt),
          "--discover-ms",
          "2500",
          ...(i === 0 ? ["--watch", pids.join(",")] : []),
        ], (o.seconds + o.warmup) * 1000 + 60_000),
      );
    });
    summarise(row, await Promise.all(runs.map((r) => r.result)));
  } catch (e) {
    for (const r of runs) r.kill();
    row.error = message(e);
  } finally {
    await Promise.all(runs.map((r) => r.result.catch(() => {})));
    if (inst) await stopInstance(inst);
  }
  return row;
}

/**
 * Fills `row` from the initiators' results: the total, each one's share, min/max, latencies,
 * and the target's CPU per request within the first initiator's window.
 */
function summarise(row: ManyRow, results: KinitResult[]): void {
  const unit = row.unit;
  const t = row.target;
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
}

function printMany(r: ManyRow): void {
  const show = (v: number | null) =>
    v === null ? "-" : r.unit === "IOPS" ? `${Math.round(v)} IOPS` : `${v.toFixed(1)} MB/s`;
  console.log(
    `  MTU ${r.mtu}  ${layoutLabel(r).padEnd(15)} ${LABELS[r.workload].padEnd(17)} ${
      r.target.padEnd(10)
    }${r.workers ? ` workers ${r.workers}` : ""} ` +
      (r.value === null
        ? `FAILED ${r.error}`
        : `${show(r.value)} (${r.perInitiator.map((p) => show(p.value)).join(" / ")})  min/max ${
          r.fairness?.toFixed(2)
        }  p99 ${r.p99Ms?.toFixed(3)} ms  retx ${r.retransmits}  target ${
          r.targetUsPerRequest?.toFixed(2)
        } µs/req${r.error ? `  (${r.error})` : ""}`),
  );
}

export async function manyRows(lab: Lab, setup: Setup): Promise<ManyRow[]> {
  const o = setup.opts;
  if (o.many.length === 0) return [];
  const links: Link[] = [];
  for (let i = 0; i < o.manyCount; i++) links.push(await makeLink(lab));
  const all: ManyRow[][] = [];
  for (let round = 1; round <= o.repeat && !interrupted(); round++) {
    const rows: ManyRow[] = [];
    for (const layout of o.manyLayouts) {
      for (const w of o.many) {
        for (const t of o.only) {
          if (t === "echo-ts" || (w === "seq_write_direct" && ECHOES.includes(t))) continue;
          for (const workers of t === "ggaoed" ? o.workers : [null]) {
            if (interrupted()) break;
            const r = await manyRow(lab, links, setup, t, w, { layout, workers });
            printMany(r);
            rows.push(r);
          }
        }
      }
    }
    all.push(rows);
  }
  if (all.length <= 1) return all[0] ?? [];
  const sameCell = (a: ManyRow, b: ManyRow) =>
    a.workload === b.workload && a.target === b.target && a.layout === b.layout &&
    a.workers === b.workers;
  return all[0].map((r) => {
    const same = all.map((rs) => rs.find((x) => sameCell(x, r)))
      .filter((x): x is ManyRow => x !== undefined);
    const ok = same.filter((x) => x.value !== null);
    return {
      ...(ok.length ? median(ok, (x) => x.value!) : same[0]),
      runs: same.map((x) => x.value),
    };
  });
}
