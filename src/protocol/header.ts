/**
 * The AoE common header (every command), and frame-level helpers shared by the command modules.
 *
 * ```
 *  0                   6                   12      14   15      16      18   19   20          24
 * +-------------------+-------------------+-------+----+-------+-------+----+----+-----------+
 * | destination MAC   | source MAC        | 88 a2 |V|F | Error | Major |Min | Cmd| Tag       |
 * +-------------------+-------------------+-------+----+-------+-------+----+----+-----------+
 * ```
 * Byte 14: version in the high nibble (1), flags in the low nibble (0x08 R response, 0x04 E
 * error). Major (shelf) and Tag are big-endian.
 *
 * The small readers (`frameShelf`, ...) are what the engine uses on the hot path: they read
 * bytes and shift, allocate nothing. The object-level {@link parseHeader}/{@link putHeader} pair
 * is for the initiator, tests and tools.
 *
 * @module
 */

import { macAt, putMac } from "../mac.ts";
import {
  AOE_FL_ERROR,
  AOE_FL_RESPONSE,
  AOE_HDR_LEN,
  AOE_VERSION,
  ETH_P_AOE,
  ETH_ZLEN,
} from "./constants.ts";

/** Field offsets of the common header. */
export const OFF_DST = 0;
export const OFF_SRC = 6;
export const OFF_ETHERTYPE = 12;
export const OFF_VER_FLAGS = 14;
export const OFF_ERROR = 15;
export const OFF_MAJOR = 16;
export const OFF_MINOR = 18;
export const OFF_COMMAND = 19;
export const OFF_TAG = 20;

/** Addressing of one frame: who it goes to, which target, which request. */
export interface AoeEnvelope {
  /** Destination MAC (number, `src/mac.ts`). */
  dst: number;
  /** Source MAC. */
  src: number;
  /** Major address; 0xFFFF = broadcast. */
  shelf: number;
  /** Minor address; 0xFF = broadcast. */
  slot: number;
  /** Opaque 32-bit request tag, echoed by the target. */
  tag: number;
}

/** The whole common header. */
export interface AoeHeader extends AoeEnvelope {
  /** Protocol version (high nibble of byte 14); 1 for everything we build. */
  version: number;
  /** Flags (low nibble of byte 14): `AOE_FL_RESPONSE`, `AOE_FL_ERROR`. */
  flags: number;
  /** AoE error code (responses with the E flag). */
  error: number;
  /** AoE command (`AOE_CMD_*`). */
  command: number;
}

/** Why a frame could not be parsed. */
export const ParseFailure = {
  /** Shorter than the header of its command (or than its own length fields say). */
  SHORT: "short",
  /** EtherType is not 0x88A2. */
  NOT_AOE: "not-aoe",
  /** Version nibble is not 1. */
  BAD_VERSION: "bad-version",
  /** Another command than the parser handles. */
  WRONG_COMMAND: "wrong-command",
  /** A request where a response was expected, or the other way round. */
  WRONG_DIRECTION: "wrong-direction",
} as const;
export type ParseFailure = typeof ParseFailure[keyof typeof ParseFailure];

/** Thrown by the `parse*` functions: the frame is not the message asked for. */
export class AoeParseError extends Error {
  readonly reason: ParseFailure;
  constructor(reason: ParseFailure, message: string) {
    super(message);
    this.name = "AoeParseError";
    this.reason = reason;
  }
}

/** EtherType of a frame (bytes 12..13). */
export function frameEthertype(f: Uint8Array): number {
  return (f[OFF_ETHERTYPE] << 8) | f[OFF_ETHERTYPE + 1];
}

/** AoE version nibble. */
export function frameVersion(f: Uint8Array): number {
  return f[OFF_VER_FLAGS] >>> 4;
}

/** AoE flags nibble. */
export function frameFlags(f: Uint8Array): number {
  return f[OFF_VER_FLAGS] & 0x0f;
}

/** Major address (shelf). */
export function frameShelf(f: Uint8Array): number {
  return (f[OFF_MAJOR] << 8) | f[OFF_MAJOR + 1];
}

/** Minor address (slot). */
export function frameSlot(f: Uint8Array): number {
  return f[OFF_MINOR];
}

/** AoE command byte. */
export function frameCommand(f: Uint8Array): number {
  return f[OFF_COMMAND];
}

/** Tag as an unsigned 32-bit number. */
export function frameTag(f: Uint8Array): number {
  return ((f[OFF_TAG] << 24) | (f[OFF_TAG + 1] << 16) | (f[OFF_TAG + 2] << 8) | f[OFF_TAG + 3]) >>>
    0;
}

/** Writes a 16-bit big-endian value. */
export function putU16(f: Uint8Array, offset: number, value: number): void {
  f[offset] = (value >>> 8) & 0xff;
  f[offset + 1] = value & 0xff;
}

/** Reads a 16-bit big-endian value. */
export function getU16(f: Uint8Array, offset: number): number {
  return (f[offset] << 8) | f[offset + 1];
}

/** Writes the 24-byte common header. */
export function putHeader(f: Uint8Array, h: AoeHeader): void {
  putMac(f, OFF_DST, h.dst);
  putMac(f, OFF_SRC, h.src);
  putU16(f, OFF_ETHERTYPE, ETH_P_AOE);
  f[OFF_VER_FLAGS] = ((h.version & 0x0f) << 4) | (h.flags & 0x0f);
  f[OFF_ERROR] = h.error;
  putU16(f, OFF_MAJOR, h.shelf);
  f[OFF_MINOR] = h.slot;
  f[OFF_COMMAND] = h.command;
  const tag = h.tag >>> 0;
  f[OFF_TAG] = tag >>> 24;
  f[OFF_TAG + 1] = (tag >>> 16) & 0xff;
  f[OFF_TAG + 2] = (tag >>> 8) & 0xff;
  f[OFF_TAG + 3] = tag & 0xff;
}

/**
 * Reads the common header of an AoE frame of either direction. Throws {@link AoeParseError}
 * if it is shorter than 24 bytes, not AoE, or not version 1.
 */
export function parseHeader(f: Uint8Array, length: number = f.length): AoeHeader {
  if (length < AOE_HDR_LEN || f.length < AOE_HDR_LEN) {
    throw new AoeParseError(ParseFailure.SHORT, `AoE frame of ${length} bytes: shorter than 24`);
  }
  if (frameEthertype(f) !== ETH_P_AOE) {
    throw new AoeParseError(
      ParseFailure.NOT_AOE,
      `EtherType 0x${frameEthertype(f).toString(16).padStart(4, "0")} is not AoE (0x88a2)`,
    );
  }
  if (frameVersion(f) !== AOE_VERSION) {
    throw new AoeParseError(ParseFailure.BAD_VERSION, `AoE version ${frameVersion(f)}, not 1`);
  }
  return {
    dst: macAt(f, OFF_DST),
    src: macAt(f, OFF_SRC),
    version: frameVersion(f),
    flags: frameFlags(f),
    error: f[OFF_ERROR],
    shelf: frameShelf(f),
    slot: frameSlot(f),
    command: frameCommand(f),
    tag: frameTag(f),
  };
}

/** Writes a request header (version 1, no flags, error 0) for `command`. */
export function putRequestHeader(f: Uint8Array, env: AoeEnvelope, command: number): void {
  putHeader(f, { ...env, version: AOE_VERSION, flags: 0, error: 0, command });
}

/** Writes a response header (version 1, R flag, and E flag when `error` is not 0). */
export function putResponseHeader(
  f: Uint8Array,
  env: AoeEnvelope,
  command: number,
  error = 0,
): void {
  const flags = AOE_FL_RESPONSE | (error !== 0 ? AOE_FL_ERROR : 0);
  putHeader(f, { ...env, version: AOE_VERSION, flags, error, command });
}

/**
 * Parses the common header and checks it is `command` in the expected direction
 * (`response` true: R flag set). Used by every `parse*Request`/`parse*Response`.
 */
export function parseHeaderOf(
  f: Uint8Array,
  length: number,
  command: number,
  response: boolean,
): AoeHeader {
  const h = parseHeader(f, length);
  if (h.command !== command) {
    throw new AoeParseError(ParseFailure.WRONG_COMMAND, `AoE command ${h.command}, not ${command}`);
  }
  if (((h.flags & AOE_FL_RESPONSE) !== 0) !== response) {
    throw new AoeParseError(
      ParseFailure.WRONG_DIRECTION,
      response ? "expected an AoE response, got a request" : "expected a request, got a response",
    );
  }
  return h;
}

/** Throws SHORT unless `length` covers `needed` bytes. */
export function requireLength(length: number, needed: number, what: string): void {
  if (length < needed) {
    throw new AoeParseError(ParseFailure.SHORT, `${what}: ${length} bytes, needs ${needed}`);
  }
}

/**
 * Zero-pads a frame of `length` bytes to the 60-byte Ethernet minimum (veth does not pad, and
 * aoeping ignores shorter replies). Returns the padded length.
 */
export function padFrame(f: Uint8Array, length: number): number {
  if (length >= ETH_ZLEN) return length;
  f.fill(0, length, ETH_ZLEN);
  return ETH_ZLEN;
}
