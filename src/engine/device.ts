/**
 * One exported device on the data path: its request pool (its own Buffer Count of requests, see
 * pool.ts), its request queue (docs/decisions.md §3) and its storage backend
 * (`src/storage/`), which moves the bytes; Device never asks which backend it is, only what it
 * supports (its `features`).
 *
 * Life of a read or write: the engine accepts it ({@link Device.enqueue}), it waits in the
 * deferred queue until the end of the loop iteration (or the merge-delay timer), then
 * {@link Device.submit} sorts the queue (by offset within the max-delay window), merges exactly
 * contiguous same-direction requests into one vectored slot (up to 32 per slot), and either has
 * each slot transferred at once (a synchronous backend: buffered files) or submits up to 32
 * slots at once (kernel AIO, librbd). Their completions signal the device's eventfd;
 * {@link Device.reap} finishes each request and hands it to the data plane to send.
 *
 * FLUSH waits for every write that arrived before it (flush epochs: each flush closes an epoch,
 * and runs once no write of that epoch or an earlier one is pending), then asks the backend to
 * make them durable.
 *
 * A backend that runs out of room (io_submit's EAGAIN) stalls the queue until a completion
 * frees some; when nothing of this device is in flight (so no completion will come), the data
 * plane retries after {@link STALL_RETRY_MS}.
 *
 * Stale requests are dropped unanswered, never started (the initiator has given up on them and
 * may have sent them to another target of the same storage; see docs/configuration.md, "Stale
 * requests"): one older than `max-request-age` when it would be submitted, and one received
 * before {@link Device.staleBefore}: the data plane sets it after the loop did not run for
 * longer than `max-stall`, and the device itself when its I/O did not progress for that long.
 *
 * @module
 */

import { EventFd, type Memory, TimerFd } from "../../ffi/mod.ts";
import { type DeviceConfig, exportedSectors } from "../config/types.ts";
import { completeRequest } from "../protocol/engine.ts";
import { Action, ATA_DATA_OFFSET, Drop, type Target } from "../protocol/types.ts";
import type { DeviceState } from "../state/device_state.ts";
import { DS } from "../stats.ts";
import type { Backend, BackendIo } from "../storage/backend.ts";
import { type Request, RequestPool } from "./pool.ts";
import { TUNING } from "./tuning.ts";
import type { ViewSet } from "./views.ts";

/** Monotonic seconds (the data plane's clock of arrivals). */
function monotonic(): number {
  return performance.now() / 1000;
}

/** Most requests merged into one iocb (iovecs per iocb). */
export const MAX_MERGE = TUNING.maxMerge;
/** Most iocbs per io_submit call. */
export const SUBMIT_BATCH = TUNING.submitBatch;
/** Slots one device may have in flight (the backend's size, io_setup for kernel AIO). */
export const AIO_DEPTH = 128;
/** After io_submit said EAGAIN with none of our iocbs in the kernel: retry after this, ms. */
export const STALL_RETRY_MS = 5;

const EINVAL = 22;

/** A slot in flight: the requests it carries. */
class AioSlot {
  readonly requests: Request[] = [];
  /** Action.READ, Action.WRITE or Action.FLUSH. */
  kind = 0;
}

/** Called with each finished request (reply built, ready to send). */
export type CompletionSink = (r: Request) => void;

/**
 * Finds a TX ring frame for the reply to read `r` (Iface.reserveReply): returns the ring memory
 * with `r.txFrame` set, or null (the data then goes to the request's own slot). Used with
 * synchronous backends only, whose replies are sent in order within the same turn.
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
  readonly configAdmin: ReadonlySet<number> | null;
  readonly base: number;
  readonly serial: string;
  readonly state: DeviceState;
  readonly stats: Float64Array;
  /** Its requests: exactly `bufferCount` of them can be in flight. */
  readonly pool: RequestPool;

  /** The storage and its I/O. */
  readonly backend: Backend;
  readonly events: EventFd;
  readonly timer: TimerFd | null;
  /** Replaced or removed by a reload: no new requests; closed once nothing is in flight. */
  retiring = false;
  /**
   * Devices of the same storage waiting for this one's I/O in the kernel to be done
   * ({@link follow}); the data plane wakes them when it is.
   */
  readonly successors: Device[] = [];
  /** When it started retiring (monotonic seconds). */
  retiredAt = 0;
  /** `max-request-age` in seconds (Infinity: never stale by age). */
  readonly maxRequestAge: number;
  /** `max-stall` in seconds (Infinity: stalls are not looked for). */
  readonly maxStall: number;
  /**
   * Requests that arrived before this (monotonic seconds) were received before a stall longer
   * than max-stall: they are dropped, never started.
   */
  staleBefore = 0;
  /** stale_drop + stall_drop when the data plane last logged them (rate limiting). */
  droppedLogged = 0;
  /** When the data plane last logged them (monotonic seconds). */
  droppedLoggedAt = -Infinity;
  /**
   * Another host fenced this one off the storage (RBD: blocklisted its Ceph client); it is
   * being opened anew.
   */
  fenced = false;
  /** Its storage is being opened anew by the main thread (after a fencing). */
  reopening = false;
  /**
   * The device whose view of one host this is (`views`, see views.ts): it takes its parent's
   * requests (their buffers are the parent's pool), counts into its parent's statistics and
   * answers for its parent's address; null for a device of its own.
   */
  readonly parent: Device | null;
  /** The views of its hosts, when it has `views` (its own storage is the golden image). */
  views: ViewSet | null = null;
  /** Called once it is closed. */
  onClosed: (() => void) | null = null;

  readonly #io: Backend;
  readonly #sink: CompletionSink;
  readonly #placer: ReplyPlacer | null;
  readonly #maxDelay: number;
  readonly #mergeDelay: number;
  /** The backend transfers at once (`features.synchronous`). */
  readonly #syncIo: boolean;
  /** Its transfers may fail because this host was fenced (`features.fencing`). */
  readonly #fencing: boolean;

  /** Devices it replaced whose I/O in the kernel it waits for (see {@link waiting}). */
  readonly #predecessors: Device[] = [];
  /** Requests accepted but not yet submitted, in arrival order until sorted. */
  readonly #deferred: Request[] = [];
  /** Requests of failed merged transfers, to go again one by one (see #finishSlot). */
  readonly #retry: Request[] = [];
  readonly #slots: AioSlot[] = [];
  readonly #freeSlots: number[] = [];
  readonly #submitList = new Int32Array(SUBMIT_BATCH);
  #inFlightSlots = 0;
  #stalled = false;
  /**
   * A queued write overlaps a write still in the kernel: nothing more starts until a
   * completion (see {@link #overlapsWriteInKernel}).
   */
  #ordered = false;
  /** Write slots in the kernel (asynchronous backends): their indices, and each one's range. */
  readonly #kernelWrites = new Int32Array(AIO_DEPTH + 1);
  #kernelWriteCount = 0;
  readonly #kernelWritePos = new Int32Array(AIO_DEPTH + 1).fill(-1);
  readonly #writeStart = new Float64Array(AIO_DEPTH + 1);
  readonly #writeEnd = new Float64Array(AIO_DEPTH + 1);
  #stalledAt = 0;
  #timerArmed = false;
  /**
   * Monotonic seconds of the last completion, or of the submission that found nothing in
   * flight: a completion more than max-stall after it ends a stall of the device's I/O.
   */
  #lastProgress = 0;

  // Flush epochs: writes carry the epoch current at their arrival; a flush takes the current
  // epoch and starts the next one. pendingWrites[e] counts unfinished writes of epoch e.
  #epoch = 0;
  readonly #pendingWrites = new Map<number, number>();
  readonly #flushWaiters: Request[] = [];

  /**
   * Opens its storage with `open` (a backend module's opener, see `src/storage/registry.ts`)
   * and sets up the request pool. Throws with advice when the storage cannot be opened.
   */
  constructor(
    index: number,
    config: DeviceConfig,
    state: DeviceState,
    stats: Float64Array,
    sink: CompletionSink,
    placer: ReplyPlacer | null,
    open: (io: BackendIo) => Backend,
    parent: Device | null = null,
  ) {
    this.parent = parent;
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
    this.configAdmin = config.adminConfigString ? this.admin : null;
    this.base = config.offsetSectors * 512;
    this.serial = config.serial;
    this.state = state;
    this.stats = stats;
    this.#sink = sink;
    this.#maxDelay = config.maxDelay;
    this.#mergeDelay = config.mergeDelay;
    this.maxRequestAge = config.maxRequestAge > 0 ? config.maxRequestAge : Infinity;
    this.maxStall = config.maxStall > 0 ? config.maxStall : Infinity;

    const events = EventFd.open();
    let backend: Backend | null = null;
    let pool: RequestPool | null = null;
    try {
      // One slot more than AIO_DEPTH: the spare of #redoEach.
      backend = open({ slots: AIO_DEPTH + 1, events, finish: this.#finishSlot });
      this.sectors = exportedSectors(config, backend.size);
      pool = parent ? parent.pool : new RequestPool(config.queueLength, this);
      this.timer = config.mergeDelay > 0 ? TimerFd.open() : null;
    } catch (e) {
      if (!parent) pool?.close();
      backend?.close();
      events.close();
      throw e;
    }
    this.backend = backend;
    this.#io = backend;
    this.#syncIo = backend.features.synchronous;
    this.#fencing = backend.features.fencing;
    this.#placer = this.#syncIo && TUNING.readInRing ? placer : null;
    this.pool = pool;
    this.events = events;
    this.#remap();
    for (let i = 0; i < AIO_DEPTH; i++) {
      this.#slots.push(new AioSlot());
      this.#freeSlots.push(AIO_DEPTH - 1 - i);
    }
  }

  /** Size in bytes of the exported area. */
  get size(): number {
    return this.sectors * 512;
  }

  /**
   * Requests alive for this device, arrival to reply handed off (its pool in use); for a view,
   * those it holds (queued or in the kernel: its replies are its parent's).
   */
  get inFlight(): number {
    return this.parent ? this.pending : this.pool.inUse;
  }

  /** True when requests wait for submission and neither a stall nor a timer holds them. */
  get runnable(): boolean {
    return this.#deferred.length > 0 && !this.#stalled && !this.#ordered && !this.#timerArmed &&
      !this.waiting;
  }

  /**
   * Has this device wait for `previous`, a device of the same storage that it replaces (or
   * that was removed before it came), while `previous` has I/O in the kernel: it starts none of
   * its own until that is done (see {@link waiting}). A fenced device is not waited for: its
   * writes can never land.
   */
  follow(previous: Device): void {
    if (previous === this || previous.inKernel === 0 || previous.fenced) return;
    this.#predecessors.push(previous);
    previous.successors.push(this);
  }

  /**
   * Whether a device it replaced still has I/O in the kernel ({@link follow}): until that is
   * done, this one starts nothing, so that a write the old device started (its initiator gave
   * up on it and wrote again, maybe newer data) never lands after a write through this one.
   * Its requests wait in the queue meanwhile.
   */
  get waiting(): boolean {
    const p = this.#predecessors;
    if (p.length === 0) return false;
    for (let i = p.length - 1; i >= 0; i--) if (p[i].inKernel === 0) p.splice(i, 1);
    return p.length > 0;
  }

  /** Stalled on EAGAIN with nothing in the kernel: only a retry on a timer gets it going. */
  get stalledIdle(): boolean {
    return this.#stalled && this.#inFlightSlots === 0;
  }

  /** Requests waiting in the queue or in the kernel. */
  get pending(): number {
    return this.#deferred.length + this.#inFlightSlots + this.#flushWaiters.length;
  }

  /** iocbs in the kernel: their memory must stay mapped until they complete. */
  get inKernel(): number {
    return this.#inFlightSlots;
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

  /** Ends an EAGAIN stall that no completion will end, once {@link STALL_RETRY_MS} passed. */
  retryStall(now: number): void {
    if (this.stalledIdle && now - this.#stalledAt >= STALL_RETRY_MS / 1000) this.#stalled = false;
  }

  /**
   * Submits deferred requests until the queue is empty, the kernel is full, or stalled. `now`
   * (monotonic seconds) dates a stall.
   */
  submit(now: number): void {
    if (this.waiting) return;
    const q = this.#deferred;
    while (q.length > 0 && !this.#stalled && !this.#ordered && this.#freeSlots.length > 0) {
      this.dropStale(now);
      if (q.length === 0) break;
      if (q.length > 1) q.sort(this.#compare);
      let taken = 0; // requests placed into prepared iocbs
      let n = 0; // iocbs prepared
      while (taken < q.length && n < SUBMIT_BATCH && this.#freeSlots.length > 0) {
        if (this.#overlapsWriteInKernel(q[taken])) {
          this.#ordered = true; // a completion lifts it (reap)
          break;
        }
        const slotIndex = this.#freeSlots.pop()!;
        taken = this.#prepareRun(q, taken, slotIndex);
        if (this.#syncIo) {
          this.stats[DS.io_slots]++;
          this.#io.transfer(slotIndex);
          // A transfer that blocked longer than max-stall (storage that hangs): what waited
          // behind it is stale; the outer loop drops it before starting anything more.
          const after = monotonic();
          if (after - now > this.maxStall) {
            this.#stallNoticed(after);
            now = after;
            n = 0;
            break;
          }
          now = after;
        } else {
          this.#submitList[n++] = slotIndex;
        }
      }
      if (this.#syncIo) {
        this.#io.finishQueued();
        this.stats[DS.io_runs]++;
        this.#removeFront(taken);
        this.#runFlushes();
        const after = monotonic(); // reads from the mapping fault pages in, and may hang too
        if (after - now > this.maxStall) this.#stallNoticed(after);
        now = after;
      } else {
        this.#submitPrepared(n, taken, now);
      }
      this.#requeueRetries();
    }
  }

  /**
   * Whether `r` is a write over bytes that a write still in the kernel writes: it must wait
   * for that one, so that writes to the same sectors land in the order they arrived. (A write
   * held by slow storage, whose initiator gave up waiting and wrote again, newer data later,
   * would otherwise land last, over the newer data.) Asynchronous backends only: synchronous
   * transfers are done before the next starts.
   */
  #overlapsWriteInKernel(r: Request): boolean {
    const count = this.#kernelWriteCount;
    if (count === 0 || r.action !== Action.WRITE) return false;
    const start = r.offset;
    const end = start + r.bytes;
    for (let i = 0; i < count; i++) {
      const slot = this.#kernelWrites[i];
      if (this.#writeStart[slot] < end && start < this.#writeEnd[slot]) return true;
    }
    return false;
  }

  /** Write slot `slotIndex` (carrying `requests`, contiguous) went into the kernel. */
  #trackWrite(slotIndex: number, requests: Request[]): void {
    const last = requests[requests.length - 1];
    this.#writeStart[slotIndex] = requests[0].offset;
    this.#writeEnd[slotIndex] = last.offset + last.bytes;
    this.#kernelWritePos[slotIndex] = this.#kernelWriteCount;
    this.#kernelWrites[this.#kernelWriteCount++] = slotIndex;
  }

  /** Write slot `slotIndex` completed. */
  #untrackWrite(slotIndex: number): void {
    const at = this.#kernelWritePos[slotIndex];
    const moved = this.#kernelWrites[--this.#kernelWriteCount];
    this.#kernelWrites[at] = moved;
    this.#kernelWritePos[moved] = at;
    this.#kernelWritePos[slotIndex] = -1;
  }

  /** Puts the requests of failed merged transfers back at the front of the queue. */
  #requeueRetries(): void {
    if (this.#retry.length === 0) return;
    this.#deferred.unshift(...this.#retry);
    this.#retry.length = 0;
  }

  /**
   * Fills iocb `slotIndex` with the run of contiguous same-direction requests starting at
   * `q[from]` (at most MAX_MERGE of them); returns the index after the run.
   */
  #prepareRun(q: Request[], from: number, slotIndex: number): number {
    const first = q[from];
    const slot = this.#slots[slotIndex];
    const requests = slot.requests;
    slot.kind = first.action;
    requests.length = 0;
    requests.push(first);
    let end = first.offset + first.bytes;
    let k = from + 1;
    while (
      !first.solo && k < q.length && requests.length < MAX_MERGE && !q[k].solo &&
      q[k].action === first.action && q[k].offset === end && !this.#overlapsWriteInKernel(q[k])
    ) {
      requests.push(q[k]);
      end += q[k].bytes;
      k++;
    }
    const count = requests.length;
    this.#io.prepare(slotIndex, first.action === Action.WRITE, first.offset, count);
    // Reads of the synchronous path go straight into their replies' TX frames where the
    // interface has them free, in order; from the first that finds none, into their slots.
    let placing = this.#placer !== null && first.action === Action.READ;
    for (let j = 0; j < count; j++) {
      const r = requests[j];
      const ring = placing ? this.#placer!(r) : null;
      r.txMemory = ring;
      if (ring !== null) {
        this.#io.setIovec(slotIndex, j, ring, r.txFrame + ATA_DATA_OFFSET, r.bytes);
      } else {
        placing = false;
        this.#io.setIovec(slotIndex, j, this.pool.memory, r.dataOffset, r.bytes);
      }
    }
    return k;
  }

  /** Submission of the `n` prepared slots that carry the first `taken` queued requests. */
  #submitPrepared(n: number, taken: number, now: number): void {
    let accepted: number;
    try {
      accepted = this.#io.submit(this.#submitList, n);
    } catch (e) {
      // A hard submission error: every prepared request fails with ABRT.
      const errno = (e as { errno?: number }).errno ?? EINVAL;
      for (let i = 0; i < n; i++) this.#finishSlot(this.#submitList[i], -errno);
      this.#removeFront(taken);
      return;
    }
    if (accepted < 0) accepted = 0; // EAGAIN
    let consumed = 0;
    for (let i = 0; i < n; i++) {
      const slotIndex = this.#submitList[i];
      if (i < accepted) {
        const requests = this.#slots[slotIndex].requests;
        consumed += requests.length;
        if (this.#slots[slotIndex].kind === Action.WRITE) this.#trackWrite(slotIndex, requests);
        if (this.#inFlightSlots === 0) this.#lastProgress = now; // the stall clock starts
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
      // The kernel is full: wait for a completion (or, with none coming, a retry timer).
      this.#stalled = true;
      this.#stalledAt = now;
      this.stats[DS.queue_stall]++;
    }
  }

  /** Reaps completions (the eventfd was readable); finished requests go to the sink. */
  reap(now: number): void {
    this.events.drain();
    for (;;) {
      const n = this.#io.reap(AIO_DEPTH);
      if (n > 0) {
        // The first completion after I/O that hung longer than max-stall: what waited behind
        // it (and, for networked storage, whatever its initiator sent meanwhile) is stale.
        if (now - this.#lastProgress > this.maxStall) this.#stallNoticed(now);
        this.#lastProgress = now;
      }
      for (let i = 0; i < n; i++) {
        this.#inFlightSlots--;
        const slotIndex = this.#io.eventSlot(i);
        if (this.#kernelWritePos[slotIndex] >= 0) this.#untrackWrite(slotIndex);
        this.#finishSlot(slotIndex, this.#io.eventResult(i));
      }
      if (n < AIO_DEPTH) break;
    }
    this.#stalled = false;
    this.#ordered = false;
    this.#requeueRetries();
    this.#runFlushes();
  }

  /**
   * Re-reads the size of the export (reload); returns true if it changed. A backend whose size
   * is measured by whoever lent it (`resize: "told"`) is not asked: that may block; the size
   * comes through {@link setStorageSize}.
   */
  refreshSize(): boolean {
    if (this.#io.features.resize !== "reread") return false;
    return this.#resize(this.#io.refreshSize());
  }

  /** The storage is now `bytes` long, as measured by whoever lent it; true if the export changed. */
  setStorageSize(bytes: number): boolean {
    if (this.#io.features.resize !== "told") return false;
    this.#io.setSize(bytes);
    return this.#resize(bytes);
  }

  #resize(bytes: number): boolean {
    const sectors = exportedSectors(this.config, bytes);
    if (sectors === this.sectors) return false;
    this.sectors = sectors;
    this.#remap();
    return true;
  }

  /** Tells the backend where the exported bytes end (a buffered file maps them). */
  #remap(): void {
    this.#io.setExportEnd(this.config.offsetSectors * 512 + this.sectors * 512);
  }

  /**
   * Closes the storage, its I/O and the pool. Call only once nothing is in the kernel
   * ({@link inKernel} 0): io_destroy would wait for it, and the pool's memory is unmapped.
   */
  close(): void {
    try {
      this.#io.close();
    } finally {
      this.events.close();
      this.timer?.close();
      if (!this.parent) this.pool.close();
    }
  }

  /**
   * Drops the queued requests that must never start: received before {@link staleBefore}
   * (counted in stall_drop), or older than max-request-age at `now` (stale_drop). Their
   * buffers go back to the pool; no reply is sent. Returns how many were dropped.
   */
  dropStale(now: number): number {
    const oldest = now - this.maxRequestAge;
    const before = this.staleBefore;
    let dropped = this.#dropFrom(this.#deferred, oldest, before);
    dropped += this.#dropFrom(this.#flushWaiters, oldest, before);
    if (dropped > 0) this.#runFlushes();
    return dropped;
  }

  #dropFrom(q: Request[], oldest: number, before: number): number {
    let keep = 0;
    for (let i = 0; i < q.length; i++) {
      const r = q[i];
      if (r.arrival < before) this.stats[DS.stall_drop]++;
      else if (r.arrival < oldest) this.stats[DS.stale_drop]++;
      else {
        q[keep++] = r;
        continue;
      }
      if (r.action === Action.WRITE) this.#writeDone(r.epoch);
      this.pool.put(r);
    }
    const dropped = q.length - keep;
    q.length = keep;
    return dropped;
  }

  /** The device's I/O did not progress for longer than max-stall, up to `now`. */
  #stallNoticed(now: number): void {
    if (now > this.staleBefore) this.staleBefore = now;
  }

  /** Requests still queued (not submitted): handed back for dropping (retire, shutdown). */
  takeQueued(): Request[] {
    const out = [...this.#deferred, ...this.#flushWaiters];
    for (const r of out) if (r.action === Action.WRITE) this.#writeDone(r.epoch);
    this.#deferred.length = 0;
    this.#flushWaiters.length = 0;
    return out;
  }

  readonly #finishSlot = (slotIndex: number, result: number): void => {
    const slot = this.#slots[slotIndex];
    const requests = slot.requests;
    if (
      requests.length > 1 && slot.kind !== Action.FLUSH && result !== this.#slotBytes(slot) &&
      !this.#fencedResult(result)
    ) {
      // A merged transfer failed or came back short: which of its requests are at fault is
      // unknown (one bad sector fails the whole preadv). Each goes again on its own, so that
      // only the requests that really fail get an error: at once on the synchronous path (into
      // the same buffers and TX frames, so replies keep their order), else first in the queue.
      this.stats[DS.io_retries]++;
      if (this.#syncIo) {
        this.#redoEach(slotIndex);
        return;
      }
      for (const r of requests) {
        r.solo = true;
        this.#retry.push(r);
      }
      requests.length = 0;
      this.#freeSlots.push(slotIndex);
      return;
    }
    let remaining = result;
    for (let j = 0; j < requests.length; j++) {
      const r = requests[j];
      let got: number;
      if (result < 0) got = result;
      else {
        got = remaining < r.bytes ? remaining : r.bytes;
        remaining -= got;
      }
      this.#complete(r, slot.kind, got);
    }
    requests.length = 0;
    this.#freeSlots.push(slotIndex);
  };

  /**
   * Finishes one request of a transfer of `kind` that moved `got` bytes (or -errno). One that
   * failed because this host was fenced off the storage goes to the sink marked Drop.FENCED: it
   * is never answered (the initiator gave up on it or asks again) and never redone; so is
   * one that failed and had been received before a stall (Drop.STALE).
   */
  #complete(r: Request, kind: number, got: number): void {
    if (kind === Action.WRITE) this.#writeDone(r.epoch);
    if (this.#fencedResult(got)) {
      r.drop = Drop.FENCED;
      this.stats[DS.rbd_fenced_drops]++;
    } else if (
      (got < 0 || (kind !== Action.FLUSH && got !== r.bytes)) && r.arrival < this.staleBefore
    ) {
      // It failed after waiting through a stall (an RBD operation that librados timed out,
      // rados_osd_op_timeout, when the process resumed): its initiator has given up on it or
      // sends it again, and an error now would fail I/O that the copy can still complete.
      r.drop = Drop.STALE;
      this.stats[DS.stall_drop]++;
    } else {
      completeRequest(r, kind === Action.FLUSH ? (got < 0 ? got : 0) : got, this.stats);
    }
    this.#sink(r);
  }

  /** Whether `result` says another host fenced this one off the storage. */
  #fencedResult(result: number): boolean {
    return this.#fencing && this.#io.fenced(result);
  }

  /** The synchronous path: each request of slot `slotIndex` transferred on its own, now. */
  #redoEach(slotIndex: number): void {
    const slot = this.#slots[slotIndex];
    const requests = slot.requests;
    const spare = AIO_DEPTH; // kept out of the free list for this
    const write = slot.kind === Action.WRITE;
    for (let j = 0; j < requests.length; j++) {
      const r = requests[j];
      this.#io.prepare(spare, write, r.offset, 1);
      if (r.txMemory !== null) {
        this.#io.setIovec(spare, 0, r.txMemory, r.txFrame + ATA_DATA_OFFSET, r.bytes);
      } else {
        this.#io.setIovec(spare, 0, this.pool.memory, r.dataOffset, r.bytes);
      }
      this.#complete(r, slot.kind, this.#io.transferNow(spare));
    }
    requests.length = 0;
    this.#freeSlots.push(slotIndex);
  }

  #slotBytes(slot: AioSlot): number {
    let n = 0;
    for (const r of slot.requests) n += r.bytes;
    return n;
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
    if (!this.#io.features.flush) {
      this.#finishSlot(slotIndex, 0); // nothing to make durable: its writes are done
      return;
    }
    this.#io.prepareFlush(slotIndex);
    this.#submitList[0] = slotIndex;
    let accepted = 0;
    try {
      accepted = this.#io.submit(this.#submitList, 1);
    } catch {
      accepted = -1; // the backend cannot flush asynchronously (the kernel, for this file)
    }
    if (accepted === 1) {
      if (this.#inFlightSlots === 0) this.#lastProgress = monotonic(); // the stall clock starts
      this.#inFlightSlots++;
      return;
    }
    this.#finishSlot(slotIndex, this.#io.flushNow());
  }

  #removeFront(count: number): void {
    const q = this.#deferred;
    if (count === 0) return;
    for (let i = count; i < q.length; i++) q[i - count] = q[i];
    q.length -= count;
  }

  /** docs/decisions.md §3.2: older first, unless within max-delay of each other; then lower offset. */
  readonly #compare = (a: Request, b: Request): number => {
    const dt = a.arrival - b.arrival;
    if (dt > this.#maxDelay || dt < -this.#maxDelay) return dt;
    return a.offset - b.offset;
  };
}
