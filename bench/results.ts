/**
 * What a results file holds besides the rows: the machine, the versions, the settings, and the
 * main table written as JSON (for bench/report.ts) and as a chart.
 *
 * @module
 */

import {
  chart,
  find,
  type ManyRow,
  type Row,
  type Series,
  SERIES_LABELS,
  TARGETS,
  UNITS,
} from "./report.ts";
import { CLK_TCK, command, GGAOED_C, IMAGE_BYTES, REPO, WINDOW } from "./common.ts";
import type { MemoryResult } from "./memory.ts";
import { cpuInfo } from "./machine.ts";
import type { Options } from "./options.ts";
import type { VerifyResult } from "./rows.ts";

/** Everything one run of the main table measured. */
export interface Results {
  rows: Row[];
  many: ManyRow[];
  verify: VerifyResult[];
  memory: MemoryResult | null;
}

/** The machine: CPU (model, identification, mitigations), cores, kernel, memory. */
export function machine() {
  const cpu = cpuInfo();
  return {
    cpu: cpu.model,
    cpuInfo: cpu,
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

/** The settings every results file records: what was measured, and how long. */
export function commonSettings(opts: Options) {
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
export function provenance(started: Date, idleLoad: number) {
  return {
    machine: { ...machine(), busyCoresBeforeStart: Number(idleLoad.toFixed(2)) },
    versions: versions(),
    date: started.toISOString(),
    durationSeconds: Math.round((Date.now() - started.getTime()) / 1000),
  };
}

/** One series' values: MTU → workload → target → MB/s or IOPS (null: failed). */
function summary(opts: Options, rows: Row[], series: Series) {
  const out: Record<string, Record<string, Record<string, number | null>>> = {};
  for (const mtu of opts.mtus) {
    const m: Record<string, Record<string, number | null>> = {};
    for (const w of opts.workloads) {
      const entry: Record<string, number | null> = {};
      for (const t of TARGETS) {
        const r = find(rows, mtu, w, t, series);
        if (r) {
          entry[t] = r.value === null ? null : Number(r.value.toFixed(r.unit === "IOPS" ? 0 : 1));
        }
      }
      m[w] = entry;
    }
    out[String(mtu)] = m;
  }
  return out;
}

/** Writes `<out>/<name>.json` and `<name>.svg` (the chart of the primary series). */
export function writeResults(opts: Options, res: Results, started: Date, idleLoad: number): void {
  const { rows, many, verify, memory } = res;
  const primary = opts.series[0];
  const json = {
    /** The primary series (kinit unless --initiator says otherwise): MTU → workload → target. */
    mtu: summary(opts, rows, primary),
    primarySeries: primary,
    series: Object.fromEntries(opts.series.map((s) => [s, summary(opts, rows, s)])),
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
      echo: "bench/kecho.c: reads from one buffer, writes acked at once; recvmmsg/sendmmsg batches",
      "echo-frame": "bench/kecho.c --per-frame: the same, one recvfrom and one sendto per frame",
      ceiling: "the better of echo and echo-frame in each row",
      mixedReadPercent: 70,
      manyInitiators: opts.many.length ? opts.manyCount : 0,
      manyLayouts: opts.many.length ? opts.manyLayouts : [],
      /** ggaoed's `workers` key in its many-initiator rows (null: not set). */
      workers: opts.workers,
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
