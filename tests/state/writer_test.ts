/**
 * The state writer of the main thread: coalesces the data path's state changes, writes them
 * atomically at a bounded rate, reports every outcome, and keeps retrying a write that failed.
 */

import assert from "node:assert/strict";
import { assertEquals } from "../helpers/assert.ts";
import { StateKind } from "../../src/state/device_state.ts";
import { decodeMacListFile, encodeMacListFile } from "../../src/state/store.ts";
import { MIN_INTERVAL_MS, type PersistResult, StateWriter } from "../../src/state/writer.ts";

function setup(directory: string) {
  const results: PersistResult[] = [];
  const log: string[] = [];
  let dir = directory;
  const writer = new StateWriter({
    directory: () => dir,
    onResult: (r) => results.push(r),
    log: (level, message) => log.push(`${level}: ${message}`),
  });
  return { writer, results, log, setDir: (d: string) => (dir = d) };
}

Deno.test("a burst of changes to one file is coalesced: the first and the latest are written", async () => {
  const dir = Deno.makeTempDirSync({ prefix: "ggaoed-writer-" });
  const { writer, results } = setup(dir);
  try {
    for (let seq = 1; seq <= 200; seq++) {
      writer.submit("d", StateKind.RESERVE, seq, encodeMacListFile([seq]));
    }
    assert.deepEqual(await writer.waitDurable("d", StateKind.RESERVE, 200), { ok: true });
    assert.deepEqual(results.map((r) => [r.seq, r.ok]), [[1, true], [200, true]]);
    assert.deepEqual(decodeMacListFile(Deno.readFileSync(`${dir}/d.reserve`)), [200]);
    // Already durable: answered at once, nothing written.
    assert.deepEqual(await writer.waitDurable("d", StateKind.RESERVE, 150), { ok: true });
    assert.equal(results.length, 2);
  } finally {
    await writer.close();
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("a device's writes are rate-bounded under a steady stream of changes; devices do not wait for each other", async () => {
  const dir = Deno.makeTempDirSync({ prefix: "ggaoed-writer-" });
  const { writer, results } = setup(dir);
  try {
    const t0 = performance.now();
    let seq = 0;
    while (performance.now() - t0 < 300 || seq < 150) {
      writer.submit("a", StateKind.CONFIG, ++seq, new Uint8Array(1032));
      writer.submit(`other${seq % 3}`, StateKind.CONFIG, seq, new Uint8Array(1032));
      await new Promise((r) => setTimeout(r, 1));
    }
    assert.deepEqual(await writer.waitDurable("a", StateKind.CONFIG, seq), { ok: true });
    const elapsed = performance.now() - t0;
    const writesOfA = results.filter((r) => r.device === "a").length;
    assert.ok(seq > 100, `only ${seq} changes were made`);
    assert.ok(
      writesOfA <= Math.ceil(elapsed / MIN_INTERVAL_MS) + 1,
      `${writesOfA} writes in ${elapsed.toFixed(0)} ms for ${seq} changes`,
    );
    for (const other of ["other0", "other1", "other2"]) {
      assert.ok(results.some((r) => r.device === other && r.ok), `${other} was written`);
    }
  } finally {
    await writer.close();
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("a failed write is reported with its reason, logged once, and retried until it works", async () => {
  const base = Deno.makeTempDirSync({ prefix: "ggaoed-writer-" });
  const { writer, results, log, setDir } = setup(`${base}/missing`);
  try {
    writer.submit("d", StateKind.MAC_MASK, 1, encodeMacListFile([5]));
    const first = await writer.waitDurable("d", StateKind.MAC_MASK, 1);
    assert.equal(first.ok, false);
    assert.match(first.message!, /cannot write .*missing\/d\.mac_mask/);
    assert.equal(writer.latest("d", StateKind.MAC_MASK)?.length, 2048, "kept for the retry");
    // A newer change replaces the pending contents; a waiter starts the retry at once.
    writer.submit("d", StateKind.MAC_MASK, 2, encodeMacListFile([6]));
    Deno.mkdirSync(`${base}/missing`);
    setDir(`${base}/missing`);
    assert.deepEqual(await writer.waitDurable("d", StateKind.MAC_MASK, 2), { ok: true });
    assert.deepEqual(decodeMacListFile(Deno.readFileSync(`${base}/missing/d.mac_mask`)), [6]);
    assert.equal(writer.latest("d", StateKind.MAC_MASK), null);
    assert.equal(log.filter((l) => l.startsWith("error")).length, 1, log.join("\n"));
    assert.equal(log.filter((l) => /written again/.test(l)).length, 1, log.join("\n"));
    assert.deepEqual(results.map((r) => [r.seq, r.ok]), [[1, false], [2, true]]);
  } finally {
    await writer.close();
    Deno.removeSync(base, { recursive: true });
  }
});

Deno.test("a device with its own sink (an RBD image's metadata) is written there, with the same coalescing, outcomes and retries", async () => {
  const dir = Deno.makeTempDirSync({ prefix: "ggaoed-writer-" });
  const { writer, results, log } = setup(dir);
  const written: [StateKind, number[]][] = [];
  let failNext = 1;
  const gate = { release: null as (() => void) | null };
  const open = async () => {
    while (!gate.release) await new Promise((r) => setTimeout(r, 1));
    gate.release();
    gate.release = null;
  };
  writer.setSink("rbd", {
    describe: (kind) => `rbd:rbd/x metadata ggaoed.${kind}`,
    write: async (kind, bytes) => {
      await new Promise<void>((r) => gate.release = r);
      if (failNext-- > 0) throw new Error("ETIMEDOUT");
      written.push([kind, decodeMacListFile(bytes) as number[]]);
    },
  });
  try {
    writer.submit("rbd", StateKind.RESERVE, 1, encodeMacListFile([1]));
    assert.equal(writer.busy("rbd", StateKind.RESERVE), true);
    assert.equal(writer.busy("rbd", StateKind.CONFIG), false);
    writer.submit("rbd", StateKind.RESERVE, 2, encodeMacListFile([2]));
    const first = writer.waitDurable("rbd", StateKind.RESERVE, 1);
    await open();
    const outcome = await first;
    assert.equal(outcome.ok, false);
    assert.match(outcome.message!, /^cannot write rbd:rbd\/x metadata ggaoed\.2: ETIMEDOUT$/);
    assert.match(log.join("\n"), /disk\/rbd: cannot write rbd:rbd\/x metadata ggaoed\.2/);
    // The retry writes the newest contents; the state directory stays untouched.
    const second = writer.waitDurable("rbd", StateKind.RESERVE, 2);
    await open();
    assert.deepEqual(await second, { ok: true });
    assert.deepEqual(written, [[StateKind.RESERVE, [2]]]);
    assert.equal(writer.durableSeq("rbd", StateKind.RESERVE), 2);
    assert.equal(writer.busy("rbd", StateKind.RESERVE), false);
    assert.deepEqual(results.map((r) => [r.seq, r.ok]), [[1, false], [2, true]]);
    assert.deepEqual([...Deno.readDirSync(dir)], []);
    // Without the sink, the device's state goes to its files again.
    writer.setSink("rbd", null);
    writer.submit("rbd", StateKind.RESERVE, 3, encodeMacListFile([3]));
    assert.deepEqual(await writer.waitDurable("rbd", StateKind.RESERVE, 3), { ok: true });
    assert.deepEqual(decodeMacListFile(Deno.readFileSync(`${dir}/rbd.reserve`)), [3]);
  } finally {
    await writer.close();
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("close writes what is pending at once, without waiting for the rate bound", async () => {
  const dir = Deno.makeTempDirSync({ prefix: "ggaoed-writer-" });
  const { writer, results } = setup(dir);
  try {
    writer.submit("d", StateKind.CONFIG, 1, new Uint8Array(1032));
    writer.submit("d", StateKind.RESERVE, 1, encodeMacListFile([7])); // waits for the bound
    writer.submit("e", StateKind.RESERVE, 3, encodeMacListFile([8]));
    await writer.close();
    assertEquals(results.filter((r) => r.ok).length, 3);
    assertEquals(decodeMacListFile(Deno.readFileSync(`${dir}/d.reserve`)), [7]);
    assertEquals(decodeMacListFile(Deno.readFileSync(`${dir}/e.reserve`)), [8]);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});
