/**
 * Per-device state files in the state directory, in the original's binary layouts (REFERENCE.md
 * section 6) so that state written by the C daemon carries over:
 *
 * ```
 * <name>.config    (1032 bytes)              <name>.mac_mask, <name>.reserve  (2048 bytes)
 * 0    u32 LE magic 0x38A0BFAE               0    u32 LE magic 0xE92A716B
 * 4    u32 LE length, 0-1024                 4    u32 LE count, 0-255
 * 8    1024 bytes config string (zero pad)   8    255 entries of 8 bytes: 6-byte MAC, 2 zero
 * ```
 *
 * Unlike the original (mmap, written in place, no fsync) every change is written atomically:
 * `<file>.tmp-<pid>` is written and fsynced, renamed over the file, and the directory fsynced.
 * A crash leaves either the old or the new file, never a torn one. On load a damaged file is
 * reported, moved aside as `<file>.damaged-<UTC time>` and replaced by an empty one; leftover
 * temp files are removed.
 *
 * @module
 */

import {
  DeviceState,
  MAX_CONFIG_LENGTH,
  MAX_MAC_LIST,
  type StatePersistence,
} from "./device_state.ts";
import { macAt, putMac } from "../mac.ts";

/** Magic of `<name>.config`. */
export const CONFIG_MAGIC = 0x38a0bfae;
/** Magic of `<name>.mac_mask` and `<name>.reserve`. */
export const MAC_LIST_MAGIC = 0xe92a716b;
/** Exact size of a `.config` file. */
export const CONFIG_FILE_SIZE = 8 + MAX_CONFIG_LENGTH;
/** Exact size of a `.mac_mask` / `.reserve` file (8 + 255 × 8, padded to 2048). */
export const MAC_LIST_FILE_SIZE = 2048;
const MAC_ENTRY_SIZE = 8;

/** How the store reports what it found and did. */
export type StateLog = (level: "info" | "warning", message: string) => void;

/** The bytes of a `.config` file holding `config`. */
export function encodeConfigFile(config: Uint8Array): Uint8Array {
  if (config.length > MAX_CONFIG_LENGTH) throw new RangeError("config string too long");
  const bytes = new Uint8Array(CONFIG_FILE_SIZE);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, CONFIG_MAGIC, true);
  view.setUint32(4, config.length, true);
  bytes.set(config, 8);
  return bytes;
}

/** The config string of a `.config` file, or what is wrong with it. */
export function decodeConfigFile(bytes: Uint8Array): Uint8Array | string {
  if (bytes.length !== CONFIG_FILE_SIZE) {
    return `size is ${bytes.length} bytes, expected ${CONFIG_FILE_SIZE}`;
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const magic = view.getUint32(0, true);
  if (magic !== CONFIG_MAGIC) return `bad magic 0x${magic.toString(16).padStart(8, "0")}`;
  const length = view.getUint32(4, true);
  if (length > MAX_CONFIG_LENGTH) return `length ${length} is above ${MAX_CONFIG_LENGTH}`;
  return bytes.slice(8, 8 + length);
}

/** The bytes of a `.mac_mask` / `.reserve` file holding `macs` in the given order. */
export function encodeMacListFile(macs: readonly number[]): Uint8Array {
  if (macs.length > MAX_MAC_LIST) throw new RangeError("MAC list too long");
  const bytes = new Uint8Array(MAC_LIST_FILE_SIZE);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, MAC_LIST_MAGIC, true);
  view.setUint32(4, macs.length, true);
  macs.forEach((mac, i) => putMac(bytes, 8 + i * MAC_ENTRY_SIZE, mac));
  return bytes;
}

/** The MACs of a `.mac_mask` / `.reserve` file, or what is wrong with it. */
export function decodeMacListFile(bytes: Uint8Array): number[] | string {
  if (bytes.length !== MAC_LIST_FILE_SIZE) {
    return `size is ${bytes.length} bytes, expected ${MAC_LIST_FILE_SIZE}`;
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const magic = view.getUint32(0, true);
  if (magic !== MAC_LIST_MAGIC) return `bad magic 0x${magic.toString(16).padStart(8, "0")}`;
  const count = view.getUint32(4, true);
  if (count > MAX_MAC_LIST) return `entry count ${count} is above ${MAX_MAC_LIST}`;
  const macs: number[] = [];
  for (let i = 0; i < count; i++) macs.push(macAt(bytes, 8 + i * MAC_ENTRY_SIZE));
  return macs;
}

/** fsync of a directory, so that a rename in it is durable. */
export function syncDirectory(directory: string): void {
  const dir = Deno.openSync(directory, { read: true });
  try {
    dir.syncSync();
  } finally {
    dir.close();
  }
}

/**
 * Replaces `path` with `bytes` atomically and durably: temp file, fsync, rename, directory
 * fsync. The file gets mode 0600. On failure the old file is untouched and the error is thrown.
 */
export function writeFileAtomic(path: string, bytes: Uint8Array): void {
  const tmp = `${path}.tmp-${Deno.pid}`;
  try {
    const file = Deno.openSync(tmp, { write: true, create: true, truncate: true, mode: 0o600 });
    try {
      let done = 0;
      while (done < bytes.length) done += file.writeSync(bytes.subarray(done));
      file.syncSync();
    } finally {
      file.close();
    }
    // The umask can only remove bits from `mode`, and a stale temp file keeps its old mode:
    // make the result exact before it becomes visible.
    Deno.chmodSync(tmp, 0o600);
    Deno.renameSync(tmp, path);
  } catch (e) {
    try {
      Deno.removeSync(tmp);
    } catch { /* never created, or already renamed */ }
    throw e;
  }
  syncDirectory(dirname(path));
}

function dirname(path: string): string {
  const i = path.lastIndexOf("/");
  return i < 0 ? "." : i === 0 ? "/" : path.slice(0, i);
}

function utcStamp(): string {
  return new Date().toISOString().replace(/[-:]/g, "").replace(/\.\d+Z$/, "Z");
}

/** Writes the three state files of one device. */
class FileStatePersistence implements StatePersistence {
  readonly #base: string;

  constructor(base: string) {
    this.#base = base;
  }

  saveConfig(config: Uint8Array): void {
    writeFileAtomic(`${this.#base}.config`, encodeConfigFile(config));
  }

  saveMacMask(macs: readonly number[]): void {
    writeFileAtomic(`${this.#base}.mac_mask`, encodeMacListFile(macs));
  }

  saveReserve(macs: readonly number[]): void {
    writeFileAtomic(`${this.#base}.reserve`, encodeMacListFile(macs));
  }
}

/**
 * Loads one state file: removes leftover temp files, creates a missing file empty, and moves a
 * damaged one aside (logged) before creating it empty. Returns the decoded value.
 */
function loadStateFile<T>(
  directory: string,
  fileName: string,
  decode: (bytes: Uint8Array) => T | string,
  empty: T,
  encodeEmpty: () => Uint8Array,
  log: StateLog,
): T {
  const path = `${directory}/${fileName}`;
  for (const entry of Deno.readDirSync(directory)) {
    if (entry.name.startsWith(`${fileName}.tmp-`)) {
      Deno.removeSync(`${directory}/${entry.name}`);
      log("info", `${path}: removed ${entry.name}, left over from an interrupted write`);
    }
  }
  let bytes: Uint8Array;
  try {
    bytes = Deno.readFileSync(path);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
    writeFileAtomic(path, encodeEmpty());
    log("info", `${path}: created empty`);
    return empty;
  }
  const decoded = decode(bytes);
  if (typeof decoded !== "string") return decoded;
  let aside = `${path}.damaged-${utcStamp()}`;
  for (let n = 1; exists(aside); n++) aside = `${path}.damaged-${utcStamp()}-${n}`;
  Deno.renameSync(path, aside);
  writeFileAtomic(path, encodeEmpty());
  log("warning", `${path}: damaged (${decoded}); moved it to ${aside} and reset it to empty`);
  return empty;
}

function exists(path: string): boolean {
  try {
    Deno.lstatSync(path);
    return true;
  } catch {
    return false;
  }
}

/**
 * Opens the persistent state of device `name` in `directory` (`<name>.config`,
 * `<name>.mac_mask`, `<name>.reserve`), creating or repairing the files as needed; every later
 * change is written atomically before the mutating call returns.
 */
export function openDeviceState(directory: string, name: string, log: StateLog): DeviceState {
  if (name === "" || name.includes("/") || name === "." || name === "..") {
    throw new RangeError(`device name ${JSON.stringify(name)} cannot name a state file`);
  }
  const config = loadStateFile(
    directory,
    `${name}.config`,
    decodeConfigFile,
    new Uint8Array(0),
    () => encodeConfigFile(new Uint8Array(0)),
    log,
  );
  const loadList = (suffix: string) =>
    loadStateFile(
      directory,
      `${name}.${suffix}`,
      decodeMacListFile,
      [] as number[],
      () => encodeMacListFile([]),
      log,
    );
  const macMask = loadList("mac_mask");
  const reserve = loadList("reserve");
  return new DeviceState(new FileStatePersistence(`${directory}/${name}`), {
    config,
    macMask,
    reserve,
  });
}
