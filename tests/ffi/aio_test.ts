import assert from "node:assert/strict";
import { AioContext, IOCB_CMD_PREADV, IOCB_CMD_PWRITEV } from "../../ffi/aio.ts";
import type { AioBackend } from "../../ffi/aio.ts";
import { Errno, SysError } from "../../ffi/errno.ts";
import { Epoll, EPOLLIN, EventFd } from "../../ffi/events.ts";
import { Memory } from "../../ffi/memory.ts";
import { closeFd, openStorage, pread } from "../../ffi/storage.ts";

// A disk file system: tmpfs has no O_DIRECT before Linux 6.6.
const DIR = "/var/tmp";
const GiB = 1024 ** 3;

/** Opens `path` with O_DIRECT when the file system supports it; says so when it does not. */
function openForAio(path: string): { fd: number; direct: boolean } {
  try {
    return {
      fd: openStorage(path, { readOnly: false, direct: true, exclusive: false }).fd,
      direct: true,
    };
  } catch (e) {
    if (!(e instanceof SysError && e.code === "EINVAL")) throw e;
    console.warn(`${DIR} does not support O_DIRECT: testing AIO through the page cache`);
    return {
      fd: openStorage(path, { readOnly: false, direct: false, exclusive: false }).fd,
      direct: false,
    };
  }
}

/** Waits for the eventfd, then reaps until `count` events are in; returns slot -> result. */
function collect(aio: AioContext, epoll: Epoll, done: EventFd, count: number): Map<number, number> {
  const results = new Map<number, number>();
  const deadline = performance.now() + 5000;
  while (results.size < count) {
    assert.ok(performance.now() < deadline, `only ${results.size} of ${count} completions`);
    if (epoll.wait(1000) === 0) continue;
    assert.ok(done.drain() >= 1, "a completion signalled the eventfd");
    const n = aio.reap();
    for (let i = 0; i < n; i++) {
      assert.ok(!results.has(aio.eventSlot(i)), "each slot completes once");
      results.set(aio.eventSlot(i), aio.eventResult(i));
    }
  }
  return results;
}

function pattern(bytes: Uint8Array, seed: number): void {
  for (let i = 0; i < bytes.length; i++) bytes[i] = (seed * 131 + i * 7 + (i >> 9)) & 0xff;
}

for (const backend of ["libaio", "syscall"] as AioBackend[]) {
  Deno.test(`${backend}: vectored writes land at their offsets, signal the eventfd, and read back`, async () => {
    const path = await Deno.makeTempFile({ dir: DIR, prefix: `ggaoed-aio-${backend}-` });
    const epoll = Epoll.open();
    const done = EventFd.open();
    const memory = Memory.allocate(256 * 1024);
    const checkMemory = Memory.allocate(16384); // aligned, for pread under O_DIRECT
    const { fd } = openForAio(path);
    const aio = AioContext.open(64, done, { backend });
    try {
      assert.equal(aio.backend, backend);
      epoll.add(done.fd, EPOLLIN, 1);
      const source = memory.bytes.subarray(0, 128 * 1024);
      pattern(source, 1);
      // Four writes of four 4 KiB pieces each, gathered from the source out of order (the
      // pieces of slot s are pages 4s+3, 4s+2, 4s+1, 4s), to prove the iovecs are honoured.
      // Slot 3 goes beyond 4 GiB to prove the high half of the offset.
      const offsets = [0, 65536, 1 << 20, 5 * GiB + 8192];
      const slots = new Int32Array([0, 1, 2, 3]);
      for (let s = 0; s < 4; s++) {
        aio.prepareVector(s, IOCB_CMD_PWRITEV, fd, offsets[s], 4);
        for (let k = 0; k < 4; k++) aio.setIovec(s, k, memory, (4 * s + 3 - k) * 4096, 4096);
      }
      assert.equal(aio.submit(slots, 4), 4);
      const writes = collect(aio, epoll, done, 4);
      assert.deepEqual([...writes.keys()].sort(), [0, 1, 2, 3]);
      for (const result of writes.values()) assert.equal(result, 16384);

      // FDSYNC through AIO completes with result 0.
      aio.prepareSync(5, fd, true);
      assert.equal(aio.submit(new Int32Array([5]), 1), 1);
      assert.equal(collect(aio, epoll, done, 1).get(5), 0);

      // What pread sees is what was gathered.
      const check = checkMemory.bytes;
      for (let s = 0; s < 4; s++) {
        assert.equal(pread(fd, check, offsets[s]), 16384);
        for (let k = 0; k < 4; k++) {
          const page = (4 * s + 3 - k) * 4096;
          assert.deepEqual(
            check.subarray(k * 4096, (k + 1) * 4096),
            source.subarray(page, page + 4096),
          );
        }
      }

      // Vectored reads scatter back into other memory.
      const target = memory.bytes.subarray(128 * 1024);
      for (let s = 0; s < 2; s++) {
        aio.prepareVector(10 + s, IOCB_CMD_PREADV, fd, offsets[3 - s], 2);
        aio.setIovec(10 + s, 0, memory, 128 * 1024 + s * 16384 + 8192, 8192);
        aio.setIovec(10 + s, 1, memory, 128 * 1024 + s * 16384, 8192);
      }
      assert.equal(aio.submit(new Int32Array([10, 11]), 2), 2);
      const reads = collect(aio, epoll, done, 2);
      assert.equal(reads.get(10), 16384);
      assert.equal(reads.get(11), 16384);
      for (let s = 0; s < 2; s++) {
        assert.equal(pread(fd, check, offsets[3 - s]), 16384);
        assert.deepEqual(
          target.subarray(s * 16384 + 8192, s * 16384 + 16384),
          check.subarray(0, 8192),
        );
        assert.deepEqual(target.subarray(s * 16384, s * 16384 + 8192), check.subarray(8192, 16384));
      }
    } finally {
      aio.close();
      closeFd(fd);
      memory.close();
      checkMemory.close();
      done.close();
      epoll.close();
      await Deno.remove(path);
    }
  });

  Deno.test(`${backend}: a failed I/O completes with -errno and a bad fd throws EBADF at submit`, async () => {
    const path = await Deno.makeTempFile({ dir: DIR, prefix: `ggaoed-aio-${backend}-` });
    const epoll = Epoll.open();
    const done = EventFd.open();
    const memory = Memory.allocate(8192);
    const { fd, direct } = openForAio(path);
    const aio = AioContext.open(8, done, { backend });
    try {
      epoll.add(done.fd, EPOLLIN, 1);
      if (direct) {
        // O_DIRECT at an unaligned file offset: accepted by io_submit, failed in the event.
        aio.prepareVector(2, IOCB_CMD_PWRITEV, fd, 100, 1);
        aio.setIovec(2, 0, memory, 0, 4096);
        assert.equal(aio.submit(new Int32Array([2]), 1), 1);
        assert.equal(collect(aio, epoll, done, 1).get(2), -Errno.EINVAL);
      }
      aio.prepareVector(3, IOCB_CMD_PWRITEV, 1_000_000, 0, 1);
      aio.setIovec(3, 0, memory, 0, 4096);
      assert.throws(
        () => aio.submit(new Int32Array([3]), 1),
        (e: unknown) => e instanceof SysError && e.code === "EBADF" && e.call === "io_submit",
      );
      assert.throws(() => aio.setIovec(3, 0, memory, 4096, 8192), RangeError);
      assert.throws(() => aio.prepareVector(8, IOCB_CMD_PWRITEV, fd, 0, 1), RangeError);
    } finally {
      aio.close();
      closeFd(fd);
      memory.close();
      done.close();
      epoll.close();
      await Deno.remove(path);
    }
  });
}

Deno.test("io_setup beyond fs.aio-max-nr fails with EAGAIN and advice to raise it", () => {
  const done = EventFd.open();
  try {
    const max = Number(Deno.readTextFileSync("/proc/sys/fs/aio-max-nr").trim());
    assert.throws(
      () => AioContext.open(max + 1, done, { backend: "syscall" }),
      (e: unknown) => e instanceof SysError && e.code === "EAGAIN" && /aio-max-nr/.test(e.message),
    );
  } finally {
    done.close();
  }
});
