/**
 * contrib/grafana-ggaoed.json: valid JSON, a well-formed dashboard, every metric it queries
 * exists in the exposition, it shows what an administrator needs, and (with promtool installed)
 * every query is valid PromQL.
 */

import { assert, assertEquals } from "../helpers/assert.ts";
import { parseExposition } from "../helpers/exposition.ts";
import { promtool } from "../helpers/promtool.ts";
import { renderMetrics } from "../../src/metrics/exposition.ts";
import { IFACE_STAT_COUNT, newDeviceStats } from "../../src/stats.ts";

const FILE = new URL("../../contrib/grafana-ggaoed.json", import.meta.url);

interface Target {
  expr: string;
  refId: string;
  datasource?: { type: string; uid: string };
}
interface Panel {
  id: number;
  type: string;
  title: string;
  gridPos: { x: number; y: number; w: number; h: number };
  datasource?: { type: string; uid: string };
  targets?: Target[];
}
interface Variable {
  name: string;
  type: string;
  query: string | { query: string };
}
interface Dashboard {
  title: string;
  uid: string;
  schemaVersion: number;
  panels: Panel[];
  templating: { list: Variable[] };
}

function dashboard(): Dashboard {
  return JSON.parse(Deno.readTextFileSync(FILE));
}

/** Every PromQL expression of the dashboard: panel targets, and the variables' selectors. */
function expressions(d: Dashboard): string[] {
  const exprs = d.panels.flatMap((p) => (p.targets ?? []).map((t) => t.expr));
  for (const v of d.templating.list) {
    if (v.type !== "query") continue;
    const q = typeof v.query === "string" ? v.query : v.query.query;
    const m = /^label_values\((.*), *\w+\)$/.exec(q);
    assert(m, `variable ${v.name}: ${q}`);
    exprs.push(m[1]);
  }
  return exprs;
}

/** Names of the samples a daemon with one device and one interface exposes. */
function exposedNames(): Set<string> {
  const text = renderMetrics({
    devices: [{ name: "disk1", shelf: 0, slot: 1, stats: newDeviceStats() }],
    interfaces: [{ name: "eth0", stats: new Float64Array(IFACE_STAT_COUNT) }],
    startTime: 0,
    now: 1,
    endpoint: { connections: 0, refused: 0, timedOut: 0, acceptErrors: 0, mainThreadErrors: 0 },
  }, "prometheus");
  return new Set(parseExposition(text, "prometheus").samples.map((s) => s.name));
}

Deno.test("the Grafana dashboard is valid JSON with unique panel ids inside a 24-column grid", () => {
  const d = dashboard();
  assertEquals(d.uid, "ggaoed");
  assert(d.schemaVersion >= 36, String(d.schemaVersion));
  const ids = d.panels.map((p) => p.id);
  assertEquals(new Set(ids).size, ids.length);
  for (const p of d.panels) {
    const g = p.gridPos;
    assert(g.x >= 0 && g.w > 0 && g.x + g.w <= 24 && g.h > 0, `${p.title}: ${JSON.stringify(g)}`);
    if (p.type === "row") continue;
    assertEquals(p.datasource, { type: "prometheus", uid: "${datasource}" }, p.title);
    assert((p.targets ?? []).length > 0, `${p.title} has no query`);
  }
  assert(d.templating.list.some((v) => v.type === "datasource" && v.name === "datasource"));
});

Deno.test("every metric the dashboard queries exists in the exposition", () => {
  const exposed = exposedNames();
  const used = new Set<string>();
  for (const expr of expressions(dashboard())) {
    for (const [name] of expr.matchAll(/\bggaoed_[a-z0-9_]+\b/g)) {
      assert(exposed.has(name), `${name} (in ${expr}) is not exposed`);
      used.add(name);
    }
  }
  assert(used.size >= 20, [...used].join(" "));
});

Deno.test("the dashboard shows throughput, IOPS, latency quantiles, errors, drops, denials and interfaces", () => {
  const all = expressions(dashboard()).join("\n");
  const wanted = [
    /rate\(ggaoed_device_read_bytes_total/,
    /rate\(ggaoed_device_write_bytes_total/,
    /rate\(ggaoed_device_reads_total/,
    /rate\(ggaoed_device_writes_total/,
    /histogram_quantile\(0\.99, sum by \(le, device\) \(rate\(ggaoed_device_request_duration_seconds_bucket\{[^}]*op="read"/,
    /histogram_quantile\(0\.99, sum by \(le, device\) \(rate\(ggaoed_device_request_duration_seconds_bucket\{[^}]*op="write"/,
    /rate\(ggaoed_device_ata_errors_total/,
    /rate\(ggaoed_device_protocol_errors_total/,
    /rate\(ggaoed_device_queue_drops_total/,
    /rate\(ggaoed_device_denied_requests_total/,
    /rate\(ggaoed_interface_rx_bytes_total/,
    /rate\(ggaoed_interface_tx_bytes_total/,
    /rate\(ggaoed_interface_dropped_frames_total/,
  ];
  for (const w of wanted) assert(w.test(all), `no query matches ${w}`);
});

Deno.test({
  name: "every dashboard query is valid PromQL (promtool check rules)",
  ignore: promtool() === null,
  fn: async () => {
    const rules = expressions(dashboard()).map((expr, i) => ({
      record: `ggaoed_dashboard:query_${i}`,
      // Grafana's variables, as Grafana fills them in.
      expr: expr.replaceAll("$__rate_interval", "1m").replace(
        /\$(instance|device|interface)/g,
        ".*",
      ),
    }));
    // JSON is YAML: promtool reads it as a rule file.
    const out = await promtool()!.checkRules([JSON.stringify({ groups: [{ name: "q", rules }] })]);
    assertEquals(out.code, 0, out.output);
    assert(out.output.includes(`SUCCESS: ${rules.length} rules found`), out.output);
  },
});
