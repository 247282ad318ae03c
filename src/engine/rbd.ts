/**
 * A Ceph RBD image as the storage of a {@link Device}, on the data-path worker.
 *
 * The worker never opens an image itself: connecting and opening block for round trips to the
 * cluster (seconds when it is unreachable), and the metadata that holds the AoE state must be
 * read first. The daemon's main thread does both without blocking (nonblocking FFI, see
 * `src/rbd/images.ts`) and lends the open image to the worker ({@link RbdImageToken}); the worker
 * only drives its asynchronous I/O, whose calls never wait (librbd queues requests to its own
 * threads and signals the device's eventfd), and gives the image back when the device closes.
 *
 * {@link RbdIo} presents librbd's {@link RbdAioContext} with the kernel {@link AioContext}'s
 * method signatures, so that Device drives both through the same calls: slots, merged vectors
 * (up to {@link RBD_MAX_IOVECS} iovecs), batched submission, reaping after the eventfd fired.
 * A file-only daemon never meets this class, so Device's calls stay monomorphic for it.
 *
 * @module
 */

import {
  type AioContext,
  type EventFd,
  type Memory,
  type RbdAioContext,
  RbdImage,
  type RbdImageToken,
  type Storage,
} from "../../ffi/mod.ts";

/** An image lent by the main thread: what Device needs besides the handle. */
export interface RbdLoan {
  /** The main thread's number for this loan (given back with the release). */
  id: number;
  token: RbdImageToken;
  /** Size in bytes when it was opened (the worker never asks librbd: that may block). */
  size: number;
}

/** The storage of an RBD device: a borrowed image, its size, and how to give it back. */
export class RbdStorage {
  readonly id: number;
  readonly image: RbdImage;
  /** Size in bytes, as the main thread last read it (it re-reads it; see Device.setSize). */
  size: number;
  readonly #release: (id: number) => void;
  #released = false;

  constructor(loan: RbdLoan, release: (id: number) => void) {
    this.id = loan.id;
    this.image = RbdImage.borrow(loan.token);
    this.size = loan.size;
    this.#release = release;
  }

  /** `rbd:POOL/IMAGE[@SNAP]`, as in the configuration. */
  get label(): string {
    return `rbd:${this.image.label}`;
  }

  /** Stands in for the file's {@link Storage} where the data plane compares them. */
  asStorage(): Storage {
    return {
      fd: -1,
      size: this.size,
      blockDevice: false,
      identity: this.label,
      readOnly: this.image.readOnly,
    };
  }

  /** Asynchronous I/O with `slots` slots whose completions signal `events`. */
  openIo(slots: number, events: EventFd): RbdIo {
    return new RbdIo(this.image.openAio(slots, events));
  }

  /**
   * Closes what the worker opened on the image (its AIO context, which must be idle) and gives
   * the image back to the main thread, which closes it. Idempotent.
   */
  close(): void {
    if (this.#released) return;
    this.#released = true;
    try {
      this.image.close();
    } finally {
      this.#release(this.id);
    }
  }
}

/**
 * librbd asynchronous I/O with the {@link AioContext} method signatures Device uses (the file
 * descriptor arguments are ignored; there is no synchronous path).
 */
export class RbdIo {
  readonly backend = "librbd";
  readonly #aio: RbdAioContext;

  constructor(aio: RbdAioContext) {
    this.#aio = aio;
  }

  prepareVector(slot: number, opcode: number, _fd: number, offset: number, count: number): void {
    this.#aio.prepareVector(slot, opcode, offset, count);
  }

  setIovec(slot: number, index: number, memory: Memory, offset: number, length: number): void {
    this.#aio.setIovec(slot, index, memory, offset, length);
  }

  /** A flush: rbd_aio_flush (every write completed before it is durable). */
  prepareSync(slot: number, _fd: number, _datasync: boolean): void {
    this.#aio.prepareSync(slot);
  }

  runVectorNow(_slot: number): number {
    throw new Error("RBD images have no synchronous I/O path");
  }

  submit(slots: Int32Array, count: number): number {
    return this.#aio.submit(slots, count);
  }

  reap(max: number): number {
    return this.#aio.reap(max);
  }

  eventSlot(i: number): number {
    return this.#aio.eventSlot(i);
  }

  eventResult(i: number): number {
    return this.#aio.eventResult(i);
  }

  close(): void {
    this.#aio.close();
  }
}

/** What Device drives: kernel AIO on a descriptor, or librbd on an image. */
export type IoEngine = AioContext | RbdIo;
