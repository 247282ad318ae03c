/**
 * Renders the daemon's counters as Prometheus text format 0.0.4 or OpenMetrics 1.0.0 text. Pure:
 * it reads a snapshot and returns a string (tests render without a server).
 *
 * The two formats differ only in the metadata: OpenMetrics names a counter's family without its
 * `_total` (`# TYPE ggaoed_device_reads counter`, sample `ggaoed_device_reads_total`), has `info`
 * and `# UNIT` lines, and ends with `# EOF`. Histogram `le` values are written the same way in
 * both (OpenMetrics' canonical numbers: `5e-05`, `0.0001`, `1.0`), so that switching formats does
 * not start new series.
 *
 * @module
 */

import {
  DEVICE_SHARED_LENGTH,
  DEVICE_STAT_FIELDS,
  IFACE_STAT_FIELDS,
  LATENCY_BOUNDS,
  LATENCY_KINDS,
  latencyBuckets,
  type LatencyKind,
  latencySum,
} from "../stats.ts";
import { VERSION } from "../version.ts";
import {
  BUILD_INFO,
  DEVICE_FAMILIES,
  ENDPOINT_FAMILIES,
  type Family,
  INTERFACE_FAMILIES,
  REQUEST_DURATION,
  sampleNames,
  START_TIME,
  UP,
  UPTIME,
  WORKERS,
} from "./families.ts";

export type ExpositionFormat = "prometheus" | "openmetrics";

/** The Content-Type of each format. */
export const CONTENT_TYPES: { readonly [F in ExpositionFormat]: string } = {
  prometheus: "text/plain; version=0.0.4; charset=utf-8",
  openmetrics: "application/openmetrics-text; version=1.0.0; charset=utf-8",
};

/** What one exposition shows. Counter arrays may be shared memory: they are copied first. */
export interface MetricsSnapshot {
  /** Device counters followed by latency histograms (`src/stats.ts` layout). */
  devices: readonly { name: string; shelf: number; slot: number; stats: Float64Array }[];
  interfaces: readonly { name: string; stats: Float64Array }[];
  /** Daemon start, seconds since the Unix epoch. */
  startTime: number;
  /** Now, seconds since the Unix epoch. */
  now: number;
  /** The metrics endpoint's own counters and the main thread's survived errors. */
  endpoint: EndpointSnapshot;
  /** Data-path workers (`workers`); absent: 1. */
  workers?: number;
}

/** What the metrics endpoint counted (`src/metrics/server.ts`), and the main thread's errors. */
export interface EndpointSnapshot {
  connections: number;
  refused: number;
  timedOut: number;
  acceptErrors: number;
  mainThreadErrors: number;
}

type Labels = readonly (readonly [string, string])[];

/**
 * A number as OpenMetrics' canonical numbers want it (Go's `%g`, `.0` added to integers):
 * `5e-05`, `0.00025`, `1.0`, `100000.0`, `1e+06`, `+Inf`.
 */
export function canonicalNumber(v: number): string {
  if (Number.isNaN(v)) return "NaN";
  if (!Number.isFinite(v)) return v > 0 ? "+Inf" : "-Inf";
  if (v === 0) return "0.0";
  const [mantissa, e] = v.toExponential().split("e");
  const exp = Number(e);
  if (exp < -4 || exp >= 6) {
    return `${mantissa}e${exp < 0 ? "-" : "+"}${String(Math.abs(exp)).padStart(2, "0")}`;
  }
  const fixed = String(v);
  return fixed.includes(".") ? fixed : `${fixed}.0`;
}

/** A sample value: integers without a decimal point, specials as both formats spell them. */
function value(v: number): string {
  if (Number.isFinite(v)) return String(v);
  return Number.isNaN(v) ? "NaN" : v > 0 ? "+Inf" : "-Inf";
}

function escapeLabel(s: string): string {
  return s.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
}

function labelText(labels: Labels): string {
  if (labels.length === 0) return "";
  return `{${labels.map(([k, v]) => `${k}="${escapeLabel(v)}"`).join(",")}}`;
}

/** Accumulates lines in one format. */
class Writer {
  readonly lines: string[] = [];
  readonly #openMetrics: boolean;

  constructor(format: ExpositionFormat) {
    this.#openMetrics = format === "openmetrics";
  }

  /** TYPE, UNIT and HELP of a family, as the format names it. */
  header(f: Family): void {
    if (this.#openMetrics) {
      const help = f.help.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
      this.lines.push(`# TYPE ${f.name} ${f.type}`);
      if (f.unit) this.lines.push(`# UNIT ${f.name} ${f.unit}`);
      this.lines.push(`# HELP ${f.name} ${help}`);
    } else {
      // 0.0.4 has no info type and names the family of a counter with its _total.
      const name = f.type === "counter"
        ? `${f.name}_total`
        : f.type === "info"
        ? `${f.name}_info`
        : f.name;
      const help = f.help.replace(/\\/g, "\\\\").replace(/\n/g, "\\n");
      this.lines.push(`# HELP ${name} ${help}`);
      this.lines.push(`# TYPE ${name} ${f.type === "info" ? "gauge" : f.type}`);
    }
  }

  sample(name: string, labels: Labels, v: number): void {
    this.lines.push(`${name}${labelText(labels)} ${value(v)}`);
  }

  text(): string {
    if (this.#openMetrics) this.lines.push("# EOF");
    return this.lines.join("\n") + "\n";
  }
}

const LE = LATENCY_BOUNDS.map(canonicalNumber);

/** Renders `snapshot` in `format`. */
export function renderMetrics(snapshot: MetricsSnapshot, format: ExpositionFormat): string {
  // Copy the shared counters once, so that a histogram's buckets, count and sum agree.
  const devices = snapshot.devices.map((d) => {
    const stats = new Float64Array(DEVICE_SHARED_LENGTH);
    stats.set(d.stats.subarray(0, DEVICE_SHARED_LENGTH));
    const labels: Labels = [
      ["device", d.name],
      ["shelf", String(d.shelf)],
      ["slot", String(d.slot)],
    ];
    return { labels, stats };
  });
  const interfaces = snapshot.interfaces.map((i) => ({
    labels: [["interface", i.name]] as Labels,
    stats: i.stats.slice(),
  }));
  const w = new Writer(format);

  w.header(BUILD_INFO);
  w.sample(`${BUILD_INFO.name}_info`, [
    ["version", VERSION],
    ["deno", Deno.version.deno],
    ["v8", Deno.version.v8],
    ["typescript", Deno.version.typescript],
  ], 1);
  w.header(UP);
  w.sample(UP.name, [], 1);
  w.header(START_TIME);
  w.sample(START_TIME.name, [], snapshot.startTime);
  w.header(UPTIME);
  w.sample(UPTIME.name, [], Math.max(0, snapshot.now - snapshot.startTime));
  w.header(WORKERS);
  w.sample(WORKERS.name, [], snapshot.workers ?? 1);
  const e = snapshot.endpoint;
  const F = ENDPOINT_FAMILIES;
  w.header(F.mainThreadErrors);
  w.sample(`${F.mainThreadErrors.name}_total`, [], e.mainThreadErrors);
  w.header(F.connections);
  w.sample(F.connections.name, [], e.connections);
  for (const k of ["refused", "timedOut", "acceptErrors"] as const) {
    w.header(F[k]);
    w.sample(`${F[k].name}_total`, [], e[k]);
  }

  DEVICE_STAT_FIELDS.forEach((field, i) => {
    const f = DEVICE_FAMILIES[field];
    w.header(f);
    const sample = sampleNames(f)[0];
    for (const d of devices) w.sample(sample, d.labels, d.stats[i]);
  });

  w.header(REQUEST_DURATION);
  const name = REQUEST_DURATION.name;
  for (const d of devices) {
    LATENCY_KINDS.forEach((op, k) => {
      const kind = k as LatencyKind;
      const labels: Labels = [...d.labels, ["op", op]];
      const buckets = latencyBuckets(d.stats, kind);
      let cumulative = 0;
      for (let b = 0; b < buckets.length; b++) {
        cumulative += buckets[b];
        const le = b < LE.length ? LE[b] : "+Inf";
        w.sample(`${name}_bucket`, [...labels, ["le", le]], cumulative);
      }
      w.sample(`${name}_sum`, labels, latencySum(d.stats, kind));
      w.sample(`${name}_count`, labels, cumulative);
    });
  }

  IFACE_STAT_FIELDS.forEach((field, i) => {
    const f = INTERFACE_FAMILIES[field];
    w.header(f);
    for (const ifc of interfaces) w.sample(`${f.name}_total`, ifc.labels, ifc.stats[i]);
  });
  return w.text();
}
