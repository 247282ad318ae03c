/**
 * The `admin` ACL against the real daemon, with two hosts on two links (two veth pairs, two
 * initiators with their own MACs): the host not on the list cannot lock anyone out (its Mac Mask
 * List edit and Reserve/Release set and force set get AoE error 6 and change nothing, which both
 * hosts' reads and `ggaoectl show-macmask`/`show-reserve` confirm), while the admin host keeps
 * reading and writing throughout and can make those edits.
 */

import { assert, assertEquals, assertThrows } from "../helpers/assert.ts";
import { AoeError, type Initiator, type TargetInfo } from "../../src/initiator/mod.ts";
import { formatMac } from "../../src/mac.ts";
import {
  AOE_CMD_MASK,
  AOE_CMD_RESERVE,
  AOE_DCMD_ADD,
  AOE_DCMD_DELETE,
  AOE_ERR_RESERVED,
} from "../../src/protocol/constants.ts";
import { pattern, targetConfig, withTarget } from "../../lab/target.ts";

const OPTS = { sanitizeResources: false, sanitizeOps: false };
const WARNING = /devices\.disk1: served to every host \(no accept list\) and no admin list/g;

/** Writes a fresh pattern at `lba` and reads it back: the host is served. */
function roundTrip(ini: Initiator, t: TargetInfo, lba: number, seed: number): void {
  const data = pattern(4096, seed, lba);
  ini.writeRange(t, lba, data);
  assertEquals(ini.readRange(t, lba, 8), data, `${formatMac(ini.mac)} reads back what it wrote`);
}

function refusedWithError6(what: string, command: number, fn: () => unknown): void {
  const e = assertThrows(fn, AoeError) as AoeError;
  assertEquals([e.code, e.command], [AOE_ERR_RESERVED, command], `${what}: ${e.message}`);
}

Deno.test({
  name:
    "admin: the other host's lock-out attempts get AoE error 6 and change nothing; the admin host keeps reading and writing and can edit",
  ...OPTS,
  fn: () =>
    withTarget({ links: 2, devices: [{ name: "disk1", sizeMiB: 4 }] }, async (t) => {
      const admin = t.initiator({}, t.links[0].hostIf);
      const other = t.initiator({}, t.links[1].hostIf);
      assert(admin.mac !== other.mac);

      // Served to everyone without admin: warned at start and again on every reload.
      assertEquals(t.log.match(WARNING)?.length, 1, t.log);
      assert(t.log.includes('set admin = ["MAC", ...] in [devices.disk1] or [defaults]'));
      t.process!.kill("SIGHUP");
      await t.waitForLog(/The configuration has been reloaded/);
      assertEquals(t.log.match(WARNING)?.length, 2, t.log);

      // Only the first link's host administers the device.
      t.writeConfig(targetConfig(t, {
        devices: [{ name: "disk1", extra: `admin = ["${formatMac(admin.mac)}"]` }],
      }));
      const reload = await t.ctl("reload");
      assertEquals(reload.code, 0, reload.stderr);
      assertEquals(t.log.match(WARNING)?.length, 2, "no warning once admin is set");

      const a = admin.find(0, 1, { waitMs: 3000 });
      const o = other.find(0, 1, { waitMs: 3000 });
      roundTrip(admin, a, 0, 1);
      roundTrip(other, o, 64, 2);

      // The lock-out attempts of the other host.
      refusedWithError6("a mask add of itself only", AOE_CMD_MASK, () =>
        other.macMaskEdit(o, [{ dcmd: AOE_DCMD_ADD, mac: other.mac }]));
      roundTrip(admin, a, 8, 3);
      refusedWithError6("a reserve set", AOE_CMD_RESERVE, () =>
        other.reserveSet(o, [other.mac]));
      roundTrip(admin, a, 16, 4);
      refusedWithError6(
        "a reserve force set",
        AOE_CMD_RESERVE,
        () =>
          other.reserveForceSet(o, [other.mac]),
      );
      roundTrip(admin, a, 24, 5);

      // Nothing changed: both hosts read empty lists, ggaoectl agrees, both are still served.
      for (const [ini, target] of [[admin, a], [other, o]] as const) {
        assertEquals(ini.macMaskRead(target).directives, []);
        assertEquals(ini.reserveRead(target), []);
      }
      for (const command of ["show-macmask", "show-reserve"]) {
        const shown = await t.ctl(command, "disk1");
        assertEquals([shown.code, shown.stdout], [0, "Device disk1:\n\n"], shown.stderr);
      }
      roundTrip(other, o, 32, 6);
      const stats = JSON.parse((await t.ctl("--json", "stats", "disk1")).stdout);
      assertEquals(stats.devices[0].stats.proto_err, 3, "the three refusals");

      // The admin host makes the same edits. Its reservation refuses the other host's I/O ...
      assertEquals(admin.reserveSet(a, [admin.mac]), [admin.mac]);
      assertEquals(other.reserveRead(o), [admin.mac], "reads stay open to the other host");
      assertEquals(
        (await t.ctl("show-reserve", "disk1")).stdout,
        `Device disk1:\n${formatMac(admin.mac)} \n\n`,
      );
      refusedWithError6("a read while reserved", 0, () => other.readRange(o, 0, 1));
      roundTrip(admin, a, 40, 7);
      assertEquals(admin.reserveForceSet(a, []), [], "released");
      roundTrip(other, o, 48, 8);
      // ... and its mask list edit refuses the other host altogether (silently: no reply).
      assertEquals(
        admin.macMaskEdit(a, [{ dcmd: AOE_DCMD_ADD, mac: admin.mac }]).directives.map((d) => d.mac),
        [admin.mac],
      );
      assertEquals(
        (await t.ctl("show-macmask", "disk1")).stdout,
        `Device disk1:\n${formatMac(admin.mac)} \n\n`,
      );
      assertEquals(other.discover({ shelf: 0, slot: 1, waitMs: 500 }), [], "masked out");
      roundTrip(admin, a, 56, 9);
      assertEquals(
        admin.macMaskEdit(a, [{ dcmd: AOE_DCMD_DELETE, mac: admin.mac }]).directives,
        [],
      );
      roundTrip(other, o, 64, 10);
    }),
});
