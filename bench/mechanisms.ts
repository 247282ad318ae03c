/**
 * `deno task bench --mechanisms`: the data path's mechanisms one at a time, each switched off
 * (or set otherwise) against the daemon's defaults, on ggaoed alone plus the echo ceiling.
 *
 * A variant is one way of starting ggaoed: environment switches read by
 * `src/engine/tuning.ts` and extra `[defaults]` keys of its configuration. `bench.ts` starts
 * every variant once per round (the rounds interleave, so a slow minute of a shared machine
 * spreads over every variant instead of falling on one) and this module turns the runs into
 * medians, the table and the JSON.
 *
 * @module
 */

import type { Row, WorkloadName } from "./report.ts";

/** The workloads of the mechanism run, in column order. */
export const MECH_WORKLOADS = [
  "seq_read",
  "seq_write",
  "rand_read_4k",
  "seq_write_direct",
] as const;
export type MechWorkload = typeof MECH_WORKLOADS[number] & WorkloadName;

const CACHED: MechWorkload[] = ["seq_read", "seq_write", "rand_read_4k"];
const SEQ: MechWorkload[] = ["seq_read", "seq_write", "seq_write_direct"];

/** One way of starting ggaoed. */
export interface Variant {
  id: string;
  /** Environment of the daemon process (src/engine/tuning.ts). */
  env: Record<string, string>;
  /** Extra `[defaults]` keys of its configuration file (TOML values). */
  config: Record<string, string>;
  workloads: MechWorkload[];
}

/** A mechanism and the variants that set it, the default among them. */
export interface Mechanism {
  name: string;
  settings: { label: string; variant: string }[];
  /** Label of the setting the daemon uses. */
  defaultLabel: string;
}

export const VARIANTS: Variant[] = [
  { id: "default", env: {}, config: {}, workloads: [...MECH_WORKLOADS] },
  { id: "merge-off", env: { GGAOED_MAX_MERGE: "1" }, config: {}, workloads: SEQ },
  {
    id: "batch-off",
    env: { GGAOED_SUBMIT_BATCH: "1" },
    config: {},
    workloads: ["seq_write_direct"],
  },
  { id: "sort-off", env: {}, config: { "max-delay": "0.000001" }, workloads: SEQ },
  {
    id: "merge-delay-0.0002",
    env: {},
    config: { "merge-delay": "0.0002" },
    workloads: [...MECH_WORKLOADS],
  },
  {
    id: "merge-delay-0.001",
    env: {},
    config: { "merge-delay": "0.001" },
    workloads: [...MECH_WORKLOADS],
  },
  { id: "ring-0", env: {}, config: { "ring-buffer-size": "0" }, workloads: CACHED },
  { id: "ring-1024", env: {}, config: { "ring-buffer-size": "1024" }, workloads: CACHED },
  { id: "ring-16384", env: {}, config: { "ring-buffer-size": "16384" }, workloads: CACHED },
  { id: "kick-each", env: { GGAOED_TX_KICK_EACH: "1" }, config: {}, workloads: CACHED },
  { id: "buffered-aio", env: { GGAOED_BUFFERED_AIO: "1" }, config: {}, workloads: CACHED },
  {
    id: "read-copy",
    env: { GGAOED_READ_IN_RING: "0" },
    config: {},
    workloads: ["seq_read", "rand_read_4k"],
  },
  {
    id: "map-off",
    env: { GGAOED_MAP_READS: "0" },
    config: {},
    workloads: ["seq_read", "rand_read_4k"],
  },
  {
    id: "address-filter",
    env: { GGAOED_ADDRESS_FILTER: "1" },
    config: {},
    workloads: ["seq_read", "rand_read_4k"],
  },
];

export const MECHANISMS: Mechanism[] = [
  {
    name: "request merging",
    settings: [
      { label: "off (GGAOED_MAX_MERGE=1)", variant: "merge-off" },
      { label: "on, up to 32 requests", variant: "default" },
    ],
    defaultLabel: "on, up to 32 requests",
  },
  {
    name: "batched io_submit",
    settings: [
      { label: "off (GGAOED_SUBMIT_BATCH=1)", variant: "batch-off" },
      { label: "on, up to 32 iocbs", variant: "default" },
    ],
    defaultLabel: "on, up to 32 iocbs",
  },
  {
    name: "sorting (max-delay)",
    settings: [
      { label: "off (max-delay 1 µs)", variant: "sort-off" },
      { label: "on (max-delay 1 ms)", variant: "default" },
    ],
    defaultLabel: "on (max-delay 1 ms)",
  },
  {
    name: "merge-delay",
    settings: [
      { label: "0 (submit at once)", variant: "default" },
      { label: "0.2 ms", variant: "merge-delay-0.0002" },
      { label: "1 ms", variant: "merge-delay-0.001" },
    ],
    defaultLabel: "0 (submit at once)",
  },
  {
    name: "ring-buffer-size",
    settings: [
      { label: "0 (recvfrom/sendto)", variant: "ring-0" },
      { label: "1024 KiB", variant: "ring-1024" },
      { label: "4096 KiB", variant: "default" },
      { label: "16384 KiB", variant: "ring-16384" },
    ],
    defaultLabel: "4096 KiB",
  },
  {
    name: "TX kick",
    settings: [
      { label: "after every reply (GGAOED_TX_KICK_EACH=1)", variant: "kick-each" },
      { label: "once per loop turn", variant: "default" },
    ],
    defaultLabel: "once per loop turn",
  },
  {
    name: "buffered file I/O",
    settings: [
      { label: "kernel AIO (GGAOED_BUFFERED_AIO=1)", variant: "buffered-aio" },
      { label: "preadv/pwritev at submit", variant: "default" },
    ],
    defaultLabel: "preadv/pwritev at submit",
  },
  {
    name: "buffered read data",
    settings: [
      { label: "into the request's slot, copied to the TX frame", variant: "read-copy" },
      { label: "straight into the TX ring frame", variant: "default" },
    ],
    defaultLabel: "straight into the TX ring frame",
  },
  {
    name: "page-cache reads",
    settings: [
      { label: "preadv per transfer (GGAOED_MAP_READS=0)", variant: "map-off" },
      { label: "copies out of a read-only mapping, one call per turn", variant: "default" },
    ],
    defaultLabel: "copies out of a read-only mapping, one call per turn",
  },
  {
    name: "socket filter (one worker)",
    settings: [
      { label: "AoE requests", variant: "default" },
      {
        label: "requests to its devices' addresses (GGAOED_ADDRESS_FILTER=1, as with workers > 1)",
        variant: "address-filter",
      },
    ],
    defaultLabel: "AoE requests",
  },
];

/** One run of one variant (or of echo) and workload. */
export interface MechRun {
  variant: string;
  round: number;
  row: Row;
}

/** The median of a variant's runs of one workload. */
export interface MechCell {
  variant: string;
  workload: MechWorkload;
  unit: "MB/s" | "IOPS";
  value: number | null;
  p99Ms: number | null;
  cpuSecPerGB: number | null;
  /** Median CPU per request of the whole target and of ggaoed's data-path worker, µs. */
  targetUsPerRequest: number | null;
  workerUsPerRequest: number | null;
  runs: (number | null)[];
}

function median(xs: number[]): number | null {
  if (xs.length === 0) return null;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** Medians per variant (and "echo") and workload. */
export function cells(runs: MechRun[]): MechCell[] {
  const out: MechCell[] = [];
  const ids = [...VARIANTS.map((v) => v.id), "echo"];
  for (const id of ids) {
    for (const w of MECH_WORKLOADS) {
      const rs = runs.filter((r) => r.variant === id && r.row.workload === w);
      if (rs.length === 0) continue;
      const ok = rs.filter((r) => r.row.value !== null).map((r) => r.row);
      out.push({
        variant: id,
        workload: w,
        unit: rs[0].row.unit,
        value: median(ok.map((r) => r.value!)),
        p99Ms: median(ok.map((r) => r.p99Ms ?? 0)),
        cpuSecPerGB: median(ok.map((r) => r.cpuSecPerGB ?? 0)),
        targetUsPerRequest: median(
          ok.filter((r) => r.targetUsPerRequest !== null).map((r) => r.targetUsPerRequest!),
        ),
        workerUsPerRequest: median(
          ok.filter((r) => r.workerUsPerRequest !== null).map((r) => r.workerUsPerRequest!),
        ),
        runs: rs.map((r) => r.row.value),
      });
    }
  }
  return out;
}

const HEADS: Record<MechWorkload, string> = {
  seq_read: "seq read",
  seq_write: "seq write",
  rand_read_4k: "4K rand read",
  seq_write_direct: "seq write direct (p99)",
};

function show(c: MechCell | undefined, withP99: boolean): string {
  if (!c) return "";
  if (c.value === null) return "FAILED";
  const v = c.unit === "IOPS" ? `${Math.round(c.value)} IOPS` : `${c.value.toFixed(0)} MB/s`;
  return withP99 && c.p99Ms !== null ? `${v} (${c.p99Ms.toFixed(2)} ms)` : v;
}

/**
 * The table as Markdown: one line per mechanism setting (the default one in bold), one column
 * per workload, and the echo ceiling last. A cell is empty where the mechanism has no bearing.
 * With `only` (variant ids run), only the mechanisms that one of them sets.
 */
export function mechTable(cs: MechCell[], only: string[] | null = null): string {
  const get = (variant: string, w: MechWorkload) =>
    cs.find((c) => c.variant === variant && c.workload === w);
  const head = ["mechanism", "setting", ...MECH_WORKLOADS.map((w) => HEADS[w])];
  const lines: string[][] = [];
  for (const m of MECHANISMS) {
    if (only && !m.settings.some((s) => s.variant !== "default" && only.includes(s.variant))) {
      continue;
    }
    const variants = m.settings.map((s) => VARIANTS.find((v) => v.id === s.variant)!);
    // Columns the mechanism bears on: those its non-default variants measure.
    const cols = new Set(variants.filter((v) => v.id !== "default").flatMap((v) => v.workloads));
    m.settings.forEach((s, i) => {
      const isDefault = s.label === m.defaultLabel;
      lines.push([
        i === 0 ? m.name : "",
        isDefault ? `**${s.label}** (default)` : s.label,
        ...MECH_WORKLOADS.map((w) =>
          cols.has(w) ? show(get(s.variant, w), w === "seq_write_direct") : ""
        ),
      ]);
    });
  }
  lines.push([
    "echo (ceiling)",
    "bench/kecho.c",
    ...MECH_WORKLOADS.map((w) => show(get("echo", w), false) || "-"),
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i].length)));
  const right = (i: number) => i >= 2;
  const fmt = (cols: string[]) =>
    `| ${cols.map((c, i) => right(i) ? c.padStart(widths[i]) : c.padEnd(widths[i])).join(" | ")} |`;
  return [
    fmt(head),
    `| ${widths.map((w, i) => "-".repeat(w - 1) + (right(i) ? ":" : "-")).join(" | ")} |`,
    ...lines.map(fmt),
  ].join("\n");
}
