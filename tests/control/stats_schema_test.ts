/**
 * `ggaoectl --json stats` is a documented, stable schema (docs/ggaoectl.md): the real CLI's
 * output, against a real control server, has exactly the documented fields, in the documented
 * order, with the documented types, and the documented counters are the daemon's.
 */

import assert from "node:assert/strict";
import { startControlServer } from "../../src/control/server.ts";
import { STATS_SCHEMA_VERSION } from "../../src/control/types.ts";
import { DEVICE_STAT_FIELDS, DS, IFACE_STAT_FIELDS, IS } from "../../src/stats.ts";
import { TestHandler } from "./handler.ts";

const DOC = Deno.readTextFileSync(new URL("../../docs/ggaoectl.md", import.meta.url));
const GGAOECTL = new URL("../../ggaoectl.ts", import.meta.url).pathname;

interface Row {
  field: string;
  type: string;
  unit: string;
}

/** The rows of the first table after `label` in the schema section of the documentation. */
function documented(label: string): Row[] {
  const section = DOC.slice(DOC.indexOf("### `stats --json`: a stable schema"));
  assert.ok(section.length < DOC.length, "docs/ggaoectl.md has the schema section");
  const start = section.indexOf(label);
  assert.ok(start >= 0, `the schema section has "${label}"`);
  const rows: Row[] = [];
  for (const line of section.slice(start).split("\n").slice(1)) {
    if (line.trim() === "") {
      if (rows.length > 0) break;
      continue;
    }
    const m = /^\| `([a-z_]+)` +\| ([a-z]+) +\| ([a-z]*) +\|/.exec(line);
    if (m) rows.push({ field: m[1], type: m[2], unit: m[3] });
    else if (!line.startsWith("|")) break;
  }
  assert.ok(rows.length > 0, `a table after "${label}"`);
  return rows;
}

function typeOf(v: unknown): string {
  if (Array.isArray(v)) return "array";
  if (typeof v === "number") return Number.isInteger(v) ? "integer" : "number";
  return typeof v;
}

/** A documented `number` may hold a whole value; an `integer` must. */
function assertType(value: unknown, row: Row, where: string): void {
  const actual = typeOf(value);
  const ok = actual === row.type || (row.type === "number" && actual === "integer");
  assert.ok(ok, `${where}.${row.field} is ${actual}, documented as ${row.type}`);
}

Deno.test("the documented counters are the daemon's, in its order, with types and units", () => {
  const device = documented("Device counters");
  const iface = documented("Interface counters");
  assert.deepEqual(device.map((r) => r.field), [...DEVICE_STAT_FIELDS]);
  assert.deepEqual(iface.map((r) => r.field), [...IFACE_STAT_FIELDS]);
  for (const r of [...device, ...iface]) {
    assert.ok(["integer", "number"].includes(r.type), `${r.field}: ${r.type}`);
    assert.notEqual(r.unit, "", `${r.field} has a unit`);
    // Times are the only fractional counters; they are seconds.
    assert.equal(r.type === "number", r.unit === "seconds", r.field);
  }
});

Deno.test("ggaoectl --json stats matches the documented schema field for field", async () => {
  const dir = await Deno.makeTempDir({ prefix: "ggaoectl-schema-" });
  const sock = `${dir}/ggaoed.sock`;
  const handler = new TestHandler(["disk1", "disk2"], ["eth0"]);
  handler.clock = 86400.25;
  const d = handler.device("disk1").stats;
  d[DS.read_cnt] = 3;
  d[DS.read_time] = 0.8125;
  d[DS.write_time] = 2;
  d[DS.denied] = 7;
  handler.interfaces[0].stats[IS.tx_in_place] = 9;
  const server = await startControlServer(sock, handler, () => {});
  try {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--quiet", "--allow-read", "--allow-write", "--allow-env", "--allow-net"]
        .concat([GGAOECTL, "-s", sock, "--json", "stats"]),
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
    const text = new TextDecoder().decode(out.stdout);
    assert.equal(text.split("\n").length, 2, "one line");
    const reply = JSON.parse(text);

    const top = documented("Top level");
    assert.deepEqual(Object.keys(reply), top.map((r) => r.field));
    for (const r of top) assertType(reply[r.field], r, "stats");
    assert.equal(reply.ok, true);
    assert.equal(reply.schema, STATS_SCHEMA_VERSION);
    assert.equal(reply.schema, 1);
    assert.equal(reply.uptime, 86400.25);

    const entry = documented("Each entry of");
    for (
      const [list, label] of [
        [reply.devices, "Device counters"],
        [reply.interfaces, "Interface counters"],
      ] as const
    ) {
      assert.ok(list.length > 0);
      const counters = documented(label);
      for (const item of list) {
        assert.deepEqual(Object.keys(item), entry.map((r) => r.field));
        for (const r of entry) assertType(item[r.field], r, item.name);
        assert.deepEqual(Object.keys(item.stats), counters.map((r) => r.field));
        for (const r of counters) assertType(item.stats[r.field], r, `${item.name}.stats`);
      }
    }
    assert.equal(reply.devices[0].stats.read_time, 0.8125);
    assert.equal(reply.devices[0].stats.denied, 7);
    assert.equal(reply.interfaces[0].stats.tx_in_place, 9);
  } finally {
    await server.close();
    await Deno.remove(dir, { recursive: true });
  }
});
