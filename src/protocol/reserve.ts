/**
 * AoE command 3: Reserve/Release. Read (RCmd 0), set (1: only by a current holder or when
 * nothing is reserved) or force set (2) the list of initiators allowed to read and write.
 *
 * ```
 *  24     25      26          32          38
 * +------+-------+-----------+-----------+----
 * | RCmd | NMacs | MAC 0     | MAC 1     | ...
 * +------+-------+-----------+-----------+----
 * ```
 * A response carries the resulting list. NMacs 0 in a force set releases.
 *
 * @module
 */

import { macAt, putMac } from "../mac.ts";
import { AOE_CMD_RESERVE, AOE_MAC_LEN, AOE_RESERVE_HDR_LEN } from "./constants.ts";
import {
  type AoeEnvelope,
  type AoeHeader,
  AoeParseError,
  padFrame,
  ParseFailure,
  parseHeaderOf,
  putRequestHeader,
  putResponseHeader,
  requireLength,
} from "./header.ts";

/** Field offsets of the Reserve/Release argument header. */
export const OFF_RESERVE_RCMD = 24;
export const OFF_RESERVE_NMACS = 25;

/** The Reserve/Release argument. */
export interface ReserveFields {
  /** `AOE_RCMD_*`. */
  rcmd: number;
  macs: number[];
}

/** A parsed Reserve/Release frame. */
export interface ReserveFrame extends ReserveFields {
  header: AoeHeader;
}

/** Writes the 2-byte argument header. */
export function putReserveHeader(f: Uint8Array, rcmd: number, nmacs: number): void {
  f[OFF_RESERVE_RCMD] = rcmd;
  f[OFF_RESERVE_NMACS] = nmacs;
}

/** Writes MAC `index` of the list. */
export function putReserveMac(f: Uint8Array, index: number, mac: number): void {
  putMac(f, AOE_RESERVE_HDR_LEN + index * AOE_MAC_LEN, mac);
}

function putReserve(f: Uint8Array, r: ReserveFields): number {
  putReserveHeader(f, r.rcmd, r.macs.length);
  r.macs.forEach((mac, i) => putReserveMac(f, i, mac));
  return AOE_RESERVE_HDR_LEN + r.macs.length * AOE_MAC_LEN;
}

/** Builds a Reserve/Release request (initiator side); returns the length. */
export function buildReserveRequest(
  out: Uint8Array,
  env: AoeEnvelope,
  rcmd: number,
  macs: number[] = [],
): number {
  putRequestHeader(out, env, AOE_CMD_RESERVE);
  return padFrame(out, putReserve(out, { rcmd, macs }));
}

/** Builds a Reserve/Release response (target side); returns the length. */
export function buildReserveResponse(out: Uint8Array, env: AoeEnvelope, r: ReserveFields): number {
  putResponseHeader(out, env, AOE_CMD_RESERVE);
  return padFrame(out, putReserve(out, r));
}

function parseReserve(f: Uint8Array, length: number, response: boolean): ReserveFrame {
  const header = parseHeaderOf(f, length, AOE_CMD_RESERVE, response);
  requireLength(length, AOE_RESERVE_HDR_LEN, "Reserve/Release frame");
  const nmacs = f[OFF_RESERVE_NMACS];
  if (AOE_RESERVE_HDR_LEN + nmacs * AOE_MAC_LEN > length) {
    throw new AoeParseError(
      ParseFailure.SHORT,
      `Reserve/Release NMacs ${nmacs} exceeds the ${length - AOE_RESERVE_HDR_LEN}-byte payload`,
    );
  }
  const macs: number[] = [];
  for (let i = 0; i < nmacs; i++) macs.push(macAt(f, AOE_RESERVE_HDR_LEN + i * AOE_MAC_LEN));
  return { header, rcmd: f[OFF_RESERVE_RCMD], macs };
}

/** Parses a Reserve/Release request. Throws `AoeParseError`. */
export function parseReserveRequest(f: Uint8Array, length: number = f.length): ReserveFrame {
  return parseReserve(f, length, false);
}

/** Parses a Reserve/Release response. Throws `AoeParseError`. */
export function parseReserveResponse(f: Uint8Array, length: number = f.length): ReserveFrame {
  return parseReserve(f, length, true);
}
