/**
 * The 512-byte IDENTIFY DEVICE page (ATA opcode 0xEC) a target returns as the data of its
 * ATA reply, and its parser for initiators.
 *
 * The page is 256 little-endian 16-bit words; everything not listed is 0.
 * ```
 * word     byte     content
 * 10..19   20..39   serial number, ATA string, 20 chars (`serial`, else "shelf.slot:hostname")
 * 23..26   46..53   firmware revision, 8 chars (= VERSION)
 * 27..46   54..93   model number, 40 chars ("GGs AoE target")
 * 48       96       0x0001  dword I/O
 * 49       98       0x0200  LBA supported
 * 53       106      0x0001  words 54..58 valid
 * 54       108      current cylinders = min(floor(sectors / (16 * 255)), 16383)
 * 55       110      current heads = 16
 * 56       112      current sectors per track = 255
 * 57..58   114..117 current CHS capacity = cylinders * 16 * 255 (32-bit LE)
 * 60..61   120..123 LBA28 capacity = min(sectors, 0x0FFFFFFF) (32-bit LE)
 * 83       166      0x7400  supported: must-be-one, FLUSH CACHE EXT, FLUSH CACHE, LBA48
 * 84       168      0x4000  must-be-one
 * 86       172      0x7400  enabled: same bits
 * 87       174      0x4000  must-be-one
 * 93       186      0x400B  hardware reset result
 * 100..103 200..207 LBA48 capacity = sectors (64-bit LE)
 * ```
 * ATA strings are padded with spaces and stored with each byte pair swapped, so the first
 * character is the high byte of the first word.
 *
 * @module
 */

import { LBA28_MASK, SECTOR_SIZE } from "./constants.ts";

/** Bytes in an IDENTIFY page. */
export const IDENTIFY_SIZE = SECTOR_SIZE;
/** The model string we report. */
export const IDENTIFY_MODEL = "GGs AoE target";

const SERIAL_OFF = 20, SERIAL_LEN = 20;
const FIRMWARE_OFF = 46, FIRMWARE_LEN = 8;
const MODEL_OFF = 54, MODEL_LEN = 40;
const CHS_HEADS = 16;
const CHS_SECTORS = 255;
const CHS_MAX_CYLINDERS = 16383;
const TWO_32 = 0x1_0000_0000;

/** What an initiator learns from an IDENTIFY page. */
export interface IdentifyData {
  serial: string;
  firmware: string;
  model: string;
  /** LBA48 capacity (words 100..103). */
  sectors: number;
  /** LBA28 capacity (words 60..61). */
  lba28Sectors: number;
  cylinders: number;
  heads: number;
  sectorsPerTrack: number;
  /** Words 57..58. */
  chsCapacity: number;
  /** Words 83 and 86: bit 10 LBA48, 12 FLUSH CACHE, 13 FLUSH CACHE EXT. */
  commandSetSupported: number;
  commandSetEnabled: number;
}

function putWord(f: Uint8Array, offset: number, word: number, value: number): void {
  f[offset + word * 2] = value & 0xff;
  f[offset + word * 2 + 1] = (value >>> 8) & 0xff;
}

function getWord(page: Uint8Array, word: number): number {
  return page[word * 2] | (page[word * 2 + 1] << 8);
}

/** Writes an ATA string: space padded, byte pairs swapped; non-ASCII characters become '?'. */
function putAtaString(f: Uint8Array, offset: number, length: number, text: string): void {
  for (let i = 0; i < length; i++) {
    let c = i < text.length ? text.charCodeAt(i) : 0x20;
    if (c < 0x20 || c > 0x7e) c = 0x3f;
    f[offset + (i ^ 1)] = c;
  }
}

function getAtaString(page: Uint8Array, offset: number, length: number): string {
  let s = "";
  for (let i = 0; i < length; i++) s += String.fromCharCode(page[offset + (i ^ 1)]);
  return s.trimEnd();
}

/**
 * Writes the IDENTIFY page for a device of `sectors` sectors at `f[offset..offset+512]`.
 * Allocates nothing (the engine calls it per request).
 */
export function putIdentify(
  f: Uint8Array,
  offset: number,
  serial: string,
  firmware: string,
  model: string,
  sectors: number,
): void {
  f.fill(0, offset, offset + IDENTIFY_SIZE);
  putAtaString(f, offset + SERIAL_OFF, SERIAL_LEN, serial);
  putAtaString(f, offset + FIRMWARE_OFF, FIRMWARE_LEN, firmware);
  putAtaString(f, offset + MODEL_OFF, MODEL_LEN, model);
  putWord(f, offset, 48, 0x0001);
  putWord(f, offset, 49, 0x0200);
  putWord(f, offset, 53, 0x0001);
  // The original truncated to 16 bits before clamping; clamp first.
  const cylinders = Math.min(Math.floor(sectors / (CHS_HEADS * CHS_SECTORS)), CHS_MAX_CYLINDERS);
  putWord(f, offset, 54, cylinders);
  putWord(f, offset, 55, CHS_HEADS);
  putWord(f, offset, 56, CHS_SECTORS);
  const chs = cylinders * CHS_HEADS * CHS_SECTORS;
  putWord(f, offset, 57, chs & 0xffff);
  putWord(f, offset, 58, chs >>> 16);
  const lba28 = Math.min(sectors, LBA28_MASK);
  putWord(f, offset, 60, lba28 & 0xffff);
  putWord(f, offset, 61, lba28 >>> 16);
  putWord(f, offset, 83, 0x7400);
  putWord(f, offset, 84, 0x4000);
  putWord(f, offset, 86, 0x7400);
  putWord(f, offset, 87, 0x4000);
  putWord(f, offset, 93, 0x400b);
  const lo = sectors % TWO_32;
  const hi = Math.floor(sectors / TWO_32);
  putWord(f, offset, 100, lo & 0xffff);
  putWord(f, offset, 101, lo >>> 16);
  putWord(f, offset, 102, hi & 0xffff);
  putWord(f, offset, 103, Math.floor(hi / 0x10000) & 0xffff);
}

/** Builds a fresh IDENTIFY page (tests, tools). */
export function buildIdentify(
  serial: string,
  firmware: string,
  model: string,
  sectors: number,
): Uint8Array {
  const page = new Uint8Array(IDENTIFY_SIZE);
  putIdentify(page, 0, serial, firmware, model, sectors);
  return page;
}

/** Reads an IDENTIFY page (the 512 data bytes of the reply). */
export function parseIdentify(page: Uint8Array): IdentifyData {
  if (page.length < IDENTIFY_SIZE) {
    throw new RangeError(`IDENTIFY page of ${page.length} bytes: needs 512`);
  }
  return {
    serial: getAtaString(page, SERIAL_OFF, SERIAL_LEN),
    firmware: getAtaString(page, FIRMWARE_OFF, FIRMWARE_LEN),
    model: getAtaString(page, MODEL_OFF, MODEL_LEN),
    sectors: (getWord(page, 103) * 0x10000 + getWord(page, 102)) * TWO_32 +
      getWord(page, 101) * 0x10000 + getWord(page, 100),
    lba28Sectors: getWord(page, 61) * 0x10000 + getWord(page, 60),
    cylinders: getWord(page, 54),
    heads: getWord(page, 55),
    sectorsPerTrack: getWord(page, 56),
    chsCapacity: getWord(page, 58) * 0x10000 + getWord(page, 57),
    commandSetSupported: getWord(page, 83),
    commandSetEnabled: getWord(page, 86),
  };
}
