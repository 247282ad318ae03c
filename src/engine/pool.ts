/**
 * The request pool: every request in flight lives in one of a fixed number of preallocated
 * {@link Request} objects, each with a 20 KiB slot of page-aligned memory outside the JS heap.
 * In-flight work is therefore bounded by the pool, and memory never grows with load: when the
 * pool is empty the frame is dropped and counted (`queue_drop`) and the initiator retransmits.
 *
 * Slot layout (SLOT_SIZE bytes, slots page-aligned):
 *
 *     0        476            512                                   20480
 *     | unused | reply header  | ATA data (512-aligned for O_DIRECT) ...|
 *              ^ Work.frame[0] ^ Work.frame[36]
 *
 * @module
 */

import { Memory } from "../../ffi/mod.ts";
import { ATA_DATA_OFFSET, Work } from "../protocol/types.ts";

/** Bytes per request slot. */
export const SLOT_SIZE = 20480;
/** Where a slot's frame view starts, so that its data lands on a 512-byte boundary. */
const FRAME_START = 512 - ATA_DATA_OFFSET;

/** A request in flight: the engine's {@link Work} plus what the data path tracks. */
export class Request extends Work {
  /** Offset of `frame[0]` in the pool's memory (for iovecs). */
  readonly memoryOffset: number;
  /** Device that handles it (an index into the data plane's device table), or -1. */
  device = -1;
  /** Interface it came from and its reply goes to, or -1. */
  iface = -1;
  /** Arrival time, seconds (monotonic clock). */
  arrival = 0;
  /** Flush epoch of a write or flush (see Device). */
  epoch = 0;
  /**
   * A read whose data goes straight into its reply's TX ring frame: where that frame starts in
   * the ring memory (see Iface.reserveReply); -1 when the reply is built in `frame`.
   */
  txFrame = -1;

  constructor(frame: Uint8Array, memoryOffset: number) {
    super(frame);
    this.memoryOffset = memoryOffset;
  }

  /** Offset of the ATA data (`frame[36]`) in the pool's memory. */
  get dataOffset(): number {
    return this.memoryOffset + ATA_DATA_OFFSET;
  }
}

/** A fixed set of requests over one aligned memory region. */
export class RequestPool {
  readonly memory: Memory;
  readonly size: number;
  readonly #all: Request[] = [];
  readonly #free: Request[] = [];

  constructor(size: number) {
    this.size = size;
    this.memory = Memory.allocate(size * SLOT_SIZE);
    const bytes = this.memory.bytes;
    for (let i = 0; i < size; i++) {
      const start = i * SLOT_SIZE + FRAME_START;
      const frame = bytes.subarray(start, start + SLOT_SIZE - FRAME_START);
      const r = new Request(frame, start);
      this.#all.push(r);
      this.#free.push(r);
    }
  }

  /** A free request, or null when every one is in flight. */
  get(): Request | null {
    return this.#free.pop() ?? null;
  }

  /** Returns a request to the pool. */
  put(r: Request): void {
    r.device = -1;
    r.iface = -1;
    r.txFrame = -1;
    this.#free.push(r);
  }

  /** Requests currently in flight. */
  get inUse(): number {
    return this.size - this.#free.length;
  }

  close(): void {
    this.memory.close();
  }
}
