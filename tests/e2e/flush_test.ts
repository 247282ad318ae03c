/**
 * FLUSH CACHE waits for every write that arrived before it: its reply comes after theirs, and
 * then the data is in the file.
 */

import { assert, assertEquals } from "../helpers/assert.ts";
import { buildAtaRequest } from "../../src/protocol/ata.ts";
import {
  AOE_AFL_EXT,
  AOE_AFL_WRITE,
  ATA_CMD_FLUSH_EXT,
  ATA_CMD_WRITE_EXT,
} from "../../src/protocol/constants.ts";
import { firstDifference, pattern, readFileRange, withTarget } from "../../lab/target.ts";

Deno.test({
  name: "a FLUSH sent behind 32 pipelined writes is answered after all of them, status 0x40",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: () =>
    withTarget({ mtu: 9000, directIo: true, devices: [{ name: "disk1", sizeMiB: 8 }] }, (t) => {
      const ini = t.initiator({ adaptive: false });
      const disk = ini.find(0, 1, { waitMs: 5000 });
      const env = { dst: disk.mac, src: ini.mac, shelf: 0, slot: 1 };
      const sectors = 16;
      const writes = 32;
      const data = pattern(writes * sectors * 512, 5150);
      const frame = new Uint8Array(36 + sectors * 512);
      for (let i = 0; i < writes; i++) {
        const len = buildAtaRequest(frame, { ...env, tag: 0x1000 + i }, {
          aflags: AOE_AFL_EXT | AOE_AFL_WRITE,
          errFeature: 0,
          sectorCount: sectors,
          cmdStatus: ATA_CMD_WRITE_EXT,
          lba: i * sectors,
        }, data.subarray(i * sectors * 512, (i + 1) * sectors * 512));
        ini.sendRaw(frame.subarray(0, len));
      }
      const flushLen = buildAtaRequest(frame, { ...env, tag: 0x2000 }, {
        aflags: AOE_AFL_EXT,
        errFeature: 0,
        sectorCount: 0,
        cmdStatus: ATA_CMD_FLUSH_EXT,
        lba: 0,
      });
      ini.sendRaw(frame.subarray(0, flushLen));
      const order: number[] = [];
      let flushStatus = -1;
      while (order.length < writes + 1) {
        const r = ini.receiveRaw(3000);
        assert(r !== null, `only ${order.length} replies: ${order.map((x) => x.toString(16))}`);
        const tag = new DataView(r.buffer, r.byteOffset).getUint32(20);
        order.push(tag);
        if (tag === 0x2000) flushStatus = r[27];
        else assertEquals(r[27], 0x40, `write ${tag.toString(16)} status`);
      }
      assertEquals(order.at(-1), 0x2000, "the flush reply came before some write replies");
      assertEquals(flushStatus, 0x40);
      const file = readFileRange(t.images.get("disk1")!, 0, data.length);
      assertEquals(firstDifference(file, data), -1);
      return Promise.resolve();
    }),
});
