/**
 * A strict parser of the two text exposition formats, for tests: Prometheus text format 0.0.4
 * and OpenMetrics 1.0.0. It rejects what either spec forbids and what ggaoed promises not to do:
 * anything but TYPE/HELP (and OpenMetrics' UNIT and EOF) comment lines, a TYPE after samples or
 * twice, interleaved families or series, sample names that do not fit their family's type,
 * duplicate series, malformed names, labels, escapes and numbers, timestamps, counters that are
 * negative or NaN, histograms whose buckets are unsorted, not cumulative, lack +Inf or disagree
 * with their `_count`.
 *
 * @module
 */

export type Format = "prometheus" | "openmetrics";

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export interface Family {
  /** The name on the TYPE line. */
  name: string;
  type: string;
  unit: string;
  help: string;
  samples: Sample[];
}

export interface Exposition {
  families: Family[];
  samples: Sample[];
}

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const TYPES: Record<Format, string[]> = {
  prometheus: ["counter", "gauge", "histogram", "summary", "untyped"],
  openmetrics: [
    "counter",
    "gauge",
    "histogram",
    "gaugehistogram",
    "stateset",
    "info",
    "summary",
    "unknown",
  ],
};
const GO_FLOAT = /^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$|^[+-]?Inf$|^NaN$/;
const OM_NUMBER = /^[+-]?(\d+(\.\d*)?|\d*\.\d+)(e[+-]?\d+)?$|^[+-]?(inf|infinity)$|^nan$/i;

/** Suffixes a sample of a family of `type` may add to the family's name. */
function suffixes(format: Format, type: string): string[] {
  if (format === "prometheus") {
    return type === "histogram"
      ? ["_bucket", "_sum", "_count"]
      : type === "summary"
      ? ["", "_sum", "_count"]
      : [""];
  }
  switch (type) {
    case "counter":
      return ["_total", "_created"];
    case "info":
      return ["_info"];
    case "histogram":
      return ["_bucket", "_sum", "_count", "_created"];
    case "gaugehistogram":
      return ["_bucket", "_gsum", "_gcount"];
    case "summary":
      return ["", "_sum", "_count", "_created"];
    default:
      return [""];
  }
}

function parseNumber(text: string, format: Format, where: string): number {
  const ok = format === "prometheus" ? GO_FLOAT.test(text) : OM_NUMBER.test(text);
  if (!ok) throw new Error(`${where}: ${JSON.stringify(text)} is not a number`);
  const t = text.toLowerCase().replace(/^\+/, "");
  if (t === "nan") return NaN;
  if (t === "inf" || t === "infinity") return Infinity;
  if (t === "-inf" || t === "-infinity") return -Infinity;
  return Number(text);
}

/** Reads `{a="b",...}` at `pos`; returns the labels and the position after `}`. */
function parseLabels(
  line: string,
  pos: number,
  where: string,
): [Record<string, string>, number] {
  const labels: Record<string, string> = {};
  pos++; // '{'
  if (line[pos] === "}") return [labels, pos + 1];
  for (;;) {
    const eq = line.indexOf("=", pos);
    if (eq < 0) throw new Error(`${where}: label without '='`);
    const name = line.slice(pos, eq);
    if (!LABEL_NAME.test(name) || name.startsWith("__")) {
      throw new Error(`${where}: bad label name ${JSON.stringify(name)}`);
    }
    if (name in labels) throw new Error(`${where}: label ${name} given twice`);
    if (line[eq + 1] !== '"') throw new Error(`${where}: label ${name}: value not quoted`);
    let value = "";
    let i = eq + 2;
    for (;; i++) {
      const c = line[i];
      if (c === undefined) throw new Error(`${where}: unterminated label value`);
      if (c === '"') break;
      if (c === "\\") {
        const n = line[++i];
        if (n === "\\") value += "\\";
        else if (n === '"') value += '"';
        else if (n === "n") value += "\n";
        else throw new Error(`${where}: undefined escape \\${n}`);
      } else {
        value += c;
      }
    }
    labels[name] = value;
    pos = i + 1;
    if (line[pos] === "}") return [labels, pos + 1];
    if (line[pos] !== ",") throw new Error(`${where}: expected ',' or '}' after a label`);
    pos++;
  }
}

function unescapeHelp(text: string, format: Format, where: string): string {
  return text.replace(/\\(.)/g, (_, c: string) => {
    if (c === "\\") return "\\";
    if (c === "n") return "\n";
    if (c === '"' && format === "openmetrics") return '"';
    throw new Error(`${where}: undefined escape \\${c} in HELP`);
  });
}

/** Key of a series: name and sorted labels. */
function seriesKey(name: string, labels: Record<string, string>): string {
  return `${name}${JSON.stringify(Object.entries(labels).sort())}`;
}

/** Parses `text` strictly as `format`; throws an Error naming the line on the first problem. */
export function parseExposition(text: string, format: Format): Exposition {
  if (text.includes("\r")) throw new Error("carriage return in the exposition");
  if (!text.endsWith("\n")) throw new Error("the exposition does not end with a newline");
  const lines = text.slice(0, -1).split("\n");
  if (format === "openmetrics") {
    if (lines.pop() !== "# EOF") throw new Error("OpenMetrics exposition without # EOF at the end");
  }
  const families: Family[] = [];
  const byName = new Map<string, Family>();
  const closed = new Set<string>();
  const series = new Set<string>();
  let current: Family | null = null;
  let lastSeries = "";
  const samples: Sample[] = [];

  const familyNamed = (name: string, where: string): Family => {
    if (current?.name === name) return current;
    if (byName.has(name) || closed.has(name)) {
      throw new Error(`${where}: family ${name} is interleaved with another`);
    }
    if (current) closed.add(current.name);
    current = { name, type: "", unit: "", help: "", samples: [] };
    families.push(current);
    byName.set(name, current);
    lastSeries = "";
    return current;
  };

  lines.forEach((line, index) => {
    const where = `line ${index + 1} (${JSON.stringify(line.slice(0, 80))})`;
    if (line === "") {
      if (format === "openmetrics") throw new Error(`${where}: empty line`);
      return;
    }
    if (line.startsWith("#")) {
      const m = /^# (TYPE|HELP|UNIT) ([^ ]+)(?: (.*))?$/.exec(line);
      if (!m) throw new Error(`${where}: a comment line that is not TYPE, HELP or UNIT`);
      const [, kind, name, rest = ""] = m;
      if (!METRIC_NAME.test(name)) throw new Error(`${where}: bad metric name`);
      if (kind === "UNIT" && format === "prometheus") throw new Error(`${where}: UNIT in 0.0.4`);
      const f = familyNamed(name, where);
      if (f.samples.length > 0) throw new Error(`${where}: ${kind} after the family's samples`);
      if (kind === "TYPE") {
        if (f.type) throw new Error(`${where}: second TYPE for ${name}`);
        if (!TYPES[format].includes(rest)) throw new Error(`${where}: unknown type ${rest}`);
        f.type = rest;
      } else if (kind === "HELP") {
        if (f.help) throw new Error(`${where}: second HELP for ${name}`);
        f.help = unescapeHelp(rest, format, where);
      } else {
        if (f.unit) throw new Error(`${where}: second UNIT for ${name}`);
        if (rest && !name.endsWith(`_${rest}`)) {
          throw new Error(`${where}: unit ${rest} is not a suffix of ${name}`);
        }
        f.unit = rest;
      }
      return;
    }
    const nameEnd = line.search(/[{ ]/);
    if (nameEnd < 0) throw new Error(`${where}: sample without a value`);
    const name = line.slice(0, nameEnd);
    if (!METRIC_NAME.test(name)) throw new Error(`${where}: bad metric name`);
    let labels: Record<string, string> = {};
    let pos = nameEnd;
    if (line[pos] === "{") [labels, pos] = parseLabels(line, pos, where);
    if (line[pos] !== " ") throw new Error(`${where}: expected one space before the value`);
    const valueText = line.slice(pos + 1);
    if (valueText.includes(" ")) throw new Error(`${where}: timestamps or extra fields`);
    const value = parseNumber(valueText, format, where);
    // The family: the current one if the name fits its type, else a new untyped one.
    let f = current as Family | null;
    const fits = (fam: Family) =>
      suffixes(format, fam.type || "unknown").some((s) => fam.name + s === name);
    if (!f || !fits(f)) f = familyNamed(name, where);
    if (!f.type) throw new Error(`${where}: sample of ${name} without a TYPE line`);
    if (!fits(f)) throw new Error(`${where}: ${name} does not fit ${f.type} ${f.name}`);
    const key = seriesKey(name, labels);
    if (series.has(key)) throw new Error(`${where}: series given twice`);
    series.add(key);
    // Series of one family are contiguous: a labelset (without le) never comes back.
    const { le: _le, ...base } = labels;
    const baseKey = JSON.stringify(Object.entries(base).sort());
    if (baseKey !== lastSeries) {
      if (
        f.samples.some((s) =>
          JSON.stringify(Object.entries(s.labels).filter(([k]) => k !== "le").sort()) === baseKey
        )
      ) {
        throw new Error(`${where}: the series of ${f.name} are interleaved`);
      }
      lastSeries = baseKey;
    }
    const sample = { name, labels, value };
    f.samples.push(sample);
    samples.push(sample);
  });
  for (const f of families) checkFamily(f, format);
  return { families, samples };
}

function checkFamily(f: Family, format: Format): void {
  const counterLike = f.type === "counter" || f.type === "histogram";
  for (const s of f.samples) {
    if (counterLike && !(s.value >= 0)) {
      throw new Error(`${s.name}: a counter must not be negative or NaN, got ${s.value}`);
    }
    if (f.type === "info" && s.value !== 1) throw new Error(`${s.name}: info value must be 1`);
    if (f.type !== "histogram" && "le" in s.labels) throw new Error(`${s.name}: le label`);
  }
  if (f.type !== "histogram") return;
  const groups = new Map<string, Sample[]>();
  for (const s of f.samples) {
    const { le: _le, ...base } = s.labels;
    const key = JSON.stringify(Object.entries(base).sort());
    groups.set(key, [...groups.get(key) ?? [], s]);
  }
  for (const [key, group] of groups) {
    const buckets = group.filter((s) => s.name === `${f.name}_bucket`);
    if (buckets.length === 0) throw new Error(`${f.name}${key}: no buckets`);
    let lastLe = -Infinity;
    let lastCount = 0;
    for (const b of buckets) {
      const leText = b.labels.le;
      if (leText === undefined) throw new Error(`${f.name}${key}: bucket without le`);
      const le = parseNumber(leText, format, `${f.name} le`);
      if (!(le > lastLe)) throw new Error(`${f.name}${key}: le ${leText} out of order`);
      if (!(b.value >= lastCount)) throw new Error(`${f.name}${key}: buckets not cumulative`);
      if (!Number.isInteger(b.value)) throw new Error(`${f.name}${key}: bucket not an integer`);
      lastLe = le;
      lastCount = b.value;
    }
    if (lastLe !== Infinity) throw new Error(`${f.name}${key}: no +Inf bucket`);
    const count = group.find((s) => s.name === `${f.name}_count`);
    const sum = group.find((s) => s.name === `${f.name}_sum`);
    if (format === "openmetrics" && (count === undefined) !== (sum === undefined)) {
      throw new Error(`${f.name}${key}: _count and _sum come together`);
    }
    if (count && count.value !== lastCount) {
      throw new Error(`${f.name}${key}: _count ${count.value} != +Inf bucket ${lastCount}`);
    }
  }
}

/** The value of the one sample named `name` whose labels include `labels`. */
export function valueOf(
  e: Exposition,
  name: string,
  labels: Record<string, string> = {},
): number {
  const found = e.samples.filter((s) =>
    s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v)
  );
  if (found.length !== 1) {
    throw new Error(`${found.length} samples match ${name}${JSON.stringify(labels)}`);
  }
  return found[0].value;
}

/** Cumulative bucket counts of one histogram series, in le order, with their le values. */
export function bucketsOf(
  e: Exposition,
  name: string,
  labels: Record<string, string>,
): { le: string; count: number }[] {
  return e.samples
    .filter((s) =>
      s.name === `${name}_bucket` && Object.entries(labels).every(([k, v]) => s.labels[k] === v)
    )
    .map((s) => ({ le: s.labels.le, count: s.value }));
}
