/**
 * AoE command 2: Mac Mask List. Read (MCmd 0) or edit (MCmd 1) the list of initiator MACs a
 * target serves.
 *
 * ```
 *  24         25     26       27          28                                  36
 * +----------+------+--------+-----------+-----------------------------------+----
 * | reserved | MCmd | MError | Dir Count | directive 0                       | ...
 * +----------+------+--------+-----------+-----------------------------------+----
 *
 * directive:  0          1      2                     8
 *            +----------+------+---------------------+
 *            | reserved | DCmd | MAC                 |
 *            +----------+------+---------------------+
 * ```
 * DCmd: 0 none, 1 add, 2 delete. MError (responses): 1 unspecified, 2 bad directive, 3 list
 * full; with an MError, Dir Count is the index of the failing directive and the request's
 * directives are echoed. Otherwise a response lists the current mask, DCmd 0.
 *
 * @module
 */

import { macAt, putMac } from "../mac.ts";
import { AOE_CMD_MASK, AOE_DIRECTIVE_LEN, AOE_MASK_HDR_LEN } from "./constants.ts";
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

/** Field offsets of the Mac Mask argument header. */
export const OFF_MASK_MCMD = 25;
export const OFF_MASK_MERROR = 26;
export const OFF_MASK_DIR_COUNT = 27;

/** One directive. */
export interface MaskDirective {
  /** `AOE_DCMD_*`. */
  dcmd: number;
  mac: number;
}

/** The Mac Mask argument. */
export interface MaskFields {
  /** `AOE_MCMD_*`. */
  mcmd: number;
  /** `AOE_MERR_*` or 0. */
  merror: number;
  /** Dir Count field; defaults to `directives.length` when building. */
  dirCount?: number;
  directives: MaskDirective[];
}

/** A parsed Mac Mask frame: `dirCount` directives are parsed. */
export interface MaskFrame extends MaskFields {
  header: AoeHeader;
  dirCount: number;
}

/** Writes the 4-byte argument header. */
export function putMaskHeader(f: Uint8Array, mcmd: number, merror: number, dirCount: number): void {
  f[24] = 0;
  f[OFF_MASK_MCMD] = mcmd;
  f[OFF_MASK_MERROR] = merror;
  f[OFF_MASK_DIR_COUNT] = dirCount;
}

/** Writes directive `index` (DCmd and MAC, reserved byte 0). */
export function putDirective(f: Uint8Array, index: number, dcmd: number, mac: number): void {
  const off = AOE_MASK_HDR_LEN + index * AOE_DIRECTIVE_LEN;
  f[off] = 0;
  f[off + 1] = dcmd;
  putMac(f, off + 2, mac);
}

function putMask(f: Uint8Array, m: MaskFields): number {
  putMaskHeader(f, m.mcmd, m.merror, m.dirCount ?? m.directives.length);
  m.directives.forEach((d, i) => putDirective(f, i, d.dcmd, d.mac));
  return AOE_MASK_HDR_LEN + m.directives.length * AOE_DIRECTIVE_LEN;
}

/** Builds a Mac Mask request (initiator side); returns the length. */
export function buildMaskRequest(
  out: Uint8Array,
  env: AoeEnvelope,
  mcmd: number,
  directives: MaskDirective[] = [],
): number {
  putRequestHeader(out, env, AOE_CMD_MASK);
  return padFrame(out, putMask(out, { mcmd, merror: 0, directives }));
}

/** Builds a Mac Mask response (target side); returns the length. */
export function buildMaskResponse(out: Uint8Array, env: AoeEnvelope, m: MaskFields): number {
  putResponseHeader(out, env, AOE_CMD_MASK);
  return padFrame(out, putMask(out, m));
}

function parseMask(f: Uint8Array, length: number, response: boolean): MaskFrame {
  const header = parseHeaderOf(f, length, AOE_CMD_MASK, response);
  requireLength(length, AOE_MASK_HDR_LEN, "Mac Mask frame");
  const dirCount = f[OFF_MASK_DIR_COUNT];
  if (AOE_MASK_HDR_LEN + dirCount * AOE_DIRECTIVE_LEN > length) {
    throw new AoeParseError(
      ParseFailure.SHORT,
      `Mac Mask Dir Count ${dirCount} exceeds the ${length - AOE_MASK_HDR_LEN}-byte payload`,
    );
  }
  const directives: MaskDirective[] = [];
  for (let i = 0; i < dirCount; i++) {
    const off = AOE_MASK_HDR_LEN + i * AOE_DIRECTIVE_LEN;
    directives.push({ dcmd: f[off + 1], mac: macAt(f, off + 2) });
  }
  return {
    header,
    mcmd: f[OFF_MASK_MCMD],
    merror: f[OFF_MASK_MERROR],
    dirCount,
    directives,
  };
}

/** Parses a Mac Mask request. Throws `AoeParseError`. */
export function parseMaskRequest(f: Uint8Array, length: number = f.length): MaskFrame {
  return parseMask(f, length, false);
}

/**
 * Parses a Mac Mask response. With an MError, `dirCount` is the failing directive's index and
 * `directives` the ones before it (the echoed request continues in the frame). Throws
 * `AoeParseError`.
 */
export function parseMaskResponse(f: Uint8Array, length: number = f.length): MaskFrame {
  return parseMask(f, length, true);
}
