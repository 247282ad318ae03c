import assert from "node:assert/strict";
import {
  deviceHeader,
  deviceRow,
  emptyBaseline,
  formatConfigs,
  formatCount,
  formatDeviceRow,
  formatFixed,
  formatG,
  formatIfaceRow,
  formatMacLists,
  formatStats,
  hexDumpLines,
  hexToBytes,
  ifaceHeader,
  ifaceRow,
  macListLines,
  monitorSample,
  parseInterval,
} from "../../src/control/format.ts";
import { DEVICE_STAT_FIELDS, IFACE_STAT_FIELDS, statsRecord } from "../../src/stats.ts";

Deno.test("formatG prints like C's %g: six significant digits, exponent form outside 1e-4..1e6", () => {
  const cases: [number, string][] = [
    [0, "0"],
    [0.0001, "0.0001"],
    [0.00001, "1e-05"],
    [123456, "123456"],
    [1234567, "1.23457e+06"],
    [1.5, "1.5"],
    [100, "100"],
    [1e6, "1e+06"],
    [0.1 + 0.2, "0.3"],
    [2.5e-7, "2.5e-07"],
    [1234565, "1.23456e+06"], // an exact tie rounds to even, as glibc does
    [999999.5, "1e+06"], // rounding carries into a new digit
    [0.000123456789, "0.000123457"],
    [5e-324, "4.94066e-324"],
    [1.7976931348623157e308, "1.79769e+308"],
    [12, "12"],
    [0.0123, "0.0123"],
    [-1.5, "-1.5"],
  ];
  for (const [x, expected] of cases) assert.equal(formatG(x), expected, `%g of ${x}`);
});

Deno.test("formatFixed rounds the exact binary value, ties to even, like C's %.Nf", () => {
  const cases: [number, number, string][] = [
    [0.125, 2, "0.12"],
    [0.375, 2, "0.38"],
    [2.5, 0, "2"],
    [0.05, 1, "0.1"],
    [1.005, 2, "1.00"],
    [1234.5678, 1, "1234.6"],
    [0, 2, "0.00"],
    [99.995, 2, "100.00"],
    [1e22, 1, "10000000000000000000000.0"],
    [NaN, 2, "nan"],
    [Infinity, 1, "inf"],
  ];
  for (const [x, d, expected] of cases) {
    assert.equal(formatFixed(x, d), expected, `%.${d}f of ${x}`);
  }
});

Deno.test("formatCount prints integers without exponent, even past 2^53", () => {
  assert.equal(formatCount(0), "0");
  assert.equal(formatCount(123456789012), "123456789012");
  assert.equal(formatCount(2 ** 64), "18446744073709551616");
});

Deno.test("stats dump: a block per device then per interface, our extra counters last", () => {
  const dev = new Float64Array(DEVICE_STAT_FIELDS.length).map((_, i) => i + 1);
  dev[2] = 0.25; // read_time
  dev[5] = 1.5e-5; // write_time
  dev[7] = 3; // other_time
  const net = new Float64Array(IFACE_STAT_FIELDS.length).map((_, i) => 100 + i);
  const text = formatStats(
    [{ name: "disk1", stats: statsRecord(DEVICE_STAT_FIELDS, dev) }],
    [{ name: "eth0", stats: statsRecord(IFACE_STAT_FIELDS, net) }],
  );
  assert.equal(
    text,
    "# Statistics for device disk1\n" +
      "read_cnt: 1\nread_bytes: 2\nread_time: 0.25\nwrite_cnt: 4\nwrite_bytes: 5\n" +
      "write_time: 1.5e-05\nother_cnt: 7\nother_time: 3\nio_slots: 9\nio_runs: 10\n" +
      "queue_length: 11\nqueue_stall: 12\nqueue_over: 13\nata_err: 14\nproto_err: 15\n" +
      "queue_drop: 16\ndenied: 17\nio_retries: 18\nstate_writes: 19\nstate_errors: 20\n" +
      "stale_drop: 21\nstall_drop: 22\nrbd_fencings: 23\nrbd_fenced: 24\n" +
      "rbd_fenced_drops: 25\nstate_drop: 26\nviews: 27\nview_write_bytes: 28\n" +
      "view_wait_drop: 29\nview_limit: 30\n\n" +
      "# Statistics for interface eth0\n" +
      "rx_cnt: 100\nrx_bytes: 101\nrx_runs: 102\nrx_buffers_full: 103\ntx_cnt: 104\n" +
      "tx_bytes: 105\ntx_runs: 106\ntx_buffers_full: 107\ndropped: 108\nignored: 109\n" +
      "broadcast: 110\n" +
      "tx_in_place: 111\ntx_dropped: 112\nlink_errors: 113\nwildcard_dropped: 114\n\n",
  );
});

Deno.test("stats dump prints counters it does not know after the known ones", () => {
  const text = formatStats([{ name: "d", stats: { future: 2, read_cnt: 1 } }], []);
  assert.equal(text, "# Statistics for device d\nread_cnt: 1\nfuture: 2\n\n");
});

Deno.test("hex dump: 16 bytes a line, short last line padded, non-printables as dots", () => {
  const bytes = new TextEncoder().encode("Hello, AoE world! \x01\x7f\xff");
  assert.deepEqual(hexDumpLines(bytes), [
    "48 65 6c 6c 6f 2c 20 41 6f 45 20 77 6f 72 6c 64  Hello, AoE world",
    "21 20 01 7f c3 bf                                ! .\x7f..",
  ]);
  assert.deepEqual(hexDumpLines(new Uint8Array(0)), []);
});

Deno.test("show-config output: Device line, dump, empty line; an empty config has no dump", () => {
  assert.equal(
    formatConfigs([
      { name: "a", config: new TextEncoder().encode("xy") },
      { name: "b", config: new Uint8Array(0) },
    ]),
    "Device a:\n78 79" + " ".repeat(3 * 14) + "  xy\n\nDevice b:\n\n",
  );
});

Deno.test("hexToBytes reads the control socket's config encoding and rejects junk", () => {
  assert.deepEqual(hexToBytes("00ff7A"), new Uint8Array([0, 255, 0x7a]));
  assert.throws(() => hexToBytes("abc"), RangeError);
  assert.throws(() => hexToBytes("zz"), RangeError);
});

Deno.test("MAC lists: four per line, a short last line keeps its trailing space", () => {
  const macs = ["00:00:00:00:00:01", "00:00:00:00:00:02", "00:00:00:00:00:03"];
  assert.deepEqual(macListLines(macs), [
    "00:00:00:00:00:01 00:00:00:00:00:02 00:00:00:00:00:03 ",
  ]);
  const five = [...macs, "00:00:00:00:00:04", "aa:bb:cc:dd:ee:ff"];
  assert.deepEqual(macListLines(five), [
    "00:00:00:00:00:01 00:00:00:00:00:02 00:00:00:00:00:03 00:00:00:00:00:04",
    "aa:bb:cc:dd:ee:ff ",
  ]);
  assert.equal(
    formatMacLists([{ name: "d1", macs: ["00:00:00:00:00:01"] }, { name: "d2", macs: [] }]),
    "Device d1:\n00:00:00:00:00:01 \n\nDevice d2:\n\n",
  );
});

Deno.test("monitor headers are the original's, name column padded to the width", () => {
  assert.equal(
    deviceHeader(5),
    "dev     rrqm/s      rkB/s   wrqm/s      wkB/s oth avgqsz qs qf ae pe    svctm qdrop denied",
  );
  assert.equal(ifaceHeader(4), "net    rrqm/s      rkB/s   wrqm/s      wkB/s drp  avrun");
});

Deno.test("device row: rates over elapsed, counts as deltas, svctm in ms per request", () => {
  const prev = { read_cnt: 10, read_bytes: 0, write_cnt: 0, other_cnt: 0, read_time: 1 };
  const cur = {
    read_cnt: 110,
    read_bytes: 2048 * 100,
    write_cnt: 50,
    write_bytes: 512 * 50,
    other_cnt: 2,
    read_time: 1.1,
    write_time: 0.04,
    other_time: 0.002,
    queue_length: 304,
    queue_stall: 1,
    queue_over: 2,
    ata_err: 3,
    proto_err: 4,
    queue_drop: 5,
    denied: 6,
  };
  const row = deviceRow("disk1", cur, prev, 2);
  assert.equal(row.readsPerSec, 50);
  assert.equal(row.readKiBPerSec, 100);
  assert.equal(row.writesPerSec, 25);
  assert.equal(row.writeKiBPerSec, 12.5);
  assert.equal(row.other, 2);
  assert.equal(row.avgQueue, 2);
  assert.equal(row.queueDrop, 5);
  assert.equal(
    formatDeviceRow(row, 5),
    "disk1     50.0     100.00     25.0      12.50   2   2.00  1  2  3  4     0.93     5      6",
  );
});

Deno.test("device row with no requests shows zero service time and queue size", () => {
  const row = deviceRow("d", { read_cnt: 0 }, undefined, 1);
  assert.equal(
    formatDeviceRow(row, 4),
    "d         0.0       0.00      0.0       0.00   0   0.00  0  0  0  0     0.00     0      0",
  );
});

Deno.test("a record whose counters went backwards (cleared) is measured from zero", () => {
  const row = deviceRow("d", { read_cnt: 3, write_cnt: 1 }, { read_cnt: 100, write_cnt: 0 }, 1);
  assert.equal(row.readsPerSec, 3);
  assert.equal(row.writesPerSec, 1);
});

Deno.test("interface row: frames and kB per second, drops, frames per run", () => {
  const row = ifaceRow(
    "eth0",
    { rx_cnt: 300, rx_bytes: 3072, rx_runs: 10, tx_cnt: 100, tx_bytes: 1024, tx_runs: 10 },
    undefined,
    4,
  );
  assert.equal(
    formatIfaceRow(row, 6),
    "eth0       75.0       0.75     25.0       0.25   0  20.00",
  );
});

Deno.test("monitor sample: sorted rows, width from names, blank lines between and after", () => {
  const sample = {
    uptime: 2,
    devices: [
      { name: "zz", stats: { read_cnt: 2 } },
      { name: "longname1", stats: { read_cnt: 4 } },
    ],
    interfaces: [{ name: "eth0", stats: { rx_cnt: 8 } }],
  };
  const first = monitorSample(sample, emptyBaseline(), []);
  assert.equal(first.elapsed, 2);
  assert.equal(
    first.text,
    "dev         rrqm/s      rkB/s   wrqm/s      wkB/s oth avgqsz qs qf ae pe    svctm qdrop denied\n" +
      "longname1      2.0       0.00      0.0       0.00   0   0.00  0  0  0  0     0.00     0      0\n" +
      "zz             1.0       0.00      0.0       0.00   0   0.00  0  0  0  0     0.00     0      0\n" +
      "\n" +
      "net         rrqm/s      rkB/s   wrqm/s      wkB/s drp  avrun\n" +
      "eth0           4.0       0.00      0.0       0.00   0   0.00\n" +
      "\n",
  );
  const next = monitorSample(
    { ...sample, uptime: 3, interfaces: [{ name: "eth0", stats: { rx_cnt: 9 } }] },
    first.baseline,
    ["eth*", "zz"],
  );
  // Names on the command line set the width (as the original): max(4, "eth*", "zz") = 4.
  assert.equal(
    next.text,
    "dev    rrqm/s      rkB/s   wrqm/s      wkB/s oth avgqsz qs qf ae pe    svctm qdrop denied\n" +
      "longname1      0.0       0.00      0.0       0.00   0   0.00  0  0  0  0     0.00     0      0\n" +
      "zz        0.0       0.00      0.0       0.00   0   0.00  0  0  0  0     0.00     0      0\n" +
      "\n" +
      "net    rrqm/s      rkB/s   wrqm/s      wkB/s drp  avrun\n" +
      "eth0      1.0       0.00      0.0       0.00   0   0.00\n" +
      "\n",
  );
});

Deno.test("monitor sample with nothing matched prints only the closing empty line", () => {
  const s = monitorSample({ uptime: 1, devices: [], interfaces: [] }, emptyBaseline(), []);
  assert.equal(s.text, "\n");
});

Deno.test("monitor interval: a whole-argument number is the interval, anything else a name", () => {
  assert.equal(parseInterval("0.5"), 0.5);
  assert.equal(parseInterval("2"), 2);
  assert.equal(parseInterval("1e-1"), 0.1);
  assert.equal(parseInterval(".25"), 0.25);
  assert.equal(parseInterval("disk1"), null);
  assert.equal(parseInterval("1x"), null);
  assert.equal(parseInterval(""), null);
});
