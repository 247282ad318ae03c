/**
 * What `ggaoectl` prints, as pure functions (docs/decisions.md §5.2): the statistics dump, the hex
 * dump of Query Config strings, MAC lists, and the `monitor` tables. Numbers are formatted like
 * C's printf (`%g`, `%8.1f`: exact decimal value, ties to even) so the output matches the
 * original's character for character.
 *
 * @module
 */

import { DEVICE_STAT_FIELDS, IFACE_STAT_FIELDS } from "../stats.ts";
import type { NamedStats, RbdDeviceInfo, ViewInfo } from "./types.ts";

// ---- printf-style numbers ----

/** `x` as an exact decimal fraction: x = n / 10^scale (x finite, >= 0). */
function exactDecimal(x: number): { n: bigint; scale: number } {
  const view = new DataView(new ArrayBuffer(8));
  view.setFloat64(0, x);
  const bits = view.getBigUint64(0);
  const biasedExp = Number((bits >> 52n) & 0x7ffn);
  const fraction = bits & 0xfffffffffffffn;
  const mantissa = biasedExp === 0 ? fraction : fraction | (1n << 52n);
  const exp2 = (biasedExp === 0 ? 1 : biasedExp) - 1075;
  if (exp2 >= 0) return { n: mantissa << BigInt(exp2), scale: 0 };
  // m * 2^-k = m * 5^k / 10^k
  return { n: mantissa * 5n ** BigInt(-exp2), scale: -exp2 };
}

/** round(n / 10^scale * 10^decimals), ties to even; `decimals` may be negative. */
function roundScaled(n: bigint, scale: number, decimals: number): bigint {
  if (scale <= decimals) return n * 10n ** BigInt(decimals - scale);
  const div = 10n ** BigInt(scale - decimals);
  let q = n / div;
  const twice = 2n * (n % div);
  if (twice > div || (twice === div && q % 2n === 1n)) q++;
  return q;
}

function specialText(x: number): string | null {
  if (Number.isNaN(x)) return "nan";
  if (x === Infinity) return "inf";
  if (x === -Infinity) return "-inf";
  return null;
}

function isNegative(x: number): boolean {
  return x < 0 || Object.is(x, -0);
}

/** C's `%.<decimals>f`. */
export function formatFixed(x: number, decimals: number): string {
  const special = specialText(x);
  if (special !== null) return special;
  const { n, scale } = exactDecimal(Math.abs(x));
  const digits = roundScaled(n, scale, decimals).toString().padStart(decimals + 1, "0");
  const int = digits.slice(0, digits.length - decimals);
  const text = decimals > 0 ? `${int}.${digits.slice(int.length)}` : int;
  return (isNegative(x) ? "-" : "") + text;
}

/** C's `%g` (six significant digits, trailing zeros dropped). */
export function formatG(x: number): string {
  const PRECISION = 6;
  const special = specialText(x);
  if (special !== null) return special;
  const sign = isNegative(x) ? "-" : "";
  if (x === 0) return sign + "0";
  const { n, scale } = exactDecimal(Math.abs(x));
  const e0 = n.toString().length - 1 - scale; // floor(log10 |x|)
  const rounded = roundScaled(n, scale, PRECISION - 1 - e0).toString();
  // Rounding up may carry into a new digit (999999.5 -> 1000000).
  const exp = rounded.length > PRECISION ? e0 + 1 : e0;
  if (exp >= -4 && exp < PRECISION) {
    return sign + dropZeros(formatFixed(Math.abs(x), PRECISION - 1 - exp));
  }
  const mantissa = dropZeros(`${rounded[0]}.${rounded.slice(1, PRECISION)}`);
  const expText = String(Math.abs(exp)).padStart(2, "0");
  return `${sign}${mantissa}e${exp < 0 ? "-" : "+"}${expText}`;
}

function dropZeros(s: string): string {
  return s.includes(".") ? s.replace(/0+$/, "").replace(/\.$/, "") : s;
}

/** An integer counter the way `%u`/`PRIu64` prints it. */
export function formatCount(x: number): string {
  if (!Number.isFinite(x)) return specialText(x) ?? "nan";
  const t = Math.trunc(x);
  return Number.isSafeInteger(t) ? String(t) : BigInt(t).toString();
}

const encoder = new TextEncoder();

/** `%-*s`: padded by bytes, as C counts them. */
function padName(name: string, width: number): string {
  return name + " ".repeat(Math.max(0, width - encoder.encode(name).length));
}

// ---- stats ----

/** Counters printed with `%g` (seconds); every other counter is an integer. */
const TIME_FIELDS: ReadonlySet<string> = new Set(["read_time", "write_time", "other_time"]);

function statLines(kind: string, item: NamedStats, order: readonly string[]): string {
  const known = order.filter((f) => f in item.stats);
  // Counters a newer daemon has and we do not know still get printed, after ours.
  const extra = Object.keys(item.stats).filter((f) => !order.includes(f));
  let out = `# Statistics for ${kind} ${item.name}\n`;
  for (const field of [...known, ...extra]) {
    const v = item.stats[field];
    out += `${field}: ${TIME_FIELDS.has(field) ? formatG(v) : formatCount(v)}\n`;
  }
  return out + "\n";
}

/** `ggaoectl stats`: a block per device, then per interface, each ending in an empty line. */
export function formatStats(devices: NamedStats[], interfaces: NamedStats[]): string {
  return devices.map((d) => statLines("device", d, DEVICE_STAT_FIELDS)).join("") +
    interfaces.map((i) => statLines("interface", i, IFACE_STAT_FIELDS)).join("");
}

// ---- show-config ----

/** Hex dump lines: 16 bytes each, `xx ` per byte, padding, a space, then the characters. */
export function hexDumpLines(bytes: Uint8Array): string[] {
  const lines: string[] = [];
  for (let i = 0; i < bytes.length; i += 16) {
    const row = bytes.subarray(i, i + 16);
    let hex = "";
    let text = "";
    for (const b of row) {
      hex += b.toString(16).padStart(2, "0") + " ";
      // The original prints 127 (DEL) as itself: it tests `< 32 || > 127`.
      text += b < 32 || b > 127 ? "." : String.fromCharCode(b);
    }
    lines.push(hex + "   ".repeat(16 - row.length) + " " + text);
  }
  return lines;
}

/** `ggaoectl show-config`: `Device NAME:`, the hex dump, an empty line, per device. */
export function formatConfigs(devices: { name: string; config: Uint8Array }[]): string {
  return devices.map((d) =>
    `Device ${d.name}:\n` + hexDumpLines(d.config).map((l) => l + "\n").join("") + "\n"
  ).join("");
}

/** Bytes of a lowercase or uppercase hex string (as the control socket sends configs). */
export function hexToBytes(hex: string): Uint8Array {
  if (hex.length % 2 !== 0 || !/^[0-9a-f]*$/i.test(hex)) throw new RangeError("not a hex string");
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return out;
}

// ---- show-macmask / show-reserve ----

/**
 * MACs four per line, separated by one space; as in the original, each of the first three on a
 * line is followed by a space, so a short last line keeps a trailing space.
 */
export function macListLines(macs: string[]): string[] {
  const lines: string[] = [];
  for (let i = 0; i < macs.length; i += 4) {
    const row = macs.slice(i, i + 4);
    lines.push(row.map((m, j) => (j < 3 ? m + " " : m)).join(""));
  }
  return lines;
}

/** `ggaoectl show-macmask` / `show-reserve`: `Device NAME:`, the MACs, an empty line. */
export function formatMacLists(devices: { name: string; macs: string[] }[]): string {
  return devices.map((d) =>
    `Device ${d.name}:\n` + macListLines(d.macs).map((l) => l + "\n").join("") + "\n"
  ).join("");
}

// ---- monitor ----

/** The previous sample `monitor` computes differences against. */
export interface MonitorBaseline {
  uptime: number;
  devices: Map<string, Record<string, number>>;
  interfaces: Map<string, Record<string, number>>;
}

/** One row of the device table, as numbers (also `monitor --json`). */
export interface DeviceRow {
  name: string;
  /** rrqm/s: reads per second. */
  readsPerSec: number;
  /** rkB/s */
  readKiBPerSec: number;
  /** wrqm/s */
  writesPerSec: number;
  /** wkB/s */
  writeKiBPerSec: number;
  /** oth: other requests in the interval (a count, not a rate). */
  other: number;
  /** avgqsz: mean in-flight count seen by an arriving request. */
  avgQueue: number;
  /** qs */
  queueStall: number;
  /** qf */
  queueOver: number;
  /** ae */
  ataErr: number;
  /** pe */
  protoErr: number;
  /** svctm: mean service time in milliseconds. */
  serviceMs: number;
  /** qdrop: requests dropped because every request buffer was in use (ours). */
  queueDrop: number;
  /** denied: requests dropped by accept/deny or the MAC Mask List (ours). */
  denied: number;
}

/** One row of the interface table, as numbers. */
export interface IfaceRow {
  name: string;
  /** Printed under rrqm/s: received frames per second. */
  rxPerSec: number;
  /** Printed under rkB/s. */
  rxKiBPerSec: number;
  /** Printed under wrqm/s: sent frames per second. */
  txPerSec: number;
  /** Printed under wkB/s. */
  txKiBPerSec: number;
  /** drp: frames dropped in the interval. */
  dropped: number;
  /** avrun: frames per receive pass or TX kick. */
  avgRun: number;
}

/** One `monitor` sample: the rows, the text, and the baseline for the next sample. */
export interface MonitorSample {
  elapsed: number;
  devices: DeviceRow[];
  interfaces: IfaceRow[];
  text: string;
  baseline: MonitorBaseline;
}

/** The baseline of the first sample: zero, so it shows averages since start (or clear). */
export function emptyBaseline(): MonitorBaseline {
  return { uptime: 0, devices: new Map(), interfaces: new Map() };
}

/**
 * Differences `cur - prev` by field. A counter that went backwards means the statistics were
 * cleared in between; the original then printed wrapped-around unsigned numbers, we count from
 * zero for the whole record instead.
 */
function deltas(
  cur: Record<string, number>,
  prev: Record<string, number> | undefined,
): (field: string) => number {
  const reset = prev === undefined ||
    Object.keys(cur).some((f) => (cur[f] ?? 0) < (prev[f] ?? 0));
  return (field) => (cur[field] ?? 0) - (reset ? 0 : prev[field] ?? 0);
}

function rate(delta: number, elapsed: number): number {
  // Two samples with the same uptime cannot make a rate; show 0 rather than inf/nan.
  return elapsed > 0 ? delta / elapsed : 0;
}

/** The device row of `monitor` for the interval between `prev` and `cur`. */
export function deviceRow(
  name: string,
  cur: Record<string, number>,
  prev: Record<string, number> | undefined,
  elapsed: number,
): DeviceRow {
  const d = deltas(cur, prev);
  const all = d("read_cnt") + d("write_cnt") + d("other_cnt");
  const time = d("read_time") + d("write_time") + d("other_time");
  return {
    name,
    readsPerSec: rate(d("read_cnt"), elapsed),
    readKiBPerSec: rate(d("read_bytes") / 1024, elapsed),
    writesPerSec: rate(d("write_cnt"), elapsed),
    writeKiBPerSec: rate(d("write_bytes") / 1024, elapsed),
    other: d("other_cnt"),
    avgQueue: all > 0 ? d("queue_length") / all : 0,
    queueStall: d("queue_stall"),
    queueOver: d("queue_over"),
    ataErr: d("ata_err"),
    protoErr: d("proto_err"),
    serviceMs: all > 0 ? (time * 1000) / all : 0,
    queueDrop: d("queue_drop"),
    denied: d("denied"),
  };
}

/** The interface row of `monitor` for the interval between `prev` and `cur`. */
export function ifaceRow(
  name: string,
  cur: Record<string, number>,
  prev: Record<string, number> | undefined,
  elapsed: number,
): IfaceRow {
  const d = deltas(cur, prev);
  const runs = d("rx_runs") + d("tx_runs");
  return {
    name,
    rxPerSec: rate(d("rx_cnt"), elapsed),
    rxKiBPerSec: rate(d("rx_bytes") / 1024, elapsed),
    txPerSec: rate(d("tx_cnt"), elapsed),
    txKiBPerSec: rate(d("tx_bytes") / 1024, elapsed),
    dropped: d("dropped"),
    avgRun: runs > 0 ? (d("rx_cnt") + d("tx_cnt")) / runs : 0,
  };
}

/** Header of the device table for a name column `width` wide. */
export function deviceHeader(width: number): string {
  return padName("dev", width) +
    "   rrqm/s      rkB/s   wrqm/s      wkB/s oth avgqsz qs qf ae pe    svctm qdrop denied";
}

/** Header of the interface table. */
export function ifaceHeader(width: number): string {
  return padName("net", width) + "   rrqm/s      rkB/s   wrqm/s      wkB/s drp  avrun";
}

/** A printf column: the value, its width, and `%.Nf` decimals or "u" for `%u`. */
type Column = [value: number, width: number, format: number | "u"];

/** `%-*s` then the columns, separated by single spaces. */
function tableRow(name: string, width: number, columns: Column[]): string {
  const cells = columns.map(([v, w, f]) =>
    (f === "u" ? formatCount(v) : formatFixed(v, f)).padStart(w)
  );
  return [padName(name, width), ...cells].join(" ");
}

/**
 * `%-*s %8.1f %10.2f %8.1f %10.2f %3u %6.2f %2u %2u %2u %2u %8.2f`, the original's columns, then
 * ours: ` %5u %6u` (queue_drop, denied).
 */
export function formatDeviceRow(r: DeviceRow, width: number): string {
  return tableRow(r.name, width, [
    [r.readsPerSec, 8, 1],
    [r.readKiBPerSec, 10, 2],
    [r.writesPerSec, 8, 1],
    [r.writeKiBPerSec, 10, 2],
    [r.other, 3, "u"],
    [r.avgQueue, 6, 2],
    [r.queueStall, 2, "u"],
    [r.queueOver, 2, "u"],
    [r.ataErr, 2, "u"],
    [r.protoErr, 2, "u"],
    [r.serviceMs, 8, 2],
    [r.queueDrop, 5, "u"],
    [r.denied, 6, "u"],
  ]);
}

/** `%-*s %8.1f %10.2f %8.1f %10.2f %3u %6.2f` */
export function formatIfaceRow(r: IfaceRow, width: number): string {
  return tableRow(r.name, width, [
    [r.rxPerSec, 8, 1],
    [r.rxKiBPerSec, 10, 2],
    [r.txPerSec, 8, 1],
    [r.txKiBPerSec, 10, 2],
    [r.dropped, 3, "u"],
    [r.avgRun, 6, 2],
  ]);
}

/** strcmp order: by UTF-8 bytes, which for these names is code unit order. */
function byName(a: { name: string }, b: { name: string }): number {
  return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
}

/**
 * One `monitor` sample. The name column is max(4, longest name) wide, where the names are the
 * patterns given on the command line if any (as the original), else the names returned. Rows
 * are sorted by name; an empty line separates the tables and ends the sample.
 */
export function monitorSample(
  sample: { uptime: number; devices: NamedStats[]; interfaces: NamedStats[] },
  previous: MonitorBaseline,
  nameArgs: string[],
): MonitorSample {
  const elapsed = sample.uptime - previous.uptime;
  // The original keys its tables by name: a repeated name keeps the last record.
  const devMap = new Map(sample.devices.map((d) => [d.name, d.stats]));
  const netMap = new Map(sample.interfaces.map((i) => [i.name, i.stats]));
  const devices = [...devMap].map(([name, s]) =>
    deviceRow(name, s, previous.devices.get(name), elapsed)
  ).sort(byName);
  const interfaces = [...netMap].map(([name, s]) =>
    ifaceRow(name, s, previous.interfaces.get(name), elapsed)
  ).sort(byName);

  const names = nameArgs.length > 0 ? nameArgs : [...devMap.keys(), ...netMap.keys()];
  const width = Math.max(4, ...names.map((n) => encoder.encode(n).length));

  let text = "";
  if (devices.length > 0) {
    text += deviceHeader(width) + "\n";
    for (const row of devices) text += formatDeviceRow(row, width) + "\n";
  }
  if (devices.length > 0 && interfaces.length > 0) text += "\n";
  if (interfaces.length > 0) {
    text += ifaceHeader(width) + "\n";
    for (const row of interfaces) text += formatIfaceRow(row, width) + "\n";
  }
  text += "\n";
  return {
    elapsed,
    devices,
    interfaces,
    text,
    baseline: { uptime: sample.uptime, devices: devMap, interfaces: netMap },
  };
}

/**
 * The interval argument of `monitor`: a number if the whole argument parses as one (C's strtod
 * accepts `0.5`, `1e-1`, ` 2`), else null (then it is a name).
 */
export function parseInterval(arg: string): number | null {
  const s = arg.trimStart();
  if (!/^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i.test(s)) return null;
  return Number(s);
}

/** Bytes as ggaoed's logs show sizes (KiB, then MiB/GiB/TiB). */
function binarySize(bytes: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
  let v = bytes;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${Number.isInteger(v) ? v : v.toFixed(1)} ${units[u]}`;
}

/** `show-rbd`: each RBD device's image, cluster, features and the hosts serving it. */
export function formatRbdDevices(devices: RbdDeviceInfo[]): string {
  if (devices.length === 0) return "No Ceph RBD devices.\n";
  return devices.map((d) => {
    const lines = [
      `Device ${d.name}: ${d.image}${d.readOnly ? " (read-only)" : ""}, ${binarySize(d.size)}`,
      `  cluster   fsid ${d.cluster.fsid}, ${d.cluster.conf}, user ${d.cluster.user}, ` +
      `client ${d.client}`,
      `  features  ${d.features.join(", ") || "none"}${
        d.features.includes("exclusive-lock") && !d.readOnly
          ? "  (exclusive-lock: serve read-write from one host only)"
          : ""
      }`,
      `  state     metadata ${d.prefix}config, ${d.prefix}mac_mask, ${d.prefix}reserve` +
      (d.pollError
        ? ` (UNREADABLE: ${d.pollError})`
        : d.polledAgo === null
        ? ""
        : ` (read ${d.polledAgo.toFixed(1)} s ago)`),
      `  fencing   ${
        d.fencing.enabled ? `after ${d.fencing.afterSeconds} s without a refresh` : "off"
      }; fenced ${d.fencing.fencings} other host(s); was fenced ${d.fencing.fenced} time(s), ` +
      `${d.fencing.droppedRequests} request(s) dropped`,
      `  hosts     ${d.hosts.length}`,
    ];
    for (const h of [...d.hosts].sort((a, b) => a.id.localeCompare(b.id))) {
      const ifs = h.interfaces.map((i) => `${i.name}${i.mac ? ` ${i.mac}` : ""}`).join(", ");
      lines.push(
        `    ${h.self ? "*" : " "} ${h.id}  ${h.target}${
          h.readOnly ? " R/O" : ""
        }  pid ${h.pid}  ` +
          `[${ifs}]  seen ${h.ageSeconds.toFixed(1)} s ago${h.stale ? " (STALE)" : ""}` +
          (h.address ? `  client ${h.address}` : "") +
          (h.fenced && h.fenced.address === h.address
            ? `  FENCED by ${h.fenced.host} at ${new Date(h.fenced.at * 1000).toISOString()}`
            : ""),
      );
    }
    return lines.join("\n") + "\n\n";
  }).join("");
}

/**
 * `views`: a line per view: device, host MAC, bytes written through it since the daemon
 * started, when its host was last seen (`now`: Unix seconds), open or not.
 */
export function formatViews(views: ViewInfo[], now: number): string {
  if (views.length === 0) return "No views.\n";
  const rows = views.map((v) => [
    v.device,
    v.mac.replace(/(..)(?!$)/g, "$1:"),
    binarySize(v.written),
    v.lastSeen === null ? "never" : `${Math.max(0, Math.round(now - v.lastSeen))} s ago`,
    v.open ? "open" : v.exists ? "closed" : "gone",
  ]);
  const head = ["DEVICE", "HOST", "WRITTEN", "LAST SEEN", "STATE"];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (r: string[]) => r.map((c, i) => c.padEnd(widths[i])).join("  ").trimEnd();
  return [line(head), ...rows.map(line)].join("\n") +
    "\n(WRITTEN: since the daemon started)\n";
}
