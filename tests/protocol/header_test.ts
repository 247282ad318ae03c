import { assertEquals, assertThrows } from "../helpers/assert.ts";
import {
  AoeParseError,
  frameShelf,
  frameSlot,
  frameTag,
  padFrame,
  ParseFailure,
  parseHeader,
  putHeader,
  putRequestHeader,
  putResponseHeader,
} from "../../src/protocol/header.ts";
import { AOE_CMD_CFG, AOE_FL_ERROR, AOE_FL_RESPONSE } from "../../src/protocol/constants.ts";

const hdr = (hex: string) =>
  Uint8Array.from(hex.split(/\s+/).filter(Boolean), (h) => parseInt(h, 16));

Deno.test("common header layout: every field at its spec offset, big-endian", () => {
  const f = new Uint8Array(24);
  putHeader(f, {
    dst: 0x0a0b0c0d0e0f,
    src: 0x001b210aaa22,
    version: 1,
    flags: AOE_FL_RESPONSE | AOE_FL_ERROR,
    error: 6,
    shelf: 0x1234,
    slot: 0x56,
    command: 3,
    tag: 0xdeadbeef,
  });
  assertEquals(
    f,
    hdr("0a 0b 0c 0d 0e 0f  00 1b 21 0a aa 22  88 a2  1c 06  12 34  56 03  de ad be ef"),
  );
  assertEquals(frameShelf(f), 0x1234);
  assertEquals(frameSlot(f), 0x56);
  assertEquals(frameTag(f), 0xdeadbeef);
});

Deno.test("parseHeader reads back what putHeader wrote, in both directions", () => {
  const e = { dst: 0xffffffffffff, src: 0x020000000001, shelf: 0xffff, slot: 0xff, tag: 1 };
  const f = new Uint8Array(60);
  putRequestHeader(f, e, AOE_CMD_CFG);
  assertEquals(parseHeader(f), { ...e, version: 1, flags: 0, error: 0, command: AOE_CMD_CFG });
  putResponseHeader(f, e, AOE_CMD_CFG, 2);
  assertEquals(parseHeader(f), {
    ...e,
    version: 1,
    flags: AOE_FL_RESPONSE | AOE_FL_ERROR,
    error: 2,
    command: AOE_CMD_CFG,
  });
  putResponseHeader(f, e, AOE_CMD_CFG);
  assertEquals(parseHeader(f).flags, AOE_FL_RESPONSE);
});

const bad: { name: string; bytes: Uint8Array; reason: ParseFailure }[] = [
  { name: "23 bytes", bytes: new Uint8Array(23), reason: ParseFailure.SHORT },
  {
    name: "IPv4 EtherType",
    bytes: hdr("0 0 0 0 0 0 0 0 0 0 0 0 08 00" + " 10".repeat(10)),
    reason: ParseFailure.NOT_AOE,
  },
  {
    name: "version 2",
    bytes: hdr("0 0 0 0 0 0 0 0 0 0 0 0 88 a2 20" + " 0".repeat(9)),
    reason: ParseFailure.BAD_VERSION,
  },
];
for (const c of bad) {
  Deno.test(`parseHeader rejects a frame with ${c.name}`, () => {
    const e = assertThrows(() => parseHeader(c.bytes), AoeParseError) as AoeParseError;
    assertEquals(e.reason, c.reason);
  });
}

Deno.test("padFrame zero-fills short frames to 60 bytes and leaves longer ones alone", () => {
  const f = new Uint8Array(100).fill(0xaa);
  assertEquals(padFrame(f, 36), 60);
  assertEquals(f.subarray(36, 60), new Uint8Array(24));
  assertEquals(f[60], 0xaa);
  assertEquals(padFrame(f, 61), 61);
});
