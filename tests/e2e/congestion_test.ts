/**
 * Rings far smaller than the initiator's window: the kernel drops requests that find no free RX
 * frame (counted in `dropped`), the initiator retransmits them, replies wait for TX frames, and
 * every byte still arrives where it belongs. (The TX FIFO's order is tested deterministically in
 * tests/engine/iface_test.ts: with equal RX and TX rings a veth rarely fills the TX side.)
 */

import { assert, assertEquals } from "../helpers/assert.ts";
import { firstDifference, pattern, withTarget } from "../../lab/target.ts";

Deno.test({
  name: "with 7-frame rings and a window of 32, kernel drops are counted and every byte arrives",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: () =>
    withTarget(
      { mtu: 9000, ringKiB: 128, devices: [{ name: "disk1", sizeMiB: 16 }] },
      async (t) => {
        await t.waitForLog(/Listener started \(MTU: 9000, \d+ RX\/[1-9] TX ring frames\)/);
        // The daemon says the ring is smaller than the Buffer Count it advertises.
        await t.waitForLog(
          /RX ring holds [1-9] frames, fewer than the 64 requests one host may send at once to one device \(its queue-length\): raise ring-buffer-size to about \d+ KiB/,
        );
        // 32 outstanding against 7 RX frames: the kernel must drop, the initiator retransmits.
        const ini = t.initiator({ window: 32, congestionControl: false });
        const disk = ini.find(0, 1, { waitMs: 5000 });
        const size = 16 * 1024 * 1024;
        const data = pattern(size, 99);
        ini.writeRange(disk, 0, data, { window: 32 });
        const back = ini.readRange(disk, 0, size / 512, undefined, { window: 32 });
        assertEquals(firstDifference(back, data), -1);
        const s = await t.ctl("--json", "stats");
        assertEquals(s.code, 0, s.stderr);
        const stats = JSON.parse(s.stdout);
        const net = stats.interfaces[0].stats;
        assert(net.dropped > 0, `the kernel never dropped a request: ${JSON.stringify(net)}`);
        assertEquals(stats.devices[0].stats.ata_err, 0);
        assertEquals(stats.devices[0].stats.queue_drop, 0);
      },
    ),
});
