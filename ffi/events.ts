/**
 * Readiness and wake-ups: epoll, eventfd, timerfd. Every descriptor is close-on-exec and
 * non-blocking; only {@link Epoll.wait} blocks (the data path runs it in a dedicated Worker).
 *
 * @module
 */

import { check, Errno, lastError } from "./errno.ts";
import { errno, libc } from "./libc.ts";
import {
  CLOCK_MONOTONIC,
  CLOCK_REALTIME,
  EFD_CLOEXEC,
  EFD_NONBLOCK,
  EPOLL_CLOEXEC,
  EPOLL_CTL_ADD,
  EPOLL_CTL_DEL,
  EPOLL_CTL_MOD,
  TFD_CLOEXEC,
  TFD_NONBLOCK,
} from "./constants.ts";
import { EPOLL_EVENT, ITIMERSPEC, TIMESPEC } from "./structs.ts";

export { EPOLLERR, EPOLLHUP, EPOLLIN, EPOLLOUT } from "./constants.ts";

const TWO_32 = 0x1_0000_0000;
const COUNTER_BYTES = 8n;

/**
 * An epoll instance with its own event array. `wait` fills the array; `tokenAt(i)` and
 * `eventsAt(i)` read entry i. A token is any safe non-negative integer chosen by the caller
 * (stored in `epoll_event.data`).
 */
export class Epoll {
  /** The epoll descriptor. */
  readonly fd: number;
  /** Most events one `wait` returns. */
  readonly maxEvents: number;
  // struct epoll_event is 12 bytes and packed: entry i is u32 words 3i (events), 3i+1 and
  // 3i+2 (data, low and high halves).
  readonly #events: Uint8Array<ArrayBuffer>;
  readonly #eventWords: Uint32Array;
  readonly #ctl = new Uint8Array(new ArrayBuffer(EPOLL_EVENT.size));
  readonly #ctlWords = new Uint32Array(this.#ctl.buffer);
  #closed = false;

  private constructor(fd: number, maxEvents: number) {
    this.fd = fd;
    this.maxEvents = maxEvents;
    this.#events = new Uint8Array(new ArrayBuffer(maxEvents * EPOLL_EVENT.size));
    this.#eventWords = new Uint32Array(this.#events.buffer);
  }

  /** epoll_create1(EPOLL_CLOEXEC), with room for `maxEvents` events per wait. */
  static open(maxEvents = 64): Epoll {
    if (!Number.isInteger(maxEvents) || maxEvents < 1) {
      throw new RangeError(`Epoll: maxEvents must be a positive integer, got ${maxEvents}`);
    }
    return new Epoll(check(libc().epoll_create1(EPOLL_CLOEXEC), "epoll_create1"), maxEvents);
  }

  #control(op: number, fd: number, events: number, token: number, name: string): void {
    if (!Number.isSafeInteger(token) || token < 0) {
      throw new RangeError(`Epoll: token must be a safe non-negative integer, got ${token}`);
    }
    this.#ctlWords[0] = events >>> 0;
    this.#ctlWords[1] = token >>> 0;
    this.#ctlWords[2] = Math.floor(token / TWO_32);
    check(libc().epoll_ctl(this.fd, op, fd, this.#ctl), `epoll_ctl(${name}, fd ${fd})`);
  }

  /** Watches `fd` for `events` (level-triggered); `token` comes back from {@link tokenAt}. */
  add(fd: number, events: number, token: number): void {
    this.#control(EPOLL_CTL_ADD, fd, events, token, "ADD");
  }

  /** Changes the events and token of a watched `fd`. */
  modify(fd: number, events: number, token: number): void {
    this.#control(EPOLL_CTL_MOD, fd, events, token, "MOD");
  }

  /** Stops watching `fd`. */
  remove(fd: number): void {
    this.#control(EPOLL_CTL_DEL, fd, 0, 0, "DEL");
  }

  /**
   * Blocks up to `timeoutMs` (-1 = forever, 0 = poll) and returns how many events are ready
   * (0 on timeout or when a signal interrupted the wait).
   */
  wait(timeoutMs: number): number {
    const n = libc().epoll_wait(this.fd, this.#events, this.maxEvents, timeoutMs);
    if (n >= 0) return n;
    if (errno() === Errno.EINTR) return 0;
    throw lastError("epoll_wait");
  }

  /** The token of ready event `i` (0 <= i < the last wait's result). */
  tokenAt(i: number): number {
    return this.#eventWords[3 * i + 1] + this.#eventWords[3 * i + 2] * TWO_32;
  }

  /** The ready event bits (EPOLLIN, EPOLLOUT, EPOLLERR, EPOLLHUP) of event `i`. */
  eventsAt(i: number): number {
    return this.#eventWords[3 * i];
  }

  /** Closes the epoll descriptor; idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    check(libc().close(this.fd), "close(epoll)");
  }
}

/** Reads an 8-byte counter from a non-blocking fd: the value, or 0 when it would block. */
function readCounter(
  fd: number,
  buffer: Uint8Array<ArrayBuffer>,
  words: Uint32Array,
  call: string,
) {
  const n = libc().read(fd, buffer, COUNTER_BYTES);
  if (n === 8) return words[0] + words[1] * TWO_32;
  if (n === -1 && errno() === Errno.EAGAIN) return 0;
  if (n === -1) throw lastError(call);
  throw new Error(`${call}: short read of ${n} bytes`);
}

/** An eventfd counter: wakes an epoll loop (AIO completions, other threads). */
export class EventFd {
  /** The eventfd descriptor (register it in an {@link Epoll} for EPOLLIN). */
  readonly fd: number;
  readonly #buffer = new Uint8Array(new ArrayBuffer(8));
  readonly #words = new Uint32Array(this.#buffer.buffer);
  #closed = false;

  private constructor(fd: number) {
    this.fd = fd;
  }

  /** eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK). */
  static open(): EventFd {
    return new EventFd(check(libc().eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK), "eventfd"));
  }

  /**
   * Wraps an eventfd created elsewhere in this process (file descriptors are process-wide: the
   * main thread creates the data-path worker's wake eventfd and passes its number). The
   * adopted object does not own the descriptor: its `close()` leaves it open.
   */
  static adopt(fd: number): EventFd {
    const e = new EventFd(fd);
    e.#closed = true;
    return e;
  }

  /** Adds `n` (>= 1) to the counter, making the fd readable. */
  signal(n = 1): void {
    if (!Number.isSafeInteger(n) || n < 1) throw new RangeError(`EventFd.signal: bad count ${n}`);
    this.#words[0] = n >>> 0;
    this.#words[1] = Math.floor(n / TWO_32);
    const written = libc().write(this.fd, this.#buffer, COUNTER_BYTES);
    // EAGAIN means the counter is at its maximum: the fd is readable anyway.
    if (written === -1 && errno() !== Errno.EAGAIN) throw lastError("write(eventfd)");
  }

  /** Reads and resets the counter: its value, or 0 if it was zero. Never blocks. */
  drain(): number {
    return readCounter(this.fd, this.#buffer, this.#words, "read(eventfd)");
  }

  /** Closes the descriptor; idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    check(libc().close(this.fd), "close(eventfd)");
  }
}

/** A one-shot CLOCK_MONOTONIC timer (merge-delay submission, periodic work). */
export class TimerFd {
  /** The timerfd descriptor (readable once the timer expired). */
  readonly fd: number;
  // struct itimerspec: it_interval stays zero (one-shot); it_value is the delay.
  readonly #spec = new Uint8Array(new ArrayBuffer(ITIMERSPEC.size));
  readonly #specWords = new Uint32Array(this.#spec.buffer);
  readonly #buffer = new Uint8Array(new ArrayBuffer(8));
  readonly #words = new Uint32Array(this.#buffer.buffer);
  #closed = false;

  private constructor(fd: number) {
    this.fd = fd;
  }

  /** timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK), disarmed. */
  static open(): TimerFd {
    const fd = libc().timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
    return new TimerFd(check(fd, "timerfd_create"));
  }

  #set(seconds: number, nanoseconds: number, call: string): void {
    // i64 fields as little-endian u32 halves: no BigInt per arm.
    const sec = (ITIMERSPEC.value + TIMESPEC.sec) / 4;
    const nsec = (ITIMERSPEC.value + TIMESPEC.nsec) / 4;
    this.#specWords[sec] = seconds >>> 0;
    this.#specWords[sec + 1] = Math.floor(seconds / TWO_32);
    this.#specWords[nsec] = nanoseconds;
    this.#specWords[nsec + 1] = 0;
    check(libc().timerfd_settime(this.fd, 0, this.#spec, null), call);
  }

  /** Arms the timer to expire once, `seconds` (> 0, fractional) from now; re-arming replaces. */
  arm(seconds: number): void {
    if (!(seconds >= 0) || !Number.isFinite(seconds)) {
      throw new RangeError(`TimerFd.arm: bad delay ${seconds}`);
    }
    let whole = Math.floor(seconds);
    let nanoseconds = Math.round((seconds - whole) * 1e9);
    if (nanoseconds >= 1e9) {
      whole += 1;
      nanoseconds -= 1e9;
    }
    // An all-zero it_value would disarm: the shortest delay is 1 ns.
    if (whole === 0 && nanoseconds === 0) nanoseconds = 1;
    this.#set(whole, nanoseconds, "timerfd_settime(arm)");
  }

  /** Cancels a pending expiry. */
  disarm(): void {
    this.#set(0, 0, "timerfd_settime(disarm)");
  }

  /** Expirations since the last drain (0 or 1 for a one-shot timer). Never blocks. */
  drain(): number {
    return readCounter(this.fd, this.#buffer, this.#words, "read(timerfd)");
  }

  /** Closes the descriptor; idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    check(libc().close(this.fd), "close(timerfd)");
  }
}

const clockSpec = new Uint8Array(new ArrayBuffer(TIMESPEC.size));
const clockWords = new Uint32Array(clockSpec.buffer);

/**
 * CLOCK_REALTIME in seconds with nanosecond resolution: the clock of the packet rings' receive
 * timestamps (for converting them to the monotonic clock; Date.now() has only milliseconds).
 */
export function realtimeSeconds(): number {
  check(libc().clock_gettime(CLOCK_REALTIME, clockSpec), "clock_gettime(CLOCK_REALTIME)");
  return clockWords[TIMESPEC.sec / 4] + clockWords[TIMESPEC.sec / 4 + 1] * TWO_32 +
    clockWords[TIMESPEC.nsec / 4] / 1e9;
}
