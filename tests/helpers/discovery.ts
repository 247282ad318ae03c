/**
 * Discovery for tests that expect a set of targets: a Query Config broadcast collects answers for
 * a while, and on a busy machine an answer can come after that while. {@link discoverSet}
 * broadcasts again until the answers are the set expected (or a generous bound passes), so a late
 * answer costs a second round instead of failing the test; a target that should not answer
 * answers every round, and the set still differs at the end.
 */

import type { Initiator } from "../../src/initiator/mod.ts";

/**
 * The targets answering, as sorted "shelf.slot" strings: the first round's answers that equal
 * `want`, else the last round's after `boundMs`.
 */
export function discoverSet(ini: Initiator, want: string[], boundMs = 15_000): string[] {
  const expected = JSON.stringify([...want].sort());
  const deadline = performance.now() + boundMs;
  for (;;) {
    const found = ini.discover({ waitMs: 500 }).map((d) => `${d.shelf}.${d.slot}`).sort();
    if (JSON.stringify(found) === expected || performance.now() > deadline) return found;
  }
}
