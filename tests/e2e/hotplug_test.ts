/**
 * Interfaces change under a running daemon: MTU changes, links going down and up. The daemon
 * notices (it rescans every second), reopens the interface, and advertises its devices again
 * with the Sector Count of the new MTU.
 */

import { assert, assertEquals } from "../helpers/assert.ts";
import { withTarget } from "../../lab/target.ts";

async function until(what: string, check: () => boolean, timeoutMs = 8000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

Deno.test({
  name: "an MTU change and a link bounce are followed: reopened, re-advertised, new sector count",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: () =>
    withTarget({ mtu: 1500, devices: [{ name: "disk1", sizeMiB: 4 }] }, async (t) => {
      const ini = t.initiator();
      assertEquals(ini.find(0, 1, { waitMs: 3000 }).maxSectors, 2);
      // Jumbo frames on both ends: the daemon reopens and says 17 sectors now.
      await t.lab.exec(t.ns, ["ip", "link", "set", t.targetIf, "mtu", "9000"], { check: true });
      const host = await new Deno.Command("ip", { args: ["link", "set", t.hostIf, "mtu", "9000"] })
        .output();
      assert(host.success);
      await until("the reopen", () => /net\/\S+: link or settings changed, reopening/.test(t.log));
      await t.waitForLog(/Listener started \(MTU: 9000/);
      const after = t.initiator(); // a fresh initiator: the first sized its frames for 1500
      assertEquals(after.find(0, 1, { waitMs: 3000 }).maxSectors, 17);
      // Down: the listener closes. Up: it comes back and the device answers again.
      await t.lab.exec(t.ns, ["ip", "link", "set", t.targetIf, "down"], { check: true });
      await until(
        "the close",
        () => /interface is gone or down, closing|ENETDOWN.*closing it/.test(t.log),
      );
      await t.lab.exec(t.ns, ["ip", "link", "set", t.targetIf, "up"], { check: true });
      await until(
        "the reopen after up",
        () => (t.log.match(/Listener started/g) ?? []).length >= 3,
      );
      assertEquals(after.find(0, 1, { waitMs: 3000 }).maxSectors, 17);
    }),
});
