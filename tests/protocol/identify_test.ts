import { assertEquals, assertThrows } from "../helpers/assert.ts";
import { buildIdentify, IDENTIFY_MODEL, parseIdentify } from "../../src/protocol/identify.ts";

const word = (p: Uint8Array, w: number) => p[w * 2] | (p[w * 2 + 1] << 8);

Deno.test("IDENTIFY page: every documented word, the rest zero", () => {
  const sectors = 0x1_2345_6789; // > 2^32: exercises LBA48 and every clamp
  const p = buildIdentify("disk1", "2.0.0", IDENTIFY_MODEL, sectors);
  assertEquals(p.length, 512);
  const expected = new Map<number, number>([
    [48, 0x0001],
    [49, 0x0200],
    [53, 0x0001],
    [54, 16383],
    [55, 16],
    [56, 255],
    [57, (16383 * 16 * 255) & 0xffff],
    [58, (16383 * 16 * 255) >>> 16],
    [60, 0xffff],
    [61, 0x0fff],
    [83, 0x7400],
    [84, 0x4000],
    [86, 0x7400],
    [87, 0x4000],
    [93, 0x400b],
    [100, 0x6789],
    [101, 0x2345],
    [102, 0x0001],
    [103, 0x0000],
  ]);
  const strings = new Set<number>();
  for (let w = 10; w <= 19; w++) strings.add(w);
  for (let w = 23; w <= 46; w++) strings.add(w);
  for (let w = 0; w < 256; w++) {
    if (strings.has(w)) continue;
    assertEquals(word(p, w), expected.get(w) ?? 0, `word ${w}`);
  }
});

Deno.test("IDENTIFY strings are space padded with byte pairs swapped", () => {
  const p = buildIdentify("0.1:host1", "2.0.0", IDENTIFY_MODEL, 100);
  // vblade's "shelf.slot:hostname" + 11 spaces, swapped per pair: ".0" ":1" "oh" "ts" " 1" ...
  assertEquals(
    new TextDecoder().decode(p.subarray(20, 40)),
    ".0:1ohts 1" + " ".repeat(10),
  );
  assertEquals(new TextDecoder().decode(p.subarray(46, 54)), ".2.0 0  ");
  assertEquals(new TextDecoder().decode(p.subarray(54, 68)), "GG soA Eatgrte");
  const d = parseIdentify(p);
  assertEquals([d.serial, d.firmware, d.model], ["0.1:host1", "2.0.0", "GGs AoE target"]);
});

Deno.test("IDENTIFY serial longer than 20 characters is cut, non-ASCII becomes '?'", () => {
  const d = parseIdentify(buildIdentify("a-very-long-device-name-x", "2.0.0", "m", 1));
  assertEquals(d.serial, "a-very-long-device-n");
  assertEquals(parseIdentify(buildIdentify("dïsk", "2.0.0", "m", 1)).serial, "d?sk");
});

const chs: { sectors: number; cylinders: number }[] = [
  { sectors: 0, cylinders: 0 },
  { sectors: 4079, cylinders: 0 },
  { sectors: 4080, cylinders: 1 },
  { sectors: 16383 * 4080 + 4079, cylinders: 16383 },
  // 65536 * 4080 sectors: the original truncated 65536 to 16 bits (0) before clamping.
  { sectors: 65536 * 4080, cylinders: 16383 },
];
for (const c of chs) {
  Deno.test(`IDENTIFY CHS cylinders for ${c.sectors} sectors is ${c.cylinders}`, () => {
    const d = parseIdentify(buildIdentify("d", "2.0.0", "m", c.sectors));
    assertEquals(d.cylinders, c.cylinders);
    assertEquals(d.chsCapacity, c.cylinders * 16 * 255);
  });
}

Deno.test("IDENTIFY capacities: LBA28 clamps at 0x0FFFFFFF, LBA48 is exact", () => {
  for (const sectors of [1, 0x0fffffff, 0x10000000, 2 ** 47 + 12345]) {
    const d = parseIdentify(buildIdentify("d", "2.0.0", "m", sectors));
    assertEquals(d.sectors, sectors);
    assertEquals(d.lba28Sectors, Math.min(sectors, 0x0fffffff));
  }
});

Deno.test("parseIdentify refuses a short page", () => {
  assertThrows(() => parseIdentify(new Uint8Array(100)), RangeError);
});
