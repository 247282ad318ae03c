import assert from "node:assert/strict";
import { SysError } from "../../ffi/errno.ts";
import { openStorage } from "../../ffi/storage.ts";

Deno.test("the FFI layer works in a Worker and each thread reads its own errno", async () => {
  const worker = new Worker(new URL("./fixtures/errno_worker.ts", import.meta.url), {
    type: "module",
  });
  try {
    const answer = new Promise<{ drained: number; code: string }>((resolve, reject) => {
      worker.onmessage = (e) => resolve(e.data);
      worker.onerror = (e) => reject(e);
    });
    worker.postMessage("go");
    const result = await answer;
    assert.deepEqual(result, { drained: 3, code: "EBADF" });
    // This thread's errno is its own: ENOENT here, whatever the worker did.
    assert.throws(
      () => openStorage("/nonexistent/ggaoed", { readOnly: true, direct: false, exclusive: false }),
      (e: unknown) => e instanceof SysError && e.code === "ENOENT",
    );
  } finally {
    worker.terminate();
  }
});
