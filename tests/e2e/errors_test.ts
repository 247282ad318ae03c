/**
 * Error paths over the wire, against the real daemon: every answer docs/decisions.md §2.2
 * prescribes (with the decisions of §2.3 and the block comment of src/protocol/engine.ts), the
 * counters `ggaoectl --json stats` shows for frames that get no answer, and the backing file left
 * as it was wherever a request must not write.
 *
 * Frames the initiator API cannot express are built by hand: the initiator's `sendRaw` pads to
 * 60 bytes, so runts go out through a second packet socket with a plain send().
 */

import { assert, assertEquals, assertThrows, hex } from "../helpers/assert.ts";
import { AoeError, AoeTimeoutError, AtaError } from "../../src/initiator/mod.ts";
import type { Initiator } from "../../src/initiator/mod.ts";
import { header, RuntSender } from "../helpers/raw.ts";
import { ataReadWriteFields, buildAtaRequest } from "../../src/protocol/ata.ts";
import { buildConfigRequest } from "../../src/protocol/config.ts";
import { buildMaskRequest } from "../../src/protocol/macmask.ts";
import { buildReserveRequest } from "../../src/protocol/reserve.ts";
import type { AoeEnvelope } from "../../src/protocol/header.ts";
import { formatMac, macAt } from "../../src/mac.ts";
import {
  AOE_AFL_EXT,
  AOE_AFL_WRITE,
  AOE_CFG_FORCE_SET,
  AOE_CFG_READ,
  AOE_CMD_ATA,
  AOE_CMD_CFG,
  AOE_DCMD_ADD,
  AOE_DCMD_DELETE,
  AOE_MCMD_EDIT,
  AOE_RCMD_FORCE_SET,
  ATA_CMD_CHK_POWER,
  ATA_CMD_FLUSH,
  ATA_CMD_FLUSH_EXT,
  ATA_CMD_ID_ATA,
  ATA_CMD_READ,
  ATA_CMD_READ_EXT,
  ATA_CMD_WRITE,
  ATA_CMD_WRITE_EXT,
  ETH_P_AOE,
} from "../../src/protocol/constants.ts";
import { defaultSerial } from "../../src/config/load.ts";
import { pattern, readFileRange, type TestTarget, withTarget } from "../../lab/target.ts";

const MIB = 1024 * 1024;
/** The default IDENTIFY serial of e0.1: vblade's `shelf.slot:hostname`. */
const SERIAL = defaultSerial(0, 1, Deno.hostname());
const SECTORS = MIB / 512;
/** A MAC that is nobody on the test link. */
const OTHER = 0x02_00_00_00_00_99;
const OPTS = { sanitizeResources: false, sanitizeOps: false };
/**
 * A fixed 500 ms retransmit timeout: on a busy host the adaptive one (floor 20 ms) could resend a
 * request, and a resent request that the daemon answers twice would break the exact counters.
 */
const STEADY = { adaptive: false, timeoutMs: 500 };

/** Two devices on one shelf, 2.1 and 2.4: what broadcasts and wildcard addresses reach. */
const TWO_ON_SHELF_2 = [
  { name: "disk1", sizeMiB: 1, shelf: 2, slot: 1 },
  { name: "disk2", sizeMiB: 1, shelf: 2, slot: 4 },
];

const ABRT = 0x04;
const IDNF = 0x10;
const DRDY = 0x40;
const DRDY_ERR = 0x41;

// ---- helpers --------------------------------------------------------------------------------

type Counters = Record<string, number>;

/** `ggaoectl --json stats`: device and interface counters by name. */
async function stats(
  t: TestTarget,
): Promise<{ dev: Record<string, Counters>; iface: Counters }> {
  const r = await t.ctl("--json", "stats");
  assertEquals(r.code, 0, r.stderr);
  const j = JSON.parse(r.stdout);
  const dev: Record<string, Counters> = {};
  for (const d of j.devices) dev[d.name] = d.stats;
  assertEquals(j.interfaces.length, 1);
  return { dev, iface: j.interfaces[0].stats };
}

/** Fills a backing file with a known pattern from outside the daemon; returns the bytes. */
function fillImage(t: TestTarget, name: string, seed: number): Uint8Array {
  const data = pattern(MIB, seed);
  const f = Deno.openSync(t.images.get(name)!, { write: true });
  try {
    let off = 0;
    while (off < data.length) off += f.writeSync(data.subarray(off));
  } finally {
    f.close();
  }
  return data;
}

/** Asserts the backing file still holds exactly `expected` (and did not grow). */
function assertImage(t: TestTarget, name: string, expected: Uint8Array, what: string): void {
  const path = t.images.get(name)!;
  assertEquals(Deno.statSync(path).size, expected.length, `${what}: file size`);
  const now = readFileRange(path, 0, expected.length);
  for (let i = 0; i < now.length; i++) {
    if (now[i] !== expected[i]) {
      throw new Error(`${what}: backing file changed at byte ${i} (sector ${i >> 9})`);
    }
  }
}

/** An ATA error reply: status 0x41, the expected error register, no data beyond padding. */
function assertAtaError(
  r: { status: number; error: number; data: Uint8Array },
  error: number,
  what: string,
): void {
  assertEquals(r.status, DRDY_ERR, `${what}: status`);
  assertEquals(r.error, error, `${what}: error register`);
  assert(r.data.length <= 24, `${what}: ${r.data.length} data bytes after an ATA error`);
  assert(r.data.every((b) => b === 0), `${what}: padding is not zero: ${hex(r.data)}`);
}

/** Runs `fn` and returns the AoE error code it throws. */
function aoeErrorCode(fn: () => unknown): number {
  const e = assertThrows(fn, AoeError);
  return (e as AoeError).code;
}

/** No AoE response arrives within `ms`. */
function assertSilence(ini: Initiator, ms: number, what: string): void {
  const f = ini.receiveRaw(ms);
  assertEquals(f === null ? null : hex(f.subarray(0, 40)), null, `${what}: unexpected answer`);
}

// ---- ATA error replies ----------------------------------------------------------------------

Deno.test({
  name:
    "reads and writes past the end or straddling it answer ATA IDNF (0x41/0x10) without data and leave the file untouched",
  ...OPTS,
  fn: () =>
    withTarget({ devices: [{ name: "disk1", sizeMiB: 1 }] }, async (t) => {
      const image = fillImage(t, "disk1", 11);
      const ini = t.initiator(STEADY);
      const disk = ini.find(0, 1, { waitMs: 3000 });
      const before = await stats(t);
      const one = pattern(512, 99);
      const two = pattern(1024, 98);
      for (const cmd of [ATA_CMD_READ_EXT, ATA_CMD_READ]) {
        assertAtaError(ini.ata(disk, { cmd, lba: SECTORS, count: 1 }), IDNF, `read 0x${cmd}`);
        assertAtaError(ini.ata(disk, { cmd, lba: SECTORS - 1, count: 2 }), IDNF, "straddle");
      }
      for (const cmd of [ATA_CMD_WRITE_EXT, ATA_CMD_WRITE]) {
        assertAtaError(
          ini.ata(disk, { cmd, lba: SECTORS, count: 1, data: one }),
          IDNF,
          `write 0x${cmd} one past the end`,
        );
        assertAtaError(
          ini.ata(disk, { cmd, lba: SECTORS - 1, count: 2, data: two }),
          IDNF,
          `write 0x${cmd} straddling the end`,
        );
      }
      // LBA48 far away from the device: the LBA is checked before it is multiplied by 512.
      assertAtaError(
        ini.ata(disk, { cmd: ATA_CMD_READ_EXT, lba: 2 ** 48 - 1, count: 1 }),
        IDNF,
        "read at 2^48 - 1",
      );
      // The initiator's own range check sees IDNF as an AtaError too.
      const e = assertThrows(() => ini.read(disk, SECTORS - 1, 2), AtaError) as AtaError;
      assertEquals([e.status, e.error], [DRDY_ERR, IDNF]);
      assertImage(t, "disk1", image, "after writes past the end");
      // The last sector itself is still fine.
      assertEquals(hex(ini.read(disk, SECTORS - 1, 1)), hex(image.subarray(MIB - 512)));
      const after = await stats(t);
      assertEquals(after.dev.disk1.ata_err - before.dev.disk1.ata_err, 10);
      assertEquals(after.dev.disk1.write_cnt, before.dev.disk1.write_cnt);
      assertEquals(after.dev.disk1.proto_err, before.dev.disk1.proto_err);
    }),
});

Deno.test({
  name:
    "LBA28 requests ignore the 0xE0 nibble of LBA byte 3 and reach the masked sector, while LBA48 takes it literally (IDNF)",
  ...OPTS,
  fn: () =>
    withTarget({ devices: [{ name: "disk1", sizeMiB: 1 }] }, async (t) => {
      const image = fillImage(t, "disk1", 12);
      const ini = t.initiator(STEADY);
      const disk = ini.find(0, 1, { waitMs: 3000 });
      const lba = 1000;
      const nibbled = 0xe0 * 2 ** 24 + lba; // what the Linux aoe driver sends for LBA28
      const data = pattern(1024, 7, lba);
      const w = ini.ata(disk, { cmd: ATA_CMD_WRITE, lba: nibbled, count: 2, data, ext: false });
      assertEquals([w.status, w.error], [DRDY, 0]);
      assertEquals(w.lba, nibbled, "the reply echoes the request's LBA field");
      image.set(data, lba * 512);
      assertImage(t, "disk1", image, "after the LBA28 write");
      const r = ini.ata(disk, { cmd: ATA_CMD_READ, lba: nibbled, count: 2, ext: false });
      assertEquals([r.status, r.error], [DRDY, 0]);
      assertEquals(hex(r.data.subarray(0, 1024)), hex(data));
      // The same LBA field with AFlags E is sector 0xE00003E8: beyond a 1 MiB device.
      assertAtaError(
        ini.ata(disk, { cmd: ATA_CMD_READ_EXT, lba: nibbled, count: 1 }),
        IDNF,
        "LBA48 read with the nibble",
      );
      assertAtaError(
        ini.ata(disk, { cmd: ATA_CMD_WRITE_EXT, lba: nibbled, count: 1, data: data.slice(0, 512) }),
        IDNF,
        "LBA48 write with the nibble",
      );
      // The opcode does not choose LBA28/48: READ SECTORS (0x20) with AFlags E is 48-bit.
      assertAtaError(
        ini.ata(disk, { cmd: ATA_CMD_READ, lba: nibbled, count: 1, ext: true }),
        IDNF,
        "0x20 with AFlags E",
      );
      assertImage(t, "disk1", image, "after the LBA48 attempts");
      // LBA byte 3's low nibble still counts in LBA28: 0xE1 << 24 is sector 2^24, beyond the end.
      assertAtaError(
        ini.ata(disk, { cmd: ATA_CMD_READ, lba: 0xe1 * 2 ** 24, count: 1, ext: false }),
        IDNF,
        "LBA28 read at 2^24",
      );
      await Promise.resolve();
    }),
});

Deno.test({
  name:
    "sector count 0 and more sectors than the MTU allows answer ATA ABRT, and neither writes anything",
  ...OPTS,
  fn: () =>
    withTarget({ mtu: 1500, devices: [{ name: "disk1", sizeMiB: 1 }] }, async (t) => {
      const image = fillImage(t, "disk1", 13);
      const ini = t.initiator(STEADY);
      const disk = ini.find(0, 1, { waitMs: 3000 });
      assertEquals(disk.maxSectors, 2, "MTU 1500 allows 2 sectors");
      const before = await stats(t);
      for (const cmd of [ATA_CMD_READ, ATA_CMD_READ_EXT]) {
        assertAtaError(ini.ata(disk, { cmd, lba: 8, count: 0 }), ABRT, `read 0x${cmd}, count 0`);
        assertAtaError(ini.ata(disk, { cmd, lba: 8, count: 3 }), ABRT, `read 0x${cmd}, count 3`);
        assertAtaError(ini.ata(disk, { cmd, lba: 8, count: 255 }), ABRT, `read count 255`);
      }
      for (const cmd of [ATA_CMD_WRITE, ATA_CMD_WRITE_EXT]) {
        // Count 0 with a sector of data anyway: still nothing may be written.
        assertAtaError(
          ini.ata(disk, { cmd, lba: 8, count: 0, data: pattern(512, 1) }),
          ABRT,
          `write 0x${cmd}, count 0`,
        );
        // Three sectors do not fit a 1500-byte frame; send the two that do, claim three.
        assertAtaError(
          ini.ata(disk, { cmd, lba: 8, count: 3, data: pattern(1024, 2) }),
          ABRT,
          `write 0x${cmd}, count 3`,
        );
      }
      assertImage(t, "disk1", image, "after count 0 and oversized requests");
      const after = await stats(t);
      const d = (k: string) => after.dev.disk1[k] - before.dev.disk1[k];
      assertEquals(d("ata_err"), 10);
      assertEquals(d("read_cnt") + d("write_cnt") + d("io_slots"), 0, "no I/O was issued");
    }),
});

Deno.test({
  name:
    "a hand-built write whose payload is shorter than count x 512 answers ATA ABRT, echoes the tag and writes nothing",
  ...OPTS,
  fn: () =>
    withTarget({ mtu: 1500, devices: [{ name: "disk1", sizeMiB: 1 }] }, async (t) => {
      const image = fillImage(t, "disk1", 14);
      const ini = t.initiator(STEADY);
      const disk = ini.find(0, 1, { waitMs: 3000 });
      const cases = [
        { count: 2, payload: 512 },
        { count: 2, payload: 1023 },
        { count: 1, payload: 511 },
        { count: 1, payload: 0 },
      ];
      let tag = 0x5eed0000;
      for (const c of cases) {
        tag++;
        const frame = new Uint8Array(36 + c.payload);
        const len = buildAtaRequest(frame, {
          dst: disk.mac,
          src: ini.mac,
          shelf: 0,
          slot: 1,
          tag,
        }, {
          aflags: AOE_AFL_EXT | AOE_AFL_WRITE,
          errFeature: 0,
          sectorCount: c.count,
          cmdStatus: ATA_CMD_WRITE_EXT,
          lba: 16,
        }, new Uint8Array(c.payload).fill(0xa5));
        // For the empty payload the frame goes out padded to 60 bytes: 24 bytes, still short.
        ini.sendRaw(frame.subarray(0, Math.min(len, frame.length)));
        const r = ini.receiveRaw(1000);
        assert(r !== null, `no answer to a short write of ${c.payload} bytes for ${c.count}`);
        const what = `short write ${c.payload}/${c.count * 512}`;
        assertEquals(r[14], 0x18, `${what}: version 1, R set, E clear`);
        assertEquals(r[15], 0, `${what}: AoE error 0`);
        assertEquals(new DataView(r.buffer).getUint32(20), tag, `${what}: tag echoed`);
        assertEquals([r[25], r[27]], [ABRT, DRDY_ERR], `${what}: ATA error/status`);
        assertEquals(r[26], c.count, `${what}: sector count echoed`);
        assertEquals(r.length, 60, `${what}: padded reply, no data`);
        assertEquals(macAt(r, 0), ini.mac, `${what}: destination`);
        assertEquals(macAt(r, 6), disk.mac, `${what}: source`);
      }
      assertImage(t, "disk1", image, "after short writes");
      const s = await stats(t);
      assertEquals(s.dev.disk1.write_cnt, 0);
    }),
});

Deno.test({
  name:
    "a write to a read-only device answers ATA ABRT and leaves the file untouched, while reads still work",
  ...OPTS,
  fn: () =>
    withTarget({
      devices: [{ name: "ro", sizeMiB: 1, extra: "read-only = true" }],
    }, async (t) => {
      const image = fillImage(t, "ro", 15);
      const ini = t.initiator(STEADY);
      const disk = ini.find(0, 1, { waitMs: 3000 });
      for (const cmd of [ATA_CMD_WRITE, ATA_CMD_WRITE_EXT]) {
        assertAtaError(
          ini.ata(disk, { cmd, lba: 0, count: 1, data: pattern(512, 3) }),
          ABRT,
          `write 0x${cmd} to a read-only device`,
        );
      }
      // Read-only is checked before the range: even a write past the end is ABRT, not IDNF.
      assertAtaError(
        ini.ata(disk, { cmd: ATA_CMD_WRITE_EXT, lba: SECTORS, count: 1, data: pattern(512, 3) }),
        ABRT,
        "write past the end of a read-only device",
      );
      const e = assertThrows(() => ini.write(disk, 5, pattern(1024, 4)), AtaError) as AtaError;
      assertEquals([e.status, e.error], [DRDY_ERR, ABRT]);
      assertEquals(hex(ini.read(disk, 0, 2)), hex(image.subarray(0, 1024)));
      assertEquals(ini.flush(disk), DRDY, "FLUSH on a read-only device");
      assertImage(t, "ro", image, "read-only device");
      const s = await stats(t);
      assertEquals(s.dev.ro.write_cnt, 0);
      assertEquals(s.dev.ro.ata_err, 4);
    }),
});

Deno.test({
  name:
    "IDENTIFY with a count other than 1 answers AoE error 2, unknown ATA opcodes ABRT, CHECK POWER MODE 0xFF, FLUSH and FLUSH EXT status 0x40",
  ...OPTS,
  fn: () =>
    withTarget({ devices: [{ name: "disk1", sizeMiB: 1 }] }, async (t) => {
      const ini = t.initiator(STEADY);
      const disk = ini.find(0, 1, { waitMs: 3000 });
      for (const count of [0, 2, 255]) {
        assertEquals(aoeErrorCode(() => ini.ata(disk, { cmd: ATA_CMD_ID_ATA, count })), 2);
      }
      const id = ini.ata(disk, { cmd: ATA_CMD_ID_ATA, count: 1 });
      assertEquals([id.status, id.error, id.data.length], [DRDY, 0, 512]);
      // Not implemented here: NOP, READ DMA, WRITE DMA, SMART, PACKET, SET FEATURES, unassigned.
      for (const cmd of [0x00, 0xc8, 0xca, 0xb0, 0xa0, 0xef, 0x99, 0xff]) {
        assertAtaError(ini.ata(disk, { cmd, count: 1 }), ABRT, `opcode 0x${cmd.toString(16)}`);
      }
      const power = ini.ata(disk, { cmd: ATA_CMD_CHK_POWER });
      assertEquals([power.status, power.error, power.sectorCount], [DRDY, 0, 0xff]);
      assertEquals(ini.checkPower(disk), 0xff);
      for (const cmd of [ATA_CMD_FLUSH, ATA_CMD_FLUSH_EXT]) {
        // A feature byte in the request must not come back as the error register (the original
        // echoed both the opcode and the feature byte).
        const r = ini.ata(disk, { cmd, feature: 0x5a });
        assertEquals([r.status, r.error], [DRDY, 0], `flush 0x${cmd.toString(16)}`);
      }
      assertEquals(ini.flush(disk), DRDY);
      assertEquals(ini.flush(disk, { ext: true }), DRDY);
      const s = await stats(t);
      assertEquals(s.dev.disk1.proto_err, 3);
      assertEquals(s.dev.disk1.ata_err, 8);
    }),
});

// ---- AoE-level errors and frames that get no answer -----------------------------------------

Deno.test({
  name:
    "unknown AoE commands 4 and 240 answer AoE error 1 echoing the whole request, padded to at least 60 bytes",
  ...OPTS,
  fn: () =>
    withTarget({ devices: [{ name: "disk1", sizeMiB: 1, shelf: 3, slot: 7 }] }, async (t) => {
      const ini = t.initiator(STEADY);
      const disk = ini.find(3, 7, { waitMs: 3000 });
      const runt = new RuntSender(t.hostIf);
      try {
        let tag = 0xc0de0000;
        for (const command of [4, 5, 239, 240, 255]) {
          for (const length of [100, 24]) {
            const f = header(ini, disk, length, { command, tag: ++tag });
            for (let i = 24; i < length; i++) f[i] = (i * 7 + command) & 0xff;
            // The 24-byte one goes out unpadded: unknown commands are answered even when short.
            if (length < 60) runt.send(f);
            else ini.sendRaw(f);
            const r = ini.receiveRaw(1000);
            const what = `command ${command}, ${length}-byte request`;
            assert(r !== null, `${what}: no answer`);
            assertEquals(r[14], 0x1c, `${what}: version 1, R and E set`);
            assertEquals(r[15], 1, `${what}: AoE error 1`);
            assertEquals(r[19], command, `${what}: command echoed`);
            assertEquals(new DataView(r.buffer).getUint32(20), tag, `${what}: tag`);
            assertEquals([r[16], r[17], r[18]], [0, 3, 7], `${what}: shelf/slot`);
            assertEquals(macAt(r, 0), ini.mac, `${what}: destination`);
            assertEquals(macAt(r, 6), disk.mac, `${what}: source`);
            assertEquals((r[12] << 8) | r[13], ETH_P_AOE);
            assertEquals(r.length, Math.max(60, length), `${what}: length`);
            assertEquals(hex(r.subarray(24, length)), hex(f.subarray(24)), `${what}: payload echo`);
            assert(r.subarray(length).every((b) => b === 0), `${what}: padding`);
          }
        }
      } finally {
        runt.close();
      }
      const s = await stats(t);
      assertEquals(s.dev.disk1.proto_err, 10);
    }),
});

Deno.test({
  name:
    "version 2 frames and frames with the R flag get no answer; version 2 counts as ignored, R-flagged frames never reach the daemon",
  ...OPTS,
  fn: () =>
    withTarget({ devices: [{ name: "disk1", sizeMiB: 1 }] }, async (t) => {
      const ini = t.initiator(STEADY);
      const disk = ini.find(0, 1, { waitMs: 3000 });
      const before = await stats(t);
      let tag = 1;
      // Version 2 (and 0, and 15), for a Query Config read, an IDENTIFY and an unknown command.
      for (const version of [2, 0, 15]) {
        for (const command of [AOE_CMD_CFG, AOE_CMD_ATA, 4]) {
          const f = header(ini, disk, 60, { command, tag: tag++, version });
          if (command === AOE_CMD_ATA) [f[26], f[27]] = [1, ATA_CMD_ID_ATA];
          ini.sendRaw(f);
        }
      }
      assertSilence(ini, 400, "version != 1");
      const mid = await stats(t);
      assertEquals(mid.iface.ignored - before.iface.ignored, 9, "version != 1 counted ignored");
      assertEquals(mid.iface.rx_cnt - before.iface.rx_cnt, 9);
      // The R flag (alone and with E): docs/decisions.md §2.1, step 1: the socket filter
      // drops responses in the kernel, so the daemon neither answers nor counts them.
      for (const flags of [0x8, 0xc]) {
        for (const command of [AOE_CMD_CFG, AOE_CMD_ATA, 4]) {
          const f = header(ini, disk, 60, { command, tag: tag++, flags });
          if (command === AOE_CMD_ATA) [f[26], f[27]] = [1, ATA_CMD_ID_ATA];
          ini.sendRaw(f);
        }
      }
      assertSilence(ini, 400, "R flag");
      const after = await stats(t);
      assertEquals(after.iface.rx_cnt, mid.iface.rx_cnt, "R-flagged frames reach user space");
      assertEquals(after.iface.ignored, mid.iface.ignored);
      assertEquals(after.iface.tx_cnt, before.iface.tx_cnt, "nothing was sent");
      assertEquals(after.dev.disk1.other_cnt, before.dev.disk1.other_cnt);
      // The daemon is still fine.
      assertEquals(ini.identify(disk).serial, SERIAL);
    }),
});

Deno.test({
  name:
    "frames shorter than the common header or than their command's header get no answer and count as dropped",
  ...OPTS,
  fn: () =>
    withTarget({ devices: [{ name: "disk1", sizeMiB: 1 }] }, async (t) => {
      const ini = t.initiator(STEADY);
      const disk = ini.find(0, 1, { waitMs: 3000 });
      const runt = new RuntSender(t.hostIf);
      const before = await stats(t);
      try {
        // Shorter than 24 bytes: dropped before anything is looked at (rx_cnt unchanged).
        for (const length of [15, 20, 23]) {
          runt.send(header(ini, disk, 24, { command: AOE_CMD_CFG, tag: length }).slice(0, length));
        }
        assertSilence(ini, 300, "frames < 24 bytes");
        const mid = await stats(t);
        assertEquals(mid.iface.dropped - before.iface.dropped, 3, "< 24 bytes: dropped");
        assertEquals(mid.iface.rx_cnt, before.iface.rx_cnt, "< 24 bytes: not counted received");
        // Shorter than the command header: ATA 36, config 32, mask 28, reserve 26.
        const short: [number, number][] = [[0, 35], [0, 24], [1, 31], [1, 24], [2, 27], [3, 25]];
        for (const [command, length] of short) {
          const f = header(ini, disk, length, { command, tag: 100 + length });
          if (command === AOE_CMD_ATA && length > 27) [f[26], f[27]] = [1, ATA_CMD_ID_ATA];
          runt.send(f);
        }
        assertSilence(ini, 300, "frames shorter than their command header");
        const after = await stats(t);
        assertEquals(after.iface.dropped - mid.iface.dropped, short.length, "short: dropped");
        assertEquals(after.iface.rx_cnt - mid.iface.rx_cnt, short.length);
        assertEquals(after.iface.tx_cnt, before.iface.tx_cnt, "nothing was sent");
        assertEquals(after.dev.disk1.proto_err, before.dev.disk1.proto_err);
      } finally {
        runt.close();
      }
      // A full-size Query Config right after is answered.
      assertEquals(ini.queryConfig(disk, AOE_CFG_READ)?.slot, 1);
    }),
});

Deno.test({
  name:
    "a frame for another shelf/slot gets no answer and counts as ignored; Query Config broadcasts reach both devices, each answering with its own shelf/slot; an ATA broadcast is dropped",
  ...OPTS,
  fn: () =>
    withTarget({ devices: TWO_ON_SHELF_2 }, async (t) => {
      const ini = t.initiator(STEADY);
      const disk = ini.find(2, 1, { waitMs: 3000 });
      const before = await stats(t);
      // Unicast to addresses nobody has: other shelf, other slot, both.
      for (const [shelf, slot] of [[2, 2], [3, 1], [0, 0], [0xfffe, 0xfe]]) {
        const f = header(ini, { ...disk, shelf, slot }, 60, { command: AOE_CMD_CFG, tag: slot });
        ini.sendRaw(f);
        const a = header(ini, { ...disk, shelf, slot }, 60, { command: AOE_CMD_ATA, tag: slot });
        [a[26], a[27]] = [1, ATA_CMD_ID_ATA];
        ini.sendRaw(a);
      }
      assertSilence(ini, 400, "other shelf/slot");
      const mid = await stats(t);
      assertEquals(mid.iface.ignored - before.iface.ignored, 8, "ignored");
      assertEquals(mid.iface.tx_cnt, before.iface.tx_cnt);

      // Broadcasts: every device whose address matches answers, with its own shelf/slot.
      const collect = (shelf: number, slot: number, command: number, tag: number, n: number) => {
        const f = header(ini, { ...disk, mac: 0xffffffffffff, shelf, slot }, 60, { command, tag });
        if (command === AOE_CMD_ATA) [f[26], f[27]] = [1, ATA_CMD_ID_ATA];
        ini.sendRaw(f);
        const got: string[] = [];
        for (;;) {
          const r = ini.receiveRaw(got.length < n ? 1000 : n === 0 ? 400 : 200);
          if (r === null) break;
          assertEquals(new DataView(r.buffer).getUint32(20), tag);
          assertEquals(r[14], 0x18);
          assertEquals(macAt(r, 6), disk.mac);
          if (command === AOE_CMD_ATA) assertEquals(r[27], DRDY);
          got.push(`${(r[16] << 8) | r[17]}.${r[18]}`);
        }
        return got.sort();
      };
      assertEquals(collect(0xffff, 0xff, AOE_CMD_CFG, 0xb1, 2), ["2.1", "2.4"]);
      assertEquals(collect(2, 0xff, AOE_CMD_CFG, 0xb2, 2), ["2.1", "2.4"]);
      assertEquals(collect(0xffff, 4, AOE_CMD_CFG, 0xb3, 1), ["2.4"]);
      assertEquals(collect(0xffff, 0xff, AOE_CMD_ATA, 0xb4, 0), [], "ATA to a wildcard");
      assertEquals(collect(3, 0xff, AOE_CMD_CFG, 0xb5, 0), []);
      assertEquals(
        ini.discover({ waitMs: 500 }).map((d) => `${d.shelf}.${d.slot}`),
        ["2.1", "2.4"],
      );
      const after = await stats(t);
      assertEquals(after.iface.broadcast - mid.iface.broadcast, 4, "broadcast counter");
      assertEquals(after.iface.ignored - mid.iface.ignored, 1, "shelf 3 broadcast ignored");
      assertEquals(after.iface.wildcard_dropped - mid.iface.wildcard_dropped, 1, "wildcard ATA");
    }),
});

// ---- access control: ACLs, Mac Mask List, Reserve/Release ----------------------------------

Deno.test({
  name:
    "a device whose accept list lacks the host never answers it and counts denied; a deny list with the host silences it after reload",
  ...OPTS,
  fn: () =>
    withTarget({
      devices: [
        { name: "open", sizeMiB: 1 },
        { name: "closed", sizeMiB: 1, extra: `accept = ["${formatMac(OTHER)}"]` },
      ],
    }, async (t) => {
      const ini = t.initiator({ retries: 1, timeoutMs: 150, adaptive: false });
      const open = ini.find(0, 1, { waitMs: 3000 });
      assertEquals(ini.discover({ waitMs: 400 }).map((d) => d.slot), [1]);
      assertThrows(() => ini.find(0, 2, { waitMs: 300 }), AoeTimeoutError);
      // Unicast to it as well: ATA and an unknown command stay unanswered.
      const closed = { ...open, slot: 2 };
      assertThrows(() => ini.ata(closed, { cmd: ATA_CMD_ID_ATA, count: 1 }), AoeTimeoutError);
      const f = header(ini, closed, 60, { command: 4, tag: 77 });
      ini.sendRaw(f);
      assertSilence(ini, 300, "unknown command to a closed device");
      const s = await stats(t);
      // 2 discoveries that address it, 2 IDENTIFY tries, 1 unknown command.
      assertEquals(s.dev.closed.denied, 5);
      // Its one "other" request is the startup advertisement (docs/decisions.md §2.4), none of ours.
      assertEquals(s.dev.closed.other_cnt, 1);
      assertEquals(s.dev.closed.proto_err, 0);
      assertEquals(s.dev.open.denied, 0);

      // Now deny the host on "open" and reload.
      const conf = Deno.readTextFileSync(t.configPath).replace(
        "[devices.open]",
        `[devices.open]\ndeny = ["${formatMac(ini.mac)}"]`,
      );
      t.writeConfig(conf);
      const r = await t.ctl("reload");
      assertEquals(r.code, 0, r.stderr + r.stdout);
      assertThrows(() => ini.identify(open), AoeTimeoutError);
      const s2 = await stats(t);
      assertEquals(s2.dev.open.denied, 2);
    }),
});

Deno.test({
  name:
    "a Mac Mask List set over the wire refuses the host once it is off the list, and ggaoectl clear-macmask lets it back in",
  ...OPTS,
  fn: () =>
    withTarget({ devices: [{ name: "disk1", sizeMiB: 1 }] }, async (t) => {
      const ini = t.initiator({ retries: 1, timeoutMs: 150, adaptive: false });
      const disk = ini.find(0, 1, { waitMs: 3000 });
      assertEquals(ini.macMaskRead(disk).directives, []);
      const added = ini.macMaskEdit(disk, [
        { dcmd: AOE_DCMD_ADD, mac: OTHER },
        { dcmd: AOE_DCMD_ADD, mac: ini.mac },
      ]);
      assertEquals(added.merror, 0);
      assertEquals(added.directives.map((d) => d.mac).sort(), [ini.mac, OTHER].sort());
      // On the list: served.
      ini.write(disk, 3, pattern(512, 1));
      assertEquals(ini.identify(disk).serial, SERIAL);
      // Take ourselves off: this edit is still answered (we were on the list when it arrived).
      const removed = ini.macMaskEdit(disk, [{ dcmd: AOE_DCMD_DELETE, mac: ini.mac }]);
      assertEquals(removed.directives.map((d) => d.mac), [OTHER]);
      const before = await stats(t);
      assertThrows(() => ini.identify(disk), AoeTimeoutError);
      assertThrows(() => ini.macMaskRead(disk), AoeTimeoutError);
      assertThrows(() => ini.find(0, 1, { waitMs: 300 }), AoeTimeoutError);
      const image = readFileRange(t.images.get("disk1")!, 0, MIB);
      assertThrows(() => ini.write(disk, 3, pattern(512, 2)), AoeTimeoutError);
      assertEquals(hex(readFileRange(t.images.get("disk1")!, 0, MIB)), hex(image));
      const after = await stats(t);
      assert(after.dev.disk1.denied - before.dev.disk1.denied >= 7, "denied counted");
      assertEquals(after.iface.tx_cnt, before.iface.tx_cnt, "nothing sent to the host");

      const show = await t.ctl("show-macmask", "disk1");
      assertEquals(show.code, 0, show.stderr);
      assertEquals(show.stdout, `Device disk1:\n${formatMac(OTHER)} \n\n`);
      const clear = await t.ctl("clear-macmask", "disk1");
      assertEquals(clear.code, 0, clear.stderr);
      assertEquals(ini.identify(disk).serial, SERIAL);
      assertEquals(ini.macMaskRead(disk).directives, []);
      assertEquals(hex(ini.read(disk, 3, 1)), hex(pattern(512, 1)));
    }),
});

Deno.test({
  name:
    "a reservation held by another MAC makes the host's reads and writes fail with AoE error 6 until it is released",
  ...OPTS,
  fn: () =>
    withTarget({ devices: [{ name: "disk1", sizeMiB: 1 }] }, async (t) => {
      const image = fillImage(t, "disk1", 16);
      const ini = t.initiator(STEADY);
      const disk = ini.find(0, 1, { waitMs: 3000 });
      assertEquals(ini.reserveRead(disk), []);
      assertEquals(ini.reserveForceSet(disk, [OTHER]), [OTHER]);
      const data = pattern(1024, 9);
      for (const cmd of [ATA_CMD_READ, ATA_CMD_READ_EXT]) {
        assertEquals(aoeErrorCode(() => ini.ata(disk, { cmd, lba: 0, count: 1 })), 6);
      }
      for (const cmd of [ATA_CMD_WRITE, ATA_CMD_WRITE_EXT]) {
        assertEquals(aoeErrorCode(() => ini.ata(disk, { cmd, lba: 0, count: 2, data })), 6);
      }
      assertEquals(aoeErrorCode(() => ini.read(disk, 0, 2)), 6);
      assertEquals(aoeErrorCode(() => ini.write(disk, 0, data)), 6);
      // Only reads and writes are refused.
      assertEquals(ini.identify(disk).serial, SERIAL);
      assertEquals(ini.flush(disk), DRDY);
      assertEquals(ini.reserveRead(disk), [OTHER]);
      // "set" from a MAC that is not on the list is refused too (our decision: the SOURCE MAC).
      assertEquals(aoeErrorCode(() => ini.reserveSet(disk, [ini.mac])), 6);
      assertImage(t, "disk1", image, "while reserved by another MAC");
      const show = await t.ctl("show-reserve", "disk1");
      assertEquals(show.stdout, `Device disk1:\n${formatMac(OTHER)} \n\n`);
      const s = await stats(t);
      assertEquals(s.dev.disk1.proto_err, 7);
      assertEquals(s.dev.disk1.read_cnt + s.dev.disk1.write_cnt, 0);

      // Release: reads and writes work again.
      assertEquals(ini.reserveForceSet(disk, []), []);
      ini.write(disk, 0, data);
      assertEquals(hex(ini.read(disk, 0, 2)), hex(data));
      image.set(data, 0);
      assertImage(t, "disk1", image, "after release");
      // Reserved by the host itself (set works on an empty list): the host is served.
      assertEquals(ini.reserveSet(disk, [OTHER, ini.mac]), [ini.mac, OTHER].sort((a, b) => a - b));
      assertEquals(hex(ini.read(disk, 0, 2)), hex(data));
      // A member may use set to change the list, here to release it.
      assertEquals(ini.reserveSet(disk, []), []);
    }),
});

Deno.test({
  name:
    "the config string, the Mac Mask List and the reserve list survive a daemon restart (SIGTERM, start again)",
  ...OPTS,
  fn: () =>
    withTarget({ devices: [{ name: "disk1", sizeMiB: 1 }] }, async (t) => {
      const ini = t.initiator(STEADY);
      const disk = ini.find(0, 1, { waitMs: 3000 });
      const text = "survives a restart \u00e9\u00ff";
      assertEquals(ini.queryConfig(disk, AOE_CFG_FORCE_SET, text)?.config, text);
      ini.macMaskEdit(disk, [{ dcmd: AOE_DCMD_ADD, mac: ini.mac }, {
        dcmd: AOE_DCMD_ADD,
        mac: OTHER,
      }]);
      assertEquals(ini.reserveForceSet(disk, [ini.mac]), [ini.mac]);
      const data = pattern(1024, 21);
      ini.write(disk, 100, data);

      const status = await t.stop("SIGTERM");
      assertEquals(status.code, 0, `exit status after SIGTERM: ${status.code}`);
      t.start();
      await t.waitForLog(/ggaoed is running[\s\S]*ggaoed is running/);

      const again = ini.find(0, 1, { waitMs: 3000 });
      assertEquals(again.config, text);
      assertEquals(
        ini.macMaskRead(again).directives.map((d) => d.mac).sort((a, b) => a - b),
        [ini.mac, OTHER].sort((a, b) => a - b),
      );
      assertEquals(ini.reserveRead(again), [ini.mac]);
      assertEquals(hex(ini.read(again, 100, 2)), hex(data));
      const cfg = await t.ctl("show-config", "disk1");
      assert(cfg.stdout.startsWith("Device disk1:\n73 75 72 76 69 76 65 73"), cfg.stdout);
      const mask = await t.ctl("show-macmask", "disk1");
      assert(mask.stdout.includes(formatMac(OTHER)) && mask.stdout.includes(formatMac(ini.mac)));
      const res = await t.ctl("show-reserve", "disk1");
      assertEquals(res.stdout, `Device disk1:\n${formatMac(ini.mac)} \n\n`);
      // Still enforced after the restart: another reservation blocks the host.
      ini.reserveForceSet(again, [OTHER]);
      assertEquals(aoeErrorCode(() => ini.read(again, 100, 1)), 6);
    }),
});

Deno.test({
  name:
    "no frame to a wildcard address writes data or changes state: WRITE, config set, mask edit and reserve force set are dropped and counted on every device",
  ...OPTS,
  fn: () =>
    withTarget({ devices: TWO_ON_SHELF_2 }, async (t) => {
      const ini = t.initiator(STEADY);
      const disk = ini.find(2, 1, { waitMs: 3000 });
      const images = [fillImage(t, "disk1", 11), fillImage(t, "disk2", 12)];
      const before = await stats(t);
      const out = new Uint8Array(9000);
      let tag = 0x7000;
      const send = (shelf: number, slot: number, build: (env: AoeEnvelope) => number) => {
        const n = build({ dst: 0xffffffffffff, src: ini.mac, shelf, slot, tag: tag++ });
        ini.sendRaw(out.subarray(0, n));
      };
      const wildcards = [[0xffff, 0xff], [2, 0xff], [0xffff, 1]];
      for (const [shelf, slot] of wildcards) {
        send(shelf, slot, (env) =>
          buildAtaRequest(
            out,
            env,
            ataReadWriteFields(true, 8, 2),
            new Uint8Array(1024).fill(0xee),
          ));
        send(shelf, slot, (env) =>
          buildConfigRequest(out, env, AOE_CFG_FORCE_SET, new TextEncoder().encode("mine")));
        send(shelf, slot, (env) =>
          buildMaskRequest(out, env, AOE_MCMD_EDIT, [{ dcmd: AOE_DCMD_ADD, mac: ini.mac }]));
        send(shelf, slot, (env) =>
          buildReserveRequest(out, env, AOE_RCMD_FORCE_SET, [ini.mac]));
      }
      assertSilence(ini, 400, "state changes to wildcard addresses");
      const after = await stats(t);
      assertEquals(after.iface.wildcard_dropped - before.iface.wildcard_dropped, 12);
      assertEquals(after.iface.tx_cnt, before.iface.tx_cnt, "nothing was answered");
      for (const name of ["disk1", "disk2"]) {
        assertEquals(after.dev[name].write_cnt, before.dev[name].write_cnt, `${name} writes`);
      }
      assertImage(t, "disk1", images[0], "disk1 after wildcard writes");
      assertImage(t, "disk2", images[1], "disk2 after wildcard writes");
      for (const what of ["show-config", "show-macmask", "show-reserve"]) {
        const r = await t.ctl("--json", what);
        assertEquals(r.code, 0, r.stderr);
        for (const d of JSON.parse(r.stdout).devices) {
          assertEquals(d.config ?? "", "", `${what} ${d.name}`);
          assertEquals(d.macs ?? [], [], `${what} ${d.name}`);
        }
      }
      // Addressed exactly, the same commands work (the Linux driver, iPXE and aoetools do so).
      ini.write(disk, 8, new Uint8Array(1024).fill(0xee));
      assertEquals(ini.reserveForceSet(disk, [ini.mac]), [ini.mac]);
      assertEquals(ini.read(disk, 8, 2), new Uint8Array(1024).fill(0xee));
    }),
});
