/**
 * Data integrity through the real daemon: every byte written over AoE is read back over AoE and
 * from the backing file outside the daemon, across the whole device (last sector included), at
 * MTU 1500 and 9000, with and without packet rings, with and without O_DIRECT, with a window of
 * 32 outstanding requests (page-cache reads going straight into TX ring frames, or through the
 * request's buffer); and LBA48 addresses beyond 2^28 sectors.
 */

import { assert, assertEquals } from "../helpers/assert.ts";
import { firstDifference, pattern, readFileRange, withTarget } from "../../lab/target.ts";
import { burst, type IoRequest } from "../helpers/burst.ts";

const SIZE = 64 * 1024 * 1024;
const SECTORS = SIZE / 512;

for (const mtu of [1500, 9000]) {
  for (const rings of [true, false]) {
    for (const directIo of [false, true]) {
      const name = `whole 64 MiB device round-trips byte-exact at MTU ${mtu}, ${
        rings ? "packet rings" : "recvfrom/sendto"
      }, ${directIo ? "O_DIRECT" : "page cache"}, window 32`;
      Deno.test({
        name,
        sanitizeResources: false,
        sanitizeOps: false,
        fn: () =>
          withTarget({ mtu, ringKiB: rings ? 4096 : 0, directIo }, async (t) => {
            const ini = t.initiator({ window: 32 });
            const disk = ini.find(0, 1, { waitMs: 5000 });
            assertEquals(disk.maxSectors, Math.floor((mtu - 36) / 512));
            assertEquals(ini.identify(disk).sectors, SECTORS);
            const seed = mtu + (rings ? 1 : 2) + (directIo ? 4 : 8);
            const data = pattern(SIZE, seed);
            ini.writeRange(disk, 0, data, { window: 32 });
            ini.flush(disk);
            const back = ini.readRange(disk, 0, SECTORS, undefined, { window: 32 });
            assertEquals(firstDifference(back, data), -1, "read back over AoE");
            const file = readFileRange(t.images.get("disk1")!, 0, SIZE);
            assertEquals(firstDifference(file, data), -1, "backing file");
            // The last sector on its own, and one past it: IDNF, nothing written.
            const last = pattern(512, seed + 1, SECTORS - 1);
            ini.write(disk, SECTORS - 1, last);
            assertEquals(firstDifference(ini.read(disk, SECTORS - 1, 1), last), -1);
            const s = await t.ctl("--json", "stats");
            assertEquals(s.code, 0, s.stderr);
            const all = JSON.parse(s.stdout);
            const dev = all.devices[0].stats;
            assertEquals(dev.ata_err, 0);
            // Contiguous requests were merged into vectored transfers, and not one of them came
            // back short or failed: a merged transfer that is redone request by request leaves
            // the data right and shows only here.
            assert(
              dev.read_cnt + dev.write_cnt > dev.io_slots,
              `nothing merged: ${JSON.stringify(dev)}`,
            );
            assertEquals(dev.io_retries, 0, JSON.stringify(dev));
            // Exact unless the initiator retransmitted (a busy host): then each resent write
            // counts again.
            if (ini.retransmits === 0) assertEquals(dev.write_bytes, SIZE + 512);
            else assert(dev.write_bytes >= SIZE + 512, `${dev.write_bytes} bytes written`);
            // Page-cache reads on a TX ring land straight in their reply frames (one copy
            // fewer); the data compared above went that way. O_DIRECT and sendto never do.
            const net = all.interfaces[0].stats;
            assertEquals(
              net.tx_in_place,
              rings && !directIo ? dev.read_cnt : 0,
              JSON.stringify(net),
            );
          }),
      });
    }
  }
}

Deno.test({
  name: "LBA48 addresses above 2^28 sectors reach the right place of a 130 GiB sparse file",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: () =>
    withTarget(
      { mtu: 9000, devices: [{ name: "big", sizeBytes: 130 * 1024 ** 3 }] },
      (t) => {
        const ini = t.initiator();
        const disk = ini.find(0, 1, { waitMs: 5000 });
        const info = ini.identify(disk);
        assertEquals(info.sectors, 130 * 1024 ** 3 / 512);
        assertEquals(info.lba48, true);
        assertEquals(info.lba28Sectors, 0x0fffffff);
        for (const lba of [2 ** 28, 2 ** 28 + 12345, info.sectors - 17]) {
          const data = pattern(17 * 512, lba, lba);
          ini.writeRange(disk, lba, data);
          assertEquals(firstDifference(ini.readRange(disk, lba, 17), data), -1, `lba ${lba}`);
          const file = readFileRange(t.images.get("big")!, lba * 512, data.length);
          assertEquals(firstDifference(file, data), -1, `file at lba ${lba}`);
        }
        return Promise.resolve();
      },
    ),
});

Deno.test({
  name: "with merge-delay the first request on an idle device waits for companions; data intact",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: () =>
    withTarget({
      mtu: 9000,
      devices: [{ name: "disk1", sizeMiB: 16, extra: "merge-delay = 0.002\nmax-delay = 0.01" }],
    }, async (t) => {
      const ini = t.initiator({ window: 32 });
      const disk = ini.find(0, 1, { waitMs: 5000 });
      const data = pattern(16 * 1024 * 1024, 4242);
      ini.writeRange(disk, 0, data, { window: 32 });
      assertEquals(firstDifference(ini.readRange(disk, 0, 32768), data), -1);
      const s = JSON.parse((await t.ctl("--json", "stats", "disk1")).stdout).devices[0].stats;
      // Requests that arrived together were merged into fewer iocbs, each done once.
      assertEquals(s.read_cnt + s.write_cnt > 2 * s.io_slots, true, JSON.stringify(s));
      assertEquals(s.io_retries, 0, JSON.stringify(s));
    }),
});

Deno.test({
  name:
    "reads and writes queued together: a read never sees a later write, replies in their own frames",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: () =>
    withTarget({ mtu: 9000, devices: [{ name: "disk1", sizeMiB: 16 }] }, async (t) => {
      // Page-cache reads are served from the file's mapping in one batch per turn, into TX
      // frames reserved in request order; writes between them go to the file at once. Each
      // round sends, back to back: a read of A then a write of A (the read must return the
      // data from before), and reads of B interleaved with writes of C (no overlap: every
      // read returns B's data, every reply leaves from its own frame, none is dropped).
      const ini = t.initiator({ window: 32 });
      const disk = ini.find(0, 1, { waitMs: 5000 });
      const SECTORS = 8; // 4 KiB requests
      const AREA = 16 * SECTORS; // sectors per area, 16 requests
      const A = 0, B = AREA, C = 2 * AREA;
      let reads = 0;
      for (let round = 0; round < 20; round++) {
        const before = pattern(3 * AREA * 512, 100 + round);
        ini.writeRange(disk, 0, before, { window: 32 });
        const after = pattern(3 * AREA * 512, 200 + round);
        const at = (lba: number, data: Uint8Array) =>
          data.subarray(lba * 512, (lba + SECTORS) * 512);
        const requests: IoRequest[] = [];
        for (let i = 0; i < 16; i++) {
          const a = A + i * SECTORS;
          requests.push({ lba: a, count: SECTORS }, { lba: a, count: SECTORS, data: at(a, after) });
        }
        for (let i = 0; i < 16; i++) {
          const b = B + i * SECTORS, c = C + i * SECTORS;
          requests.push({ lba: b, count: SECTORS }, { lba: c, count: SECTORS, data: at(c, after) });
        }
        const replies = burst(ini, disk, requests);
        requests.forEach((r, i) => {
          const what = `round ${round}, request ${i} (${r.data ? "write" : "read"} of ${r.lba})`;
          assertEquals(replies[i].status & 1, 0, `${what}: ATA error ${replies[i].error}`);
          if (r.data) return;
          reads++;
          assertEquals(firstDifference(replies[i].data, at(r.lba, before)), -1, what);
        });
        const file = readFileRange(t.images.get("disk1")!, 0, 3 * AREA * 512);
        for (const [lba, want] of [[A, after], [B, before], [C, after]] as const) {
          const span = (d: Uint8Array) => d.subarray(lba * 512, (lba + AREA) * 512);
          assertEquals(
            firstDifference(span(file), span(want)),
            -1,
            `round ${round}: file at ${lba}`,
          );
        }
      }
      const all = JSON.parse((await t.ctl("--json", "stats")).stdout);
      const net = all.interfaces[0].stats;
      assertEquals(net.dropped, 0, JSON.stringify(net));
      assert(net.tx_in_place >= reads, JSON.stringify(net));
    }),
});
