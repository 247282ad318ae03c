/**
 * Linux kernel AIO (io_setup / io_submit / io_getevents), through libaio when it is installed
 * and through syscall(2) otherwise. Completions signal an {@link EventFd}.
 *
 * The API is shaped for batching without allocation: the caller owns numbered slots (0 ..
 * maxEvents-1), fills a slot's iocb and iovecs with `prepareVector`/`setIovec` (or
 * `prepareSync`), submits a list of slots, and after the eventfd fires reaps events that carry
 * the slot number back. All kernel-visible structures live in one {@link Memory} region:
 *
 * ```
 * offset 0                 aio_context_t (u64, written by io_setup)
 *        16                struct timespec {0, 0} (io_getevents timeout: never wait)
 *        64                struct iocb        [slots]            64 bytes each
 *        iocbPointers      struct iocb *      [slots]             8 bytes each
 *        iovecs            struct iovec       [slots][32]        16 bytes each
 *        events            struct io_event    [maxEvents]        32 bytes each
 * ```
 *
 * @module
 */

import { Errno, lastError, sysError } from "./errno.ts";
import type { Advice } from "./errno.ts";
import type { EventFd } from "./events.ts";
import { big, errno, libaio, libaioAvailable, libc } from "./libc.ts";
import { _memoryAddress, _memoryPointerAt, Memory } from "./memory.ts";
import {
  IOCB_CMD_FDSYNC,
  IOCB_CMD_FSYNC,
  IOCB_CMD_PREADV,
  IOCB_CMD_PWRITEV,
  IOCB_FLAG_RESFD,
  SYS_io_destroy,
  SYS_io_getevents,
  SYS_io_setup,
  SYS_io_submit,
} from "./constants.ts";
import { IO_EVENT, IOCB, IOVEC, TIMESPEC } from "./structs.ts";

export {
  IOCB_CMD_FDSYNC,
  IOCB_CMD_FSYNC,
  IOCB_CMD_NOOP,
  IOCB_CMD_PREAD,
  IOCB_CMD_PREADV,
  IOCB_CMD_PWRITE,
  IOCB_CMD_PWRITEV,
} from "./constants.ts";

/** Most iovecs one slot can carry (ggaoed merges up to 32 requests into one iocb). */
export const AIO_MAX_IOVECS = 32;

/** Which implementation issues the system calls. */
export type AioBackend = "libaio" | "syscall";

/** Options of {@link AioContext.open}. */
export interface AioOptions {
  /** Default: libaio when `libaio.so.1` can be opened, else the raw system calls. */
  backend?: AioBackend;
}

const TWO_32 = 0x1_0000_0000;
// Far above any sane queue; the kernel's own limit is fs.aio-max-nr (65536 by default).
const MAX_EVENTS = 1 << 20;
const EAGAIN_RESULT = -Errno.EAGAIN;
// syscall(2) takes the number as a long: BigInt once, not per call.
const SYSCALL_IO_SUBMIT = BigInt(SYS_io_submit);
const SYSCALL_IO_GETEVENTS = BigInt(SYS_io_getevents);
const ZERO_TIMESPEC_OFFSET = 16;

const SETUP_ADVICE: Advice = {
  EAGAIN: "the system-wide AIO limit is reached; raise /proc/sys/fs/aio-max-nr",
  ENOSYS: "the kernel was built without AIO (CONFIG_AIO)",
};
const SUBMIT_ADVICE: Advice = {
  EBADF: "the device's file descriptor is not open",
  EINVAL: "the iocb is invalid (bad opcode, iovec count, or O_DIRECT alignment)",
};

/** A kernel AIO context with `maxEvents` slots, owned by one thread. */
export class AioContext {
  /** The implementation in use. */
  readonly backend: AioBackend;
  /** Number of slots, and the most events one `reap` returns. */
  readonly slots: number;
  readonly #memory: Memory;
  readonly #words: Uint32Array;
  readonly #signed: Int32Array;
  readonly #resfd: number;
  readonly #context: Deno.PointerObject;
  readonly #iocbPointers: Deno.PointerObject;
  readonly #events: Deno.PointerObject;
  readonly #zeroTimeout: Deno.PointerObject;
  // Word indices (u32) of each area, and each slot's iocb/iovec addresses as u32 halves.
  readonly #iocbWord: number;
  readonly #pointerWord: number;
  readonly #iovecWord: number;
  readonly #eventWord: number;
  readonly #iocbLo: Uint32Array;
  readonly #iocbHi: Uint32Array;
  readonly #iovecLo: Uint32Array;
  readonly #iovecHi: Uint32Array;
  readonly #iovecPointers: Deno.PointerObject[] = [];
  #closed = false;

  private constructor(
    backend: AioBackend,
    slots: number,
    memory: Memory,
    resfd: number,
    layout: { iocbs: number; pointers: number; iovecs: number; events: number },
  ) {
    this.backend = backend;
    this.slots = slots;
    this.#memory = memory;
    this.#words = new Uint32Array(memory.bytes.buffer);
    this.#signed = new Int32Array(memory.bytes.buffer);
    this.#resfd = resfd;
    this.#iocbWord = layout.iocbs / 4;
    this.#pointerWord = layout.pointers / 4;
    this.#iovecWord = layout.iovecs / 4;
    this.#eventWord = layout.events / 4;
    this.#iocbPointers = _memoryPointerAt(memory, layout.pointers);
    this.#events = _memoryPointerAt(memory, layout.events);
    this.#zeroTimeout = _memoryPointerAt(memory, ZERO_TIMESPEC_OFFSET);
    const base = _memoryAddress(memory);
    this.#iocbLo = new Uint32Array(slots);
    this.#iocbHi = new Uint32Array(slots);
    this.#iovecLo = new Uint32Array(slots);
    this.#iovecHi = new Uint32Array(slots);
    for (let s = 0; s < slots; s++) {
      const iocb = base + layout.iocbs + s * IOCB.size;
      const iovecs = base + layout.iovecs + s * AIO_MAX_IOVECS * IOVEC.size;
      this.#iocbLo[s] = iocb >>> 0;
      this.#iocbHi[s] = Math.floor(iocb / TWO_32);
      this.#iovecLo[s] = iovecs >>> 0;
      this.#iovecHi[s] = Math.floor(iovecs / TWO_32);
      this.#iovecPointers.push(
        _memoryPointerAt(memory, layout.iovecs + s * AIO_MAX_IOVECS * IOVEC.size),
      );
    }
    this.#context = this.#setup(_memoryPointerAt(memory, 0));
  }

  /**
   * io_setup(maxEvents) with completions signalled on `eventFd`. Throws a SysError with advice
   * (EAGAIN: raise /proc/sys/fs/aio-max-nr), or an Error when `backend: "libaio"` is asked for
   * and libaio.so.1 is missing.
   */
  static open(maxEvents: number, eventFd: EventFd, options: AioOptions = {}): AioContext {
    if (!Number.isInteger(maxEvents) || maxEvents < 1 || maxEvents > MAX_EVENTS) {
      throw new RangeError(`AioContext: maxEvents must be 1..${MAX_EVENTS}, got ${maxEvents}`);
    }
    const backend = options.backend ?? (libaioAvailable() ? "libaio" : "syscall");
    if (backend === "libaio") libaio();
    const iocbs = ZERO_TIMESPEC_OFFSET + TIMESPEC.size + 32; // 64: iocbs start on a cache line
    const pointers = iocbs + maxEvents * IOCB.size;
    const iovecs = pointers + maxEvents * 8;
    const events = iovecs + maxEvents * AIO_MAX_IOVECS * IOVEC.size;
    const memory = Memory.allocate(events + maxEvents * IO_EVENT.size);
    try {
      return new AioContext(backend, maxEvents, memory, eventFd.fd, {
        iocbs,
        pointers,
        iovecs,
        events,
      });
    } catch (error) {
      memory.close();
      throw error;
    }
  }

  #setup(contextSlot: Deno.PointerObject): Deno.PointerObject {
    if (this.backend === "libaio") {
      const r = libaio().io_setup(this.slots, contextSlot);
      if (r < 0) throw sysError(`io_setup(${this.slots})`, -r, SETUP_ADVICE);
    } else {
      const r = libc().sys_io_setup(BigInt(SYS_io_setup), BigInt(this.slots), contextSlot);
      if (r === -1) throw lastError(`io_setup(${this.slots})`, SETUP_ADVICE);
    }
    const id = BigInt(this.#words[0]) | (BigInt(this.#words[1]) << 32n);
    return Deno.UnsafePointer.create(id)!;
  }

  #checkSlot(slot: number): number {
    if (!(slot >= 0 && slot < this.slots) || (slot | 0) !== slot) {
      throw new RangeError(`AioContext: slot ${slot} outside 0..${this.slots - 1}`);
    }
    return this.#iocbWord + slot * (IOCB.size / 4);
  }

  // Fills the whole iocb of `slot`: every field is written, so a reused slot keeps nothing of
  // its previous request.
  #fill(w: number, slot: number, opcode: number, fd: number, fileOffset: number): void {
    const words = this.#words;
    words[w + IOCB.data / 4] = slot;
    words[w + IOCB.data / 4 + 1] = 0;
    words[w + IOCB.key / 4] = 0;
    words[w + IOCB.rwFlags / 4] = 0;
    words[w + IOCB.opcode / 4] = opcode; // u16 opcode, then i16 reqprio = 0
    words[w + IOCB.fildes / 4] = fd;
    words[w + IOCB.offset / 4] = fileOffset >>> 0;
    words[w + IOCB.offset / 4 + 1] = Math.floor(fileOffset / TWO_32);
    words[w + IOCB.reserved2 / 4] = 0;
    words[w + IOCB.reserved2 / 4 + 1] = 0;
    words[w + IOCB.flags / 4] = IOCB_FLAG_RESFD;
    words[w + IOCB.resfd / 4] = this.#resfd;
  }

  /**
   * Prepares `slot` for a vectored read or write (IOCB_CMD_PREADV / IOCB_CMD_PWRITEV) of
   * `iovCount` iovecs (set them with {@link setIovec}) at byte `fileOffset` of `fd`.
   */
  prepareVector(slot: number, opcode: number, fd: number, fileOffset: number, iovCount: number) {
    const w = this.#checkSlot(slot);
    if (!(iovCount >= 1 && iovCount <= AIO_MAX_IOVECS)) {
      throw new RangeError(`AioContext: iovCount ${iovCount} outside 1..${AIO_MAX_IOVECS}`);
    }
    if (!(fileOffset >= 0 && fileOffset <= Number.MAX_SAFE_INTEGER)) {
      throw new RangeError(`AioContext: bad file offset ${fileOffset}`);
    }
    this.#fill(w, slot, opcode, fd, fileOffset);
    const words = this.#words;
    words[w + IOCB.buf / 4] = this.#iovecLo[slot];
    words[w + IOCB.buf / 4 + 1] = this.#iovecHi[slot];
    words[w + IOCB.nbytes / 4] = iovCount;
    words[w + IOCB.nbytes / 4 + 1] = 0;
  }

  /**
   * Points iovec `index` of `slot` at `memory[offsetInMemory .. offsetInMemory + length]`.
   * The memory must stay open until the slot's completion is reaped.
   */
  setIovec(slot: number, index: number, memory: Memory, offsetInMemory: number, length: number) {
    this.#checkSlot(slot);
    if (!(index >= 0 && index < AIO_MAX_IOVECS)) {
      throw new RangeError(`AioContext: iovec index ${index} outside 0..${AIO_MAX_IOVECS - 1}`);
    }
    if (!(offsetInMemory >= 0 && length >= 0 && offsetInMemory + length <= memory.length)) {
      throw new RangeError(
        `AioContext: iovec [${offsetInMemory}, +${length}) outside the ${memory.length}-byte Memory`,
      );
    }
    const address = _memoryAddress(memory) + offsetInMemory;
    const w = this.#iovecWord + (slot * AIO_MAX_IOVECS + index) * (IOVEC.size / 4);
    const words = this.#words;
    words[w] = address >>> 0;
    words[w + 1] = Math.floor(address / TWO_32);
    words[w + 2] = length >>> 0;
    words[w + 3] = Math.floor(length / TWO_32);
  }

  /** Prepares `slot` as IOCB_CMD_FDSYNC (`datasync`) or IOCB_CMD_FSYNC of `fd`. */
  prepareSync(slot: number, fd: number, datasync: boolean): void {
    const w = this.#checkSlot(slot);
    this.#fill(w, slot, datasync ? IOCB_CMD_FDSYNC : IOCB_CMD_FSYNC, fd, 0);
    const words = this.#words;
    words[w + IOCB.buf / 4] = 0;
    words[w + IOCB.buf / 4 + 1] = 0;
    words[w + IOCB.nbytes / 4] = 0;
    words[w + IOCB.nbytes / 4 + 1] = 0;
  }

  /**
   * Performs the vector prepared in `slot` now, with preadv(2)/pwritev(2), instead of submitting
   * it: for files opened without O_DIRECT, where io_submit would copy from or to the page cache
   * synchronously anyway, this saves the AIO round trip (io_submit, the eventfd, io_getevents,
   * one more epoll turn). Returns the bytes transferred or -errno; no completion is queued.
   */
  runVectorNow(slot: number): number {
    const w = this.#checkSlot(slot);
    const words = this.#words;
    const opcode = words[w + IOCB.opcode / 4] & 0xffff;
    const fd = words[w + IOCB.fildes / 4];
    const count = words[w + IOCB.nbytes / 4];
    const offset = words[w + IOCB.offset / 4] + words[w + IOCB.offset / 4 + 1] * TWO_32;
    const iov = this.#iovecPointers[slot];
    for (;;) {
      const n = opcode === IOCB_CMD_PREADV
        ? libc().preadv(fd, iov, count, BigInt(offset))
        : opcode === IOCB_CMD_PWRITEV
        ? libc().pwritev(fd, iov, count, BigInt(offset))
        : -2;
      if (n >= 0) return n;
      if (n === -2) throw new RangeError(`AioContext.runVectorNow: slot ${slot} holds no vector`);
      const e = errno();
      if (e !== Errno.EINTR) return -e;
    }
  }

  /**
   * io_submit of `slots[0..count)`. Returns how many the kernel accepted, in order (fewer than
   * `count` when it ran short; resubmit the rest later), or -EAGAIN (-11) when it accepted
   * none for lack of resources — the caller stalls until completions arrive. Other errors
   * throw a SysError.
   */
  submit(slots: Int32Array, count: number): number {
    if (count === 0) return 0;
    if (!(count > 0 && count <= this.slots && count <= slots.length)) {
      throw new RangeError(`AioContext.submit: bad count ${count}`);
    }
    const words = this.#words;
    let p = this.#pointerWord;
    for (let i = 0; i < count; i++, p += 2) {
      const slot = slots[i];
      this.#checkSlot(slot);
      words[p] = this.#iocbLo[slot];
      words[p + 1] = this.#iocbHi[slot];
    }
    if (this.backend === "libaio") {
      const r = libaio().io_submit(this.#context, big(count), this.#iocbPointers);
      if (r >= 0) return r;
      if (r === EAGAIN_RESULT) return EAGAIN_RESULT;
      throw sysError("io_submit", -r, SUBMIT_ADVICE);
    }
    const r = libc().sys_io_submit(
      SYSCALL_IO_SUBMIT,
      this.#context,
      big(count),
      this.#iocbPointers,
    );
    if (r >= 0) return r;
    const e = errno();
    if (e === Errno.EAGAIN) return EAGAIN_RESULT;
    throw sysError("io_submit", e, SUBMIT_ADVICE);
  }

  /**
   * Collects up to `max` completed events without waiting (io_getevents with min_nr 0 and a
   * zero timeout); read them with {@link eventSlot} and {@link eventResult}.
   */
  reap(max: number = this.slots): number {
    const n = Math.min(max, this.slots);
    if (!(n > 0)) return 0;
    let r: number;
    if (this.backend === "libaio") {
      r = libaio().io_getevents(this.#context, 0n, big(n), this.#events, this.#zeroTimeout);
      if (r >= 0) return r;
      r = -r;
    } else {
      r = libc().sys_io_getevents(
        SYSCALL_IO_GETEVENTS,
        this.#context,
        0n,
        big(n),
        this.#events,
        this.#zeroTimeout,
      );
      if (r >= 0) return r;
      r = errno();
    }
    if (r === Errno.EINTR) return 0;
    throw sysError("io_getevents", r);
  }

  /** The slot of reaped event `i`. */
  eventSlot(i: number): number {
    return this.#words[this.#eventWord + i * (IO_EVENT.size / 4) + IO_EVENT.data / 4];
  }

  /** The result of reaped event `i`: bytes transferred (0 for a sync), or -errno. */
  eventResult(i: number): number {
    const w = this.#eventWord + i * (IO_EVENT.size / 4) + IO_EVENT.res / 4;
    return this.#signed[w + 1] * TWO_32 + this.#words[w];
  }

  /**
   * io_destroy (the kernel waits for in-flight requests to finish) and unmaps the slots;
   * idempotent.
   */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      if (this.backend === "libaio") {
        const r = libaio().io_destroy(this.#context);
        if (r < 0) throw sysError("io_destroy", -r);
      } else if (libc().sys_io_destroy(BigInt(SYS_io_destroy), this.#context) === -1) {
        throw lastError("io_destroy");
      }
    } finally {
      this.#memory.close();
    }
  }
}
