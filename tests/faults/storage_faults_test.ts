/**
 * Storage faults: the fixtures of `storage_faults.ts` proved on their own (through the project's
 * FFI, O_DIRECT and buffered, kernel AIO, a concurrent reader), then the daemon against them
 * end to end: a file with bad sectors (EIO) and a file on a full tmpfs (ENOSPC), for
 * `direct-io = true` (O_DIRECT, kernel AIO) and `false` (preadv/pwritev).
 *
 * What the daemon must do: a read or write whose sectors the storage cannot transfer is
 * answered with an ATA error — UNC (0x40) for EIO, ABRT (0x04) for any other errno such as
 * ENOSPC — with status DRDY|ERR and no data; every other request is served and its data is
 * byte-exact; the daemon stays up and counts each error reply in `ata_err`.
 */

import { assert, assertEquals, assertThrows } from "../helpers/assert.ts";
import {
  AioContext,
  closeFd,
  EventFd,
  IOCB_CMD_PREADV,
  IOCB_CMD_PWRITEV,
  Memory,
  openStorage,
  pread,
  pwrite,
  type SysError,
} from "../../ffi/mod.ts";
import { ATA_CMD_READ_EXT, ATA_CMD_WRITE_EXT } from "../../src/protocol/constants.ts";
import { burst, type IoReply, type IoRequest } from "../helpers/burst.ts";
import type { Initiator, TargetInfo } from "../../src/initiator/mod.ts";
import {
  firstDifference,
  pattern,
  readFileRange,
  type TestTarget,
  withTarget,
} from "../../lab/target.ts";
import {
  faultfsBinary,
  isMounted,
  isNoSpace,
  withFaultyFile,
  withFillingFile,
} from "../../lab/storage_faults.ts";
import { PASSES, STOP, talliesLength, TALLY } from "./fixtures/reader_worker.ts";

const MIB = 1024 * 1024;
const SECTOR = 512;
const OPTS = { sanitizeResources: false, sanitizeOps: false };
/** A fixed retransmit timeout: a resent request answered twice would break exact counters. */
const STEADY = { adaptive: false, timeoutMs: 1000 };

const ABRT = 0x04;
const UNC = 0x40;
const DRDY = 0x40;
const DRDY_ERR = 0x41;

// ---- helpers --------------------------------------------------------------------------------

/** Writes `data` at byte `offset` of a file, from outside the fixture (the "platters"). */
function writeFileAt(path: string, offset: number, data: Uint8Array): void {
  const f = Deno.openSync(path, { write: true });
  try {
    f.seekSync(offset, Deno.SeekMode.Start);
    let done = 0;
    while (done < data.length) done += f.writeSync(data.subarray(done));
  } finally {
    f.close();
  }
}

/** Asserts `fn` throws a SysError with errno `code`. */
function assertErrno(fn: () => unknown, code: string, what: string): void {
  const e = assertThrows(fn) as SysError;
  assertEquals(e.code, code, `${what}: ${e.message}`);
}

/** Asserts two byte arrays are equal, naming the first differing sector. */
function assertBytes(actual: Uint8Array, expected: Uint8Array, what: string, firstLba = 0): void {
  const at = firstDifference(actual, expected);
  if (at >= 0) {
    throw new Error(`${what}: differs at byte ${at} (sector ${firstLba + Math.floor(at / 512)})`);
  }
}

/** An O_DIRECT-capable (page-aligned) buffer of `bytes`. */
function aligned(memory: Memory, bytes: number): Uint8Array<ArrayBuffer> {
  return memory.bytes.subarray(0, bytes);
}

type Counters = Record<string, number>;

/** `ggaoectl --json stats`: the counters of device `name`. */
async function deviceStats(t: TestTarget, name: string): Promise<Counters> {
  const r = await t.ctl("--json", "stats");
  assertEquals(r.code, 0, r.stderr);
  const device = JSON.parse(r.stdout).devices.find((d: { name: string }) => d.name === name);
  assert(device, `no device ${name} in ${r.stdout}`);
  return device.stats;
}

/** The daemon process has not exited. */
async function assertAlive(t: TestTarget): Promise<void> {
  const child = t.process;
  assert(child, "the daemon is not running");
  const exited = await Promise.race([
    child.status.then((s) => `exited with ${s.code}`),
    new Promise<null>((r) => setTimeout(() => r(null), 100)),
  ]);
  assertEquals(exited, null, "the daemon died");
}

/**
 * The daemon serving `path` as device `name` (0.1) with `directIo`, and an initiator with a
 * fixed retransmit timeout that found it.
 */
function withServed(
  directIo: boolean,
  name: string,
  path: string,
  body: (t: TestTarget, ini: Initiator, disk: TargetInfo) => Promise<void>,
): Promise<void> {
  return withTarget({ directIo, devices: [{ name, path }] }, async (t) => {
    const ini = t.initiator(STEADY);
    await body(t, ini, ini.find(0, 1, { waitMs: 3000 }));
  });
}

/** Requests of `per` sectors covering sectors [first, first + sectors). */
function requestsOver(first: number, sectors: number, per: number, data?: Uint8Array) {
  const out: IoRequest[] = [];
  for (let lba = first; lba < first + sectors; lba += per) {
    const count = Math.min(per, first + sectors - lba);
    const at = (lba - first) * SECTOR;
    out.push({ lba, count, data: data?.subarray(at, at + count * SECTOR) });
  }
  return out;
}

/** Whether sectors [lba, lba + count) overlap any of `bad`. */
function touches(r: { lba: number; count: number }, bad: { sector: number; count: number }[]) {
  return bad.some((b) => r.lba < b.sector + b.count && r.lba + r.count > b.sector);
}

/** An ATA reply is `error` with status DRDY|ERR and no data beyond zero padding. */
function assertAtaError(r: IoReply, error: number, what: string): void {
  assertEquals(
    [r.status.toString(16), r.error.toString(16)],
    [DRDY_ERR.toString(16), error.toString(16)],
    `${what}: status/error`,
  );
  assert(r.data.length <= 24 && r.data.every((b) => b === 0), `${what}: data after an ATA error`);
}

/** An ATA reply is a success (status DRDY, error 0). */
function assertServed(r: IoReply, what: string): void {
  assertEquals(
    [r.status.toString(16), r.error.toString(16)],
    [DRDY.toString(16), "0"],
    `${what}: status/error`,
  );
}

// ---- the FUSE fixture on its own ------------------------------------------------------------

for (const direct of [true, false]) {
  Deno.test({
    name: `faulty file (${
      direct ? "O_DIRECT" : "buffered"
    }): reads and writes touching a bad range fail with EIO as a whole, every other byte passes through`,
    ...OPTS,
    fn: () =>
      withFaultyFile({ sizeBytes: MIB, bad: [{ sector: 8, count: 2 }] }, (f) => {
        const image = pattern(MIB, 1);
        writeFileAt(f.imagePath, 0, image);
        const s = openStorage(f.path, { readOnly: false, direct, exclusive: false });
        const memory = Memory.allocate(8 * SECTOR);
        try {
          assertEquals(s.size, MIB);
          const one = aligned(memory, SECTOR);
          pread(s.fd, one, 7 * SECTOR);
          assertBytes(one, image.subarray(7 * SECTOR, 8 * SECTOR), "sector 7");
          pread(s.fd, one, 10 * SECTOR);
          assertBytes(one, image.subarray(10 * SECTOR, 11 * SECTOR), "sector 10");
          assertErrno(() => pread(s.fd, one, 8 * SECTOR), "EIO", "read of sector 8");
          assertErrno(() => pread(s.fd, one, 9 * SECTOR), "EIO", "read of sector 9");
          // Four sectors, one of them bad: the whole request fails.
          assertErrno(
            () => pread(s.fd, aligned(memory, 4 * SECTOR), 6 * SECTOR),
            "EIO",
            "read of sectors 6..9",
          );
          // Writes: the bad sector refuses and keeps its bytes, the next one takes them.
          const data = pattern(2 * SECTOR, 2, 9);
          const two = aligned(memory, 2 * SECTOR);
          two.set(data);
          assertErrno(() => pwrite(s.fd, two, 9 * SECTOR), "EIO", "write of sectors 9..10");
          assertBytes(readFileRange(f.imagePath, 0, MIB), image, "image after a failed write");
          one.set(data.subarray(SECTOR));
          assertEquals(pwrite(s.fd, one, 10 * SECTOR), SECTOR);
          image.set(data.subarray(SECTOR), 10 * SECTOR);
          assertBytes(readFileRange(f.imagePath, 0, MIB), image, "image after a good write");

          const c = f.counters();
          assertEquals([c.readErrors, c.writeErrors], [3, 1]);
          assertEquals([c.opens, c.directOpens], [1, direct ? 1 : 0]);
          assertEquals(c.bytesWritten, SECTOR);
          assertEquals(c.imageErrors, 0);
          assertEquals(c.bad, [{ sector: 8, count: 2, read: true, write: true }]);

          // One direction only.
          f.setBad([{ sector: 20, count: 1 }], { read: true, write: false });
          assertErrno(() => pread(s.fd, one, 20 * SECTOR), "EIO", "read-bad sector 20");
          assertEquals(pwrite(s.fd, one, 20 * SECTOR), SECTOR);
          pread(s.fd, one, 8 * SECTOR); // the old range is gone
          f.setBad([{ sector: 20, count: 1 }], { read: false, write: true });
          assertErrno(() => pwrite(s.fd, one, 20 * SECTOR), "EIO", "write-bad sector 20");
          pread(s.fd, one, 20 * SECTOR);
          f.resetCounters();
          assertEquals(f.counters().readErrors + f.counters().writeErrors, 0);
          assertEquals(f.counters().bad.length, 1, "reset keeps the ranges");
        } finally {
          memory.close();
          closeFd(s.fd);
        }
      }),
  });
}

Deno.test({
  name:
    "faulty file: setDelay holds every read that long, setDelay(0) releases the reads held, and the `delayed` gauge counts the requests held now",
  ...OPTS,
  fn: () =>
    withFaultyFile({ sizeBytes: MIB }, async (f) => {
      assertEquals(f.counters().delayed, 0);
      f.setDelay(1000);
      const file = await Deno.open(f.path, { read: true });
      try {
        const started = performance.now();
        const reading = file.read(new Uint8Array(SECTOR)); // on a blocking thread: we go on
        const deadline = started + 30_000;
        while (f.counters().delayed !== 1) {
          assert(performance.now() < deadline, "the read was never held");
          await new Promise((r) => setTimeout(r, 10));
        }
        assertEquals(await reading, SECTOR);
        const took = performance.now() - started;
        assert(took >= 1000, `the read took ${took.toFixed(0)} ms`);
        assertEquals(f.counters().delayed, 0);
        // Held for as long as the test likes: a read under a delay of ten minutes stays held
        // until setDelay(0) releases it.
        f.setDelay(600_000);
        let done = false;
        const held = file.read(new Uint8Array(SECTOR)).then((n) => (done = true, n));
        while (f.counters().delayed !== 1) {
          assert(performance.now() < deadline + 30_000, "the second read was never held");
          await new Promise((r) => setTimeout(r, 10));
        }
        assert(!done, "a held read completed");
        f.setDelay(0);
        let timer: ReturnType<typeof setTimeout> | undefined;
        const late = new Promise<string>((r) => timer = setTimeout(() => r("still held"), 30_000));
        assertEquals(await Promise.race([held, late]), SECTOR, "setDelay(0) released no read");
        clearTimeout(timer);
        assertEquals(f.counters().delayed, 0);
      } finally {
        file.close();
        f.setDelay(0);
      }
    }),
});

Deno.test({
  name:
    "faulty file: kernel AIO on an O_DIRECT descriptor completes with -EIO on a bad sector and with the bytes elsewhere",
  ...OPTS,
  fn: () =>
    withFaultyFile({ sizeBytes: MIB, bad: [{ sector: 100, count: 1 }] }, async (f) => {
      const image = pattern(MIB, 3);
      writeFileAt(f.imagePath, 0, image);
      const s = openStorage(f.path, { readOnly: false, direct: true, exclusive: false });
      const events = EventFd.open();
      const aio = AioContext.open(8, events);
      const memory = Memory.allocate(4 * 4096);
      try {
        // Slot 0: read sector 99 (good); slot 1: sectors 99..100 (bad); slot 2: write sector 100;
        // slot 3: write sector 101 (good).
        const plan: [number, number, number, number][] = [
          [IOCB_CMD_PREADV, 99, 1, 0],
          [IOCB_CMD_PREADV, 99, 2, 4096],
          [IOCB_CMD_PWRITEV, 100, 1, 8192],
          [IOCB_CMD_PWRITEV, 101, 1, 12288],
        ];
        memory.bytes.set(pattern(SECTOR, 4, 100), 8192);
        memory.bytes.set(pattern(SECTOR, 4, 101), 12288);
        plan.forEach(([op, lba, count, at], slot) => {
          aio.prepareVector(slot, op, s.fd, lba * SECTOR, 1);
          aio.setIovec(slot, 0, memory, at, count * SECTOR);
        });
        assertEquals(aio.submit(Int32Array.from([0, 1, 2, 3]), 4), 4);
        const results = new Map<number, number>();
        const deadline = performance.now() + 5000;
        while (results.size < 4 && performance.now() < deadline) {
          const n = aio.reap();
          for (let i = 0; i < n; i++) results.set(aio.eventSlot(i), aio.eventResult(i));
          if (n === 0) await new Promise((r) => setTimeout(r, 2));
        }
        assertEquals([0, 1, 2, 3].map((slot) => results.get(slot)), [SECTOR, -5, -5, SECTOR]);
        assertBytes(
          memory.bytes.subarray(0, SECTOR),
          image.subarray(99 * SECTOR, 100 * SECTOR),
          "99",
        );
        image.set(pattern(SECTOR, 4, 101), 101 * SECTOR);
        assertBytes(readFileRange(f.imagePath, 0, MIB), image, "image");
        assertEquals([f.counters().readErrors, f.counters().writeErrors], [1, 1]);
      } finally {
        aio.close();
        events.close();
        memory.close();
        closeFd(s.fd);
      }
    }),
});

for (const direct of [true, false]) {
  Deno.test({
    name: `faulty file (${
      direct ? "O_DIRECT" : "buffered"
    }): a fault set while a reader runs fails its next reads of that sector only, and clearing it heals them`,
    ...OPTS,
    fn: () =>
      withFaultyFile({ sizeBytes: 256 * 1024 }, async (f) => {
        const chunk = 4096;
        const chunks = 64;
        const image = pattern(chunks * chunk, 5);
        writeFileAt(f.imagePath, 0, image);
        const tallies = new Int32Array(new SharedArrayBuffer(4 * talliesLength(chunks)));
        const at = (c: number, outcome: number) => Atomics.load(tallies, TALLY + 4 * c + outcome);
        const waitFor = async (what: string, ok: () => boolean) => {
          const deadline = performance.now() + 10000;
          while (!ok()) {
            if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
            await new Promise((r) => setTimeout(r, 5));
          }
        };
        const worker = new Worker(new URL("./fixtures/reader_worker.ts", import.meta.url), {
          type: "module",
        });
        const messages: string[] = [];
        worker.onmessage = (e) => messages.push(e.data);
        try {
          worker.postMessage({
            path: f.path,
            direct,
            chunkBytes: chunk,
            expected: image,
            shared: tallies.buffer,
          });
          await waitFor("two passes", () => Atomics.load(tallies, PASSES) >= 2);
          // Sector 200 is in chunk 25 (sectors 200..207).
          f.setBad([{ sector: 200, count: 1 }]);
          const passesAtSet = Atomics.load(tallies, PASSES);
          await waitFor("EIO on chunk 25", () => at(25, 1) >= 3);
          const okBefore = at(25, 0);
          f.setBad([]);
          const eioAtClear = at(25, 1);
          await waitFor("chunk 25 served again", () => at(25, 0) >= okBefore + 3);
          await waitFor("another pass", () => Atomics.load(tallies, PASSES) > passesAtSet + 5);
          Atomics.store(tallies, STOP, 1);
          await waitFor("the reader to stop", () => messages.length >= 2);
          assertEquals(messages, ["started", "stopped"]);
          // At most one read of chunk 25 was in flight when the fault was cleared.
          assert(at(25, 1) - eioAtClear <= 1, `EIO after clearing: ${at(25, 1) - eioAtClear}`);
          for (let c = 0; c < chunks; c++) {
            assertEquals([at(c, 2), at(c, 3)], [0, 0], `chunk ${c}: other errors, wrong data`);
            if (c !== 25) assertEquals(at(c, 1), 0, `chunk ${c}: EIO`);
            assert(at(c, 0) >= 5, `chunk ${c}: only ${at(c, 0)} good reads`);
          }
          assertEquals(f.counters().readErrors, at(25, 1));
        } finally {
          Atomics.store(tallies, STOP, 1);
          worker.terminate();
        }
      }),
  });
}

Deno.test({
  name:
    "faulty file with the page cache on: a sector read once is served from memory and a later fault stays hidden (why the fixture defaults to direct_io)",
  ...OPTS,
  fn: async () => {
    for (const pageCache of [true, false]) {
      await withFaultyFile({ sizeBytes: MIB, pageCache }, (f) => {
        const s = openStorage(f.path, { readOnly: true, direct: false, exclusive: false });
        try {
          const buffer = new Uint8Array(SECTOR);
          pread(s.fd, buffer, 0);
          const reads = f.counters().reads;
          f.setBad([{ sector: 0, count: 1 }]);
          if (pageCache) {
            pread(s.fd, buffer, 0);
            assertEquals(f.counters().reads, reads, "the cached read reached the fixture");
            assertEquals(f.counters().readErrors, 0);
          } else {
            assertErrno(() => pread(s.fd, buffer, 0), "EIO", "uncached read of a bad sector");
            assertEquals(f.counters().readErrors, 1);
          }
        } finally {
          closeFd(s.fd);
        }
      });
    }
  },
});

Deno.test({
  name:
    "the fixtures start in bounded time and leave no process, mount or directory behind, also when the body throws",
  ...OPTS,
  fn: async () => {
    let seen: { pid: number; mountpoint: string; dir: string; startupMs: number } | null = null;
    const boom = new Error("the body failed");
    const caught = await withFaultyFile({ sizeBytes: MIB }, (f) => {
      seen = {
        pid: f.pid,
        mountpoint: f.mountpoint,
        dir: f.imagePath.replace(/\/image$/, ""),
        startupMs: f.startupMs,
      };
      assert(isMounted(f.mountpoint));
      return Promise.reject(boom);
    }).catch((e) => e);
    assertEquals(caught, boom);
    const s = seen!;
    console.log(`faultfs mounted in ${s.startupMs.toFixed(1)} ms`);
    assert(s.startupMs < 5000, `faultfs took ${s.startupMs} ms to mount`);
    assertEquals(isMounted(s.mountpoint), false);
    assertThrows(() => Deno.statSync(s.dir));
    assertThrows(() => Deno.statSync(`/proc/${s.pid}/status`));

    let tmpfs = "";
    const caught2 = await withFillingFile({ tmpfsBytes: 65536, fileBytes: MIB }, (f) => {
      tmpfs = f.mountpoint;
      assert(isMounted(tmpfs));
      return Promise.reject(boom);
    }).catch((e) => e);
    assertEquals(caught2, boom);
    assertEquals(isMounted(tmpfs), false);
    assertThrows(() => Deno.statSync(tmpfs));
  },
});

Deno.test({
  name:
    "the FUSE process unmounts and exits by itself when its parent dies (a killed test runner leaves no mount behind)",
  ...OPTS,
  fn: async () => {
    const binary = await faultfsBinary();
    const dir = Deno.makeTempDirSync({ dir: "/var/tmp", prefix: "ggaoed-faultfs-orphan-" });
    Deno.mkdirSync(`${dir}/mnt`);
    Deno.writeFileSync(`${dir}/image`, new Uint8Array(MIB));
    // A shell stands in for the test runner: the fixture is its child, then it is killed.
    const parent = new Deno.Command("bash", {
      args: ["-c", `"$0" "$1" "$2" -f & wait`, binary, `${dir}/image`, `${dir}/mnt`],
      stdin: "null",
      stdout: "piped",
      stderr: "null",
    }).spawn();
    let pid = 0;
    try {
      const reader = parent.stdout.getReader();
      const first = new TextDecoder().decode((await reader.read()).value);
      reader.releaseLock();
      pid = Number(/ready, pid (\d+)/.exec(first)?.[1]);
      assert(pid > 0, `no ready line: ${first}`);
      assert(isMounted(`${dir}/mnt`));
      parent.kill("SIGKILL");
      await parent.status;
      const deadline = performance.now() + 5000;
      while (isMounted(`${dir}/mnt`) && performance.now() < deadline) {
        await new Promise((r) => setTimeout(r, 20));
      }
      assertEquals(isMounted(`${dir}/mnt`), false, "still mounted after the parent died");
      while (alive(pid) && performance.now() < deadline) {
        await new Promise((r) => setTimeout(r, 20));
      }
      assertEquals(alive(pid), false, "the FUSE process outlived its parent");
    } finally {
      if (pid > 0 && alive(pid)) Deno.kill(pid, "SIGKILL");
      if (isMounted(`${dir}/mnt`)) {
        await new Deno.Command("umount", { args: ["-l", `${dir}/mnt`] }).output();
      }
      await parent.stdout.cancel().catch(() => {});
      Deno.removeSync(dir, { recursive: true });
    }
  },
});

/** Whether process `pid` exists (and is not a zombie). */
function alive(pid: number): boolean {
  try {
    return !/^State:\s+Z/m.test(Deno.readTextFileSync(`/proc/${pid}/status`));
  } catch {
    return false;
  }
}

// ---- the filling tmpfs on its own -----------------------------------------------------------

for (const direct of [true, false]) {
  Deno.test({
    name: `filling file (${
      direct ? "O_DIRECT" : "buffered"
    }): once the tmpfs is full, writes into holes fail with ENOSPC, writes over written pages succeed, and freeing space heals it`,
    ...OPTS,
    fn: () =>
      withFillingFile({ tmpfsBytes: 64 * 1024, fileBytes: 4 * MIB }, (f) => {
        const s = openStorage(f.path, { readOnly: false, direct, exclusive: false });
        const memory = Memory.allocate(4096);
        const page = aligned(memory, 4096);
        try {
          assertEquals(s.size, 4 * MIB);
          page.set(pattern(4096, 6));
          assertEquals(pwrite(s.fd, page, 0), 4096);
          assertEquals(f.allocatedBytes(), 4096);
          const claimed = f.fill();
          assertEquals(f.usage().free, 0, `the tmpfs is full (filler took ${claimed} bytes)`);
          assertErrno(() => pwrite(s.fd, page, MIB), "ENOSPC", "write into a hole");
          page.set(pattern(4096, 7));
          assertEquals(pwrite(s.fd, page, 0), 4096, "write over an allocated page");
          const back = aligned(memory, 4096);
          pread(s.fd, back, 0);
          assertBytes(back, pattern(4096, 7), "page 0");
          assertEquals(f.allocatedBytes(), 4096, "the failed write allocated nothing");
          assertEquals(f.free(4096), 4096);
          page.set(pattern(4096, 8));
          assertEquals(pwrite(s.fd, page, MIB), 4096, "write into a hole after freeing a page");
          assertErrno(() => pwrite(s.fd, page, 2 * MIB), "ENOSPC", "the next hole");
          f.free();
          assert(f.usage().free >= 64 * 1024 - 2 * 4096, JSON.stringify(f.usage()));
          assertBytes(readFileRange(f.path, MIB, 4096), pattern(4096, 8), "page at 1 MiB");
        } finally {
          memory.close();
          closeFd(s.fd);
        }
        // Deno's own file API sees the same ENOSPC.
        f.fill();
        const file = Deno.openSync(f.path, { write: true });
        try {
          file.seekSync(3 * MIB, Deno.SeekMode.Start);
          assert(isNoSpace(assertThrows(() => file.writeSync(new Uint8Array(512)))));
        } finally {
          file.close();
        }
      }),
  });
}

// ---- the daemon against a file with bad sectors ---------------------------------------------

for (const directIo of [true, false]) {
  Deno.test({
    name:
      `direct-io = ${directIo}: reads and writes touching bad sectors answer ATA UNC and write nothing; every other request is served byte-exact; faults change at run time; ata_err counts them`,
    ...OPTS,
    fn: () =>
      withFaultyFile({ sizeBytes: MIB }, (f) => {
        const image = pattern(MIB, 10);
        writeFileAt(f.imagePath, 0, image);
        return withServed(directIo, "bad", f.path, async (t, ini, disk) => {
          assertEquals(f.counters().directOpens > 0, directIo, "O_DIRECT open as configured");
          f.setBad([{ sector: 100, count: 2 }]);
          const before = await deviceStats(t, "bad");
          const faultBefore = f.counters();
          const read = (lba: number, count: number) =>
            ini.ata(disk, { cmd: ATA_CMD_READ_EXT, lba, count });
          const write = (lba: number, data: Uint8Array) =>
            ini.ata(disk, { cmd: ATA_CMD_WRITE_EXT, lba, count: data.length / SECTOR, data });
          let errors = 0;
          const expectUnc = (r: IoReply, what: string) => {
            assertAtaError(r, UNC, what);
            errors++;
          };
          const expectData = (r: IoReply, lba: number, count: number, what: string) => {
            assertServed(r, what);
            assertBytes(
              r.data.subarray(0, count * SECTOR),
              image.subarray(lba * SECTOR, (lba + count) * SECTOR),
              what,
              lba,
            );
          };
          expectUnc(read(99, 2), "read 99..100");
          expectUnc(read(100, 1), "read 100");
          expectUnc(read(101, 2), "read 101..102");
          expectData(read(98, 2), 98, 2, "read 98..99");
          expectData(read(102, 2), 102, 2, "read 102..103");
          const fresh = pattern(2 * SECTOR, 11, 99);
          expectUnc(write(99, fresh), "write 99..100");
          expectUnc(write(101, fresh), "write 101..102");
          assertBytes(readFileRange(f.imagePath, 0, MIB), image, "image after failed writes");
          assertServed(write(97, fresh), "write 97..98");
          image.set(fresh, 97 * SECTOR);
          assertBytes(readFileRange(f.imagePath, 0, MIB), image, "image after a good write");
          expectData(read(96, 2), 96, 2, "read 96..97");
          expectData(read(98, 1), 98, 1, "read 98");

          // Write-only faults: reads of the sector are served, writes are not.
          f.setBad([{ sector: 300, count: 1 }], { read: false, write: true });
          expectData(read(300, 1), 300, 1, "read of a write-bad sector");
          expectUnc(write(300, fresh.subarray(0, SECTOR)), "write of a write-bad sector");
          expectData(read(100, 2), 100, 2, "read 100..101 after the range was replaced");
          // Injected and cleared at run time, on the file the daemon holds open.
          f.setBad([{ sector: 500, count: 1 }], { read: true, write: false });
          expectUnc(read(500, 1), "read 500 with the fault injected");
          f.setBad([]);
          expectData(read(500, 1), 500, 1, "read 500 after the fault was cleared");
          assertServed(write(300, fresh.subarray(0, SECTOR)), "write 300 healed");
          image.set(fresh.subarray(0, SECTOR), 300 * SECTOR);
          assertBytes(readFileRange(f.imagePath, 0, MIB), image, "image at the end");

          const after = await deviceStats(t, "bad");
          const fault = f.counters();
          assertEquals(errors, 7);
          assertEquals(after.ata_err - before.ata_err, errors, "ata_err");
          assertEquals(
            fault.readErrors - faultBefore.readErrors + fault.writeErrors -
              faultBefore.writeErrors,
            errors,
            "every UNC came from a fault the fixture injected",
          );
          // FLUSH CACHE reaches the storage (an fsync the fixture counts).
          const fsyncs = fault.fsyncs;
          assertEquals(ini.flush(disk), DRDY);
          assert(f.counters().fsyncs > fsyncs, "FLUSH did not sync the file");
          assertEquals(ini.identify(disk).sectors, 2048, "IDENTIFY still answers");
          await assertAlive(t);
        });
      }),
  });
}

for (const directIo of [true, false]) {
  Deno.test({
    name:
      `direct-io = ${directIo}: under a burst of contiguous requests (merged by the daemon), only the requests touching a bad sector answer UNC; the others are served byte-exact, also with faults set and cleared mid-burst`,
    // The daemon merges contiguous requests into one vectored I/O; when that fails (EIO) or
    // comes back short, it redoes the requests one by one (src/engine/device.ts #finishSlot),
    // so only the requests that really touch a bad sector get UNC.
    ...OPTS,
    fn: () =>
      withFaultyFile({ sizeBytes: MIB }, (f) => {
        let image = pattern(MIB, 20);
        writeFileAt(f.imagePath, 0, image);
        return withServed(directIo, "bad", f.path, async (t, ini, disk) => {
          const per = ini.maxSectors(disk);
          const before = await deviceStats(t, "bad");
          let errors = 0;
          /** Checks a burst's replies; `maybe` requests may go either way (raced a toggle). */
          const check = (
            what: string,
            requests: IoRequest[],
            replies: IoReply[],
            bad: { sector: number; count: number }[],
            maybe: { sector: number; count: number }[] = [],
          ) => {
            replies.forEach((r, i) => {
              const q = requests[i];
              const label = `${what}: request ${i} (LBA ${q.lba}, ${q.count})`;
              if (touches(q, bad) || (touches(q, maybe) && r.status === DRDY_ERR)) {
                assertAtaError(r, UNC, label);
                errors++;
                return;
              }
              assertServed(r, label);
              if (q.data === undefined) {
                assertBytes(
                  r.data.subarray(0, q.count * SECTOR),
                  image.subarray(q.lba * SECTOR, (q.lba + q.count) * SECTOR),
                  label,
                  q.lba,
                );
              } else image.set(q.data, q.lba * SECTOR);
            });
          };
          const reads = requestsOver(0, 256, per);
          for (let round = 0; round < 3; round++) {
            // Round 0 and 2: bad sectors 41 and 150..152; round 1: none.
            const bad = round === 1 ? [] : [{ sector: 41, count: 1 }, { sector: 150, count: 3 }];
            f.setBad(bad);
            check(`read round ${round}`, reads, burst(ini, disk, reads), bad);
            const data = pattern(256 * SECTOR, 30 + round);
            const writes = requestsOver(0, 256, per, data);
            check(`write round ${round}`, writes, burst(ini, disk, writes), bad);
            // Every sector holds what was acknowledged: the new data of each served write, the
            // old data under each failed one (the file fails a write touching a bad range as a
            // whole, so a failed write that wrote anything shows here).
            assertBytes(
              readFileRange(f.imagePath, 0, MIB),
              image,
              `image after write round ${round}`,
            );
          }
          // Set in the middle of a burst: requests sent after setBad returned must fail; clear
          // in the middle of the next: requests sent before the clear may fail.
          f.setBad([]);
          const half = reads.length / 2;
          const late = [{ sector: 200, count: 1 }];
          check(
            "read, fault set mid-burst",
            reads,
            burst(ini, disk, reads, { before: (i) => i === half && f.setBad(late) }),
            late,
          );
          const early = [{ sector: 30, count: 1 }];
          f.setBad(early);
          check(
            "read, fault cleared mid-burst",
            reads,
            burst(ini, disk, reads, { before: (i) => i === half && f.setBad([]) }),
            [],
            early,
          );
          const after = await deviceStats(t, "bad");
          assertEquals(after.ata_err - before.ata_err, errors, "ata_err");
          image = readFileRange(f.imagePath, 0, MIB);
          assertBytes(ini.read(disk, 0, 256), image.subarray(0, 256 * SECTOR), "final read-back");
          await assertAlive(t);
        });
      }),
  });
}

// ---- the daemon against a file on a full tmpfs ----------------------------------------------

for (const directIo of [true, false]) {
  Deno.test({
    name:
      `direct-io = ${directIo}: a write that hits ENOSPC answers ATA ABRT and writes nothing; writes over allocated sectors still succeed, reads are byte-exact, and freeing space heals it`,
    ...OPTS,
    fn: () =>
      withFillingFile(
        { tmpfsBytes: 256 * 1024, fileBytes: 4 * MIB },
        (f) =>
          withServed(directIo, "full", f.path, async (t, ini, disk) => {
            const write = (lba: number, data: Uint8Array) =>
              ini.ata(disk, { cmd: ATA_CMD_WRITE_EXT, lba, count: data.length / SECTOR, data });
            const read = (lba: number, count: number) =>
              ini.ata(disk, { cmd: ATA_CMD_READ_EXT, lba, count });
            const a = pattern(2 * SECTOR, 40, 0);
            const b = pattern(2 * SECTOR, 41, 64);
            assertServed(write(0, a), "write 0..1 (allocates page 0)");
            assertServed(write(64, b), "write 64..65 (allocates page 8)");
            const allocated = f.allocatedBytes();
            assertEquals(allocated, 2 * 4096);
            f.fill();
            assertEquals(f.usage().free, 0, "the tmpfs is full");
            const before = await deviceStats(t, "full");

            const hole = pattern(2 * SECTOR, 42, 16);
            assertAtaError(write(16, hole), ABRT, "write into a hole of a full tmpfs");
            assertAtaError(write(4096, hole), ABRT, "write into another hole");
            assertEquals(f.allocatedBytes(), allocated, "the failed writes allocated nothing");
            // Already allocated pages take writes.
            const a2 = pattern(2 * SECTOR, 43, 2);
            assertServed(write(2, a2), "write 2..3 (page 0, allocated)");
            const b2 = pattern(2 * SECTOR, 44, 70);
            assertServed(write(70, b2), "write 70..71 (page 8, allocated)");
            const r0 = read(0, 2);
            assertServed(r0, "read 0..1");
            assertBytes(r0.data.subarray(0, 2 * SECTOR), a, "sectors 0..1");
            const r2 = read(2, 2);
            assertBytes(r2.data.subarray(0, 2 * SECTOR), a2, "sectors 2..3");
            const r70 = read(70, 2);
            assertBytes(r70.data.subarray(0, 2 * SECTOR), b2, "sectors 70..71");
            const r16 = read(16, 2);
            assertServed(r16, "read of a hole");
            assert(r16.data.subarray(0, 2 * SECTOR).every((x) => x === 0), "a hole reads as zeros");
            const mid = await deviceStats(t, "full");
            assertEquals(mid.ata_err - before.ata_err, 2, "ata_err counts the two ABRTs");

            // Space comes back: the same write succeeds.
            f.free();
            assertServed(write(16, hole), "write into the hole after freeing space");
            assertBytes(readFileRange(f.path, 16 * SECTOR, 2 * SECTOR), hole, "sectors 16..17");
            assertBytes(readFileRange(f.path, 64 * SECTOR, 2 * SECTOR), b, "sectors 64..65");
            const after = await deviceStats(t, "full");
            assertEquals(after.ata_err - mid.ata_err, 0);
            await assertAlive(t);
          }),
      ),
  });
}

for (const directIo of [true, false]) {
  Deno.test({
    name:
      `direct-io = ${directIo}: a burst of contiguous writes over allocated pages and holes of a full tmpfs answers ABRT only for the holes; the allocated pages take their data`,
    // The daemon merges the contiguous writes into one pwritev/iocb; the kernel writes the
    // allocated page before the first hole and returns a short count, and the daemon redoes the
    // requests one by one (src/engine/device.ts #finishSlot): only the holes fail.
    ...OPTS,
    fn: () =>
      withFillingFile(
        { tmpfsBytes: 256 * 1024, fileBytes: 4 * MIB },
        (f) =>
          withServed(directIo, "full", f.path, async (t, ini, disk) => {
            const per = ini.maxSectors(disk);
            // Pages 0, 2 and 4 (sectors 0..7, 16..23, 32..39) allocated; 1 and 3 are holes.
            for (const lba of [0, 16, 32]) ini.write(disk, lba, pattern(8 * SECTOR, 50, lba));
            f.fill();
            const before = await deviceStats(t, "full");
            const data = pattern(40 * SECTOR, 51);
            const writes = requestsOver(0, 40, per, data);
            const holes = [{ sector: 8, count: 8 }, { sector: 24, count: 8 }];
            const replies = burst(ini, disk, writes);
            let errors = 0;
            const image = readFileRange(f.path, 0, 40 * SECTOR);
            replies.forEach((r, i) => {
              const q = writes[i];
              const what = `write ${i} (LBA ${q.lba}, ${q.count})`;
              if (touches(q, holes)) {
                assertAtaError(r, ABRT, what);
                errors++;
              } else {
                assertServed(r, what);
                assertBytes(
                  image.subarray(q.lba * SECTOR, (q.lba + q.count) * SECTOR),
                  q.data!,
                  `${what}: on the file`,
                  q.lba,
                );
              }
            });
            const after = await deviceStats(t, "full");
            assertEquals(after.ata_err - before.ata_err, errors);
            await assertAlive(t);
          }),
      ),
  });
}
