/**
 * The bench's × columns with --repeat: the median of the ratios within each round, so that a
 * round in which the whole machine ran slow does not set one target's median against another
 * target's from a faster round.
 */

import { assertEquals } from "../helpers/assert.ts";
import { pairedRatio } from "../../bench/report.ts";

Deno.test("× columns pair the rounds: median of per-round ratios, not a ratio of medians", () => {
  // Round 2 was slow for everyone: medians 20 / 30 would say 0.67; per round 2, 0.5, 1.
  const a = { value: 20, runs: [10, 20, 30] };
  const b = { value: 30, runs: [5, 40, 30] };
  assertEquals(pairedRatio(a, b), 1);
  // A failed round is left out (even count: the mean of the middle two).
  assertEquals(pairedRatio({ value: 20, runs: [10, null, 30] }, b), 1.5);
  // One round, or rounds that do not line up: the plain ratio of the values.
  assertEquals(pairedRatio({ value: 3 }, { value: 2 }), 1.5);
  assertEquals(pairedRatio({ value: 3, runs: [3, 3] }, { value: 2, runs: [2] }), 1.5);
  assertEquals(pairedRatio({ value: 3 }, undefined), null);
  assertEquals(pairedRatio({ value: 3 }, { value: null }), null);
});
