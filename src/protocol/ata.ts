/**
 * AoE command 0: ATA. The same 12-byte argument header travels in both directions; the
 * Cmd/Status byte holds the ATA opcode in a request and the ATA status in a response, the
 * Err/Feature byte the feature in a request and the ATA error register in a response.
 *
 * ```
 *  24       25            26         27            28                          34     36
 * +--------+-------------+----------+-------------+---------------------------+------+------
 * | AFlags | Err/Feature | Sect Cnt | Cmd/Status  | LBA0 LBA1 LBA2 LBA3 LBA4 LBA5 | rsvd | data
 * +--------+-------------+----------+-------------+---------------------------+------+------
 * ```
 * AFlags: 0x40 E (LBA48), 0x10 D (device), 0x02 A (async), 0x01 W (write). The LBA is
 * little-endian (LBA0 first). Data: Sect Cnt × 512 bytes for writes (request) and reads (reply).
 *
 * @module
 */

import {
  AOE_AFL_EXT,
  AOE_AFL_WRITE,
  AOE_ATA_HDR_LEN,
  AOE_CMD_ATA,
  ATA_CMD_READ,
  ATA_CMD_READ_EXT,
  ATA_CMD_WRITE,
  ATA_CMD_WRITE_EXT,
  LBA28_MASK,
} from "./constants.ts";
import {
  type AoeEnvelope,
  type AoeHeader,
  padFrame,
  parseHeaderOf,
  putRequestHeader,
  putResponseHeader,
  requireLength,
} from "./header.ts";

/** Field offsets of the ATA argument header. */
export const OFF_AFLAGS = 24;
export const OFF_ERR_FEATURE = 25;
export const OFF_SECTOR_COUNT = 26;
export const OFF_CMD_STATUS = 27;
export const OFF_LBA = 28;

/** The ATA argument header. */
export interface AtaFields {
  /** `AOE_AFL_*` bits. */
  aflags: number;
  /** Feature (request) or ATA error register (response). */
  errFeature: number;
  /** Sectors to transfer (8 bits). */
  sectorCount: number;
  /** ATA opcode (request) or ATA status (response). */
  cmdStatus: number;
  /** The 48-bit LBA field exactly as on the wire (no LBA28 masking). */
  lba: number;
}

/** A parsed ATA frame. `data` is a view into the frame (copy it if you keep it). */
export interface AtaFrame extends AtaFields {
  header: AoeHeader;
  data: Uint8Array;
}

const TWO_32 = 0x1_0000_0000;

/** The 48-bit LBA field as on the wire. */
export function ataLbaField(f: Uint8Array): number {
  const lo =
    (f[OFF_LBA] | (f[OFF_LBA + 1] << 8) | (f[OFF_LBA + 2] << 16) | (f[OFF_LBA + 3] << 24)) >>>
    0;
  const hi = f[OFF_LBA + 4] | (f[OFF_LBA + 5] << 8);
  return hi * TWO_32 + lo;
}

/**
 * The LBA a target acts on: the 48-bit field if AFlags E is set, else masked to 28 bits (the
 * Linux initiator puts 0xE0, the device register, in the high nibble of LBA3 for LBA28).
 */
export function ataLba(f: Uint8Array): number {
  if ((f[OFF_AFLAGS] & AOE_AFL_EXT) !== 0) return ataLbaField(f);
  return ((f[OFF_LBA] | (f[OFF_LBA + 1] << 8) | (f[OFF_LBA + 2] << 16) | (f[OFF_LBA + 3] << 24)) &
    LBA28_MASK) >>> 0;
}

/** Writes a 48-bit LBA little-endian at bytes 28..33. */
export function putAtaLba(f: Uint8Array, lba: number): void {
  const lo = lba % TWO_32;
  const hi = Math.floor(lba / TWO_32);
  f[OFF_LBA] = lo & 0xff;
  f[OFF_LBA + 1] = (lo >>> 8) & 0xff;
  f[OFF_LBA + 2] = (lo >>> 16) & 0xff;
  f[OFF_LBA + 3] = lo >>> 24;
  f[OFF_LBA + 4] = hi & 0xff;
  f[OFF_LBA + 5] = (hi >>> 8) & 0xff;
}

/** Writes the ATA argument header and `data`; returns the unpadded frame length. */
export function putAta(f: Uint8Array, a: AtaFields, data?: Uint8Array): number {
  f[OFF_AFLAGS] = a.aflags;
  f[OFF_ERR_FEATURE] = a.errFeature;
  f[OFF_SECTOR_COUNT] = a.sectorCount;
  f[OFF_CMD_STATUS] = a.cmdStatus;
  putAtaLba(f, a.lba);
  f[34] = 0;
  f[35] = 0;
  if (data) f.set(data, AOE_ATA_HDR_LEN);
  return AOE_ATA_HDR_LEN + (data?.length ?? 0);
}

/** Builds an ATA request (initiator side); returns the frame length (>= 60). */
export function buildAtaRequest(
  out: Uint8Array,
  env: AoeEnvelope,
  a: AtaFields,
  data?: Uint8Array,
): number {
  putRequestHeader(out, env, AOE_CMD_ATA);
  return padFrame(out, putAta(out, a, data));
}

/** Builds an ATA response (target side); returns the frame length (>= 60). */
export function buildAtaResponse(
  out: Uint8Array,
  env: AoeEnvelope,
  a: AtaFields,
  data?: Uint8Array,
): number {
  putResponseHeader(out, env, AOE_CMD_ATA);
  return padFrame(out, putAta(out, a, data));
}

function parseAta(f: Uint8Array, length: number, response: boolean): AtaFrame {
  const header = parseHeaderOf(f, length, AOE_CMD_ATA, response);
  requireLength(length, AOE_ATA_HDR_LEN, "ATA frame");
  return {
    header,
    aflags: f[OFF_AFLAGS],
    errFeature: f[OFF_ERR_FEATURE],
    sectorCount: f[OFF_SECTOR_COUNT],
    cmdStatus: f[OFF_CMD_STATUS],
    lba: ataLbaField(f),
    data: f.subarray(AOE_ATA_HDR_LEN, length),
  };
}

/** Parses an ATA request (target side, tests). Throws `AoeParseError`. */
export function parseAtaRequest(f: Uint8Array, length: number = f.length): AtaFrame {
  return parseAta(f, length, false);
}

/**
 * Parses an ATA response (initiator side). `data` runs to the end of the frame, padding
 * included: a read reply carries Sect Cnt × 512 bytes of it. Throws `AoeParseError`.
 */
export function parseAtaResponse(f: Uint8Array, length: number = f.length): AtaFrame {
  return parseAta(f, length, true);
}

/**
 * ATA fields for a read or write of `count` sectors at `lba`, as the Linux initiator sends them:
 * LBA48 opcodes and the E flag when the request reaches past LBA28 space (or `lba48` is asked
 * for), else the LBA28 opcode with 0xE0 (the device register) in the high nibble of LBA3.
 */
export function ataReadWriteFields(
  write: boolean,
  lba: number,
  count: number,
  lba48 = lba + count > LBA28_MASK,
): AtaFields {
  if (lba48) {
    return {
      aflags: AOE_AFL_EXT | (write ? AOE_AFL_WRITE : 0),
      errFeature: 0,
      sectorCount: count,
      cmdStatus: write ? ATA_CMD_WRITE_EXT : ATA_CMD_READ_EXT,
      lba,
    };
  }
  return {
    aflags: write ? AOE_AFL_WRITE : 0,
    errFeature: 0,
    sectorCount: count,
    cmdStatus: write ? ATA_CMD_WRITE : ATA_CMD_READ,
    lba: (lba & LBA28_MASK) + 0xe0 * 0x1000000,
  };
}
