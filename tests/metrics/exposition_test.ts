/**
 * The latency histogram layout and the exposition, without a daemon: bucket edges, the
 * canonical `le` numbers, both text formats checked by the strict parser and by Prometheus' own
 * promtool (Debian package `prometheus`) when it is installed.
 */

import { assert, assertEquals } from "../helpers/assert.ts";
import { bucketsOf, type Format, parseExposition, valueOf } from "../helpers/exposition.ts";
import {
  canonicalNumber,
  type MetricsSnapshot,
  renderMetrics,
} from "../../src/metrics/exposition.ts";
import {
  ALL_FAMILIES,
  DEVICE_FAMILIES,
  INTERFACE_FAMILIES,
  sampleNames,
} from "../../src/metrics/families.ts";
import {
  DEVICE_SHARED_LENGTH,
  DEVICE_STAT_COUNT,
  DEVICE_STAT_FIELDS,
  DS,
  IFACE_STAT_COUNT,
  IFACE_STAT_FIELDS,
  LATENCY_BOUNDS,
  LATENCY_BUCKETS,
  latencyBuckets,
  LatencyKind,
  latencySum,
  newDeviceStats,
  recordLatency,
} from "../../src/stats.ts";
import { VERSION } from "../../src/version.ts";
import { promtool } from "../helpers/promtool.ts";

Deno.test("recordLatency counts a time in the first bucket whose bound is >= it, and adds it to the kind's time", () => {
  const s = newDeviceStats();
  assertEquals(s.length, DEVICE_SHARED_LENGTH);
  assertEquals(DEVICE_SHARED_LENGTH, DEVICE_STAT_COUNT + 3 * LATENCY_BUCKETS);
  recordLatency(s, LatencyKind.READ, 0.00005); // exactly on the first bound: le is inclusive
  recordLatency(s, LatencyKind.READ, 0.0000501);
  recordLatency(s, LatencyKind.READ, 0.001);
  recordLatency(s, LatencyKind.READ, 4.9);
  recordLatency(s, LatencyKind.READ, 60); // above the last bound: the +Inf bucket
  const read = [...latencyBuckets(s, LatencyKind.READ)];
  const want = new Array(LATENCY_BUCKETS).fill(0);
  want[0] = 1;
  want[1] = 1;
  want[LATENCY_BOUNDS.indexOf(0.001)] = 1;
  want[LATENCY_BOUNDS.indexOf(5)] = 1;
  want[LATENCY_BUCKETS - 1] = 1;
  assertEquals(read, want);
  assertEquals(s[DS.read_time], 0.00005 + 0.0000501 + 0.001 + 4.9 + 60);
  assertEquals(latencySum(s, LatencyKind.READ), s[DS.read_time]);
  // The other kinds and every counter are untouched.
  assertEquals([...latencyBuckets(s, LatencyKind.WRITE)], new Array(LATENCY_BUCKETS).fill(0));
  assertEquals(s[DS.write_time] + s[DS.other_time] + s[DS.read_cnt], 0);
  recordLatency(s, LatencyKind.WRITE, 0.02);
  recordLatency(s, LatencyKind.OTHER, 0.0003);
  assertEquals(latencyBuckets(s, LatencyKind.WRITE)[LATENCY_BOUNDS.indexOf(0.025)], 1);
  assertEquals(latencyBuckets(s, LatencyKind.OTHER)[LATENCY_BOUNDS.indexOf(0.0005)], 1);
  assertEquals([s[DS.write_time], s[DS.other_time]], [0.02, 0.0003]);
});

Deno.test("a negative or NaN service time counts as zero, so that the time sums never go down", () => {
  const s = newDeviceStats();
  recordLatency(s, LatencyKind.OTHER, 0.5);
  recordLatency(s, LatencyKind.OTHER, -0.0002);
  recordLatency(s, LatencyKind.OTHER, NaN);
  assertEquals(s[DS.other_time], 0.5);
  assertEquals(latencyBuckets(s, LatencyKind.OTHER)[0], 2);
});

Deno.test("latency bounds run from 50 µs to 5 s, increasing", () => {
  assertEquals(LATENCY_BOUNDS[0], 0.00005);
  assertEquals(LATENCY_BOUNDS[LATENCY_BOUNDS.length - 1], 5);
  for (let i = 1; i < LATENCY_BOUNDS.length; i++) {
    assert(LATENCY_BOUNDS[i] > LATENCY_BOUNDS[i - 1]);
  }
});

Deno.test("le values are OpenMetrics canonical numbers (Go %g, .0 on integers)", () => {
  // The spec's own examples.
  const cases: [number, string][] = [
    [0, "0.0"],
    [0.001, "0.001"],
    [0.01, "0.01"],
    [0.95, "0.95"],
    [1, "1.0"],
    [1.7, "1.7"],
    [10, "10.0"],
    [1e-10, "1e-10"],
    [1e-9, "1e-09"],
    [1e-5, "1e-05"],
    [0.0001, "0.0001"],
    [100000, "100000.0"],
    [1e6, "1e+06"],
    [1e10, "1e+10"],
    [1.1e23, "1.1e+23"],
    [Infinity, "+Inf"],
    // Ours.
    [0.00005, "5e-05"],
    [0.00025, "0.00025"],
    [2.5, "2.5"],
    [5, "5.0"],
  ];
  for (const [v, text] of cases) assertEquals(canonicalNumber(v), text, String(v));
});

function snapshot(): MetricsSnapshot {
  const d1 = newDeviceStats();
  DEVICE_STAT_FIELDS.forEach((_, i) => (d1[i] = 10 + i));
  d1[DS.read_time] = d1[DS.write_time] = d1[DS.other_time] = 0;
  recordLatency(d1, LatencyKind.READ, 0.0003);
  recordLatency(d1, LatencyKind.READ, 0.0003);
  recordLatency(d1, LatencyKind.READ, 0.2);
  recordLatency(d1, LatencyKind.WRITE, 9);
  const odd = new Float64Array(new SharedArrayBuffer(DEVICE_SHARED_LENGTH * 8));
  const eth = new Float64Array(IFACE_STAT_COUNT);
  IFACE_STAT_FIELDS.forEach((_, i) => (eth[i] = 100 + i));
  return {
    devices: [
      { name: "disk1", shelf: 0, slot: 1, stats: d1 },
      { name: 'odd"name\\x', shelf: 65534, slot: 254, stats: odd },
    ],
    interfaces: [{ name: "eth0", stats: eth }, {
      name: "bond0.7",
      stats: new Float64Array(IFACE_STAT_COUNT),
    }],
    startTime: 1_700_000_000.25,
    now: 1_700_000_100.75,
    endpoint: { connections: 3, refused: 4, timedOut: 5, acceptErrors: 6, mainThreadErrors: 7 },
    workers: 3,
  };
}

for (const format of ["prometheus", "openmetrics"] as Format[]) {
  Deno.test(`${format}: every counter, the histograms, build info, up and uptime, strictly valid`, () => {
    const text = renderMetrics(snapshot(), format);
    const e = parseExposition(text, format);
    const dev = { device: "disk1", shelf: "0", slot: "1" };
    DEVICE_STAT_FIELDS.forEach((field, i) => {
      const name = sampleNames(DEVICE_FAMILIES[field])[0]; // `_total` but for the views gauge
      const want = field.endsWith("_time") ? undefined : 10 + i;
      if (want !== undefined) assertEquals(valueOf(e, name, dev), want, name);
      assertEquals(valueOf(e, name, { device: 'odd"name\\x', shelf: "65534" }), 0, name);
    });
    assertEquals(valueOf(e, "ggaoed_device_read_seconds_total", dev), 0.2006);
    IFACE_STAT_FIELDS.forEach((field, i) => {
      const name = `${INTERFACE_FAMILIES[field].name}_total`;
      assertEquals(valueOf(e, name, { interface: "eth0" }), 100 + i, name);
      assertEquals(valueOf(e, name, { interface: "bond0.7" }), 0, name);
    });
    const h = "ggaoed_device_request_duration_seconds";
    const read = { ...dev, op: "read" };
    const buckets = bucketsOf(e, h, read);
    assertEquals(buckets.map((b) => b.le), [...LATENCY_BOUNDS.map(canonicalNumber), "+Inf"]);
    assertEquals(buckets.find((b) => b.le === "0.00025")!.count, 0);
    assertEquals(buckets.find((b) => b.le === "0.0005")!.count, 2);
    assertEquals(buckets.find((b) => b.le === "0.25")!.count, 3);
    assertEquals(valueOf(e, `${h}_count`, read), 3);
    assertEquals(valueOf(e, `${h}_sum`, read), valueOf(e, "ggaoed_device_read_seconds_total", dev));
    const write = { ...dev, op: "write" };
    assertEquals(bucketsOf(e, h, write).find((b) => b.le === "5.0")!.count, 0);
    assertEquals(valueOf(e, `${h}_count`, write), 1);
    assertEquals(valueOf(e, `${h}_count`, { ...dev, op: "other" }), 0);
    assertEquals(valueOf(e, "ggaoed_build_info", { version: VERSION, deno: Deno.version.deno }), 1);
    assertEquals(valueOf(e, "ggaoed_up"), 1);
    assertEquals(valueOf(e, "ggaoed_start_time_seconds"), 1_700_000_000.25);
    assertEquals(valueOf(e, "ggaoed_uptime_seconds"), 100.5);
    assertEquals(valueOf(e, "ggaoed_workers"), 3);
    assertEquals(valueOf(e, "ggaoed_metrics_connections"), 3);
    assertEquals(valueOf(e, "ggaoed_metrics_connections_refused_total"), 4);
    assertEquals(valueOf(e, "ggaoed_metrics_connections_timed_out_total"), 5);
    assertEquals(valueOf(e, "ggaoed_metrics_accept_errors_total"), 6);
    assertEquals(valueOf(e, "ggaoed_main_thread_errors_total"), 7);
    // Every family of the table is there, with its help text, and nothing else.
    const exposed = new Set(e.samples.map((s) => s.name));
    const promised = new Set(ALL_FAMILIES.flatMap(sampleNames));
    assertEquals([...exposed].sort(), [...promised].sort());
    assertEquals(e.families.length, ALL_FAMILIES.length);
    for (const f of e.families) assert(f.help.length > 10, f.name);
    if (format === "openmetrics") {
      assertEquals(e.families.find((f) => f.name === h)!.unit, "seconds");
      assertEquals(e.families.find((f) => f.name === "ggaoed_device_read_bytes")!.unit, "bytes");
      assertEquals(e.families.find((f) => f.name === "ggaoed_build")!.type, "info");
    }
  });
}

Deno.test("the strict parser rejects what the formats forbid", () => {
  const bad: [string, Format][] = [
    ["# TYPE a counter\na_total 1\n", "openmetrics"], // no # EOF
    ["# TYPE a counter\na 1\n# EOF\n", "openmetrics"], // a counter sample without _total
    ["# TYPE a_total counter\na_total -1\n", "prometheus"],
    ['# TYPE a gauge\na{x="1"} 1\na{x="1"} 2\n', "prometheus"],
    ['# TYPE a gauge\na{x="\\t"} 1\n', "prometheus"],
    ["# TYPE a gauge\na 1 1700000000\n", "prometheus"],
    ["a 1\n", "prometheus"],
    ["# TYPE a gauge\na 1\n# TYPE b gauge\nb 1\na 2\n", "prometheus"],
    ['# TYPE h histogram\nh_bucket{le="1"} 2\nh_bucket{le="+Inf"} 1\nh_count 1\n', "prometheus"],
    ['# TYPE h histogram\nh_bucket{le="1"} 1\nh_count 1\n', "prometheus"],
    ['# TYPE h histogram\nh_bucket{le="+Inf"} 2\nh_count 1\n', "prometheus"],
    ["# TYPE a_seconds gauge\n# UNIT a_seconds bytes\na_seconds 1\n# EOF\n", "openmetrics"],
    ["# some comment\n# TYPE a gauge\na 1\n", "prometheus"],
    [
      '# TYPE h histogram\nh_bucket{x="1",le="1"} 1\nh_bucket{x="2",le="+Inf"} 1\n' +
      'h_bucket{x="1",le="+Inf"} 1\n',
      "prometheus",
    ],
  ];
  for (const [text, format] of bad) {
    let threw = false;
    try {
      parseExposition(text, format);
    } catch {
      threw = true;
    }
    assert(threw, `accepted: ${JSON.stringify(text)}`);
  }
});

Deno.test({
  name: "promtool check metrics accepts the 0.0.4 exposition without a lint remark",
  ignore: promtool() === null,
  fn: async () => {
    const out = await promtool()!.checkMetrics(renderMetrics(snapshot(), "prometheus"));
    assertEquals(out.code, 0, out.output);
    assertEquals(out.output.trim(), "");
  },
});

Deno.test({
  name: "Prometheus' OpenMetrics parser (promtool tsdb create-blocks-from) reads every sample",
  ignore: promtool() === null,
  fn: async () => {
    const text = renderMetrics(snapshot(), "openmetrics");
    const samples = parseExposition(text, "openmetrics").samples.length;
    const out = await promtool()!.importOpenMetrics(text);
    assertEquals(out.code, 0, out.output);
    assertEquals(out.samples, samples, out.output);
  },
});
