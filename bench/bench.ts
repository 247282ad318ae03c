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
 * Run `deno task bench --help` for the options. The parts: options.ts (the command line),
 * targets.ts (starting and stopping the targets), measure.ts (one measurement, one row), rows.ts
 * (the main table and --verify), many.ts (the many-initiator rows), memory.ts (--memory),
 * mechanism_runs.ts (--mechanisms), results.ts (the results file), report.ts (the tables),
 * kernel.ts (kinit, kecho, perf and /proc), common.ts (what they share).
 *
 * @module
 */

import type { ManyRow, Row } from "./report.ts";
import {
  cpuHeading,
  manyTable,
  SERIES,
  SERIES_LABELS,
  syscallTable,
  table,
  TARGETS,
  WORKLOADS,
} from "./report.ts";
import { buildTools, type Tools } from "./kernel.ts";
import {
  BUSY_CORES,
  cleanup,
  cleanups,
  exitCleanlyOnSignals,
  IMAGE_BYTES,
  interrupted,
  machineBusySeconds,
  message,
  sleep,
  WINDOW,
} from "./common.ts";
import { type Options, parseArgs } from "./options.ts";
import { type Lab, makeLab, type Setup } from "./targets.ts";
import { emptyRow } from "./measure.ts";
import { mainRows, type VerifyResult } from "./rows.ts";
import { manyRows } from "./many.ts";
import { memoryCheck, type MemoryResult } from "./memory.ts";
import { runMechanisms } from "./mechanism_runs.ts";
import { machine, type Results, writeResults } from "./results.ts";

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

/**
 * The image in a fresh directory under /var/tmp (removed at exit), and the load other processes
 * put on the machine before the bench starts (warned about when high).
 */
async function prepare(opts: Options, tools: Tools): Promise<{ setup: Setup; idleLoad: number }> {
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
  return { setup: { dir, image, sectors: IMAGE_BYTES / 512, opts, tools }, idleLoad };
}

/** Every MTU in turn: the main table, the many-initiator rows, the memory check. */
async function measureAll(setup: Setup): Promise<Results> {
  const opts = setup.opts;
  const rows: Row[] = [];
  const many: ManyRow[] = [];
  const verify: VerifyResult[] = [];
  let memory: MemoryResult | null = null;
  for (const mtu of opts.mtus) {
    if (interrupted()) break;
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
    if (opts.many.length && !interrupted()) {
      console.log(
        `  many initiators: ${opts.manyCount} kinit on ${opts.manyCount} links at once, ` +
          `window ${WINDOW} each (${opts.manyLayouts.join(", ")})`,
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
  return { rows, many, verify, memory };
}

/** The tables (each heading names the CPU): one per series, many initiators, per request, memory. */
function printTables(opts: Options, res: Results): void {
  const { rows, many, memory } = res;
  const cpu = cpuHeading(machine());
  rows.sort((a, b) =>
    SERIES.indexOf(a.series) - SERIES.indexOf(b.series) || a.mtu - b.mtu ||
    WORKLOADS.indexOf(a.workload) - WORKLOADS.indexOf(b.workload) ||
    TARGETS.indexOf(a.target) - TARGETS.indexOf(b.target)
  );
  for (const s of opts.series) console.log(`\n${SERIES_LABELS[s]}\n${cpu}\n\n${table(rows, s)}`);
  if (many.length) console.log(`\nMany initiators\n${cpu}\n\n${manyTable(many)}`);
  if (rows.some((r) => r.syscalls)) {
    console.log(`\nPer request\n${cpu}\n\n${syscallTable(rows)}`);
  }
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
}

/** Says what failed; 1 when a verifying run found a mismatch or failed, else 0. */
function exitStatus(res: Results): number {
  const failed = res.rows.filter((r) => r.value === null).length +
    res.many.filter((r) => r.value === null).length;
  if (failed) console.log(`${failed} measurement(s) failed: see the note column`);
  const bad = res.verify.filter((v) => v.mismatches || v.error);
  if (bad.length) {
    console.log(`verify: ${bad.map((v) => `${v.target} at MTU ${v.mtu}`).join(", ")} failed`);
  }
  return bad.length ? 1 : 0;
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
  exitCleanlyOnSignals();
  let tools: Tools;
  try {
    tools = await buildTools();
  } catch (e) {
    console.error(`bench: ${message(e)}`);
    return 1;
  }
  const started = new Date();
  const { setup, idleLoad } = await prepare(opts, tools);
  if (opts.mechanisms) return await runMechanisms(setup, started, idleLoad);

  console.log(
    `ggaoed bench: ${opts.only.join(", ")} on a 64 MiB image in /var/tmp; initiators ${
      opts.series.join(", ")
    }, window ${WINDOW}, ${opts.seconds} s per measurement after ${opts.warmup} s warm-up, ` +
      `${opts.repeat} round(s); MTU ${opts.mtus.join(", ")}\n${cpuHeading(machine())}`,
  );
  const res = await measureAll(setup);
  if (interrupted()) return 130;
  printTables(opts, res);
  if (opts.write) writeResults(opts, res, started, idleLoad);
  return exitStatus(res);
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
