/**
 * What `deno task bench` prints and writes: the text table, the grouped bar chart (SVG written
 * by hand, no dependencies) and the shape of `bench/results/latest.json`.
 *
 * @module
 */

/** The targets, in table order. */
export const TARGETS = ["ggaoed", "vblade", "echo"] as const;
export type TargetName = typeof TARGETS[number];

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

/** One measurement. */
export interface Row {
  mtu: number;
  workload: WorkloadName;
  target: TargetName;
  /** MB/s or IOPS (see `unit`); null when the measurement failed. */
  value: number | null;
  unit: "MB/s" | "IOPS";
  mbPerSec: number | null;
  iops: number | null;
  /** Bytes per I/O. */
  ioBytes: number;
  /** Sectors per AoE request. */
  sectorsPerRequest: number;
  seconds: number | null;
  ios: number | null;
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
  /** Cores used by this process (the initiator) during the run. */
  initiatorCores: number | null;
  /** Cores used by anything else (other processes, unaccounted interrupt time). */
  otherCores: number | null;
  /** Why there is no number (target did not start, workload threw), or a warning. */
  error: string | null;
}

const fmt = (n: number | null, digits: number) => n === null ? "-" : n.toFixed(digits);

function ratio(a: number | null, b: number | null): number | null {
  return a !== null && b !== null && b > 0 ? a / b : null;
}

/** The row of `target` for `workload` at `mtu`, if measured. */
export function find(
  rows: Row[],
  mtu: number,
  workload: WorkloadName,
  target: TargetName,
): Row | undefined {
  return rows.find((r) => r.mtu === mtu && r.workload === workload && r.target === target);
}

/** Value ratios of a row: to vblade and to echo at the same MTU and workload. */
export function ratios(rows: Row[], r: Row): { vblade: number | null; echo: number | null } {
  return {
    vblade: ratio(r.value, find(rows, r.mtu, r.workload, "vblade")?.value ?? null),
    echo: ratio(r.value, find(rows, r.mtu, r.workload, "echo")?.value ?? null),
  };
}

/** The table as Markdown (also readable in a terminal). */
export function table(rows: Row[]): string {
  const head = [
    "MTU",
    "workload",
    "target",
    "result",
    "p50 ms",
    "p99 ms",
    "retx",
    "CPU s/GB",
    "× vblade",
    "× echo",
    "note",
  ];
  const body = rows.map((r) => {
    const q = ratios(rows, r);
    const value = r.value === null
      ? "FAILED"
      : r.unit === "IOPS"
      ? `${Math.round(r.value)} IOPS`
      : `${r.value.toFixed(1)} MB/s`;
    return [
      String(r.mtu),
      LABELS[r.workload],
      r.target,
      value,
      fmt(r.p50Ms, 3),
      fmt(r.p99Ms, 3),
      r.retransmits === null ? "-" : String(r.retransmits),
      fmt(r.cpuSecPerGB, 2),
      r.target === "vblade" ? "" : fmt(q.vblade, 2),
      r.target === "echo" ? "" : fmt(q.echo, 2),
      (r.error ?? "").replace(/\s+/g, " ").replace(/\|/g, "/").slice(0, 80),
    ];
  });
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i].length)));
  const right = new Set([3, 4, 5, 6, 7, 8, 9]);
  const line = (cells: string[]) =>
    `| ${
      cells.map((c, i) => right.has(i) ? c.padStart(widths[i]) : c.padEnd(widths[i])).join(" | ")
    } |`;
  const rule = `| ${
    widths.map((w, i) => right.has(i) ? "-".repeat(w - 1) + ":" : "-".repeat(w)).join(" | ")
  } |`;
  return [line(head), rule, ...body.map(line)].join("\n");
}

const esc = (s: string) =>
  s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");

/**
 * A grouped bar chart of ggaoed/echo and vblade/echo per workload and MTU (the direct-io row
 * has no echo and is left out). Hand-written SVG.
 */
export function chart(rows: Row[], mtus: number[], subtitle: string): string {
  const groups: { label: string; mtu: number; g: number | null; v: number | null }[] = [];
  for (const mtu of mtus) {
    for (const w of WORKLOADS) {
      if (w === "seq_write_direct") continue;
      const echo = find(rows, mtu, w, "echo")?.value ?? null;
      const g = ratio(find(rows, mtu, w, "ggaoed")?.value ?? null, echo);
      const v = ratio(find(rows, mtu, w, "vblade")?.value ?? null, echo);
      if (g === null && v === null) continue;
      groups.push({ label: LABELS[w], mtu, g, v });
    }
  }
  const W = 960, H = 460;
  const left = 70, right = 20, top = 78, bottom = 92;
  const plotW = W - left - right, plotH = H - top - bottom;
  const maxRatio = Math.max(1, ...groups.flatMap((x) => [x.g ?? 0, x.v ?? 0]));
  const yMax = Math.ceil(maxRatio * 5) / 5;
  const y = (r: number) => top + plotH - (r / yMax) * plotH;
  const colors = { g: "#2b6cb0", v: "#dd8a2c" };
  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" ` +
      `font-family="Helvetica, Arial, sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="#ffffff"/>`,
    `<text x="${W / 2}" y="26" text-anchor="middle" font-size="17" font-weight="bold">` +
      `Throughput as a fraction of the echo ceiling (window 32, page cache)</text>`,
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
      `target ÷ echo (same workload and MTU)</text>`,
  );
  // Bars.
  const slot = groups.length ? plotW / groups.length : plotW;
  const barW = Math.min(34, slot * 0.32);
  groups.forEach((grp, i) => {
    const cx = left + slot * (i + 0.5);
    const bars: [number | null, string, number][] = [
      [grp.g, colors.g, cx - barW - 2],
      [grp.v, colors.v, cx + 2],
    ];
    for (const [r, color, x] of bars) {
      if (r === null) {
        out.push(
          `<text x="${(x + barW / 2).toFixed(1)}" y="${top + plotH - 4}" text-anchor="middle" ` +
            `fill="#999">n/a</text>`,
        );
        continue;
      }
      const yy = y(r);
      out.push(
        `<rect x="${x.toFixed(1)}" y="${yy.toFixed(1)}" width="${barW.toFixed(1)}" height="${
          (top + plotH - yy).toFixed(1)
        }" fill="${color}"/>`,
        `<text x="${(x + barW / 2).toFixed(1)}" y="${(yy - 4).toFixed(1)}" text-anchor="middle" ` +
          `font-size="11">${r.toFixed(2)}</text>`,
      );
    }
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
  out.push(
    `<rect x="${W / 2 - 190}" y="${ly - 11}" width="14" height="14" fill="${colors.g}"/>`,
    `<text x="${W / 2 - 170}" y="${ly}">ggaoed ÷ echo</text>`,
    `<rect x="${W / 2 - 40}" y="${ly - 11}" width="14" height="14" fill="${colors.v}"/>`,
    `<text x="${W / 2 - 20}" y="${ly}">vblade ÷ echo</text>`,
    `<text x="${W / 2 + 110}" y="${ly}" fill="#555">(higher is better; MB/s or IOPS)</text>`,
    `</svg>`,
  );
  return out.join("\n") + "\n";
}
