/**
 * One exported device on the data path: its storage, its kernel AIO context and its request
 * queue (REFERENCE.md section 3, with our fixes).
 *
 * Life of a read or write: the engine accepts it ({@link Device.enqueue}), it waits in the
 * deferred queue until the end of the loop iteration (or the merge-delay timer), then
 * {@link Device.submit} sorts the queue (by offset within the max-delay window), merges exactly
 * contiguous same-direction requests into one vectored iocb (up to 32 per iocb), and submits up
 * to 32 iocbs per io_submit. Completions arrive on the device's eventfd; {@link Device.reap}
 * finishes each request and hands it to the data plane to send.
 *
 * FLUSH waits for every write that arrived before it (flush epochs: each flush closes an epoch,
 * and runs once no write of that epoch or an earlier one is pending), then syncs with an AIO
 * FDSYNC iocb, or fdatasync(2) where the kernel refuses that.
 *
 * io_submit's EAGAIN stalls the queue until a completion frees room; nothing is dropped.
 *
 * @module
 */

import {
  AioContext,
  closeFd,
  EventFd,
  fdatasync,
  IOCB_CMD_PREADV,
  IOCB_CMD_PWRITEV,
  type Memory,
  openStorage,
  setDirect,
  storageSize,
  TimerFd,
} from "../../ffi/mod.ts";
import { type DeviceConfig, exportedSectors } from "../config/types.ts";
import { completeRequest } from "../protocol/engine.ts";
import { Action, ATA_DATA_OFFSET, type Target } from "../protocol/types.ts";
import type { DeviceState } from "../state/device_state.ts";
import { DS } from "../stats.ts";
import type { Request, RequestPool } from "./pool.ts";
import { TUNING } from "./tuning.ts";

/** Most requests merged into one iocb (iovecs per iocb). */
export const MAX_MERGE = TUNING.maxMerge;
/** Most iocbs per io_submit call. */
export const SUBMIT_BATCH = TUNING.submitBatch;
/** iocbs one device may have in flight (io_setup size). */
export const AIO_DEPTH = 128;

const EINVAL = 22;

/** An iocb in flight: the requests it carries. */
class AioSlot {
  readonly requests: Request[] = [];
  /** Action.READ, Action.WRITE or Action.FLUSH. */
  kind = 0;
}

/** Called with each finished request (reply built, ready to send). */
export type CompletionSink = (r: Request) => void;

/**
 * Finds a TX ring frame for the reply to read `r` (Iface.reserveReply): returns the ring memory
 * with `r.txFrame` set, or null (the data then goes to the request's own slot). Used by the
 * synchronous buffered path only, whose replies are sent in order right after the read.
 */
export type ReplyPlacer = (r: Request) => Memory | null;

export class Device implements Target {
  readonly index: number;
  readonly config: DeviceConfig;
  readonly name: string;
  readonly shelf: number;
  readonly slot: number;
  sectors: number;
  readonly readOnly: boolean;
  readonly bufferCount: number;
  readonly accept: ReadonlySet<number> | null;
  readonly deny: ReadonlySet<number> | null;
  readonly admin: ReadonlySet<number> | null;
  readonly base: number;
  readonly serial: string;
  readonly state: DeviceState;
  readonly stats: Float64Array;

  readonly fd: number;
  readonly blockDevice: boolean;
  readonly events: EventFd;
  readonly timer: TimerFd | null;
  readonly #aio: AioContext;
  readonly #pool: RequestPool;
  readonly #sink: CompletionSink;
  readonly #placer: ReplyPlacer | null;
  readonly #maxDelay: number;
  readonly #mergeDelay: number;
  /**
   * Buffered files (no O_DIRECT) do their reads and writes with preadv/pwritev right away:
   * io_submit copies from and to the page cache synchronously for them anyway, so kernel AIO
   * would only add its round trip (eventfd, io_getevents, one more loop turn). O_DIRECT devices
   * use kernel AIO. (TUNING.bufferedAio forces AIO for every device, to measure the difference.)
   */
  readonly #syncIo: boolean;

  /** Requests accepted but not yet submitted, in arrival order until sorted. */
  readonly #deferred: Request[] = [];
  readonly #slots: AioSlot[] = [];
  readonly #freeSlots: number[] = [];
  readonly #submitList = new Int32Array(SUBMIT_BATCH);
  #inFlightSlots = 0;
  #stalled = false;
  #timerArmed = false;
  /** Requests alive for this device (arrival to reply handed off), for queue statistics. */
  inFlight = 0;

  // Flush epochs: writes carry the epoch current at their arrival; a flush takes the current
  // epoch and starts the next one. pendingWrites[e] counts unfinished writes of epoch e.
  #epoch = 0;
  readonly #pendingWrites = new Map<number, number>();
  readonly #flushWaiters: Request[] = [];

  constructor(
    index: number,
    config: DeviceConfig,
    state: DeviceState,
    stats: Float64Array,
    pool: RequestPool,
    sink: CompletionSink,
    placer: ReplyPlacer | null = null,
  ) {
    this.index = index;
    this.config = config;
    this.name = config.name;
    this.shelf = config.shelf;
    this.slot = config.slot;
    this.readOnly = config.readOnly;
    this.bufferCount = config.queueLength;
    this.accept = config.accept ? new Set(config.accept) : null;
    this.deny = config.deny ? new Set(config.deny) : null;
    this.admin = config.admin ? new Set(config.admin) : null;
    this.base = config.offsetSectors * 512;
    this.serial = config.serial;
    this.state = state;
    this.stats = stats;
    this.#pool = pool;
    this.#sink = sink;
    this.#maxDelay = config.maxDelay;
    this.#mergeDelay = config.mergeDelay;
    this.#syncIo = !config.directIo && !TUNING.bufferedAio;
    this.#placer = this.#syncIo && TUNING.readInRing ? placer : null;

    const storage = openStorage(config.path, {
      readOnly: config.readOnly,
      direct: config.directIo,
      exclusive: true,
      sync: config.syncWrites,
    });
    this.fd = storage.fd;
    this.blockDevice = storage.blockDevice;
    let events: EventFd | null = null;
    try {
      this.sectors = exportedSectors(config, storage.size);
      events = EventFd.open();
      this.#aio = AioContext.open(AIO_DEPTH, events);
      this.timer = config.mergeDelay > 0 ? TimerFd.open() : null;
    } catch (e) {
      events?.close();
      closeFd(this.fd);
      throw e;
    }
    this.events = events;
    for (let i = 0; i < AIO_DEPTH; i++) {
      this.#slots.push(new AioSlot());
      this.#freeSlots.push(AIO_DEPTH - 1 - i);
    }
  }

  /** Size in bytes of the exported area. */
  get size(): number {
    return this.sectors * 512;
  }

  /** Which AIO backend serves this device ("libaio" or "syscall"). */
  get aioBackend(): string {
    return this.#aio.backend;
  }

  /** True when requests wait for submission and no timer holds them. */
  get runnable(): boolean {
    return this.#deferred.length > 0 && !this.#stalled && !this.#timerArmed;
  }

  /** Requests waiting in the queue or in the kernel. */
  get pending(): number {
    return this.#deferred.length + this.#inFlightSlots + this.#flushWaiters.length;
  }

  /**
   * Takes a request the engine answered with READ, WRITE or FLUSH. Returns true when the
   * caller should arm the merge-delay timer (the device was idle and has one).
   */
  enqueue(r: Request): boolean {
    if (r.action === Action.FLUSH) {
      r.epoch = this.#epoch++;
      this.#flushWaiters.push(r);
      this.#runFlushes();
      return false;
    }
    if (r.action === Action.WRITE) {
      r.epoch = this.#epoch;
      this.#pendingWrites.set(r.epoch, (this.#pendingWrites.get(r.epoch) ?? 0) + 1);
    }
    const wasIdle = this.#deferred.length === 0;
    this.#deferred.push(r);
    if (this.timer && wasIdle && !this.#timerArmed && this.#inFlightSlots === 0) {
      this.timer.arm(this.#mergeDelay);
      this.#timerArmed = true;
      return true;
    }
    return false;
  }

  /** The merge-delay timer fired: its requests may go. */
  timerExpired(): void {
    this.timer?.drain();
    this.#timerArmed = false;
  }

  /** Submits deferred requests until the queue is empty, the kernel is full, or stalled. */
  submit(): void {
    const q = this.#deferred;
    while (q.length > 0 && !this.#stalled && this.#freeSlots.length > 0) {
      if (q.length > 1) q.sort(this.#compare);
      let taken = 0; // requests placed into prepared iocbs
      let n = 0; // iocbs prepared
      while (taken < q.length && n < SUBMIT_BATCH && this.#freeSlots.length > 0) {
        const first = q[taken];
        const slotIndex = this.#freeSlots.pop()!;
        const slot = this.#slots[slotIndex];
        slot.kind = first.action;
        slot.requests.length = 0;
        slot.requests.push(first);
        let end = first.offset + first.bytes;
        let k = taken + 1;
        while (
          k < q.length && slot.requests.length < MAX_MERGE && q[k].action === first.action &&
          q[k].offset === end
        ) {
          slot.requests.push(q[k]);
          end += q[k].bytes;
          k++;
        }
        const count = slot.requests.length;
        this.#aio.prepareVector(
          slotIndex,
          first.action === Action.READ ? IOCB_CMD_PREADV : IOCB_CMD_PWRITEV,
          this.fd,
          first.offset,
          count,
        );
        // Reads of the synchronous path go straight into their replies' TX frames where the
        // interface has them free, in order; from the first that finds none, into their slots.
        let placing = this.#placer !== null && first.action === Action.READ;
        for (let j = 0; j < count; j++) {
          const r = slot.requests[j];
          const ring = placing ? this.#placer!(r) : null;
          if (ring !== null) {
            this.#aio.setIovec(slotIndex, j, ring, r.txFrame + ATA_DATA_OFFSET, r.bytes);
          } else {
            placing = false;
            this.#aio.setIovec(slotIndex, j, this.#pool.memory, r.dataOffset, r.bytes);
          }
        }
        if (this.#syncIo) {
          this.stats[DS.io_slots]++;
          this.#finishSlot(slotIndex, this.#aio.runVectorNow(slotIndex));
        } else {
          this.#submitList[n++] = slotIndex;
        }
        taken = k;
      }
      if (this.#syncIo) {
        this.stats[DS.io_runs]++;
        this.#removeFront(taken);
        this.#runFlushes();
        continue;
      }
      let accepted: number;
      try {
        accepted = this.#aio.submit(this.#submitList, n);
      } catch (e) {
        // A hard submission error: every prepared request fails with ABRT.
        const errno = (e as { errno?: number }).errno ?? EINVAL;
        for (let i = 0; i < n; i++) this.#finishSlot(this.#submitList[i], -errno);
        this.#removeFront(taken);
        continue;
      }
      if (accepted < 0) accepted = 0; // EAGAIN
      let consumed = 0;
      for (let i = 0; i < n; i++) {
        const slotIndex = this.#submitList[i];
        if (i < accepted) {
          consumed += this.#slots[slotIndex].requests.length;
          this.#inFlightSlots++;
        } else {
          this.#slots[slotIndex].requests.length = 0;
          this.#freeSlots.push(slotIndex);
        }
      }
      if (accepted > 0) {
        this.stats[DS.io_slots] += accepted;
        this.stats[DS.io_runs]++;
      }
      this.#removeFront(consumed);
      if (accepted < n) {
        // The kernel is full: wait for a completion before submitting again.
        this.#stalled = true;
        this.stats[DS.queue_stall]++;
      }
    }
  }

  /** Reaps completions (the eventfd was readable); finished requests go to the sink. */
  reap(): void {
    this.events.drain();
    for (;;) {
      const n = this.#aio.reap(AIO_DEPTH);
      for (let i = 0; i < n; i++) {
        this.#inFlightSlots--;
        this.#finishSlot(this.#aio.eventSlot(i), this.#aio.eventResult(i));
      }
      if (n < AIO_DEPTH) break;
    }
    this.#stalled = false;
    this.#runFlushes();
  }

  /** Re-reads the size of the export (reload); returns true if it changed. */
  refreshSize(): boolean {
    const sectors = exportedSectors(this.config, storageSize(this, this.config.path));
    if (sectors === this.sectors) return false;
    this.sectors = sectors;
    return true;
  }

  /** Changes O_DIRECT on the open file (reload). */
  setDirect(on: boolean): void {
    setDirect(this.fd, on);
  }

  /** Closes the storage and the AIO context. In-flight I/O is waited for by the kernel. */
  close(): void {
    this.#aio.close();
    this.events.close();
    this.timer?.close();
    closeFd(this.fd);
  }

  /** Requests still queued (not submitted): handed back for dropping at shutdown. */
  takeQueued(): Request[] {
    const out = [...this.#deferred, ...this.#flushWaiters];
    this.#deferred.length = 0;
    this.#flushWaiters.length = 0;
    return out;
  }

  #finishSlot(slotIndex: number, result: number): void {
    const slot = this.#slots[slotIndex];
    const requests = slot.requests;
    let remaining = result;
    for (let j = 0; j < requests.length; j++) {
      const r = requests[j];
      let got: number;
      if (result < 0) got = result;
      else {
        got = remaining < r.bytes ? remaining : r.bytes;
        remaining -= got;
      }
      if (slot.kind === Action.WRITE) this.#writeDone(r.epoch);
      completeRequest(r, slot.kind === Action.FLUSH ? (got < 0 ? got : 0) : got, this.stats);
      this.#sink(r);
    }
    requests.length = 0;
    this.#freeSlots.push(slotIndex);
  }

  #writeDone(epoch: number): void {
    const left = (this.#pendingWrites.get(epoch) ?? 1) - 1;
    if (left > 0) this.#pendingWrites.set(epoch, left);
    else this.#pendingWrites.delete(epoch);
  }

  /** Starts every flush whose earlier writes have all completed. */
  #runFlushes(): void {
    while (this.#flushWaiters.length > 0) {
      const f = this.#flushWaiters[0];
      for (const e of this.#pendingWrites.keys()) {
        if (e <= f.epoch) return; // an earlier write is still pending
      }
      if (this.#freeSlots.length === 0) return; // retried on the next completion
      this.#flushWaiters.shift();
      this.#startFlush(f);
    }
  }

  #startFlush(f: Request): void {
    const slotIndex = this.#freeSlots.pop()!;
    const slot = this.#slots[slotIndex];
    slot.kind = Action.FLUSH;
    slot.requests.length = 0;
    slot.requests.push(f);
    this.#aio.prepareSync(slotIndex, this.fd, true);
    this.#submitList[0] = slotIndex;
    let accepted = 0;
    try {
      accepted = this.#aio.submit(this.#submitList, 1);
    } catch {
      accepted = -1; // the kernel cannot sync this file through AIO: do it synchronously
    }
    if (accepted === 1) {
      this.#inFlightSlots++;
      return;
    }
    let result = 0;
    try {
      fdatasync(this.fd);
    } catch (e) {
      result = -((e as { errno?: number }).errno ?? EINVAL);
    }
    this.#finishSlot(slotIndex, result);
  }

  #removeFront(count: number): void {
    const q = this.#deferred;
    if (count === 0) return;
    for (let i = count; i < q.length; i++) q[i - count] = q[i];
    q.length -= count;
  }

  /** REFERENCE 3.3: older first, unless within max-delay of each other; then lower offset. */
  readonly #compare = (a: Request, b: Request): number => {
    const dt = a.arrival - b.arrival;
    if (dt > this.#maxDelay || dt < -this.#maxDelay) return dt;
    return a.offset - b.offset;
  };
}
