/**
 * The one errno mapper: a failing system call becomes a {@link SysError} that names the call,
 * the errno (number and symbolic code), the C library's description, and what to do.
 *
 * @module
 */

import { errno, libc } from "./libc.ts";

/** Linux x86-64 errno numbers by name (asm-generic/errno-base.h, errno.h). */
export const Errno = {
  EPERM: 1,
  ENOENT: 2,
  ESRCH: 3,
  EINTR: 4,
  EIO: 5,
  ENXIO: 6,
  E2BIG: 7,
  ENOEXEC: 8,
  EBADF: 9,
  ECHILD: 10,
  EAGAIN: 11,
  ENOMEM: 12,
  EACCES: 13,
  EFAULT: 14,
  ENOTBLK: 15,
  EBUSY: 16,
  EEXIST: 17,
  EXDEV: 18,
  ENODEV: 19,
  ENOTDIR: 20,
  EISDIR: 21,
  EINVAL: 22,
  ENFILE: 23,
  EMFILE: 24,
  ENOTTY: 25,
  ETXTBSY: 26,
  EFBIG: 27,
  ENOSPC: 28,
  ESPIPE: 29,
  EROFS: 30,
  EMLINK: 31,
  EPIPE: 32,
  ERANGE: 34,
  EDEADLK: 35,
  ENAMETOOLONG: 36,
  ENOLCK: 37,
  ENOSYS: 38,
  ENOTEMPTY: 39,
  ELOOP: 40,
  ENODATA: 61,
  ETIME: 62,
  EOVERFLOW: 75,
  EBADFD: 77,
  ENOTSOCK: 88,
  EMSGSIZE: 90,
  EPROTOTYPE: 91,
  ENOPROTOOPT: 92,
  EPROTONOSUPPORT: 93,
  ESOCKTNOSUPPORT: 94,
  EOPNOTSUPP: 95,
  EAFNOSUPPORT: 97,
  EADDRINUSE: 98,
  EADDRNOTAVAIL: 99,
  ENETDOWN: 100,
  ENETUNREACH: 101,
  ENOBUFS: 105,
  ECONNREFUSED: 111,
  ETIMEDOUT: 110,
  ECANCELED: 125,
  ENOMEDIUM: 123,
  EDQUOT: 122,
} as const;

/** A symbolic errno name such as `"EPERM"`. */
export type ErrnoCode = keyof typeof Errno;

const CODE_BY_NUMBER = new Map<number, string>(
  Object.entries(Errno).map(([code, n]) => [n, code]),
);

/** Advice used when the caller gives none for a code. */
const GENERIC_ADVICE: Partial<Record<ErrnoCode, string>> = {
  EPERM: "run as root or grant the needed capability",
  EACCES: "check permissions, or run as root",
  ENOENT: "check the path",
  EMFILE: "raise the open file limit (ulimit -n)",
  ENFILE: "the system is out of file handles (fs.file-max)",
  ENOMEM: "the system is out of memory, or the locked-memory limit is too low",
  ENOSPC: "the device or a kernel table is full",
  EROFS: "the file system is read-only; export the device read-only",
  ENOSYS: "the kernel lacks this system call",
};

/** The symbolic name of an errno number (`"EPERM"`), or `"E<n>"` for ones we do not list. */
export function errnoCode(errnoValue: number): string {
  return CODE_BY_NUMBER.get(errnoValue) ?? `E${errnoValue}`;
}

/** A failed system call: which call, which errno, and what to do. */
export class SysError extends Error {
  /** The call as written in messages, e.g. `socket(AF_PACKET)` or `open(/dev/sdb)`. */
  readonly call: string;
  /** The errno number. */
  readonly errno: number;
  /** The errno name, e.g. `"EPERM"`. */
  readonly code: string;

  /** Prefer {@link sysError}, which fills in the description and the advice. */
  constructor(call: string, errnoValue: number, message: string) {
    super(message);
    this.name = "SysError";
    this.call = call;
    this.errno = errnoValue;
    this.code = errnoCode(errnoValue);
  }
}

/** Per-call advice by errno name; the first matching entry wins over the generic advice. */
export type Advice = Partial<Record<ErrnoCode, string>>;

function describe(errnoValue: number): string {
  const text = libc().strerror(errnoValue);
  return text === null ? "" : Deno.UnsafePointerView.getCString(text);
}

/**
 * Builds the {@link SysError} for `call` failing with `errnoValue`:
 * `socket(AF_PACKET): EPERM (Operation not permitted) — run as root or grant CAP_NET_RAW`.
 */
export function sysError(call: string, errnoValue: number, advice?: Advice): SysError {
  const code = errnoCode(errnoValue);
  const hint = advice?.[code as ErrnoCode] ?? GENERIC_ADVICE[code as ErrnoCode];
  const description = describe(errnoValue);
  const message = `${call}: ${code}${description ? ` (${description})` : ""}` +
    (hint ? ` — ${hint}` : "");
  return new SysError(call, errnoValue, message);
}

/** The {@link SysError} for the thread's current errno; call it right after the failure. */
export function lastError(call: string, advice?: Advice): SysError {
  return sysError(call, errno(), advice);
}

/** Returns `result` unless it is -1, in which case throws the current errno as a SysError. */
export function check(result: number, call: string, advice?: Advice): number {
  if (result === -1) throw lastError(call, advice);
  return result;
}
