/**
 * The AoE state of a Ceph RBD device as image metadata (`rbd image-meta list POOL/IMAGE` shows
 * it), so that every host serving the image reads and writes the same state:
 *
 * ```
 * ggaoed.config              the Query Config string: bytes 0x20-0x7e as they are (but '%'),
 *                            every other byte as %XX ("rack%0012" is "rack", NUL, "12")
 * ggaoed.mac_mask            the MAC Mask List: MACs in lower-case colon form, space-separated,
 *                            ascending ("" when empty)
 * ggaoed.reserve             the Reserve list, the same way
 * ggaoed.host.HOST-ID        one per daemon serving the image: JSON (see HostRecord), refreshed
 *                            while it serves, removed when it stops serving
 * ```
 *
 * A snapshot export keeps its own state beside the image's: the prefix is `ggaoed@SNAP.`
 * instead of `ggaoed.` (a snapshot cannot hold metadata of its own; the image's head holds it).
 * Pure functions, no I/O.
 *
 * @module
 */

import { STATE_SUFFIX, StateKind } from "../state/device_state.ts";
import { decodeConfigFile, decodeMacListFile } from "../state/store.ts";
import { formatMac, parseMac } from "../mac.ts";
import type { StateSnapshot } from "../engine/messages.ts";

/** The metadata key prefix of an export: `ggaoed.`, or `ggaoed@SNAP.` for a snapshot. */
export function metadataPrefix(snapshot: string | null): string {
  return snapshot === null ? "ggaoed." : `ggaoed@${snapshot}.`;
}

/** The metadata key of state `kind` under `prefix`. */
export function stateKey(prefix: string, kind: StateKind): string {
  return `${prefix}${STATE_SUFFIX[kind]}`;
}

/** The metadata key of a daemon's host record under `prefix`. */
export function hostKey(prefix: string, hostId: string): string {
  return `${prefix}host.${hostId}`;
}

/** What a daemon records about itself in the metadata of an image it serves. */
export interface HostRecord {
  /** The host name. */
  host: string;
  /** The daemon's process id. */
  pid: number;
  /** The device's name in that daemon's configuration. */
  device: string;
  /** The AoE address, `eSHELF.SLOT`. */
  target: string;
  /** Interfaces it serves on, with their MACs. */
  interfaces: { name: string; mac: string }[];
  /** When the record was written, Unix seconds (to the millisecond). */
  seen: number;
  /** Whether it serves the device read-only. */
  readOnly: boolean;
  /** ggaoed's version. */
  version: string;
  /**
   * The daemon's librados client address (`IP:PORT/NONCE`), by which another host fences it
   * (`ceph osd blocklist add`) when the record goes unrefreshed for `fence-after`.
   */
  address?: string;
  /** Written by the host that fenced this one: which host, when (Unix seconds), which client. */
  fenced?: { by: string; host: string; at: number; address: string };
}

const PERCENT = 0x25;
const HEX = "0123456789ABCDEF";

/** The metadata value of a Query Config string. */
export function encodeConfigValue(config: Uint8Array): string {
  let out = "";
  for (const b of config) {
    out += b >= 0x20 && b <= 0x7e && b !== PERCENT
      ? String.fromCharCode(b)
      : `%${HEX[b >> 4]}${HEX[b & 15]}`;
  }
  return out;
}

/** The Query Config string of a metadata value, or what is wrong with it. */
export function decodeConfigValue(value: string): Uint8Array | string {
  const out: number[] = [];
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if (c === PERCENT) {
      const hex = value.slice(i + 1, i + 3);
      if (!/^[0-9A-Fa-f]{2}$/.test(hex)) return `bad escape at character ${i}`;
      out.push(parseInt(hex, 16));
      i += 2;
    } else if (c >= 0x20 && c <= 0x7e) {
      out.push(c);
    } else {
      return `character ${i} is not printable ASCII`;
    }
  }
  if (out.length > 1024) return `${out.length} bytes, more than 1024`;
  return new Uint8Array(out);
}

/** The metadata value of a MAC list. */
export function encodeMacsValue(macs: readonly number[]): string {
  return [...macs].sort((a, b) => a - b).map(formatMac).join(" ");
}

/** The MACs of a metadata value, or what is wrong with it. */
export function decodeMacsValue(value: string): number[] | string {
  const macs: number[] = [];
  for (const token of value.split(/\s+/)) {
    if (token === "") continue;
    const mac = parseMac(token);
    if (mac === null) return `'${token}' is not a MAC address`;
    macs.push(mac);
  }
  if (macs.length > 255) return `${macs.length} addresses, more than 255`;
  return macs;
}

/** The metadata value of a state file's contents (as the data path posts them). */
export function encodeStateValue(kind: StateKind, bytes: Uint8Array): string {
  const decoded = kind === StateKind.CONFIG ? decodeConfigFile(bytes) : decodeMacListFile(bytes);
  if (typeof decoded === "string") throw new Error(`bad state contents: ${decoded}`);
  return decoded instanceof Uint8Array ? encodeConfigValue(decoded) : encodeMacsValue(decoded);
}

/**
 * The state held in `metadata` (keys under `prefix`; a missing key is an empty part). A damaged
 * part is empty too, as a damaged state file is reset: `problems` says which and why.
 */
export function stateFromMetadata(
  name: string,
  metadata: ReadonlyMap<string, string>,
  prefix: string,
): { state: StateSnapshot; problems: string[] } {
  const problems: string[] = [];
  const read = <T>(kind: StateKind, decode: (v: string) => T | string, empty: T): T => {
    const decoded = decode(metadata.get(stateKey(prefix, kind)) ?? "");
    if (typeof decoded !== "string") return decoded;
    problems.push(`${stateKey(prefix, kind)}: ${decoded}`);
    return empty;
  };
  const state = {
    name,
    config: read(StateKind.CONFIG, decodeConfigValue, new Uint8Array(0)),
    macMask: read(StateKind.MAC_MASK, decodeMacsValue, [] as number[]),
    reserve: read(StateKind.RESERVE, decodeMacsValue, [] as number[]),
  };
  return { state, problems };
}

/** The host records under `prefix` in `metadata`, by host id (unreadable ones left out). */
export function hostsFromMetadata(
  metadata: ReadonlyMap<string, string>,
  prefix: string,
): Map<string, HostRecord> {
  const hosts = new Map<string, HostRecord>();
  const start = `${prefix}host.`;
  for (const [key, value] of metadata) {
    if (!key.startsWith(start)) continue;
    try {
      const record = JSON.parse(value) as HostRecord;
      if (typeof record.host === "string" && typeof record.seen === "number") {
        hosts.set(key.slice(start.length), record);
      }
    } catch {
      // Not ours, or damaged: not shown.
    }
  }
  return hosts;
}
