/**
 * `--mechanisms`: ggaoed with each mechanism of bench/mechanisms.ts switched off in turn,
 * against its defaults and echo, round after round; the median per variant and workload.
 *
 * @module
 */

import { cpuHeading, SERIES_LABELS, type TargetName, UNITS, type WorkloadName } from "./report.ts";
import {
  cells,
  MECH_WORKLOADS,
  type MechRun,
  mechTable,
  type Variant,
  VARIANTS,
} from "./mechanisms.ts";
import { command, interrupted, message, sleep } from "./common.ts";
import { emptyRow, isWrite, measure, printRow } from "./measure.ts";
import { commonSettings, machine, provenance } from "./results.ts";
import {
  DEFAULT_VARIANT,
  type Instance,
  makeLab,
  makeLink,
  type Setup,
  startInstance,
  stopInstance,
} from "./targets.ts";

/**
 * `--mechanisms`: every variant of bench/mechanisms.ts (and echo) once per round, the rounds
 * one after the other; the median of the rounds per variant and workload. Measured with the
 * first initiator of --initiator (kinit by default).
 */
export async function runMechanisms(
  setup: Setup,
  started: Date,
  idleLoad: number,
): Promise<number> {
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
    if (ws.length === 0 || interrupted()) return;
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
        if (interrupted()) break;
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
  for (let round = 1; round <= opts.repeat && !interrupted(); round++) {
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
  if (interrupted()) return 130;
  report(setup, runs, variants, chosen !== null, started, idleLoad);
  const failed = runs.filter((r) => r.row.value === null).length;
  if (failed) console.log(`${failed} measurement(s) failed: see runs[].row.error in the JSON`);
  return 0;
}

/** The median table, and the results file unless --no-write. */
function report(
  setup: Setup,
  runs: MechRun[],
  variants: Variant[],
  chosen: boolean,
  started: Date,
  idleLoad: number,
): void {
  const opts = setup.opts;
  const mtu = opts.mtus[0];
  const series = opts.series[0];
  const cs = cells(runs);
  const text = mechTable(cs, chosen ? variants.map((v) => v.id) : null);
  console.log(`
MTU ${mtu}, ${series} initiator, median of ${opts.repeat} rounds
${cpuHeading(machine())}

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
}
