/**
 * Per-device state files in the state directory, in the original's binary layouts (docs/decisions.md
 * §6) so that state written by the C daemon carries over:
 *
 * ```
 * <name>.config    (1032 bytes)              <name>.mac_mask, <name>.reserve  (2048 bytes)
 * 0    u32 LE magic 0x38A0BFAE               0    u32 LE magic 0xE92A716B
 * 4    u32 LE length, 0-1024                 4    u32 LE count, 0-255
 * 8    1024 bytes config string (zero pad)   8    255 entries of 8 bytes: 6-byte MAC, 2 zero
 * ```
 *
 * Unlike the original (mmap, written in place, no fsync) every change is written atomically:
 * `<file>.tmp-<pid>` is created exclusively (never through a symlink), written and fsynced,
 * renamed over the file, and the directory fsynced. A crash leaves either the old or the new
 * file, never a torn one. On load a damaged file is reported, moved aside as
 * `<file>.damaged-<UTC time>` and replaced by an empty one, a file of the wrong size without
 * being read (its size is taken from the open descriptor first); leftover temp files are
 * removed (only regular files and symlinks: anything else named like one is reported and left
 * alone, and loading goes on); a missing file is an empty state (files are written on the first
 * change); anything but a regular file (a symlink, say) at the state file's own name is refused.
 *
 * Everything here runs on the daemon's main thread, asynchronously (Deno runs the file system
 * calls on its blocking-call threads): the data path never waits for a disk (see writer.ts).
 *
 * @module
 */

import { DeviceState, MAX_CONFIG_LENGTH, MAX_MAC_LIST, StateKind } from "./device_state.ts";
import { macAt, putMac } from "../mac.ts";
import { chmodCreatedFile } from "../../ffi/mod.ts";

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
export type StateLog = (level: "info" | "warning" | "error", message: string) => void;

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

/** The bytes of the state file of `kind` holding `state`'s current contents. */
export function encodeState(state: DeviceState, kind: StateKind): Uint8Array {
  if (kind === StateKind.CONFIG) return encodeConfigFile(state.config);
  return encodeMacListFile(kind === StateKind.MAC_MASK ? state.macMask : state.reserve);
}

/** fsync of a directory, so that a rename in it is durable. */
export async function syncDirectory(directory: string): Promise<void> {
  const dir = await Deno.open(directory, { read: true });
  try {
    await dir.sync();
  } finally {
    dir.close();
  }
}

/**
 * Replaces `path` with `bytes` atomically and durably: a temp file created exclusively (a
 * symlink planted at its name makes the create fail instead of being followed), written,
 * fsynced, renamed over `path`, then the directory fsynced. Mode 0600. On failure the old file
 * is untouched, the temp file is removed, and the error is thrown.
 */
export async function writeFileAtomic(path: string, bytes: Uint8Array): Promise<void> {
  const tmp = `${path}.tmp-${Deno.pid}`;
  await Deno.remove(tmp).catch(() => {}); // a stale one from an earlier failure of ours
  let created = false;
  try {
    const file = await Deno.open(tmp, { write: true, createNew: true, mode: 0o600 });
    created = true;
    try {
      let done = 0;
      while (done < bytes.length) done += await file.write(bytes.subarray(done));
      await file.sync();
    } finally {
      file.close();
    }
    // The umask can only remove bits from `mode`: make the result exact before it is visible,
    // through a descriptor (chmod by path would follow a symlink put at the temp file's name).
    const info = await Deno.lstat(tmp);
    chmodCreatedFile(tmp, 0o600, info.dev, info.ino ?? -1);
    await Deno.rename(tmp, path);
  } catch (e) {
    if (created) await Deno.remove(tmp).catch(() => {});
    throw e;
  }
  await syncDirectory(dirname(path));
}

function dirname(path: string): string {
  const i = path.lastIndexOf("/");
  return i < 0 ? "." : i === 0 ? "/" : path.slice(0, i);
}

function utcStamp(): string {
  return new Date().toISOString().replace(/[-:]/g, "").replace(/\.\d+Z$/, "Z");
}

/**
 * Loads one state file: removes leftover temp files; a missing file is `empty`; a damaged one is
 * moved aside (logged) and replaced by an empty one. Returns the decoded value. Throws when the
 * file cannot be read, or is not a regular file.
 */
async function loadStateFile<T>(
  directory: string,
  fileName: string,
  size: number,
  decode: (bytes: Uint8Array) => T | string,
  empty: T,
  encodeEmpty: () => Uint8Array,
  log: StateLog,
): Promise<T> {
  const path = `${directory}/${fileName}`;
  await removeLeftovers(directory, fileName, log);
  let info: Deno.FileInfo;
  try {
    info = await Deno.lstat(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return empty;
    throw e;
  }
  if (!info.isFile) throw notRegular(path, info);
  const read = await readBounded(path, size);
  const decoded = typeof read === "string" ? read : decode(read);
  if (typeof decoded !== "string") return decoded;
  let aside = `${path}.damaged-${utcStamp()}`;
  for (let n = 1; await exists(aside); n++) aside = `${path}.damaged-${utcStamp()}-${n}`;
  await Deno.rename(path, aside);
  log("warning", `${path}: damaged (${decoded}); moved it to ${aside} and reset it to empty`);
  try {
    await writeFileAtomic(path, encodeEmpty());
  } catch (e) {
    log("error", `${path}: cannot write the empty file: ${(e as Error).message}`);
  }
  return empty;
}

function notRegular(path: string, info: Deno.FileInfo): Error {
  const what = info.isSymlink ? "a symlink" : info.isDirectory ? "a directory" : "a device or FIFO";
  return new Error(
    `${path} is not a regular file (${what}); remove it, the daemon writes its state files itself`,
  );
}

/**
 * The contents of `path` when it holds exactly `size` bytes, else what is wrong with it. The size
 * comes from the open descriptor before anything is read, so a huge file costs no time or memory.
 */
async function readBounded(path: string, size: number): Promise<Uint8Array | string> {
  const file = await Deno.open(path, { read: true });
  try {
    const info = await file.stat();
    if (!info.isFile) return "not a regular file";
    if (info.size !== size) return `size is ${info.size} bytes, expected ${size}`;
    const bytes = new Uint8Array(size + 1); // one more: a file that grew meanwhile shows
    let done = 0;
    for (let n; done < bytes.length && (n = await file.read(bytes.subarray(done))) !== null;) {
      done += n;
    }
    if (done !== size) return `size is ${done} bytes, expected ${size}`;
    return bytes.subarray(0, size);
  } finally {
    file.close();
  }
}

/**
 * Removes the temp files an interrupted write of `fileName` left (`<fileName>.tmp-*`): regular
 * files and symlinks (unlinking a symlink never touches its target). Anything else named like
 * one, or a removal that fails, is reported and left: it never stops the device from loading.
 */
async function removeLeftovers(directory: string, fileName: string, log: StateLog): Promise<void> {
  for await (const entry of Deno.readDir(directory)) {
    if (!entry.name.startsWith(`${fileName}.tmp-`)) continue;
    const leftover = `${directory}/${entry.name}`;
    if (!entry.isFile && !entry.isSymlink) {
      log(
        "warning",
        `${leftover} is named like a temp file of ${fileName} but is not a file; left alone ` +
          "(remove it: nothing but the daemon belongs in the state directory)",
      );
      continue;
    }
    try {
      await Deno.remove(leftover);
      log(
        "info",
        `${directory}/${fileName}: removed ${entry.name}, left over from an interrupted write`,
      );
    } catch (e) {
      log("warning", `${leftover}: cannot remove this leftover temp file: ${(e as Error).message}`);
    }
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch {
    return false;
  }
}

/** Throws unless `name` can name state files (no path separators, not `.`/`..`, not empty). */
export function checkStateName(name: string): void {
  if (name === "" || name.includes("/") || name === "." || name === "..") {
    throw new RangeError(`device name ${JSON.stringify(name)} cannot name a state file`);
  }
}

/**
 * Loads the persistent state of device `name` from `directory` (`<name>.config`,
 * `<name>.mac_mask`, `<name>.reserve`), repairing damaged files. Missing files are empty state;
 * nothing is created until something changes.
 */
export async function loadDeviceState(
  directory: string,
  name: string,
  log: StateLog,
): Promise<DeviceState> {
  checkStateName(name);
  const config = await loadStateFile(
    directory,
    `${name}.config`,
    CONFIG_FILE_SIZE,
    decodeConfigFile,
    new Uint8Array(0),
    () => encodeConfigFile(new Uint8Array(0)),
    log,
  );
  const loadList = (suffix: string) =>
    loadStateFile(
      directory,
      `${name}.${suffix}`,
      MAC_LIST_FILE_SIZE,
      decodeMacListFile,
      [] as number[],
      () => encodeMacListFile([]),
      log,
    );
  const macMask = await loadList("mac_mask");
  const reserve = await loadList("reserve");
  return new DeviceState(null, { config, macMask, reserve });
}
