/**
 * docs/metrics.md keeps up with the code: it names every metric, every bucket bound, and its
 * example queries and alert rules are valid PromQL over metrics that exist.
 */

import { assert, assertEquals } from "../helpers/assert.ts";
import { promtool } from "../helpers/promtool.ts";
import { canonicalNumber } from "../../src/metrics/exposition.ts";
import { ALL_FAMILIES, sampleNames } from "../../src/metrics/families.ts";
import { DEVICE_STAT_FIELDS, IFACE_STAT_FIELDS, LATENCY_BOUNDS } from "../../src/stats.ts";

const DOC = Deno.readTextFileSync(new URL("../../docs/metrics.md", import.meta.url));

/** The fenced blocks of one language. */
function blocks(lang: string): string[] {
  return [...DOC.matchAll(new RegExp("```" + lang + "\\n([\\s\\S]*?)```", "g"))].map((m) => m[1]);
}

/** The example expressions: groups of lines between comments and blank lines. */
function examples(): string[] {
  const out: string[] = [];
  for (const block of blocks("promql")) {
    let expr: string[] = [];
    for (const line of [...block.split("\n"), ""]) {
      if (line.trim() === "" || line.startsWith("#")) {
        if (expr.length) out.push(expr.join("\n"));
        expr = [];
      } else {
        expr.push(line);
      }
    }
  }
  return out;
}

Deno.test("docs/metrics.md names every metric, every stats field and every bucket bound", () => {
  for (const f of ALL_FAMILIES) {
    const name = f.type === "histogram" ? f.name : sampleNames(f)[0];
    assert(DOC.includes(`\`${name}`), `${name} is not documented`);
  }
  for (const field of [...DEVICE_STAT_FIELDS, ...IFACE_STAT_FIELDS]) {
    assert(DOC.includes(`| \`${field}\``), `stats field ${field} has no row`);
  }
  for (const b of LATENCY_BOUNDS) {
    assert(DOC.includes(`\`${canonicalNumber(b)}\``), `bucket ${b} is not documented`);
  }
});

Deno.test("the documented queries use only exposed metrics", () => {
  const exposed = new Set(ALL_FAMILIES.flatMap(sampleNames));
  const all = [...examples(), ...blocks("yaml").filter((b) => b.includes("alert:"))].join("\n");
  const used = [...all.matchAll(/\bggaoed_[a-z0-9_]+\b/g)].map((m) => m[0]);
  assert(used.length > 10);
  for (const name of used) assert(exposed.has(name), `${name} is not exposed`);
});

Deno.test({
  name: "the documented queries and alert rules are valid PromQL (promtool check rules)",
  ignore: promtool() === null,
  fn: async () => {
    const rules = examples().map((expr, i) => ({ record: `ggaoed_docs:example_${i}`, expr }));
    assert(rules.length >= 8, String(rules.length));
    const alerts = blocks("yaml").find((b) => b.includes("alert:"));
    assert(alerts, "no alert rules in docs/metrics.md");
    // JSON is YAML: promtool reads the examples as a rule file.
    const out = await promtool()!.checkRules([
      JSON.stringify({ groups: [{ name: "x", rules }] }),
      alerts,
    ]);
    assertEquals(out.code, 0, out.output);
    assert(out.output.includes(`SUCCESS: ${rules.length} rules found`), out.output);
    assert(out.output.includes("SUCCESS: 4 rules found"), out.output);
  },
});
