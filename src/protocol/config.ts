/**
 * AoE command 1: Query Config. Same 8-byte argument header both ways; a request carries the
 * CCmd and (for test / set) a string, a response the target's numbers and its stored string.
 *
 * ```
 *  24             26                 28           29              30                 32
 * +--------------+------------------+------------+---------------+------------------+-------
 * | Buffer Count | Firmware Version | Sector Cnt | AoE Ver | CCmd | Config Str Length | string
 * +--------------+------------------+------------+---------------+------------------+-------
 * ```
 * Buffer Count, Firmware Version and the string length are big-endian. Sector Count is the most
 * sectors per ATA request. AoE Ver is the high nibble of byte 29 (1 in responses), CCmd the low
 * nibble (`AOE_CFG_*`). The string is at most 1024 bytes.
 *
 * @module
 */

import { AOE_CFG_HDR_LEN, AOE_CMD_CFG, AOE_VERSION } from "./constants.ts";
import {
  type AoeEnvelope,
  type AoeHeader,
  AoeParseError,
  getU16,
  padFrame,
  ParseFailure,
  parseHeaderOf,
  putRequestHeader,
  putResponseHeader,
  putU16,
  requireLength,
} from "./header.ts";

/** Field offsets of the Query Config argument header. */
export const OFF_CFG_BUFFER_COUNT = 24;
export const OFF_CFG_FIRMWARE = 26;
export const OFF_CFG_SECTOR_COUNT = 28;
export const OFF_CFG_VER_CCMD = 29;
export const OFF_CFG_LENGTH = 30;

/** The Query Config argument. */
export interface ConfigFields {
  bufferCount: number;
  firmware: number;
  sectorCount: number;
  /** High nibble of byte 29: 1 in responses (initiators send 0). */
  aoeVersion: number;
  /** `AOE_CFG_*`. */
  ccmd: number;
  /** The config string (length = its length field). */
  config: Uint8Array;
}

/** A parsed Query Config frame; `config` is a view into the frame. */
export interface ConfigFrame extends ConfigFields {
  header: AoeHeader;
}

/** CCmd (low nibble of byte 29). */
export function cfgCcmd(f: Uint8Array): number {
  return f[OFF_CFG_VER_CCMD] & 0x0f;
}

/** Config String Length field. */
export function cfgStringLength(f: Uint8Array): number {
  return getU16(f, OFF_CFG_LENGTH);
}

/** Writes the 8-byte argument header (not the string). */
export function putConfigHeader(
  f: Uint8Array,
  bufferCount: number,
  firmware: number,
  sectorCount: number,
  aoeVersion: number,
  ccmd: number,
  stringLength: number,
): void {
  putU16(f, OFF_CFG_BUFFER_COUNT, bufferCount);
  putU16(f, OFF_CFG_FIRMWARE, firmware);
  f[OFF_CFG_SECTOR_COUNT] = sectorCount;
  f[OFF_CFG_VER_CCMD] = ((aoeVersion & 0x0f) << 4) | (ccmd & 0x0f);
  putU16(f, OFF_CFG_LENGTH, stringLength);
}

function putConfig(f: Uint8Array, c: ConfigFields): number {
  putConfigHeader(
    f,
    c.bufferCount,
    c.firmware,
    c.sectorCount,
    c.aoeVersion,
    c.ccmd,
    c.config.length,
  );
  f.set(c.config, AOE_CFG_HDR_LEN);
  return AOE_CFG_HDR_LEN + c.config.length;
}

/**
 * Builds a Query Config request (initiator side): `ccmd` with `config` (test, test prefix,
 * set, force set). Numbers and version nibble are 0 as the Linux initiator sends them.
 */
export function buildConfigRequest(
  out: Uint8Array,
  env: AoeEnvelope,
  ccmd: number,
  config: Uint8Array = new Uint8Array(0),
): number {
  putRequestHeader(out, env, AOE_CMD_CFG);
  const length = putConfig(out, {
    bufferCount: 0,
    firmware: 0,
    sectorCount: 0,
    aoeVersion: 0,
    ccmd,
    config,
  });
  return padFrame(out, length);
}

/** Builds a Query Config response (target side, version nibble 1); returns the length. */
export function buildConfigResponse(
  out: Uint8Array,
  env: AoeEnvelope,
  c: Omit<ConfigFields, "aoeVersion">,
): number {
  putResponseHeader(out, env, AOE_CMD_CFG);
  return padFrame(out, putConfig(out, { ...c, aoeVersion: AOE_VERSION }));
}

function parseConfig(f: Uint8Array, length: number, response: boolean): ConfigFrame {
  const header = parseHeaderOf(f, length, AOE_CMD_CFG, response);
  requireLength(length, AOE_CFG_HDR_LEN, "Query Config frame");
  const stringLength = cfgStringLength(f);
  if (AOE_CFG_HDR_LEN + stringLength > length) {
    throw new AoeParseError(
      ParseFailure.SHORT,
      `Query Config string length ${stringLength} exceeds the ${
        length - AOE_CFG_HDR_LEN
      }-byte payload`,
    );
  }
  return {
    header,
    bufferCount: getU16(f, OFF_CFG_BUFFER_COUNT),
    firmware: getU16(f, OFF_CFG_FIRMWARE),
    sectorCount: f[OFF_CFG_SECTOR_COUNT],
    aoeVersion: f[OFF_CFG_VER_CCMD] >>> 4,
    ccmd: cfgCcmd(f),
    config: f.subarray(AOE_CFG_HDR_LEN, AOE_CFG_HDR_LEN + stringLength),
  };
}

/** Parses a Query Config request. Throws `AoeParseError`. */
export function parseConfigRequest(f: Uint8Array, length: number = f.length): ConfigFrame {
  return parseConfig(f, length, false);
}

/** Parses a Query Config response (including advertisements). Throws `AoeParseError`. */
export function parseConfigResponse(f: Uint8Array, length: number = f.length): ConfigFrame {
  return parseConfig(f, length, true);
}
