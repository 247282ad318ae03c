/**
 * Data integrity through the real daemon: every byte written over AoE is read back over AoE and
 * from the backing file outside the daemon, across the whole device (last sector included), at
 * MTU 1500 and 9000, with and without packet rings, with and without O_DIRECT, with a window of
 * 32 outstanding requests (page-cache reads going straight into TX ring frames, or through the
 * request's buffer); and LBA48 addresses beyond 2^28 sectors.
 */

import { assert, assertEquals } from "../helpers/assert.ts";
import { firstDifference, pattern, readFileRange, withTarget } from "./target.ts";

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
      // Requests that arrived together were merged into fewer iocbs.
      assertEquals(s.read_cnt + s.write_cnt > 2 * s.io_slots, true, JSON.stringify(s));
    }),
});
