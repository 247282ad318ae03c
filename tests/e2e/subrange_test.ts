/**
 * File sub-range export (`offset`/`length`, vblade's -o/-l) against the real daemon: a sparse
 * file a little larger than 2^28 sectors, with a pattern before and after the exported range, so
 * that the far end of the range needs LBA48. Reads and writes inside and at both edges land where
 * they should; those that cross the end or start past it are refused with IDNF and write nothing;
 * the bytes outside the range are untouched afterwards.
 */

import { assert, assertEquals } from "../helpers/assert.ts";
import type { Initiator, TargetInfo } from "../../src/initiator/mod.ts";
import {
  ATA_CMD_READ,
  ATA_CMD_READ_EXT,
  ATA_CMD_WRITE,
  ATA_CMD_WRITE_EXT,
  ATA_ERR,
  ATA_IDNF,
  LBA28_MASK,
} from "../../src/protocol/constants.ts";
import { withLoopDevice } from "../../lab/files.ts";
import { discoverSet } from "../helpers/discovery.ts";
import { firstDifference, pattern, readFileRange, withTarget } from "../../lab/target.ts";

const OPTS = { sanitizeResources: false, sanitizeOps: false };
const S = 512;
/** Exported range: sectors [OFFSET, OFFSET + LENGTH) of the file. */
const OFFSET = 2048;
const LENGTH = 2 ** 28 + 4096;
/** Sectors of the file after the range. */
const AFTER = 2048;
/** Sectors of data kept at each end of the range (the rest of it is a hole). */
const EDGE = 64;

interface Guards {
  before: Uint8Array;
  after: Uint8Array;
}

/** Creates the sparse file: patterns before and after the range and at both ends of it. */
function makeImage(path: string): Guards {
  const f = Deno.openSync(path, { write: true, create: true, truncate: true });
  try {
    f.truncateSync((OFFSET + LENGTH + AFTER) * S);
    const put = (sector: number, bytes: Uint8Array) => {
      f.seekSync(sector * S, Deno.SeekMode.Start);
      let done = 0;
      while (done < bytes.length) done += f.writeSync(bytes.subarray(done));
    };
    const guards = {
      before: pattern(OFFSET * S, 0xbe, 0),
      after: pattern(AFTER * S, 0xaf, OFFSET + LENGTH),
    };
    put(0, guards.before);
    put(OFFSET + LENGTH, guards.after);
    put(OFFSET, pattern(EDGE * S, 0x11, 0));
    put(OFFSET + LENGTH - EDGE, pattern(EDGE * S, 0x22, LENGTH - EDGE));
    return guards;
  } finally {
    f.close();
  }
}

/** The file's bytes of exported sectors [lba, lba + count). */
function fileSectors(path: string, lba: number, count: number): Uint8Array {
  return readFileRange(path, (OFFSET + lba) * S, count * S);
}

function assertSame(actual: Uint8Array, expected: Uint8Array, what: string): void {
  const at = firstDifference(actual, expected);
  assert(at < 0, `${what}: first difference at byte ${at}`);
}

/** One ATA read or write; returns the reply (ATA errors included). */
function io(ini: Initiator, t: TargetInfo, cmd: number, lba: number, count: number, seed = 0) {
  const write = cmd === ATA_CMD_WRITE || cmd === ATA_CMD_WRITE_EXT;
  return ini.ata(t, {
    cmd,
    lba,
    count,
    data: write ? pattern(count * S, seed, lba) : undefined,
  });
}

for (const directIo of [false, true]) {
  Deno.test({
    name: `offset/length (${
      directIo ? "O_DIRECT" : "buffered"
    }): I/O inside and at the edges lands at offset + LBA, crossing the end answers IDNF, nothing outside the range changes`,
    ...OPTS,
    fn: async () => {
      const path = Deno.makeTempFileSync({ dir: "/var/tmp", prefix: "ggaoed-subrange-" });
      try {
        const guards = makeImage(path);
        await withTarget({
          directIo,
          devices: [{ name: "part", path, extra: `offset = ${OFFSET}\nlength = ${LENGTH}` }],
        }, (t) => {
          const ini = t.initiator();
          const d = ini.find(0, 1, { waitMs: 3000 });
          assert(/sectors 268439552\)/.test(t.log), "the daemon logs the exported size");

          // IDENTIFY shows the range's size: LBA48 capacity, LBA28 capacity capped.
          const id = ini.identify(d);
          assertEquals([id.sectors, id.lba28Sectors, id.lba48], [LENGTH, LBA28_MASK, true]);

          // Reads at both ends: the first sectors come from file sector OFFSET, the last ones
          // (beyond LBA28's reach) from OFFSET + LENGTH - EDGE.
          assertSame(ini.readRange(d, 0, EDGE), fileSectors(path, 0, EDGE), "first sectors");
          assertSame(ini.readRange(d, 0, EDGE), pattern(EDGE * S, 0x11, 0), "first sectors");
          const tail = ini.readRange(d, LENGTH - EDGE, EDGE);
          assertSame(tail, pattern(EDGE * S, 0x22, LENGTH - EDGE), "last sectors (LBA48)");
          const last = io(ini, d, ATA_CMD_READ_EXT, LENGTH - 1, 1);
          assertEquals(last.status & ATA_ERR, 0);
          assertSame(last.data.subarray(0, S), fileSectors(path, LENGTH - 1, 1), "last sector");

          // Writes: LBA28 at sector 0, LBA48 in the middle above 2^28, the last two sectors.
          for (
            const [cmd, lba, count] of [
              [ATA_CMD_WRITE, 0, 1],
              [ATA_CMD_WRITE_EXT, 2 ** 28 + 100, 2],
              [ATA_CMD_WRITE_EXT, LENGTH - 2, 2],
            ]
          ) {
            const r = io(ini, d, cmd, lba, count, 0x77);
            assertEquals(
              r.status & ATA_ERR,
              0,
              `write at ${lba}: status 0x${r.status.toString(16)}, error 0x${r.error.toString(16)}`,
            );
            assertSame(fileSectors(path, lba, count), pattern(count * S, 0x77, lba), `at ${lba}`);
            assertSame(ini.readRange(d, lba, count), pattern(count * S, 0x77, lba), `read ${lba}`);
          }
          // LBA28 addressing still reaches its part of the range (a READ, not READ EXT).
          const low = io(ini, d, ATA_CMD_READ, 0, 1);
          assertSame(low.data.subarray(0, S), pattern(S, 0x77, 0), "LBA28 read of sector 0");

          // Across the end, and just past it: IDNF, no data, nothing written.
          for (
            const [cmd, lba, count] of [
              [ATA_CMD_WRITE_EXT, LENGTH - 1, 2],
              [ATA_CMD_WRITE_EXT, LENGTH, 1],
              [ATA_CMD_READ_EXT, LENGTH - 1, 2],
              [ATA_CMD_READ_EXT, LENGTH, 1],
            ]
          ) {
            const r = io(ini, d, cmd, lba, count, 0x99);
            assertEquals([r.status & ATA_ERR, r.error], [ATA_ERR, ATA_IDNF], `LBA ${lba}+${count}`);
            assert(r.data.length < S && r.data.every((b) => b === 0), "no data, only padding");
          }
          assertSame(fileSectors(path, LENGTH - 2, 2), pattern(2 * S, 0x77, LENGTH - 2), "edge");
          return Promise.resolve();
        });
        // Nothing outside [OFFSET, OFFSET + LENGTH) was touched, nor the file's size.
        assertSame(readFileRange(path, 0, OFFSET * S), guards.before, "before the range");
        assertSame(
          readFileRange(path, (OFFSET + LENGTH) * S, AFTER * S),
          guards.after,
          "after the range",
        );
        assertEquals(Deno.statSync(path).size, (OFFSET + LENGTH + AFTER) * S);
      } finally {
        Deno.removeSync(path);
      }
    },
  });
}

Deno.test({
  name: "a range past the end of the file is refused at start, with the file, the sizes and a fix",
  ...OPTS,
  fn: async () => {
    const path = Deno.makeTempFileSync({ dir: "/var/tmp", prefix: "ggaoed-subrange-" });
    try {
      Deno.truncateSync(path, 1024 * S);
      await withTarget({
        waitReady: false,
        devices: [{ name: "part", path, extra: "offset = 1000\nlength = 25" }],
      }, async (t) => {
        const status = await t.process!.status;
        assertEquals(status.code, 1, t.log);
        await t.stop().catch(() => {});
        assert(
          t.log.includes(
            `devices.part.length: ${path} holds 1024 sectors of 512 bytes: offset 1000 + length 25 = 1025 is past its end`,
          ),
          t.log,
        );
        assert(t.log.includes("fix: lower offset or length (in sectors), or grow the file"), t.log);
      });
    } finally {
      Deno.removeSync(path);
    }
  },
});

Deno.test({
  name:
    "on a block device the range is checked at open: past its end, the device is not exported and the log says why",
  ...OPTS,
  fn: async () => {
    const path = Deno.makeTempFileSync({ dir: "/var/tmp", prefix: "ggaoed-subrange-" });
    try {
      Deno.truncateSync(path, 4096 * S);
      await withLoopDevice(path, async (loop) => {
        await withTarget({
          devices: [
            { name: "ok", sizeMiB: 1, slot: 1 },
            { name: "blk", path: loop, slot: 2, extra: "offset = 4000\nlength = 200" },
          ],
        }, (target) => {
          assert(
            target.log.includes(
              `disk/blk: ${loop} holds 4096 sectors of 512 bytes: offset 4000 + length 200 = 4200 is past its end (lower offset or length (in sectors), or grow the file); device not exported`,
            ),
            target.log,
          );
          const ini = target.initiator();
          assertEquals(discoverSet(ini, ["0.1"]), ["0.1"]);
          return Promise.resolve();
        });
      });
    } finally {
      Deno.removeSync(path);
    }
  },
});
