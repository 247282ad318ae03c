/** Pure helpers of the workload runner: the seeded PRNG and percentiles. */

import { percentile, Prng } from "../../src/initiator/mod.ts";
import { assert, assertEquals } from "../helpers/assert.ts";

Deno.test("Prng repeats its sequence for the same seed and differs for another", () => {
  const a = new Prng(42), b = new Prng(42), c = new Prng(43);
  const xs = Array.from({ length: 8 }, () => a.nextU32());
  assertEquals(Array.from({ length: 8 }, () => b.nextU32()), xs);
  assert.notDeepStrictEqual(Array.from({ length: 8 }, () => c.nextU32()), xs);
});

Deno.test("Prng.below stays in [0, n) and reaches both ends", () => {
  const p = new Prng(7);
  const seen = new Set<number>();
  for (let i = 0; i < 2000; i++) {
    const v = p.below(10);
    assert.ok(Number.isInteger(v) && v >= 0 && v < 10, `below(10) gave ${v}`);
    seen.add(v);
  }
  assertEquals(seen.size, 10);
});

Deno.test("percentile uses the nearest rank and is 0 for no samples", () => {
  const sorted = Float64Array.from({ length: 100 }, (_, i) => i + 1);
  assertEquals(percentile(sorted, 0.5), 50);
  assertEquals(percentile(sorted, 0.99), 99);
  assertEquals(percentile(sorted, 1), 100);
  assertEquals(percentile(Float64Array.of(3), 0.99), 3);
  assertEquals(percentile(new Float64Array(0), 0.5), 0);
});
