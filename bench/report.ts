/**
 * What `deno task bench` prints and writes: the text tables, the grouped bar chart (SVG written
 * by hand, no dependencies) and the shape of `bench/results/latest.json`.
 *
 * Run as a program, it prints the Markdown tables of a results file (for the README):
 *
 * ```sh
 * deno run --allow-read bench/report.ts [bench/results/latest.json]
 * ```
 *
 * @module
 */

/** The targets, in table order. */
export const TARGETS = ["ggaoed", "vblade", "ggaoed-c", "echo", "echo-frame", "echo-ts"] as const;
export type TargetName = typeof TARGETS[number];

/** What the tables call each target. */
export const TARGET_LABELS: Record<TargetName, string> = {
  ggaoed: "ggaoed",
  vblade: "vblade",
  "ggaoed-c": "C ggaoed",
  echo: "echo",
  "echo-frame": "echo 1/turn",
  "echo-ts": "echo.ts",
};

/**
 * The echo responders that make the ceiling: `echo` (bench/kecho.c answering in batches, one
 * recvmmsg and one sendmmsg per turn) and `echo-frame` (the same answering frame by frame, one
 * recvfrom and one sendto per frame, like vblade's loop). The ceiling of a row is the better of
 * the two in it.
 */
export const ECHOES: readonly TargetName[] = ["echo", "echo-frame"];

/** The CPU of the machine a results file was measured on (bench/machine.ts). */
export interface CpuInfo {
  /** lscpu's Model name. */
  model: string;
  vendor: string | null;
  family: number | null;
  modelNumber: number | null;
  stepping: number | null;
  mhz: number | null;
  /** Every file of /sys/devices/system/cpu/vulnerabilities: name → content. */
  vulnerabilities: Record<string, string>;
}

/** The machine part of a results file (older files have `cpu` and `kernel` only). */
export interface MachineInfo {
  cpu: string;
  cpuInfo?: CpuInfo;
  cores?: number;
  kernel?: string;
}

/**
 * The line naming the CPU above every table: model, vendor, family/model/stepping, MHz, cores,
 * kernel, and the mitigations in force (the vulnerabilities that are not "Not affected"; the
 * results file has them all).
 */
export function cpuHeading(m: MachineInfo): string {
  const c = m.cpuInfo;
  const id = c
    ? [
      c.vendor,
      c.family !== null ? `family ${c.family}` : null,
      c.modelNumber !== null ? `model ${c.modelNumber}` : null,
      c.stepping !== null ? `stepping ${c.stepping}` : null,
      c.mhz !== null ? `${Math.round(c.mhz)} MHz` : null,
    ].filter((x) => x !== null).join(", ")
    : "";
  const parts = [
    `CPU: ${c?.model ?? m.cpu}${id ? ` (${id})` : ""}`,
    m.cores ? `${m.cores} cores` : null,
    m.kernel ? `Linux ${m.kernel}` : null,
  ].filter((x) => x !== null);
  let line = parts.join(", ");
  if (c) {
    const affected = Object.entries(c.vulnerabilities).filter(([, v]) =>
      !/^Not affected$/i.test(v)
    );
    line += affected.length
      ? `; mitigations: ${affected.map(([k, v]) => `${k}: ${v}`).join("; ")}`
      : Object.keys(c.vulnerabilities).length
      ? "; mitigations: none needed (not affected)"
      : "; mitigations: unknown";
  }
  return line;
}

/**
 * The initiators, one series each: `kinit` (bench/kinit.c, a plain packet socket with batched
 * sendmmsg/recvmmsg, the way the Linux aoe driver receives: the primary series), `ring` (the
 * project's TypeScript initiator on TPACKET rings, in the bench process) and `kinit-ring`
 * (bench/kinit.c receiving through a TPACKET_V2 RX ring: the same C loop with the ring's receive,
 * which separates what the ring costs the target from what TypeScript costs; not run by default).
 */
export const SERIES = ["kinit", "ring", "kinit-ring"] as const;
export type Series = typeof SERIES[number];

export const SERIES_LABELS: Record<Series, string> = {
  kinit: "kernel-like initiator (bench/kinit.c: plain packet socket, sendmmsg/recvmmsg)",
  ring: "TypeScript ring initiator (src/initiator, TPACKET rings, in the bench process)",
  "kinit-ring": "bench/kinit.c receiving through a TPACKET_V2 RX ring (kinit --rx-ring)",
};

/** The workloads, in table order. */
export const WORKLOADS = [
  "seq_read",
  "seq_write",
  "rand_read_4k",
  "mixed",
  "seq_write_direct",
] as const;
export type WorkloadName = typeof WORKLOADS[number];

/** Unit of each workload's headline figure. */
export const UNITS: Record<WorkloadName, "MB/s" | "IOPS"> = {
  seq_read: "MB/s",
  seq_write: "MB/s",
  rand_read_4k: "IOPS",
  mixed: "IOPS",
  seq_write_direct: "MB/s",
};

/** What the table calls each workload. */
export const LABELS: Record<WorkloadName, string> = {
  seq_read: "seq read",
  seq_write: "seq write",
  rand_read_4k: "4K rand read",
  mixed: "4K mixed 70/30",
  seq_write_direct: "seq write direct",
};

/** System calls, context switches and CPU per request of a group of threads (`--syscalls`). */
export interface SyscallFigures {
  syscallsPerRequest: number;
  contextSwitchesPerRequest: number;
  cpuUsPerRequest: number;
  /** Wake-ups the threads performed (sched:sched_waking), per request. */
  wakeupsPerRequest: number;
  /** Inter-processor interrupts they sent, per request. */
  ipisPerRequest: number;
  /** Softirqs run in their context (on veth: the receive side of what they sent), per request. */
  softirqsPerRequest: number;
  /** Per system call name, largest first. */
  byName: Record<string, number>;
}

/** One measurement. */
export interface Row {
  /** Which initiator measured it. */
  series: Series;
  mtu: number;
  workload: WorkloadName;
  target: TargetName;
  /** MB/s or IOPS (see `unit`); null when the measurement failed. */
  value: number | null;
  unit: "MB/s" | "IOPS";
  mbPerSec: number | null;
  iops: number | null;
  /** AoE requests (frames each way) per second. */
  requestsPerSec: number | null;
  /** Bytes per I/O. */
  ioBytes: number;
  /** Bytes per AoE request (kinit: equal to ioBytes; the ring initiator splits an I/O). */
  requestBytes: number;
  /** Sectors per AoE request. */
  sectorsPerRequest: number;
  seconds: number | null;
  ios: number | null;
  requests: number | null;
  p50Ms: number | null;
  p99Ms: number | null;
  maxMs: number | null;
  retransmits: number | null;
  /** Requests that failed (AoE/ATA error, or no answer after every retry). */
  errors: number | null;
  /** Target process CPU seconds (user + system, all threads) per GB moved. */
  cpuSecPerGB: number | null;
  /** Target CPU seconds during the measurement, and the share of one core. */
  cpuSeconds: number | null;
  cpuCores: number | null;
  /** Target CPU per request, every thread (from /proc/PID/task/TID/schedstat), µs. */
  targetUsPerRequest: number | null;
  /** ggaoed only: its data-path worker thread alone, µs per request. */
  workerUsPerRequest: number | null;
  /** Target context switches (voluntary + involuntary, every thread) per request. */
  targetSwitchesPerRequest: number | null;
  /** Initiator CPU per request, µs (kinit: its process; ring: the bench process). */
  initiatorUsPerRequest: number | null;
  initiatorSwitchesPerRequest: number | null;
  /** kinit: its sendmmsg + recvmmsg per request; ring: with --syscalls only. */
  initiatorSyscallsPerRequest: number | null;
  /** Cores used by the initiator during the run. */
  initiatorCores: number | null;
  /** Cores used by anything else (other processes, unaccounted interrupt time). */
  otherCores: number | null;
  /** `--syscalls`: perf stat counts per request of the target, ggaoed's worker, the initiator. */
  syscalls: {
    target: SyscallFigures | null;
    worker: SyscallFigures | null;
    initiator: SyscallFigures | null;
  } | null;
  /** `--perf-record`: the perf.data file of the target over the window, and its summary. */
  perfData: string | null;
  /** About the measurement (e.g. the MTU 1500 request size of the 4K rows). */
  note: string | null;
  /** With --repeat: the value of every round (the row is the median one). */
  runs?: (number | null)[];
  /** Why there is no number (target did not start, workload threw), or a warning. */
  error: string | null;
}

/** One initiator of a many-initiator row. */
export interface ManyShare {
  iface: string;
  value: number | null;
  requestsPerSec: number;
  share: number;
  p50Ms: number;
  p99Ms: number;
  retransmits: number;
  errors: number;
  initiatorUsPerRequest: number;
}

/**
 * How the initiators of a many-initiator row share the target: `devices`, each its own device
 * (one per initiator, on its own link); `shared`, all the same device (one device on every link).
 */
export const LAYOUTS = ["devices", "shared"] as const;
export type Layout = typeof LAYOUTS[number];

/** N initiators on N links at once against one target (process per link for vblade, echo). */
export interface ManyRow {
  mtu: number;
  workload: WorkloadName;
  target: TargetName;
  /** Absent in files written before there were two layouts: those were `shared`. */
  layout?: Layout;
  /** ggaoed's `workers` key in that run; null (or absent): not set, the daemon's default. */
  workers?: number | null;
  initiators: number;
  window: number;
  /** Total MB/s or IOPS; null when it failed. */
  value: number | null;
  unit: "MB/s" | "IOPS";
  requestsPerSec: number | null;
  perInitiator: ManyShare[];
  /** Smallest initiator's throughput over the largest's. */
  fairness: number | null;
  p50Ms: number | null;
  /** The worst initiator's p99. */
  p99Ms: number | null;
  retransmits: number | null;
  errors: number | null;
  targetUsPerRequest: number | null;
  workerUsPerRequest: number | null;
  targetCores: number | null;
  /** Largest difference between the initiators' measurement starts. */
  startSkewMs: number | null;
  otherCores: number | null;
  runs?: (number | null)[];
  error: string | null;
}

const fmt = (n: number | null | undefined, digits: number) =>
  n === null || n === undefined ? "-" : n.toFixed(digits);

function ratio(a: number | null, b: number | null): number | null {
  return a !== null && b !== null && b > 0 ? a / b : null;
}

/** What a ratio is taken between: a row's value and, with --repeat, every round's. */
interface Measured {
  value: number | null;
  runs?: (number | null)[];
}

/**
 * `a` over `b`. With rounds (--repeat), the median of the ratios within each round (both
 * measured minutes apart at most, interleaved), not the ratio of two medians that may come
 * from different rounds: on a shared machine the whole machine's speed drifts between rounds.
 */
export function pairedRatio(a: Measured | undefined, b: Measured | undefined): number | null {
  if (!a || !b) return null;
  const ra = a.runs, rb = b.runs;
  if (ra && rb && ra.length > 1 && ra.length === rb.length) {
    const each: number[] = [];
    for (let i = 0; i < ra.length; i++) {
      const q = ratio(ra[i], rb[i]);
      if (q !== null) each.push(q);
    }
    if (each.length === 0) return null;
    each.sort((x, y) => x - y);
    const m = each.length >> 1;
    return each.length % 2 ? each[m] : (each[m - 1] + each[m]) / 2;
  }
  return ratio(a.value, b.value);
}

/** The row of `target` for `workload` at `mtu` in `series`, if measured. */
export function find(
  rows: Row[],
  mtu: number,
  workload: WorkloadName,
  target: TargetName,
  series: Series = "kinit",
): Row | undefined {
  return rows.find((r) =>
    r.mtu === mtu && r.workload === workload && r.target === target &&
    (r.series ?? "ring") === series
  );
}

/**
 * The ceiling among `echoes` (measured rows of the echo responders): the better of them, round by
 * round when they have rounds (so that × ceiling pairs each round with that round's best echo).
 */
export function ceiling(echoes: (Measured | undefined)[]): Measured | undefined {
  const have = echoes.filter((e): e is Measured => e !== undefined);
  if (have.length <= 1) return have[0];
  const best = (vs: (number | null)[]) => {
    const ok = vs.filter((v): v is number => v !== null);
    return ok.length ? Math.max(...ok) : null;
  };
  const n = have[0].runs?.length ?? 0;
  const paired = n > 1 && have.every((e) => e.runs?.length === n);
  return {
    value: best(have.map((e) => e.value)),
    ...(paired ? { runs: have[0].runs!.map((_, i) => best(have.map((e) => e.runs![i]))) } : {}),
  };
}

/** `a`'s p99 over `b`'s (null when either is missing). */
export function p99Ratio(
  a: { p99Ms: number | null } | undefined,
  b: { p99Ms: number | null } | undefined,
): number | null {
  return a && b ? ratio(a.p99Ms, b.p99Ms) : null;
}

/**
 * Ratios of a row to vblade, the C ggaoed and the ceiling (the better echo), and its p99 over
 * vblade's (same series, MTU and workload).
 */
export function ratios(
  rows: Row[],
  r: Row,
): { vblade: number | null; ggaoedC: number | null; echo: number | null; p99: number | null } {
  const of = (t: TargetName) => find(rows, r.mtu, r.workload, t, r.series);
  return {
    vblade: pairedRatio(r, of("vblade")),
    ggaoedC: pairedRatio(r, of("ggaoed-c")),
    echo: pairedRatio(r, ceiling(ECHOES.map(of))),
    p99: p99Ratio(r, of("vblade")),
  };
}

function showValue(value: number | null, unit: "MB/s" | "IOPS"): string {
  return value === null
    ? "FAILED"
    : unit === "IOPS"
    ? `${Math.round(value)} IOPS`
    : `${value.toFixed(1)} MB/s`;
}

/** A Markdown table with right-aligned columns `right`. */
function markdown(head: string[], body: string[][], right: Set<number>): string {
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i].length)));
  const line = (cells: string[]) =>
    `| ${
      cells.map((c, i) => right.has(i) ? c.padStart(widths[i]) : c.padEnd(widths[i])).join(" | ")
    } |`;
  const rule = `| ${
    widths.map((w, i) => right.has(i) ? "-".repeat(w - 1) + ":" : "-".repeat(w)).join(" | ")
  } |`;
  return [line(head), rule, ...body.map(line)].join("\n");
}

const note = (s: string | null | undefined) =>
  (s ?? "").replace(/\s+/g, " ").replace(/\|/g, "/").slice(0, 80);

/** The table of one series as Markdown (also readable in a terminal). */
export function table(rows: Row[], series: Series = "kinit"): string {
  const mine = rows.filter((r) => (r.series ?? "ring") === series);
  const head = [
    "MTU",
    "workload",
    "target",
    "result",
    "p50 ms",
    "p99 ms",
    "retx",
    "target µs/req",
    "worker µs/req",
    "initiator µs/req",
    "busy cores",
    "× vblade",
    "× C ggaoed",
    "× ceiling",
    "p99 × vblade",
    "note",
  ];
  const body = mine.map((r) => {
    const q = ratios(rows, r);
    return [
      String(r.mtu),
      LABELS[r.workload],
      TARGET_LABELS[r.target] ?? r.target,
      showValue(r.value, r.unit),
      fmt(r.p50Ms, 3),
      fmt(r.p99Ms, 3),
      r.retransmits === null ? "-" : String(r.retransmits),
      fmt(r.targetUsPerRequest, 2),
      r.target === "ggaoed" ? fmt(r.workerUsPerRequest, 2) : "",
      fmt(r.initiatorUsPerRequest, 2),
      fmt(busyCores(r), 2),
      r.target === "vblade" ? "" : fmt(q.vblade, 2),
      r.target === "ggaoed-c" ? "" : fmt(q.ggaoedC, 2),
      ECHOES.includes(r.target) ? "" : fmt(q.echo, 2),
      r.target === "vblade" ? "" : fmt(q.p99, 2),
      note([r.error, r.note ? "1 KiB requests" : null].filter(Boolean).join("; ")),
    ];
  });
  return markdown(head, body, new Set([3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14]));
}

/**
 * Cores the target and the initiator kept busy together over the run (their CPU time over wall
 * time): how much of the machine a row puts to work, 2 at most on two cores. Null when either
 * is unknown.
 */
export function busyCores(r: Pick<Row, "cpuCores" | "initiatorCores">): number | null {
  return r.cpuCores === null || r.cpuCores === undefined || r.initiatorCores === null ||
      r.initiatorCores === undefined
    ? null
    : r.cpuCores + r.initiatorCores;
}

/** What the many table says of a row's layout: "4 × 4 devices" or "4 on 1 device". */
export function layoutLabel(r: ManyRow): string {
  return (r.layout ?? "shared") === "devices"
    ? `${r.initiators} × ${r.initiators} devices`
    : `${r.initiators} on 1 device`;
}

/**
 * The many-initiator rows as Markdown: per layout, each target, ggaoed once per `workers` value
 * ("-": the daemon's default); × vblade, × C ggaoed and × ceiling (the better echo) against the
 * same MTU, workload and layout, and the worst initiator's p99 over vblade's.
 */
export function manyTable(rows: ManyRow[]): string {
  const head = [
    "MTU",
    "workload",
    "initiators",
    "target",
    "workers",
    "total",
    "per initiator",
    "min/max",
    "p99 ms (worst)",
    "retx",
    "target µs/req",
    "× vblade",
    "× C ggaoed",
    "× ceiling",
    "p99 × vblade",
    "note",
  ];
  const of = (r: ManyRow, t: TargetName) =>
    rows.find((x) =>
      x.mtu === r.mtu && x.workload === r.workload && x.target === t &&
      (x.layout ?? "shared") === (r.layout ?? "shared") && x.initiators === r.initiators
    );
  const body = rows.map((r) => [
    String(r.mtu),
    LABELS[r.workload],
    layoutLabel(r),
    TARGET_LABELS[r.target] ?? r.target,
    r.target === "ggaoed" && r.workers ? String(r.workers) : "-",
    showValue(r.value, r.unit),
    r.perInitiator.map((p) =>
      p.value === null
        ? "-"
        : r.unit === "IOPS"
        ? `${Math.round(p.value / 1000)}k`
        : p.value.toFixed(0)
    ).join(" / "),
    fmt(r.fairness, 2),
    fmt(r.p99Ms, 3),
    r.retransmits === null ? "-" : String(r.retransmits),
    fmt(r.targetUsPerRequest, 2),
    r.target === "vblade" ? "" : fmt(pairedRatio(r, of(r, "vblade")), 2),
    r.target === "ggaoed-c" ? "" : fmt(pairedRatio(r, of(r, "ggaoed-c")), 2),
    ECHOES.includes(r.target) ? "" : fmt(pairedRatio(r, ceiling(ECHOES.map((t) => of(r, t)))), 2),
    r.target === "vblade" ? "" : fmt(p99Ratio(r, of(r, "vblade")), 2),
    note(r.error),
  ]);
  return markdown(head, body, new Set([4, 5, 7, 8, 9, 10, 11, 12, 13, 14]));
}

/** Per-request system calls, context switches and CPU of each side (rows measured with --syscalls). */
export function syscallTable(rows: Row[]): string {
  const head = [
    "initiator",
    "MTU",
    "workload",
    "target",
    "result",
    "target syscalls/req",
    "target cs/req",
    "target wakes/req",
    "target µs/req",
    "initiator syscalls/req",
    "initiator cs/req",
    "initiator wakes/req",
    "initiator µs/req",
    "target's top system calls per request",
  ];
  const body = rows.filter((r) => r.syscalls).map((r) => {
    const t = r.syscalls!.worker ?? r.syscalls!.target;
    const i = r.syscalls!.initiator;
    return [
      r.series,
      String(r.mtu),
      LABELS[r.workload],
      TARGET_LABELS[r.target] ?? r.target,
      showValue(r.value, r.unit),
      fmt(r.syscalls!.target?.syscallsPerRequest, 2),
      fmt(r.syscalls!.target?.contextSwitchesPerRequest, 3),
      fmt(r.syscalls!.target?.wakeupsPerRequest, 3),
      fmt(r.syscalls!.target?.cpuUsPerRequest, 2),
      fmt(i?.syscallsPerRequest, 2),
      fmt(i?.contextSwitchesPerRequest, 3),
      fmt(i?.wakeupsPerRequest, 3),
      fmt(i?.cpuUsPerRequest, 2),
      Object.entries(t?.byName ?? {}).slice(0, 4).map(([k, v]) => `${k} ${v.toFixed(2)}`).join(
        ", ",
      ),
    ];
  });
  return markdown(head, body, new Set([1, 4, 5, 6, 7, 8, 9, 10, 11, 12]));
}

const esc = (s: string) =>
  s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");

/**
 * A grouped bar chart of ggaoed, vblade and the C ggaoed as fractions of the echo per workload and
 * MTU, from one series' rows (the direct-io row has no echo and is left out).
 * Hand-written SVG.
 */
export function chart(
  rows: Row[],
  mtus: number[],
  subtitle: string,
  series: Series = "kinit",
): string {
  const shown: TargetName[] = ["ggaoed", "vblade", "ggaoed-c"];
  const groups: { label: string; mtu: number; bars: (number | null)[] }[] = [];
  for (const mtu of mtus) {
    for (const w of WORKLOADS) {
      if (w === "seq_write_direct") continue;
      const echo = ceiling(ECHOES.map((t) => find(rows, mtu, w, t, series)));
      const bars = shown.map((t) => pairedRatio(find(rows, mtu, w, t, series), echo));
      if (bars.every((b) => b === null)) continue;
      groups.push({ label: LABELS[w], mtu, bars });
    }
  }
  const present = shown.filter((_, i) => groups.some((g) => g.bars[i] !== null));
  const W = 960, H = 460;
  const left = 70, right = 20, top = 78, bottom = 92;
  const plotW = W - left - right, plotH = H - top - bottom;
  const maxRatio = Math.max(1, ...groups.flatMap((x) => x.bars.map((b) => b ?? 0)));
  const yMax = Math.ceil(maxRatio * 5) / 5;
  const y = (r: number) => top + plotH - (r / yMax) * plotH;
  const colors = ["#2b6cb0", "#dd8a2c", "#6b8e23"];
  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" ` +
      `font-family="Helvetica, Arial, sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="#ffffff"/>`,
    `<text x="${W / 2}" y="26" text-anchor="middle" font-size="17" font-weight="bold">` +
      `Throughput as a fraction of the echo ceiling (${
        series === "kinit" ? "kernel-like initiator" : `initiator ${series}`
      }, window 32, page cache)</text>`,
    `<text x="${W / 2}" y="46" text-anchor="middle" fill="#555">${esc(subtitle)}</text>`,
  );
  // Grid and y axis.
  for (let t = 0; t <= yMax + 1e-9; t += 0.2) {
    const yy = y(t).toFixed(1);
    out.push(
      `<line x1="${left}" y1="${yy}" x2="${W - right}" y2="${yy}" stroke="#e2e2e2"/>`,
      `<text x="${left - 8}" y="${(y(t) + 4).toFixed(1)}" text-anchor="end">${t.toFixed(1)}</text>`,
    );
  }
  out.push(
    `<line x1="${left}" y1="${y(1).toFixed(1)}" x2="${W - right}" y2="${y(1).toFixed(1)}" ` +
      `stroke="#333" stroke-dasharray="6 4"/>`,
    `<text x="${W - right - 4}" y="${(y(1) - 5).toFixed(1)}" text-anchor="end" fill="#333">` +
      `echo ceiling = 1.0</text>`,
    `<line x1="${left}" y1="${top}" x2="${left}" y2="${top + plotH}" stroke="#333"/>`,
    `<line x1="${left}" y1="${top + plotH}" x2="${W - right}" y2="${top + plotH}" stroke="#333"/>`,
    `<text transform="translate(18 ${top + plotH / 2}) rotate(-90)" text-anchor="middle">` +
      `target ÷ the better echo (same workload and MTU)</text>`,
  );
  // Bars.
  const slot = groups.length ? plotW / groups.length : plotW;
  const barW = Math.min(30, slot * 0.8 / Math.max(1, present.length));
  groups.forEach((grp, i) => {
    const cx = left + slot * (i + 0.5);
    present.forEach((t, j) => {
      const r = grp.bars[shown.indexOf(t)];
      const x = cx - (present.length * (barW + 2)) / 2 + j * (barW + 2);
      const color = colors[shown.indexOf(t)];
      if (r === null) {
        out.push(
          `<text x="${(x + barW / 2).toFixed(1)}" y="${top + plotH - 4}" text-anchor="middle" ` +
            `fill="#999">n/a</text>`,
        );
        return;
      }
      const yy = y(r);
      out.push(
        `<rect x="${x.toFixed(1)}" y="${yy.toFixed(1)}" width="${barW.toFixed(1)}" height="${
          (top + plotH - yy).toFixed(1)
        }" fill="${color}"/>`,
        `<text x="${(x + barW / 2).toFixed(1)}" y="${(yy - 4).toFixed(1)}" text-anchor="middle" ` +
          `font-size="10">${r.toFixed(2)}</text>`,
      );
    });
    out.push(
      `<text x="${cx.toFixed(1)}" y="${top + plotH + 18}" text-anchor="middle">${
        esc(grp.label)
      }</text>`,
      `<text x="${cx.toFixed(1)}" y="${top + plotH + 33}" text-anchor="middle" fill="#555">` +
        `MTU ${grp.mtu}</text>`,
    );
  });
  // Legend.
  const ly = H - 26;
  present.forEach((t, j) => {
    const x = W / 2 - 260 + j * 150;
    out.push(
      `<rect x="${x}" y="${ly - 11}" width="14" height="14" fill="${colors[shown.indexOf(t)]}"/>`,
      `<text x="${x + 20}" y="${ly}">${esc(TARGET_LABELS[t])} ÷ ceiling</text>`,
    );
  });
  out.push(
    `<text x="${W / 2 + 200}" y="${ly}" fill="#555">(higher is better)</text>`,
    `</svg>`,
  );
  return out.join("\n") + "\n";
}

if (import.meta.main) {
  const file = Deno.args[0] ?? new URL("./results/latest.json", import.meta.url).pathname;
  const json = JSON.parse(Deno.readTextFileSync(file));
  const rows: Row[] = json.details ?? [];
  const series = SERIES.filter((x) => rows.some((r) => (r.series ?? "ring") === x));
  const cpu = json.machine ? cpuHeading(json.machine) : "CPU: not recorded in this file";
  for (const x of series) {
    console.log(`${SERIES_LABELS[x]}\n${cpu}\n\n${table(rows, x)}\n`);
  }
  if (json.many?.length) {
    console.log(
      `${json.many[0].initiators} kernel-like initiators on ${json.many[0].initiators} links at ` +
        `once (window ${json.many[0].window} each)\n${cpu}\n\n${manyTable(json.many)}\n`,
    );
  }
  if (rows.some((r) => r.syscalls)) {
    console.log(`Per request (perf stat over each window)\n${cpu}\n\n${syscallTable(rows)}\n`);
  }
}
