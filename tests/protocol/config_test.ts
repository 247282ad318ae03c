import { assertEquals, assertThrows } from "../helpers/assert.ts";
import {
  buildConfigRequest,
  buildConfigResponse,
  parseConfigRequest,
  parseConfigResponse,
} from "../../src/protocol/config.ts";
import { AoeParseError, ParseFailure } from "../../src/protocol/header.ts";
import { AOE_CFG_SET, AOE_CFG_TEST_PREFIX } from "../../src/protocol/constants.ts";
import { env, frameBuffer } from "./fixtures.ts";

const text = (s: string) => new TextEncoder().encode(s);

Deno.test("Query Config request layout: zero numbers, CCmd in the low nibble, BE length", () => {
  const f = frameBuffer();
  const n = buildConfigRequest(f, env(), AOE_CFG_SET, text("hello"));
  assertEquals(n, 60);
  assertEquals(Array.from(f.subarray(24, 37)), [
    0,
    0,
    0,
    0,
    0,
    0x03,
    0x00,
    0x05,
    ...text("hello"),
  ]);
  const p = parseConfigRequest(f, n);
  assertEquals(p.ccmd, AOE_CFG_SET);
  assertEquals(p.config, text("hello"));
});

Deno.test("Query Config response round trip: buffer count, firmware BE, sectors, version 1", () => {
  const f = frameBuffer();
  const config = text("x".repeat(1024));
  const n = buildConfigResponse(f, env(), {
    bufferCount: 0x1234,
    firmware: 0x0200,
    sectorCount: 17,
    ccmd: AOE_CFG_TEST_PREFIX,
    config,
  });
  assertEquals(n, 32 + 1024);
  assertEquals(Array.from(f.subarray(24, 32)), [0x12, 0x34, 0x02, 0x00, 17, 0x12, 0x04, 0x00]);
  const p = parseConfigResponse(f, n);
  assertEquals(
    [p.bufferCount, p.firmware, p.sectorCount, p.aoeVersion, p.ccmd],
    [0x1234, 0x0200, 17, 1, 2],
  );
  assertEquals(p.config, config);
  assertEquals(p.header.flags, 0x08);
});

Deno.test("parseConfigResponse refuses a string length beyond the frame", () => {
  const f = frameBuffer();
  buildConfigResponse(f, env(), {
    bufferCount: 1,
    firmware: 0,
    sectorCount: 2,
    ccmd: 0,
    config: text("abc"),
  });
  f[31] = 40;
  const e = assertThrows(() => parseConfigResponse(f, 60), AoeParseError) as AoeParseError;
  assertEquals(e.reason, ParseFailure.SHORT);
});
