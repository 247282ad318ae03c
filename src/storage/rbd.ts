/**
 * A Ceph RBD image (`path = "rbd:POOL/IMAGE[@SNAP]"`), served through librbd's asynchronous I/O.
 *
 * The data path never opens an image itself: connecting and opening block for round trips to
 * the cluster (seconds when it is unreachable), and the metadata that holds the AoE state must
 * be read first. The daemon's main thread does both without blocking (nonblocking FFI, see
 * `src/rbd/images.ts`) and lends the open image ({@link RbdLoan}); the backend only drives its
 * asynchronous I/O, whose calls never wait (librbd queues requests to its own threads and
 * signals the device's eventfd), and gives the image back when it closes. The main thread also
 * measures its size (librbd may block to refresh the header) and tells; another host of the
 * image may fence this one (blocklist its Ceph client): I/O then fails with EBLOCKLISTED.
 *
 * @module
 */

import {
  EBLOCKLISTED,
  IOCB_CMD_PREADV,
  IOCB_CMD_PWRITEV,
  type Memory,
  type RbdAioContext,
  RbdImage,
  type RbdImageToken,
} from "../../ffi/mod.ts";
import type { DeviceConfig } from "../config/types.ts";
import type {
  Backend,
  BackendFeatures,
  BackendModule,
  OpenContext,
  StorageLoan,
} from "./backend.ts";

/** An image lent by the main thread. */
export interface RbdLoan extends StorageLoan {
  token: RbdImageToken;
}

export class RbdBackend implements Backend {
  readonly features: BackendFeatures;
  readonly how = ", through librbd";
  /** Size in bytes, as the main thread last read it. */
  size: number;
  readonly #image: RbdImage;
  readonly #aio: RbdAioContext;
  readonly #loan: number;
  readonly #release: (id: number) => void;
  #released = false;

  constructor(context: OpenContext) {
    const loan = context.loan as RbdLoan | null;
    if (loan === null) throw new Error("Ceph RBD images are opened by the daemon's main thread");
    this.#loan = loan.id;
    this.#release = context.release;
    let image: RbdImage | null = null;
    try {
      image = RbdImage.borrow(loan.token);
      this.#aio = image.openAio(context.io.slots, context.io.events);
    } catch (e) {
      try {
        image?.close();
      } finally {
        this.#released = true;
        this.#release(loan.id);
      }
      throw e;
    }
    this.#image = image;
    this.size = loan.size;
    this.features = {
      direct: false,
      synchronous: false,
      mappedReads: false,
      flush: true,
      resize: "told",
      readOnly: image.readOnly,
      sharedState: true,
      fencing: true,
    };
  }

  /** `rbd:POOL/IMAGE[@SNAP]`, as in the configuration. */
  get identity(): string {
    return `rbd:${this.#image.label}`;
  }

  prepare(slot: number, write: boolean, offset: number, count: number): void {
    this.#aio.prepareVector(slot, write ? IOCB_CMD_PWRITEV : IOCB_CMD_PREADV, offset, count);
  }

  setIovec(slot: number, index: number, memory: Memory, offset: number, length: number): void {
    this.#aio.setIovec(slot, index, memory, offset, length);
  }

  /** rbd_aio_flush: every write completed before it is durable. */
  prepareFlush(slot: number): void {
    this.#aio.prepareSync(slot);
  }

  /** librbd queues every request: all are accepted. */
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

  transfer(_slot: number): void {
    throw new Error("RBD images have no synchronous I/O path");
  }

  /** Nothing is queued outside librbd. */
  finishQueued(): void {}

  transferNow(_slot: number): number {
    throw new Error("RBD images have no synchronous I/O path");
  }

  flushNow(): number {
    throw new Error("RBD images have no synchronous I/O path");
  }

  /** The OSDs refuse this host's Ceph client: another host blocklisted it. */
  fenced(result: number): boolean {
    return result === -EBLOCKLISTED;
  }

  /** Nothing is mapped. */
  setExportEnd(_end: number): void {}

  /** The main thread measures the size ({@link setSize}). */
  refreshSize(): number {
    return this.size;
  }

  setSize(bytes: number): void {
    this.size = bytes;
  }

  /**
   * Closes the AIO context (which must be idle) and gives the image back to the main thread,
   * which closes it. Idempotent.
   */
  close(): void {
    if (this.#released) return;
    this.#released = true;
    try {
      this.#aio.close();
    } finally {
      try {
        this.#image.close();
      } finally {
        this.#release(this.#loan);
      }
    }
  }
}

export const rbdImages: BackendModule = {
  name: "rbd",
  lent: true,
  serves: (config: DeviceConfig) => config.rbd !== null,
  open: (context: OpenContext) => new RbdBackend(context),
};
