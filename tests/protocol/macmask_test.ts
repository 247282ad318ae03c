import { assertEquals, assertThrows } from "../helpers/assert.ts";
import {
  buildMaskRequest,
  buildMaskResponse,
  parseMaskRequest,
  parseMaskResponse,
} from "../../src/protocol/macmask.ts";
import { AoeParseError } from "../../src/protocol/header.ts";
import {
  AOE_DCMD_ADD,
  AOE_DCMD_DELETE,
  AOE_MCMD_EDIT,
  AOE_MERR_BADDIR,
} from "../../src/protocol/constants.ts";
import { env, frameBuffer } from "./fixtures.ts";

Deno.test("Mac Mask edit request layout: 4-byte header then 8-byte directives", () => {
  const f = frameBuffer();
  const directives = [
    { dcmd: AOE_DCMD_ADD, mac: 0x001b210aaa22 },
    { dcmd: AOE_DCMD_DELETE, mac: 0x0000000000ff },
  ];
  const n = buildMaskRequest(f, env(), AOE_MCMD_EDIT, directives);
  assertEquals(n, 60);
  assertEquals(Array.from(f.subarray(24, 44)), [
    0,
    1,
    0,
    2,
    0,
    1,
    0x00,
    0x1b,
    0x21,
    0x0a,
    0xaa,
    0x22,
    0,
    2,
    0,
    0,
    0,
    0,
    0,
    0xff,
  ]);
  const p = parseMaskRequest(f, n);
  assertEquals([p.mcmd, p.merror, p.dirCount], [AOE_MCMD_EDIT, 0, 2]);
  assertEquals(p.directives, directives);
});

Deno.test("Mac Mask error response: Dir Count is the failing index, directives before it parse", () => {
  const f = frameBuffer();
  const directives = [{ dcmd: 1, mac: 5 }, { dcmd: 9, mac: 6 }];
  const n = buildMaskResponse(f, env(), {
    mcmd: AOE_MCMD_EDIT,
    merror: AOE_MERR_BADDIR,
    dirCount: 1,
    directives,
  });
  const p = parseMaskResponse(f, n);
  assertEquals([p.merror, p.dirCount], [AOE_MERR_BADDIR, 1]);
  assertEquals(p.directives, [{ dcmd: 1, mac: 5 }]);
  assertEquals(f[28 + 8 + 1], 9, "the failing directive is still in the frame");
});

Deno.test("parseMaskResponse refuses a Dir Count beyond the frame", () => {
  const f = frameBuffer();
  buildMaskResponse(f, env(), { mcmd: 0, merror: 0, directives: [] });
  f[27] = 5;
  assertThrows(() => parseMaskResponse(f, 60), AoeParseError);
});
