/**
 * Buffered files and block devices (`direct-io = false`): transfers run at once on the loop's
 * thread. Kernel AIO would only add its round trip for them (io_submit copies from and to the
 * page cache synchronously anyway: the eventfd, io_getevents, one more loop turn), so writes are
 * pwritev(2), and reads are copies out of a read-only mapping of the exported bytes, run in one
 * batch per turn (ffi/filemap.ts), or preadv(2) where the file cannot be mapped
 * (GGAOED_MAP_READS=0 too, src/engine/tuning.ts). FLUSH is an AIO FDSYNC iocb, or fdatasync(2).
 *
 * Completions leave in slot order, so that replies keep the order of their requests (a read's
 * TX frame is reserved when its slot is prepared): a transfer after queued reads completes after
 * them. A write that overlaps none of them is written at once and its completion held until
 * they are done (one batch of copies for the whole turn, not one per write); anything else runs
 * the queued copies first.
 *
 * @module
 */

import { AIO_MAX_IOVECS, FileMap, MapCopies, type Memory } from "../../ffi/mod.ts";
import type { DeviceConfig } from "../config/types.ts";
import { TUNING } from "../engine/tuning.ts";
import type { Backend, BackendFeatures, BackendModule, OpenContext } from "./backend.ts";
import { FileBackend } from "./file.ts";

const EFAULT = 14;

export class BufferedFile extends FileBackend implements Backend {
  readonly features: BackendFeatures;
  readonly how = "";
  readonly #finish: (slot: number, result: number) => void;
  /** The exported bytes mapped read-only; null when unmapped (reads go through preadv). */
  #map: FileMap | null = null;
  readonly #copies = new MapCopies(TUNING.submitBatch * TUNING.maxMerge);
  /** Slots whose reads are queued in #copies, in order. */
  readonly #queued: number[] = [];
  /** Writes done after the queued reads, finished after them: slot, result, ... */
  readonly #held: number[] = [];
  // Each slot's prepared vector: direction, storage offset, iovecs; its first copy when queued.
  readonly #write: Uint8Array;
  readonly #offset: Float64Array;
  readonly #count: Uint8Array;
  readonly #firstCopy: Int32Array;
  readonly #iovMemory: (Memory | null)[];
  readonly #iovOffset: Float64Array;
  readonly #iovLength: Float64Array;

  constructor(context: OpenContext) {
    super(context);
    const config = context.config;
    const slots = context.io.slots;
    this.#finish = context.io.finish;
    this.features = {
      direct: false,
      synchronous: true,
      mappedReads: TUNING.mapReads,
      flush: true,
      resize: "reread",
      readOnly: config.readOnly,
      sharedState: false,
      fencing: false,
    };
    this.#write = new Uint8Array(slots);
    this.#offset = new Float64Array(slots);
    this.#count = new Uint8Array(slots);
    this.#firstCopy = new Int32Array(slots);
    this.#iovMemory = new Array(slots * AIO_MAX_IOVECS).fill(null);
    this.#iovOffset = new Float64Array(slots * AIO_MAX_IOVECS);
    this.#iovLength = new Float64Array(slots * AIO_MAX_IOVECS);
  }

  override prepare(slot: number, write: boolean, offset: number, count: number): void {
    super.prepare(slot, write, offset, count);
    this.#write[slot] = write ? 1 : 0;
    this.#offset[slot] = offset;
    this.#count[slot] = count;
  }

  override setIovec(
    slot: number,
    index: number,
    memory: Memory,
    offset: number,
    length: number,
  ): void {
    super.setIovec(slot, index, memory, offset, length);
    const i = slot * AIO_MAX_IOVECS + index;
    this.#iovMemory[i] = memory;
    this.#iovOffset[i] = offset;
    this.#iovLength[i] = length;
  }

  transfer(slot: number): void {
    if (this.#write[slot] === 1) {
      if (this.#queued.length === 0) {
        this.#finish(slot, this.aio.runVectorNow(slot));
        return;
      }
      if (!this.#overlapsQueued(slot)) {
        this.#held.push(slot, this.aio.runVectorNow(slot));
        return;
      }
    } else if (this.#queueCopies(slot)) return;
    this.finishQueued();
    this.#finish(slot, this.aio.runVectorNow(slot));
  }

  /** The bytes of slot `slot`'s vector. */
  #length(slot: number): number {
    let bytes = 0;
    const first = slot * AIO_MAX_IOVECS;
    for (let j = this.#count[slot] - 1; j >= 0; j--) bytes += this.#iovLength[first + j];
    return bytes;
  }

  /**
   * A read served from the mapping: queues a copy per iovec of `slot` and returns true; the slot
   * finishes in {@link finishQueued}. False (nothing queued) without a mapping, or beyond it.
   */
  #queueCopies(slot: number): boolean {
    const map = this.#map;
    if (map === null) return false;
    let offset = this.#offset[slot];
    if (offset + this.#length(slot) > map.length) return false;
    const copies = this.#copies;
    const count = this.#count[slot];
    if (copies.count + count > copies.capacity) this.finishQueued();
    const first = slot * AIO_MAX_IOVECS;
    for (let j = 0; j < count; j++) {
      const length = this.#iovLength[first + j];
      const index = copies.add(
        map,
        offset,
        this.#iovMemory[first + j]!,
        this.#iovOffset[first + j],
        length,
      );
      if (j === 0) this.#firstCopy[slot] = index;
      offset += length;
    }
    this.#queued.push(slot);
    return true;
  }

  /** Whether a read queued in #copies touches the bytes of slot `slot`'s transfer. */
  #overlapsQueued(slot: number): boolean {
    const queued = this.#queued;
    const start = this.#offset[slot];
    const end = start + this.#length(slot);
    for (let i = 0; i < queued.length; i++) {
      const q = queued[i];
      const qStart = this.#offset[q];
      if (qStart < end && start < qStart + this.#length(q)) return true;
    }
    return false;
  }

  /**
   * Runs the queued copies with one call and finishes their slots in order, then the writes
   * held behind them. A slot one of whose copies faulted (the file shrank, or a page could not
   * be read) fails with EFAULT when it carries several requests (the device then redoes them
   * one by one), and is read again with preadv otherwise, which reports the error.
   */
  finishQueued(): void {
    const queued = this.#queued;
    if (queued.length === 0) return;
    const copies = this.#copies;
    const faults = copies.run();
    for (let i = 0; i < queued.length; i++) {
      const slot = queued[i];
      const count = this.#count[slot];
      let faulted = false;
      if (faults > 0) {
        const first = this.#firstCopy[slot];
        for (let j = 0; j < count; j++) if (copies.faulted(first + j)) faulted = true;
      }
      if (!faulted) this.#finish(slot, this.#length(slot));
      else if (count > 1) this.#finish(slot, -EFAULT);
      else this.#finish(slot, this.transferNow(slot));
    }
    queued.length = 0;
    copies.clear();
    const held = this.#held;
    for (let i = 0; i < held.length; i += 2) this.#finish(held[i], held[i + 1]);
    held.length = 0;
  }

  /** Maps the exported bytes; a failure only means reads go through preadv. */
  setExportEnd(end: number): void {
    this.finishQueued();
    this.#map?.close();
    this.#map = null;
    if (!TUNING.mapReads || end === 0) return;
    try {
      this.#map = FileMap.open(this.storage.fd, end, this.config.path);
    } catch { /* preadv it is */ }
  }

  override close(): void {
    try {
      this.#map?.close();
    } finally {
      super.close();
    }
  }
}

export const bufferedFiles: BackendModule = {
  name: "buffered",
  lent: false,
  serves: (config: DeviceConfig) => config.rbd === null && !config.directIo && !TUNING.bufferedAio,
  open: (context: OpenContext) => new BufferedFile(context),
};
