/**
 * Opening exported devices and files, flushing, and plain synchronous I/O for tests and tools
 * (the data path uses {@link AioContext}).
 *
 * @module
 */

import { check, Errno, lastError } from "./errno.ts";
import type { Advice } from "./errno.ts";
import { cString, errno, libc } from "./libc.ts";
import {
  BLKGETSIZE64,
  F_DUPFD_CLOEXEC,
  F_GETFL,
  F_SETFL,
  O_CLOEXEC,
  O_DIRECT,
  O_DSYNC,
  O_EXCL,
  O_NOFOLLOW,
  O_NONBLOCK,
  O_RDONLY,
  O_RDWR,
  S_IFBLK,
  S_IFDIR,
  S_IFMT,
  S_IFREG,
} from "./constants.ts";
import { STAT } from "./structs.ts";

/** How to open an exported device. */
export interface StorageOptions {
  /** O_RDONLY instead of O_RDWR. */
  readOnly: boolean;
  /** O_DIRECT: bypass the page cache (buffers must be 512-byte aligned). */
  direct: boolean;
  /** O_EXCL on block devices: fail if mounted or opened exclusively elsewhere. */
  exclusive: boolean;
  /**
   * O_DSYNC: every write returns (and its AIO completes) only once its data, and the metadata
   * needed to read it back, is on stable storage.
   */
  sync?: boolean;
}

/** An open device or file. */
export interface Storage {
  /** The descriptor (close with {@link closeFd}). */
  fd: number;
  /** Size in bytes. */
  size: number;
  /** True for a block device, false for a regular file. */
  blockDevice: boolean;
  /**
   * What it is, independent of the path used: `b<rdev>` for a block device, `f<dev>:<ino>` for
   * a file. Two opens of the same storage have the same identity.
   */
  identity: string;
  /** Opened read-only. */
  readOnly: boolean;
}

const TWO_32 = 0x1_0000_0000;

function statMode(path: string): { mode: number; size: number; identity: string } {
  const buffer = new Uint8Array(new ArrayBuffer(STAT.size));
  check(libc().stat(cString(path), buffer), `stat(${path})`, {
    ENOENT: "the path does not exist",
    EACCES: "permission denied on the path; run as root",
  });
  const view = new DataView(buffer.buffer);
  const mode = view.getUint32(STAT.mode, true);
  const identity = (mode & S_IFMT) === S_IFBLK
    ? `b${readU64(view, STAT.rdev)}`
    : `f${readU64(view, STAT.dev)}:${readU64(view, STAT.ino)}`;
  return { mode, size: readU64(view, STAT.stSize), identity };
}

/** The {@link Storage.identity} `path` would open, from stat(2); throws a SysError. */
export function pathIdentity(path: string): string {
  return statMode(path).identity;
}

function readU64(view: DataView, offset: number): number {
  return view.getUint32(offset, true) + view.getUint32(offset + 4, true) * TWO_32;
}

/**
 * Opens `path` (a block device or a regular file) for export, close-on-exec, and measures it
 * (fstat for files, ioctl(BLKGETSIZE64) for block devices). Errors carry advice: EBUSY with
 * O_EXCL means the device is in use; EINVAL with O_DIRECT means the file system cannot do
 * direct I/O.
 */
export function openStorage(path: string, options: StorageOptions): Storage {
  const { mode } = statMode(path);
  const type = mode & S_IFMT;
  if (type !== S_IFBLK && type !== S_IFREG) {
    throw new Error(`${path}: not a block device or regular file`);
  }
  const blockDevice = type === S_IFBLK;
  const flags = (options.readOnly ? O_RDONLY : O_RDWR) | O_CLOEXEC |
    (options.direct ? O_DIRECT : 0) | (options.exclusive && blockDevice ? O_EXCL : 0) |
    (options.sync ? O_DSYNC : 0);
  const advice: Advice = {
    EBUSY: "is in use (mounted, or exported elsewhere)",
    EINVAL: options.direct
      ? "the filesystem does not support O_DIRECT; set direct-io = false"
      : undefined,
    EROFS: "the device or file system is read-only; export it with read-only = true",
    EACCES: "permission denied; run as root or export it read-only",
  };
  const fd = check(libc().open(cString(path), flags, 0), `open(${path})`, advice);
  try {
    const st = fstat(fd, path);
    const identity = blockDevice ? `b${st.rdev}` : `f${st.dev}:${st.ino}`;
    const size = blockDevice ? blockDeviceSize(fd, path) : st.size;
    return { fd, size, blockDevice, identity, readOnly: options.readOnly };
  } catch (error) {
    libc().close(fd);
    throw error;
  }
}

/**
 * A second descriptor of open storage (dup(2), close-on-exec), with O_DIRECT set as asked: the
 * same open file, so an exclusive claim on a block device carries over (a reload that changes
 * a device's settings but not its path takes over the descriptor instead of opening it again,
 * which O_EXCL would refuse while the old one is open).
 */
export function dupStorage(storage: Storage, path: string, direct: boolean): Storage {
  const fd = check(libc().fcntl(storage.fd, F_DUPFD_CLOEXEC, 0n), `fcntl(${path}, F_DUPFD)`, {
    EMFILE: "raise the open file limit (ulimit -n)",
  });
  try {
    setDirect(fd, direct);
  } catch (error) {
    libc().close(fd);
    throw error;
  }
  return { ...storage, fd };
}

function fstat(fd: number, path: string): { dev: number; ino: number; rdev: number; size: number } {
  const buffer = new Uint8Array(new ArrayBuffer(STAT.size));
  check(libc().fstat(fd, buffer), `fstat(${path})`);
  const view = new DataView(buffer.buffer);
  return {
    dev: readU64(view, STAT.dev),
    ino: readU64(view, STAT.ino),
    rdev: readU64(view, STAT.rdev),
    size: readU64(view, STAT.stSize),
  };
}

/** The current size in bytes of an open export (devices and files can grow or shrink). */
export function storageSize(storage: { fd: number; blockDevice: boolean }, path: string): number {
  return storage.blockDevice ? blockDeviceSize(storage.fd, path) : fileSize(storage.fd, path);
}

function fileSize(fd: number, path: string): number {
  return fstat(fd, path).size;
}

function blockDeviceSize(fd: number, path: string): number {
  const buffer = new Uint8Array(new ArrayBuffer(8));
  check(libc().ioctl(fd, BigInt(BLKGETSIZE64), buffer), `ioctl(${path}, BLKGETSIZE64)`);
  return readU64(new DataView(buffer.buffer), 0);
}

/** Turns O_DIRECT on or off for an open descriptor (fcntl F_SETFL). */
export function setDirect(fd: number, on: boolean): void {
  const flags = check(libc().fcntl(fd, F_GETFL, 0n), `fcntl(${fd}, F_GETFL)`);
  const wanted = on ? flags | O_DIRECT : flags & ~O_DIRECT;
  if (wanted === flags) return;
  check(libc().fcntl(fd, F_SETFL, BigInt(wanted)), `fcntl(${fd}, F_SETFL)`, {
    EINVAL: "the filesystem does not support O_DIRECT; set direct-io = false",
  });
}

/** fdatasync(2): data written so far is on stable storage. */
export function fdatasync(fd: number): void {
  check(libc().fdatasync(fd), `fdatasync(${fd})`, {
    EIO: "the device reported a write error: data may be lost",
  });
}

/**
 * fsync(2) of a file or directory by path — after a rename, fsync the directory so the new name
 * survives a crash.
 */
export function fsyncPath(path: string): void {
  const fd = check(libc().open(cString(path), O_RDONLY | O_CLOEXEC, 0), `open(${path})`);
  try {
    check(libc().fsync(fd), `fsync(${path})`);
  } finally {
    libc().close(fd);
  }
}

/**
 * Reads into all of `buffer` from byte `offset` (retrying short reads and EINTR); returns the
 * bytes read, fewer only at end of file. Synchronous: for tests and tools.
 */
export function pread(fd: number, buffer: Uint8Array<ArrayBuffer>, offset: number): number {
  let done = 0;
  while (done < buffer.length) {
    const part = done === 0 ? buffer : buffer.subarray(done);
    const n = Number(libc().pread(fd, part, BigInt(part.length), BigInt(offset + done)));
    if (n === -1) {
      if (errno() === Errno.EINTR) continue;
      throw lastError(`pread(${fd}, ${part.length} bytes at ${offset + done})`, {
        EINVAL: "O_DIRECT needs 512-byte aligned buffers, offsets and lengths",
      });
    }
    if (n === 0) break;
    done += n;
  }
  return done;
}

/**
 * Writes all of `buffer` at byte `offset` (retrying short writes and EINTR); returns the bytes
 * written. Synchronous: for tests and tools.
 */
export function pwrite(fd: number, buffer: Uint8Array<ArrayBuffer>, offset: number): number {
  let done = 0;
  while (done < buffer.length) {
    const part = done === 0 ? buffer : buffer.subarray(done);
    const n = Number(libc().pwrite(fd, part, BigInt(part.length), BigInt(offset + done)));
    if (n === -1) {
      if (errno() === Errno.EINTR) continue;
      throw lastError(`pwrite(${fd}, ${part.length} bytes at ${offset + done})`, {
        EINVAL: "O_DIRECT needs 512-byte aligned buffers, offsets and lengths",
        ENOSPC: "the file system is full",
      });
    }
    done += n;
  }
  return done;
}

/** What a path is, for configuration checks. */
export interface PathInfo {
  kind: "block" | "file" | "directory" | "other";
  /** st_size (0 for block devices: their size comes from BLKGETSIZE64 once opened). */
  size: number;
}

/**
 * stat(2) of a path. The configuration check uses this rather than Deno.statSync because Deno
 * asks for --allow-all before it looks at anything under /dev, where block devices live.
 * Throws a SysError (ENOENT, EACCES, ...).
 */
export function statPath(path: string): PathInfo {
  const { mode, size } = statMode(path);
  const type = mode & S_IFMT;
  const kind = type === S_IFBLK
    ? "block"
    : type === S_IFREG
    ? "file"
    : type === S_IFDIR
    ? "directory"
    : "other";
  return { kind, size };
}

const PATH_MAX = 4096;

/** realpath(3): the canonical absolute path, symlinks resolved (e.g. /dev/disk/by-uuid links). */
export function realPath(path: string): string {
  const out = new Uint8Array(new ArrayBuffer(PATH_MAX));
  if (libc().realpath(cString(path), out) === null) throw lastError(`realpath(${path})`);
  const end = out.indexOf(0);
  return new TextDecoder().decode(out.subarray(0, end < 0 ? PATH_MAX : end));
}

const O_CREAT = 0o100;
const LOCK_EX = 2;
const LOCK_NB = 4;
/** lockf(3): try to lock, fail at once if another process holds the lock. */
const F_TLOCK = 2;

/** What fstat(2) says of an open file. */
export interface FileStatus {
  kind: "block" | "file" | "directory" | "other";
  size: number;
  /** Hard links (st_nlink). */
  links: number;
  uid: number;
  dev: number;
  ino: number;
}

/** fstat(2) of descriptor `fd` (`path` names it in errors). */
export function fileStatus(fd: number, path: string): FileStatus {
  const buffer = new Uint8Array(new ArrayBuffer(STAT.size));
  check(libc().fstat(fd, buffer), `fstat(${path})`);
  const view = new DataView(buffer.buffer);
  const type = view.getUint32(STAT.mode, true) & S_IFMT;
  return {
    kind: type === S_IFBLK
      ? "block"
      : type === S_IFREG
      ? "file"
      : type === S_IFDIR
      ? "directory"
      : "other",
    size: readU64(view, STAT.stSize),
    links: readU64(view, STAT.nlink),
    uid: view.getUint32(STAT.uid, true),
    dev: readU64(view, STAT.dev),
    ino: readU64(view, STAT.ino),
  };
}

/**
 * Sets the mode of a file this process has just created at `path` (device `dev`, inode `ino`)
 * through a descriptor: the path is opened with O_NOFOLLOW (a symlink put in its place is
 * refused, never followed), checked to be that very file, then fchmod(2)'ed. chmod(2) by path
 * would follow a symlink to whatever it points at.
 */
export function chmodCreatedFile(path: string, mode: number, dev: number, ino: number): void {
  const fd = check(
    libc().open(cString(path), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0),
    `open(${path})`,
    { ELOOP: "a symlink replaced the file just created: something else writes in this directory" },
  );
  try {
    const st = fileStatus(fd, path);
    if (st.kind !== "file" || st.dev !== dev || st.ino !== ino) {
      throw new Error(
        `${path} was replaced after it was created: something else writes in this directory`,
      );
    }
    check(libc().fchmod(fd, mode), `fchmod(${path})`);
  } finally {
    libc().close(fd);
  }
}

/** The process's effective user and group ids (without Deno's --allow-sys). */
export function effectiveIds(): { uid: number; gid: number } {
  return { uid: libc().geteuid(), gid: libc().getegid() };
}

/**
 * What runs as process `pid`: its executable (readlink of /proc/PID/exe; null when it cannot be
 * read, e.g. a kernel thread or another user's process without the privilege) and its command
 * name (/proc/PID/comm). Null when there is no such process. Through libc: Deno itself refuses
 * to read /proc/PID without --allow-all.
 */
export function processInfo(pid: number): { exe: string | null; comm: string } | null {
  const out = new Uint8Array(new ArrayBuffer(PATH_MAX));
  const n = Number(libc().readlink(cString(`/proc/${pid}/exe`), out, BigInt(PATH_MAX)));
  let exe: string | null = null;
  if (n >= 0) exe = new TextDecoder().decode(out.subarray(0, n));
  else if (errno() === Errno.ENOENT) return null;
  const fd = libc().open(cString(`/proc/${pid}/comm`), O_RDONLY | O_CLOEXEC, 0);
  if (fd === -1) return errno() === Errno.ENOENT ? null : { exe, comm: "?" };
  try {
    const name = new Uint8Array(new ArrayBuffer(64));
    const got = pread(fd, name, 0);
    return { exe, comm: new TextDecoder().decode(name.subarray(0, got)).trim() };
  } finally {
    libc().close(fd);
  }
}

/** An open, locked pid file and what it held before. */
export interface PidFile {
  fd: number;
  /** Its contents when it was opened (at most 64 bytes; "" for a new file). */
  previous: string;
}

/**
 * Opens (creating, mode 0644) and locks the daemon's pid file, without changing it. Refused
 * (thrown, with the fix) when the path is a symlink (O_NOFOLLOW), not a regular file (a FIFO
 * cannot block the open: O_NONBLOCK), has other hard links, or belongs to another user: the
 * daemon writes only a file that is its own. Locked twice: flock(LOCK_EX | LOCK_NB), which
 * daemons of this kind hold, and lockf(F_TLOCK), a POSIX record lock as the original C daemon
 * held. Returns null when another process holds either lock (a daemon is running), else the
 * descriptor, which must stay open for the life of the process (closing it releases the
 * locks); the caller decides from `previous` and writes with {@link writePidFile}.
 */
export function openPidFile(path: string): PidFile | null {
  const fd = check(
    libc().open(cString(path), O_RDWR | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0o644),
    `open(${path})`,
    {
      EACCES: "run as root, or set pid-file to a writable path",
      ELOOP: "it is a symlink: remove it (the daemon creates its pid file itself), or set pid-file",
    },
  );
  try {
    const st = fileStatus(fd, path);
    const notOurs = st.kind !== "file"
      ? "is not a regular file"
      : st.links !== 1
      ? `has ${st.links} hard links`
      : st.uid !== effectiveIds().uid
      ? `belongs to uid ${st.uid}, not to the daemon's uid ${effectiveIds().uid}`
      : null;
    if (notOurs !== null) {
      throw new Error(
        `${path} ${notOurs}: it is not this daemon's pid file; remove it (the daemon creates ` +
          "its own), or set pid-file to another path",
      );
    }
    if (libc().flock(fd, LOCK_EX | LOCK_NB) === -1 || libc().lockf(fd, F_TLOCK, 0n) === -1) {
      const e = errno();
      if (e !== Errno.EAGAIN && e !== Errno.EACCES) throw lastError(`locking ${path}`);
      libc().close(fd); // held by another process
      return null;
    }
    const head = new Uint8Array(new ArrayBuffer(64));
    const n = pread(fd, head, 0);
    return { fd, previous: new TextDecoder().decode(head.subarray(0, n)) };
  } catch (e) {
    libc().close(fd);
    throw e;
  }
}

/** Replaces the contents of the pid file opened by {@link openPidFile} with `pid` and a newline. */
export function writePidFile(fd: number, path: string, pid: number): void {
  check(libc().ftruncate(fd, 0n), `ftruncate(${path})`);
  pwrite(fd, new TextEncoder().encode(`${pid}\n`), 0);
}

/** close(2). */
export function closeFd(fd: number): void {
  check(libc().close(fd), `close(${fd})`);
}
