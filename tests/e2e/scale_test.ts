/**
 * A large configuration, against the real daemon: 256 devices (sparse files) start, answer
 * discovery and reload, and the daemon's log stays short: a warning that concerns every device
 * is one line per load, not one per device, and the RX ring is judged by what one host can send
 * at once to one device, not by the sum of every device's Buffer Count.
 */

import { assert, assertEquals } from "../helpers/assert.ts";
import { withTarget } from "../../lab/target.ts";

const DEVICES = Array.from({ length: 256 }, (_, i) => ({
  name: `d${i}`,
  shelf: 1 + (i >> 7),
  slot: i & 127,
  sizeMiB: 1,
}));

Deno.test({
  name:
    "256 devices start and reload twice with one no-admin warning line per load and no RX ring warning",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: () =>
    withTarget({ mtu: 9000, devices: DEVICES }, async (t) => {
      const ini = t.initiator();
      // The default ring (4096 KiB) at MTU 9000 holds a few hundred frames: enough for one
      // host's full window (64) on a device, far from 256 x 64.
      assert(/Listener started \(MTU: 9000, \d+ RX/.test(t.log), t.log);
      // 256 replies to one broadcast may overflow the initiator's socket: ask until all answered.
      const discoverAll = () => {
        const deadline = Date.now() + 60_000;
        for (;;) {
          const found = ini.discover({ waitMs: 2000 }).length;
          if (found === DEVICES.length) return;
          assert(Date.now() < deadline, `only ${found} of ${DEVICES.length} devices answer`);
        }
      };
      discoverAll();
      for (let i = 0; i < 2; i++) {
        const r = await t.ctl("reload");
        assertEquals(r.code, 0, r.stderr);
      }
      await t.waitForLog(/reloaded[^]*reloaded/);
      const lines = t.log.split("\n");
      const noAdmin = lines.filter((l) => /no admin list is set/.test(l));
      assertEquals(noAdmin.length, 3, noAdmin.join("\n"));
      for (const l of noAdmin) {
        assert(/256 devices \(devices\.d0, devices\.d1, devices\.d2 and 253 more\)/.test(l), l);
      }
      assertEquals(lines.filter((l) => /RX ring holds/.test(l)), []);
      const warnings = lines.filter((l) => /warn/i.test(l));
      assert(warnings.length <= 3, `${warnings.length} warning lines:\n${warnings.join("\n")}`);
      discoverAll();
    }),
});
