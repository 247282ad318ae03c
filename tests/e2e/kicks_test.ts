/**
 * When replies are kicked: a window of 32 reads is made to wait in the daemon's RX ring (the
 * daemon is stopped while it is sent), so that one drain takes it. By default the loop serves
 * the whole drain and kicks once (early kicks cost more than they gave on the CPU measured, and
 * served frames before a stall found later in the drain could drop them: docs/decisions.md
 * §4.4). The interface counters show the drains and kicks; every byte of every reply is checked.
 */

import { assert, assertEquals } from "../helpers/assert.ts";
import { burst } from "../helpers/burst.ts";
import { freezeProcess } from "../../lab/command.ts";
import { firstDifference, pattern, type TestTarget, withTarget } from "../../lab/target.ts";

const WINDOW = 32;
/** Sectors per read: 4 KiB. */
const SECTORS = 8;

async function interfaceStats(t: TestTarget): Promise<Record<string, number>> {
  const s = await t.ctl("--json", "stats");
  assertEquals(s.code, 0, s.stderr);
  return JSON.parse(s.stdout).interfaces[0].stats;
}

/** Sends a window of reads while the daemon is stopped; returns its drains and kicks. */
async function windowInOneDrain(env: Record<string, string>) {
  return await withTarget(
    { mtu: 9000, devices: [{ name: "disk1", sizeMiB: 16 }], env },
    async (t) => {
      const ini = t.initiator({ window: WINDOW, congestionControl: false });
      const disk = ini.find(0, 1, { waitMs: 5000 });
      const bytes = WINDOW * SECTORS * 512;
      const data = pattern(bytes, 15);
      ini.writeRange(disk, 0, data, { window: WINDOW });
      const pid = t.process!.pid;
      const before = await interfaceStats(t);

      // Stopped (for far less than max-stall, 2 s) while the window is sent; resumed by a
      // separate process while burst() waits for the replies.
      await freezeProcess(pid, `daemon ${pid}`, 10_000);
      const resume = new Deno.Command("sh", {
        args: ["-c", `sleep 0.4; kill -CONT ${pid}`],
      }).spawn();
      let replies;
      try {
        replies = burst(
          ini,
          disk,
          Array.from({ length: WINDOW }, (_, i) => ({ lba: i * SECTORS, count: SECTORS })),
          { timeoutMs: 3000, retries: 0 },
        );
      } finally {
        await resume.status;
        Deno.kill(pid, "SIGCONT"); // in case the resuming process failed
      }
      const back = new Uint8Array(bytes);
      replies.forEach((r, i) => {
        assertEquals(r.status & 0x01, 0, `read ${i}: ATA error ${r.error}`);
        back.set(r.data, i * SECTORS * 512);
      });
      assertEquals(firstDifference(back, data), -1);

      const after = await interfaceStats(t);
      const drains = after.rx_runs - before.rx_runs;
      const kicks = after.tx_runs - before.tx_runs;
      const summary = `${drains} drain(s), ${kicks} kick(s): ${JSON.stringify(after)}`;
      assertEquals(after.tx_cnt - before.tx_cnt, WINDOW, summary);
      // The whole window waited in the ring: one drain took it (a second one at most, should a
      // frame have landed just after the first looked).
      assert(drains >= 1 && drains <= 2, summary);
      return { drains, kicks, summary };
    },
  );
}

Deno.test({
  name: "a window of 32 reads taken in one drain leaves in one kick, every byte intact",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const { drains, kicks, summary } = await windowInOneDrain({});
    assertEquals(kicks, drains, `one kick per drain: ${summary}`);
  },
});
