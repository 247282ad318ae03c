/**
 * Bounds under load: each device holds at most its advertised Buffer Count of requests (its
 * own pool), so a slow device cannot starve the others, and a new `queue-length` takes effect on
 * reload; a TX ring kick the kernel takes only partly (its send buffer is full behind a slow
 * qdisc) is retried within milliseconds instead of waiting for the next reply.
 */

import { assert, assertEquals } from "../helpers/assert.ts";
import { withFaultyFile } from "../../lab/storage_faults.ts";
import { withFaultLab } from "../../lab/fault_lab.ts";

const OPTS = { sanitizeResources: false, sanitizeOps: false };

Deno.test({
  ...OPTS,
  name:
    "a slow device flooded beyond its Buffer Count drops only its own requests; the other device is served without a drop",
  fn: () =>
    withFaultyFile({ sizeBytes: 16 * 1024 * 1024 }, async (f) => {
      await withFaultLab({
        mtu: 9000,
        ringKiB: 4096,
        links: 2,
        devices: [
          { name: "disk1" },
          { name: "slow", path: f.path, slot: 2, extra: "direct-io = true\nqueue-length = 8" },
        ],
      }, async (lab) => {
        f.setDelay(200);
        // Two initiators keep 32 requests each outstanding on the slow device, and
        // retransmit what it is slow to answer.
        const slowA = lab.startLoad({ link: 0, slot: 2, sectors: 4096, seed: 7 });
        const slowB = lab.startLoad({ link: 1, slot: 2, firstLba: 8192, sectors: 4096, seed: 8 });
        // Wait until the slow device is full and drops, then serve disk1 beside it.
        const deadline = Date.now() + 30_000;
        let slow = (await lab.stats()).dev.slow;
        while (slow.queue_drop === 0) {
          assert(Date.now() < deadline, `the slow device dropped nothing: ${JSON.stringify(slow)}`);
          await new Promise((r) => setTimeout(r, 100));
          slow = (await lab.stats()).dev.slow;
        }
        const load = lab.startLoad({ link: 0, slot: 1 });
        await load.progress(40);
        const s = await lab.stats();
        assertEquals(s.dev.disk1.queue_drop, 0, "disk1 lost requests to the slow device");
        f.setDelay(0);
        await slowA.progress(2);
        await slowB.progress(2);
        await lab.assertAlive();
        await lab.finishLoad(load);
        await lab.finishLoad(slowA, "slow");
        await lab.finishLoad(slowB, "slow");
      });
    }),
});

Deno.test({
  ...OPTS,
  name: "a new queue-length is advertised and enforced after a reload",
  fn: () =>
    withFaultLab({ mtu: 1500, ringKiB: 4096 }, async (lab) => {
      assertEquals((await lab.ops(0, 0, 1, "info")).bufferCount, 64);
      lab.writeConfig([{ name: "disk1", extra: "queue-length = 4" }]);
      assertEquals((await lab.target.ctl("reload")).code, 0);
      assertEquals((await lab.ops(0, 0, 1, "info")).bufferCount, 4);
      // A load that keeps to the Buffer Count (as the Linux driver does) is served...
      const load = lab.startLoad();
      await load.progress(10);
      await lab.finishLoad(load);
      assertEquals((await lab.stats()).dev.disk1.queue_drop, 0);
      // ...and an initiator that sends 16 at once has all but 4 dropped (it retransmits them).
      const burst = await lab.ops(0, 0, 1, "read-sectors", "0", "32");
      assertEquals(burst.results, ["ok"]);
      assert(burst.retransmits! > 0, JSON.stringify(burst));
      const s = await lab.stats();
      assert(s.dev.disk1.queue_drop > 0, JSON.stringify(s.dev.disk1));
    }),
});

Deno.test({
  ...OPTS,
  name:
    "TX ring kicks that a slow qdisc and a small send buffer cut short are retried: 8 MiB of reads without a retransmit",
  fn: () =>
    withFaultLab({
      mtu: 9000,
      ringKiB: 4096,
      defaults: "send-buffer-size = 32",
    }, async (lab) => {
      const t0 = lab.links[0].target;
      // A token bucket holds the replies in the qdisc, so the socket's send buffer fills and a
      // kick sends only some of the frames it is given.
      await lab.inTarget(
        "tc",
        "qdisc",
        "add",
        "dev",
        t0,
        "root",
        "tbf",
        "rate",
        "400mbit",
        "burst",
        "32kb",
        "latency",
        "200ms",
      );
      const r = await lab.ops(0, 0, 1, "read-sectors", "0", "16384");
      assertEquals(r.results, ["ok"]);
      assertEquals(r.retransmits, 0, "replies waited for a later kick");
      const s = await lab.stats();
      assert(s.iface[t0].tx_runs > 0);
    }),
});
