/**
 * Request pools: every request in flight lives in a preallocated {@link Request}, each with a
 * 20 KiB slot of page-aligned memory outside the JS heap. Each device owns a pool of exactly
 * its advertised Buffer Count (`queue-length`): in-flight work per device is bounded, one slow
 * device cannot take the slots of another, and memory never grows with load. A frame that
 * finds its device's pool empty is dropped and counted (`queue_drop`), as AoE r11 says of
 * messages beyond the Buffer Count; the initiator retransmits.
 *
 * The pool's memory is one anonymous mapping, committed by the kernel page by page as slots are
 * first used, and the Request objects are made on first use too: a large `queue-length` costs
 * address space, not memory, until the load needs it.
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
import type { Device } from "./device.ts";
import type { Iface } from "./iface.ts";

/** Bytes per request slot. */
export const SLOT_SIZE = 20480;
/** Where a slot's frame view starts, so that its data lands on a 512-byte boundary. */
const FRAME_START = 512 - ATA_DATA_OFFSET;

/** A request in flight: the engine's {@link Work} plus what the data path tracks. */
export class Request extends Work {
  /** Offset of `frame[0]` in the pool's memory (for iovecs). */
  readonly memoryOffset: number;
  /** The pool it belongs to (its device's). */
  readonly pool: RequestPool;
  /**
   * Interface it came from and its reply goes to. The object, not an index: an interface that
   * closed (and whose index a new interface may reuse) is recognised by `ifc.open`, so a late
   * completion is never sent out of another interface.
   */
  ifc: Iface | null = null;
  /** Arrival time, seconds on the monotonic clock. */
  arrival = 0;
  /** Flush epoch of a write or flush (see Device). */
  epoch = 0;
  /**
   * A read whose data goes straight into its reply's TX ring frame: where that frame starts in
   * the ring memory (see Iface.reserveReply); -1 when the reply is built in `frame`.
   */
  txFrame = -1;
  /** The ring memory `txFrame` is in (null when the reply is built in `frame`). */
  txMemory: Memory | null = null;
  /** Retried on its own after a merged transfer that carried it failed: never merged again. */
  solo = false;
  /** A state change waiting to be durable before its reply goes out: its StateKind, or -1. */
  persistKind = -1;
  /** ...and the state's change number it waits for. */
  persistSeq = 0;

  constructor(frame: Uint8Array, memoryOffset: number, pool: RequestPool) {
    super(frame);
    this.memoryOffset = memoryOffset;
    this.pool = pool;
  }

  /** Offset of the ATA data (`frame[36]`) in the pool's memory. */
  get dataOffset(): number {
    return this.memoryOffset + ATA_DATA_OFFSET;
  }

  /** The device whose request this is. */
  get dev(): Device {
    return this.pool.owner;
  }
}

/** A fixed number of requests over one aligned memory region. */
export class RequestPool {
  readonly memory: Memory;
  /** Requests it can hold at most. */
  readonly size: number;
  readonly #free: Request[] = [];
  /** Requests made so far (slots 0..made-1 have their Request object). */
  #made = 0;

  /** The device it serves. */
  readonly owner: Device;

  constructor(size: number, owner: Device) {
    if (!Number.isInteger(size) || size < 1) throw new RangeError(`bad pool size ${size}`);
    this.size = size;
    this.owner = owner;
    this.memory = Memory.allocate(size * SLOT_SIZE);
  }

  /** A free request, or null when every one is in flight. */
  get(): Request | null {
    const r = this.#free.pop();
    if (r !== undefined) return r;
    if (this.#made === this.size) return null;
    const start = this.#made++ * SLOT_SIZE + FRAME_START;
    const frame = this.memory.bytes.subarray(start, start + SLOT_SIZE - FRAME_START);
    return new Request(frame, start, this);
  }

  /** Returns a request to the pool. */
  put(r: Request): void {
    r.ifc = null;
    r.txFrame = -1;
    r.txMemory = null;
    r.persistKind = -1;
    r.solo = false;
    this.#free.push(r);
  }

  /** Requests currently in flight. */
  get inUse(): number {
    return this.#made - this.#free.length;
  }

  close(): void {
    this.memory.close();
  }
}
