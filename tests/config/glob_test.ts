import assert from "node:assert/strict";
import { globMatch, matchesAny } from "../../src/config/glob.ts";

Deno.test("glob: literal pattern matches only the whole identical name", () => {
  assert.equal(globMatch("eth0", "eth0"), true);
  assert.equal(globMatch("eth0", "eth01"), false);
  assert.equal(globMatch("eth0", "xeth0"), false);
  assert.equal(globMatch("", ""), true);
  assert.equal(globMatch("", "a"), false);
});

Deno.test("glob: star matches any run including the empty one", () => {
  assert.equal(globMatch("eth*", "eth"), true);
  assert.equal(globMatch("eth*", "eth12"), true);
  assert.equal(globMatch("*", ""), true);
  assert.equal(globMatch("*.100", "eth0.100"), true);
  assert.equal(globMatch("*.100", "eth0.1000"), false);
  assert.equal(globMatch("e*h*1", "eth0.1"), true);
  assert.equal(globMatch("e*h*1", "eth0.2"), false);
  assert.equal(globMatch("**a", "bba"), true);
});

Deno.test("glob: question mark matches exactly one character", () => {
  assert.equal(globMatch("eth?", "eth0"), true);
  assert.equal(globMatch("eth?", "eth"), false);
  assert.equal(globMatch("eth?", "eth10"), false);
  assert.equal(globMatch("?*", ""), false);
});

Deno.test("glob: brackets, dots and backslashes are literal", () => {
  assert.equal(globMatch("eth[0]", "eth[0]"), true);
  assert.equal(globMatch("eth[0]", "eth0"), false);
  assert.equal(globMatch("a.b", "axb"), false);
  assert.equal(globMatch("a\\*", "a\\xyz"), true);
});

Deno.test("glob: a pathological pattern finishes quickly", () => {
  const start = performance.now();
  assert.equal(globMatch("a*a*a*a*a*a*a*a*b", "a".repeat(200)), false);
  // Backtracking over every way to place 8 stars in 200 characters would not finish at all; a
  // linear match takes well under a millisecond. The bound leaves room for a busy machine.
  const took = performance.now() - start;
  assert.ok(took < 2000, `took ${took.toFixed(0)} ms`);
});

Deno.test("matchesAny: null matches all, empty list matches nothing", () => {
  assert.equal(matchesAny(null, "eth0"), true);
  assert.equal(matchesAny([], "eth0"), false);
  assert.equal(matchesAny(["lo", "eth*"], "eth3"), true);
  assert.equal(matchesAny(["lo", "eth*"], "wlan0"), false);
});
