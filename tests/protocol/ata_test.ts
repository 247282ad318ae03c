import { assertEquals, assertThrows } from "../helpers/assert.ts";
import {
  type AtaFields,
  ataLba,
  ataLbaField,
  ataReadWriteFields,
  buildAtaRequest,
  buildAtaResponse,
  parseAtaRequest,
  parseAtaResponse,
} from "../../src/protocol/ata.ts";
import { AoeParseError, ParseFailure } from "../../src/protocol/header.ts";
import {
  AOE_AFL_EXT,
  AOE_AFL_WRITE,
  ATA_CMD_READ,
  ATA_CMD_READ_EXT,
  ATA_CMD_WRITE,
  ATA_CMD_WRITE_EXT,
  ATA_DRDY,
} from "../../src/protocol/constants.ts";
import { env, frameBuffer } from "./fixtures.ts";

Deno.test("ATA request layout: AFlags, feature, count, opcode, LBA little-endian, data at 36", () => {
  const f = frameBuffer();
  const data = new Uint8Array(512).fill(0x5a);
  const a: AtaFields = {
    aflags: AOE_AFL_EXT | AOE_AFL_WRITE,
    errFeature: 0,
    sectorCount: 1,
    cmdStatus: ATA_CMD_WRITE_EXT,
    lba: 0x0102_0304_0506,
  };
  const n = buildAtaRequest(f, env(), a, data);
  assertEquals(n, 36 + 512);
  assertEquals(Array.from(f.subarray(24, 36)), [
    0x41,
    0x00,
    0x01,
    0x34,
    0x06,
    0x05,
    0x04,
    0x03,
    0x02,
    0x01,
    0x00,
    0x00,
  ]);
  assertEquals(f[14], 0x10, "version 1, no flags");
  const p = parseAtaRequest(f, n);
  assertEquals({ ...p, header: undefined, data: undefined }, {
    ...a,
    header: undefined,
    data: undefined,
  });
  assertEquals(p.data, data);
});

Deno.test("ATA response round trip carries status, error and read data", () => {
  const f = frameBuffer();
  const data = new Uint8Array(1024).map((_, i) => i & 0xff);
  const a = {
    aflags: AOE_AFL_EXT,
    errFeature: 0,
    sectorCount: 2,
    cmdStatus: ATA_DRDY,
    lba: 2 ** 40,
  };
  const n = buildAtaResponse(f, env({ tag: 9 }), a, data);
  const p = parseAtaResponse(f, n);
  assertEquals(p.header.flags, 0x08);
  assertEquals(p.header.tag, 9);
  assertEquals(p.cmdStatus, ATA_DRDY);
  assertEquals(p.lba, 2 ** 40);
  assertEquals(p.data, data);
});

Deno.test("ATA response without data is padded to 60 bytes", () => {
  const f = frameBuffer().fill(0xee);
  const n = buildAtaResponse(f, env(), {
    aflags: 0,
    errFeature: 0x04,
    sectorCount: 1,
    cmdStatus: 0x41,
    lba: 0,
  });
  assertEquals(n, 60);
  assertEquals(f.subarray(36, 60), new Uint8Array(24));
});

Deno.test("parseAtaRequest refuses a response, a short frame and a config frame", () => {
  const f = frameBuffer();
  const a = { aflags: 0, errFeature: 0, sectorCount: 1, cmdStatus: ATA_CMD_READ, lba: 0 };
  buildAtaResponse(f, env(), a);
  let e = assertThrows(() => parseAtaRequest(f, 60), AoeParseError) as AoeParseError;
  assertEquals(e.reason, ParseFailure.WRONG_DIRECTION);
  buildAtaRequest(f, env(), a);
  e = assertThrows(() => parseAtaRequest(f, 35), AoeParseError) as AoeParseError;
  assertEquals(e.reason, ParseFailure.SHORT);
  f[19] = 1;
  e = assertThrows(() => parseAtaRequest(f, 60), AoeParseError) as AoeParseError;
  assertEquals(e.reason, ParseFailure.WRONG_COMMAND);
});

const lbaCases: { name: string; aflags: number; lbaBytes: number[]; expected: number }[] = [
  {
    name: "LBA28 with the 0xE0 device nibble the Linux driver sends is masked to 28 bits",
    aflags: 0,
    lbaBytes: [0x78, 0x56, 0x34, 0xe2, 0x00, 0x00],
    expected: 0x02345678,
  },
  {
    name: "LBA28 ignores LBA4 and LBA5",
    aflags: 0,
    lbaBytes: [0x01, 0x00, 0x00, 0x00, 0xff, 0xff],
    expected: 1,
  },
  {
    name: "LBA48 above 2^28 keeps every bit",
    aflags: AOE_AFL_EXT,
    lbaBytes: [0x00, 0x00, 0x00, 0x10, 0x00, 0x00],
    expected: 2 ** 28,
  },
  {
    name: "LBA48 maximum is 2^48 - 1",
    aflags: AOE_AFL_EXT,
    lbaBytes: [0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
    expected: 2 ** 48 - 1,
  },
];
for (const c of lbaCases) {
  Deno.test(c.name, () => {
    const f = new Uint8Array(60);
    f[24] = c.aflags;
    f.set(c.lbaBytes, 28);
    assertEquals(ataLba(f), c.expected);
  });
}

Deno.test("ataLbaField reads all 48 bits whatever the E flag", () => {
  const f = new Uint8Array(60);
  f.set([0x78, 0x56, 0x34, 0xe2, 0x01, 0x00], 28);
  assertEquals(ataLbaField(f), 0x01e2345678);
});

Deno.test("ataReadWriteFields uses LBA28 opcodes with 0xE0 below 2^28 and LBA48 above", () => {
  const r = ataReadWriteFields(false, 0x0123456, 2);
  assertEquals(r, {
    aflags: 0,
    errFeature: 0,
    sectorCount: 2,
    cmdStatus: ATA_CMD_READ,
    lba: 0xe0123456,
  });
  const f = new Uint8Array(60);
  buildAtaRequest(f, env(), r);
  assertEquals(ataLba(f), 0x0123456, "a target masks the device nibble back off");
  const w = ataReadWriteFields(true, 2 ** 28 - 1, 2);
  assertEquals(w.cmdStatus, ATA_CMD_WRITE_EXT);
  assertEquals(w.aflags, AOE_AFL_EXT | AOE_AFL_WRITE);
  assertEquals(w.lba, 2 ** 28 - 1);
  assertEquals(ataReadWriteFields(true, 5, 1).cmdStatus, ATA_CMD_WRITE);
  assertEquals(ataReadWriteFields(false, 5, 1, true).cmdStatus, ATA_CMD_READ_EXT);
});
