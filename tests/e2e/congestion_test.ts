/**
 * TX congestion: with a TX ring of a few frames, a window of 32 reads produces more replies
 * than the ring holds. They must wait in the interface's FIFO and go out in order as the ring
 * drains: never dropped, never reordered into wrong data.
 */

import { assert, assertEquals } from "../helpers/assert.ts";
import { firstDifference, pattern, withTarget } from "./target.ts";

Deno.test({
  name: "replies that do not fit a tiny TX ring wait in the FIFO and every byte arrives",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: () =>
    withTarget(
      { mtu: 9000, ringKiB: 128, devices: [{ name: "disk1", sizeMiB: 16 }] },
      async (t) => {
        await t.waitForLog(/Listener started \(MTU: 9000, \d+ RX\/[1-9] TX ring frames\)/);
        // The RX ring is as small: the kernel drops some requests and the initiator retransmits.
        const ini = t.initiator({ window: 32 });
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
        assert(net.tx_buffers_full > 0, `the TX ring never filled: ${JSON.stringify(net)}`);
        assertEquals(stats.devices[0].stats.ata_err, 0);
        assertEquals(stats.devices[0].stats.queue_drop, 0);
      },
    ),
});
