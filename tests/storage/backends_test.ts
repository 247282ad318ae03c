/**
 * The storage backends through their interface (src/storage/backend.ts), on real files: the
 * registry's choice, the buffered backend's completion order (mapped reads finished in one batch
 * per turn, writes held behind them), and kernel AIO's submit, eventfd and reap.
 */

import assert from "node:assert/strict";
import { Epoll, EPOLLIN, EventFd, Memory } from "../../ffi/mod.ts";
import { parseConfigText } from "../../src/config/load.ts";
import type { DeviceConfig } from "../../src/config/types.ts";
import type { Backend } from "../../src/storage/backend.ts";
import { backendFor } from "../../src/storage/registry.ts";

// A disk file system: tmpfs has no O_DIRECT before Linux 6.6.
const DIR = "/var/tmp";
const SIZE = 1024 * 1024;
const OPTIONS = { kernelRelease: "6.1", hostname: "storage1" };

function fill(bytes: Uint8Array, seed: number): Uint8Array {
  for (let i = 0; i < bytes.length; i++) bytes[i] = (seed * 131 + i * 7 + (i >> 9)) & 0xff;
  return bytes;
}

/** The devices of a configuration naming `file` (buffered and O_DIRECT) and an RBD image. */
function configs(file: string, state: string): Map<string, DeviceConfig> {
  const c = parseConfigText(
    `[defaults]
state-directory = "${state}"

[devices.buffered]
path = "${file}"
shelf = 1
slot = 1
direct-io = false

[devices.direct]
path = "${file}"
shelf = 1
slot = 2
direct-io = true

[devices.image]
path = "rbd:rbd/vm-disk-1"
shelf = 1
slot = 3
`,
    "test.conf",
    OPTIONS,
  );
  return new Map(c.devices.map((d) => [d.name, d]));
}

/** A file of SIZE bytes of pattern 1, a state directory, and the devices naming it. */
async function withFile(
  fn: (file: string, devices: Map<string, DeviceConfig>) => Promise<void> | void,
): Promise<void> {
  const dir = await Deno.makeTempDir({ dir: DIR, prefix: "ggaoed-backends-" });
  try {
    const file = `${dir}/image`;
    await Deno.writeFile(file, fill(new Uint8Array(SIZE), 1));
    await fn(file, configs(file, dir));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Opens `config`'s backend as a device would; completions of a synchronous one are logged. */
function open(config: DeviceConfig, events: EventFd, finished: [number, number][]): Backend {
  const backend = backendFor(config).open({
    config,
    previous: null,
    loan: null,
    release: () => assert.fail("a file is not lent"),
    io: { slots: 8, events, finish: (slot, result) => finished.push([slot, result]) },
  });
  backend.setExportEnd(backend.size);
  return backend;
}

function fileBytes(file: string, offset: number, length: number): Uint8Array {
  const f = Deno.openSync(file);
  try {
    const out = new Uint8Array(length);
    f.seekSync(offset, Deno.SeekMode.Start);
    let done = 0;
    while (done < length) done += f.readSync(out.subarray(done)) ?? length;
    return out;
  } finally {
    f.close();
  }
}

Deno.test("the registry picks the backend from the configuration: rbd: paths are lent by the main thread, direct-io goes through kernel AIO, the rest is buffered", async () => {
  await withFile((_file, devices) => {
    const image = backendFor(devices.get("image")!);
    assert.equal(image.name, "rbd");
    assert.equal(image.lent, true, "RBD images are opened by the main thread");
    assert.equal(backendFor(devices.get("direct")!).name, "aio");
    assert.equal(backendFor(devices.get("buffered")!).name, "buffered");
    assert.equal(backendFor(devices.get("direct")!).lent, false);
  });
});

Deno.test("buffered backend: reads out of the mapping finish in one batch, in order; a write that overlaps none is written at once and finishes after them; an overlapping one runs them first", async () => {
  await withFile((file, devices) => {
    const events = EventFd.open();
    const memory = Memory.allocate(6 * 4096);
    const finished: [number, number][] = [];
    const b = open(devices.get("buffered")!, events, finished);
    try {
      assert.deepEqual(
        [b.features.synchronous, b.features.mappedReads, b.features.direct],
        [true, true, false],
      );
      assert.equal(b.size, SIZE);
      const original = fileBytes(file, 0, 8192);
      // Slot 0: a read of two requests merged (two iovecs) at 0: queued, not finished.
      b.prepare(0, false, 0, 2);
      b.setIovec(0, 0, memory, 0, 4096);
      b.setIovec(0, 1, memory, 4096, 4096);
      b.transfer(0);
      assert.deepEqual(finished, [], "a mapped read waits for the turn's batch");
      // Slot 1: a write at 64 KiB, overlapping no queued read: on disk at once, finished later.
      fill(memory.bytes.subarray(8192, 12288), 2);
      b.prepare(1, true, 65536, 1);
      b.setIovec(1, 0, memory, 8192, 4096);
      b.transfer(1);
      assert.deepEqual(finished, [], "the write's completion is held behind the reads");
      assert.deepEqual(fileBytes(file, 65536, 4096), memory.bytes.slice(8192, 12288));
      // Slot 2: a write over the queued read: the reads run first, then it.
      fill(memory.bytes.subarray(12288, 16384), 3);
      b.prepare(2, true, 4096, 1);
      b.setIovec(2, 0, memory, 12288, 4096);
      b.transfer(2);
      assert.deepEqual(finished, [[0, 8192], [1, 4096], [2, 4096]], "finished in slot order");
      assert.deepEqual(memory.bytes.slice(0, 8192), original, "the read saw no later write");
      // Slot 3: a read of what slot 2 wrote, finished by the end of the turn.
      b.prepare(3, false, 4096, 1);
      b.setIovec(3, 0, memory, 16384, 4096);
      b.transfer(3);
      b.finishQueued();
      assert.deepEqual(finished[3], [3, 4096]);
      assert.deepEqual(memory.bytes.slice(16384, 20480), memory.bytes.slice(12288, 16384));
      // Beyond the mapping (the export ends earlier): read at once with preadv.
      b.setExportEnd(65536);
      b.prepare(4, false, 65536, 1);
      b.setIovec(4, 0, memory, 20480, 4096);
      b.transfer(4);
      assert.deepEqual(finished[4], [4, 4096], "past the mapped end: finished at once");
      assert.deepEqual(memory.bytes.slice(20480, 24576), memory.bytes.slice(8192, 12288));
      assert.equal(b.flushNow(), 0);
    } finally {
      b.close();
      memory.close();
      events.close();
    }
  });
});

Deno.test("kernel AIO backend: writes and a flush are submitted, signal the eventfd, are reaped with their slots, and read back", async () => {
  await withFile((file, devices) => {
    const events = EventFd.open();
    const epoll = Epoll.open();
    epoll.add(events.fd, EPOLLIN, 1);
    const memory = Memory.allocate(3 * 4096);
    const finished: [number, number][] = [];
    const b = open(devices.get("direct")!, events, finished);
    const reap = (count: number): Map<number, number> => {
      const results = new Map<number, number>();
      const deadline = performance.now() + 10_000;
      while (results.size < count) {
        assert.ok(performance.now() < deadline, `only ${results.size} of ${count} completions`);
        if (epoll.wait(1000) === 0) continue;
        events.drain();
        const n = b.reap(8);
        for (let i = 0; i < n; i++) results.set(b.eventSlot(i), b.eventResult(i));
      }
      return results;
    };
    try {
      assert.deepEqual([b.features.synchronous, b.features.direct], [false, true]);
      fill(memory.bytes.subarray(0, 8192), 4);
      b.prepare(5, true, 131072, 2);
      b.setIovec(5, 0, memory, 0, 4096);
      b.setIovec(5, 1, memory, 4096, 4096);
      const list = new Int32Array([5]);
      assert.equal(b.submit(list, 1), 1);
      assert.deepEqual([...reap(1)], [[5, 8192]]);
      b.prepareFlush(6);
      list[0] = 6;
      assert.equal(b.submit(list, 1), 1);
      assert.deepEqual([...reap(1)], [[6, 0]]);
      b.prepare(7, false, 135168, 1);
      b.setIovec(7, 0, memory, 8192, 4096);
      list[0] = 7;
      assert.equal(b.submit(list, 1), 1);
      assert.deepEqual([...reap(1)], [[7, 4096]]);
      assert.deepEqual(memory.bytes.slice(8192), memory.bytes.slice(4096, 8192));
      assert.deepEqual(fileBytes(file, 131072, 8192), memory.bytes.slice(0, 8192));
      assert.deepEqual(finished, [], "an asynchronous backend finishes through reap only");
    } finally {
      b.close();
      memory.close();
      epoll.close();
      events.close();
    }
  });
});
