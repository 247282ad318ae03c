import { assertEquals, assertThrows } from "../helpers/assert.ts";
import {
  buildReserveRequest,
  buildReserveResponse,
  parseReserveRequest,
  parseReserveResponse,
} from "../../src/protocol/reserve.ts";
import { AoeParseError } from "../../src/protocol/header.ts";
import { AOE_RCMD_FORCE_SET, AOE_RCMD_READ } from "../../src/protocol/constants.ts";
import { env, frameBuffer } from "./fixtures.ts";

Deno.test("Reserve request layout: RCmd, NMacs, then 6-byte MACs", () => {
  const f = frameBuffer();
  const n = buildReserveRequest(f, env(), AOE_RCMD_FORCE_SET, [0x0a0b0c0d0e0f, 1]);
  assertEquals(n, 60);
  assertEquals(Array.from(f.subarray(24, 38)), [2, 2, 10, 11, 12, 13, 14, 15, 0, 0, 0, 0, 0, 1]);
  assertEquals(parseReserveRequest(f, n).macs, [0x0a0b0c0d0e0f, 1]);
});

Deno.test("Reserve response round trip with 255 MACs", () => {
  const f = frameBuffer();
  const macs = Array.from({ length: 255 }, (_, i) => 0x020000000000 + i);
  const n = buildReserveResponse(f, env(), { rcmd: AOE_RCMD_READ, macs });
  assertEquals(n, 26 + 255 * 6);
  const p = parseReserveResponse(f, n);
  assertEquals(p.rcmd, AOE_RCMD_READ);
  assertEquals(p.macs, macs);
});

Deno.test("parseReserveRequest refuses NMacs beyond the frame", () => {
  const f = frameBuffer();
  buildReserveRequest(f, env(), AOE_RCMD_READ);
  f[25] = 6;
  assertThrows(() => parseReserveRequest(f, 60), AoeParseError);
});
