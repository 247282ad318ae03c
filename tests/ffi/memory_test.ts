import assert from "node:assert/strict";
import { Memory, PAGE_SIZE } from "../../ffi/memory.ts";

Deno.test("Memory rounds up to whole pages and starts zero-filled", () => {
  const memory = Memory.allocate(5000);
  try {
    assert.equal(memory.length, 2 * PAGE_SIZE);
    assert.equal(memory.bytes.length, 2 * PAGE_SIZE);
    assert.ok(memory.bytes.every((b) => b === 0));
    memory.bytes.fill(0xa5);
    assert.equal(memory.bytes[memory.length - 1], 0xa5);
  } finally {
    memory.close();
  }
});

Deno.test("after close every view of a Memory is empty instead of pointing at unmapped pages", () => {
  const memory = Memory.allocate(PAGE_SIZE);
  const view = memory.bytes;
  memory.close();
  assert.equal(view.length, 0);
  assert.equal(view[0], undefined);
  assert.ok(memory.closed);
  memory.close(); // idempotent
});

Deno.test("Memory.allocate rejects sizes that are not positive integers", () => {
  assert.throws(() => Memory.allocate(0), RangeError);
  assert.throws(() => Memory.allocate(1.5), RangeError);
});
