/**
 * Tiny assertion helpers for tests (no `@std/assert` here). Re-exports `node:assert/strict`
 * under the names most Deno tests use.
 *
 * @module
 */

import assert from "node:assert/strict";

export { assert };

/** Deep strict equality (typed arrays compared element by element). */
export function assertEquals<T>(actual: unknown, expected: T, message?: string): void {
  assert.deepStrictEqual(actual, expected, message);
}

/** Deep strict inequality. */
export function assertNotEquals<T>(actual: unknown, expected: T, message?: string): void {
  assert.notDeepStrictEqual(actual, expected, message);
}

/** Truthiness. */
export function assertTrue(value: unknown, message?: string): asserts value {
  assert.ok(value, message);
}

/** `fn` throws (optionally an instance of `errorClass` whose message includes `includes`). */
export function assertThrows(
  fn: () => unknown,
  // deno-lint-ignore no-explicit-any
  errorClass?: new (...args: any[]) => Error,
  includes?: string,
): Error {
  let caught: unknown = undefined;
  let threw = false;
  try {
    fn();
  } catch (e) {
    threw = true;
    caught = e;
  }
  assert.ok(threw, "expected the function to throw");
  return checkCaught(caught, errorClass, includes);
}

/** `fn` rejects (optionally with an instance of `errorClass` whose message includes `includes`). */
export async function assertRejects(
  fn: () => Promise<unknown>,
  // deno-lint-ignore no-explicit-any
  errorClass?: new (...args: any[]) => Error,
  includes?: string,
): Promise<Error> {
  let caught: unknown = undefined;
  let threw = false;
  try {
    await fn();
  } catch (e) {
    threw = true;
    caught = e;
  }
  assert.ok(threw, "expected the promise to reject");
  return checkCaught(caught, errorClass, includes);
}

/** Hex dump of bytes for failure messages: "0a 1b ...". */
export function hex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join(" ");
}

/** The error is an `errorClass` (if given) whose message includes `includes` (if given). */
function checkCaught(
  caught: unknown,
  // deno-lint-ignore no-explicit-any
  errorClass?: new (...args: any[]) => Error,
  includes?: string,
): Error {
  if (errorClass) {
    assert.ok(caught instanceof errorClass, `expected ${errorClass.name}, got ${caught}`);
  }
  if (includes) {
    assert.ok(
      String((caught as Error)?.message).includes(includes),
      `message lacks "${includes}": ${(caught as Error)?.message}`,
    );
  }
  return caught as Error;
}
