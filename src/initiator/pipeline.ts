/**
 * The windowed ATA engine behind `readRange`, `writeRange` and `runWorkload`: up to `window`
 * requests outstanding, matched to replies by tag, retransmitted on timeout.
 *
 * A request lives in a slot. Slot state and addresses are typed arrays allocated once, so the
 * loop allocates nothing per request except the data views it hands to `Uint8Array.set`.
 *
 * ```
 *   FREE --source.next--> QUEUED --sent--> INFLIGHT --reply--> FREE (source.done / failed)
 *                           ^                  |
 *                           +----timeout-------+   (retransmit, same tag)
 * ```
 * Tags: bits 0..9 the slot, bits 10..31 a sequence number that changes every time a slot is
 * reused. A retransmission keeps its tag, so the reply to either copy completes the request;
 * the other copy's reply then finds the slot free or holding another tag and is counted stale.
 *
 * Retransmit timeout: the smoothed round-trip time plus four deviations (RFC 6298, measured on
 * requests answered first time only), between `minTimeoutMs` and `timeoutMs`, doubled for each
 * retransmission of the same request (see `timeoutFor`). Congestion control, as the Linux aoe driver: a timeout
 * halves the effective window (once per timeout period), each answer grows it by 1/window.
 *
 * @module
 */

import { formatMac, macAt } from "../mac.ts";
import {
  AOE_AFL_EXT,
  AOE_AFL_WRITE,
  AOE_ATA_HDR_LEN,
  AOE_CMD_ATA,
  AOE_FL_ERROR,
  ATA_CMD_READ,
  ATA_CMD_READ_EXT,
  ATA_CMD_WRITE,
  ATA_CMD_WRITE_EXT,
  ATA_ERR,
  ETH_P_AOE,
  LBA28_MASK,
  SECTOR_SIZE,
} from "../protocol/constants.ts";
import { type AtaFields, OFF_CMD_STATUS, OFF_ERR_FEATURE, putAta } from "../protocol/ata.ts";
import {
  frameCommand,
  frameEthertype,
  frameShelf,
  frameSlot,
  frameTag,
  OFF_ERROR,
  OFF_SRC,
  OFF_TAG,
  OFF_VER_FLAGS,
  padFrame,
  putRequestHeader,
} from "../protocol/header.ts";
import { AoeError, AoeProtocolError, AoeTimeoutError, AtaError } from "./errors.ts";
import type { Link } from "./link.ts";
import type { TargetInfo } from "./types.ts";

/** Most slots (the tag keeps 10 bits for the slot; the last value is for single commands). */
export const MAX_WINDOW = 1023;
/** Slot number carried by the tags of single (non-pipelined) commands. */
export const SINGLE_SLOT = 0x3ff;

const SLOT_BITS = 10;
const SLOT_MASK = 0x3ff;
const SEQ_MASK = 0x3fffff;

const FREE = 0;
const QUEUED = 1;
const INFLIGHT = 2;

/** Byte 14 of a version-1 response: version 1, R flag (E may be added). */
const VER1_RESPONSE = 0x18;

/** Supplies requests to a {@link Pipeline} and learns how they ended. */
export interface PipelineSource {
  /**
   * Describes the next request in slot `s` by setting `p.lba[s]`, `p.count[s]`, `p.write[s]`,
   * `p.buf[s]`, `p.bufOff[s]` (where data is read from or written to) and optionally
   * `p.io[s]`. Returns false when there is nothing more to issue.
   */
  next(p: Pipeline, s: number): boolean;
  /** The request in slot `s` was answered (read data is already in place). */
  done(p: Pipeline, s: number, now: number): void;
  /** The request in slot `s` failed; throw to abort the run. */
  failed(p: Pipeline, s: number, error: Error): void;
}

/** Timing and retry policy. */
export interface PipelinePolicy {
  timeoutMs: number;
  minTimeoutMs: number;
  adaptive: boolean;
  retries: number;
  congestionControl: boolean;
  lba48: boolean;
}

/** Counters shared by the pipeline and the initiator's single commands. */
export interface Counters {
  retransmits: number;
  timeouts: number;
  stale: number;
  ignored: number;
}

/** Windowed request engine over one {@link Link}. */
export class Pipeline {
  /** Slots allocated (the largest window usable). */
  readonly capacity: number;
  /** Per slot: first sector. */
  readonly lba: Float64Array;
  /** Per slot: sectors. */
  readonly count: Uint16Array;
  /** Per slot: 1 for a write. */
  readonly write: Uint8Array;
  /** Per slot: the buffer data is read into or written from. */
  readonly buf: Uint8Array[];
  /** Per slot: byte offset in `buf`. */
  readonly bufOff: Float64Array;
  /** Per slot: free for the source (an I/O number, say). */
  readonly io: Int32Array;
  /** Per slot: when the request was first sent (performance.now()). */
  readonly firstSentAt: Float64Array;

  readonly #link: Link;
  readonly #policy: PipelinePolicy;
  readonly #counters: Counters;
  readonly #state: Uint8Array;
  readonly #tag: Uint32Array;
  readonly #sentAt: Float64Array;
  readonly #attempts: Uint8Array;
  readonly #free: Int32Array;
  #freeTop = 0;
  // FIFO of (slot, tag) to send; an entry whose slot no longer holds that tag is skipped. A slot
  // has at most one live and one dead entry, hence 2 × capacity.
  readonly #queueSlot: Int32Array;
  readonly #queueTag: Uint32Array;
  #queueHead = 0;
  #queueLength = 0;
  readonly #template = new Uint8Array(24);
  readonly #fields: AtaFields = { aflags: 0, errFeature: 0, sectorCount: 0, cmdStatus: 0, lba: 0 };
  #seq = 1;
  #active = 0;
  #txBlocked = false;
  /** Earliest time a request may time out: no scan before it. */
  #nextCheck = Infinity;

  // Round-trip estimate (ms) and congestion window.
  #srtt = 0;
  #rttvar = 0;
  #rto: number;
  #cwnd = 1;
  #window = 1;
  #lastLossAt = -Infinity;
  /** Smallest effective window of the current run. */
  minWindow = 0;

  constructor(link: Link, capacity: number, policy: PipelinePolicy, counters: Counters) {
    if (!Number.isInteger(capacity) || capacity < 1 || capacity > MAX_WINDOW) {
      throw new RangeError(`window must be an integer in 1..${MAX_WINDOW}, got ${capacity}`);
    }
    this.#link = link;
    this.#policy = policy;
    this.#counters = counters;
    this.capacity = capacity;
    this.lba = new Float64Array(capacity);
    this.count = new Uint16Array(capacity);
    this.write = new Uint8Array(capacity);
    this.buf = new Array<Uint8Array>(capacity).fill(new Uint8Array(0));
    this.bufOff = new Float64Array(capacity);
    this.io = new Int32Array(capacity);
    this.firstSentAt = new Float64Array(capacity);
    this.#state = new Uint8Array(capacity);
    this.#tag = new Uint32Array(capacity);
    this.#sentAt = new Float64Array(capacity);
    this.#attempts = new Uint8Array(capacity);
    this.#free = new Int32Array(capacity);
    this.#queueSlot = new Int32Array(2 * capacity);
    this.#queueTag = new Uint32Array(2 * capacity);
    this.#rto = policy.timeoutMs;
  }

  /** Current retransmit timeout (ms) before backoff. */
  get rto(): number {
    return this.#policy.adaptive ? this.#rto : this.#policy.timeoutMs;
  }

  /** Smoothed round-trip time (ms), 0 before the first sample. */
  get srtt(): number {
    return this.#srtt;
  }

  /** A fresh tag for `slot` (also used for single commands with {@link SINGLE_SLOT}). */
  newTag(slot: number): number {
    this.#seq = (this.#seq + 1) & SEQ_MASK;
    return ((this.#seq << SLOT_BITS) | slot) >>> 0;
  }

  /** Feeds one round-trip sample (ms) of a request answered first time. */
  sampleRtt(rtt: number): void {
    if (this.#srtt === 0) {
      this.#srtt = rtt;
      this.#rttvar = rtt / 2;
    } else {
      this.#rttvar = 0.75 * this.#rttvar + 0.25 * Math.abs(this.#srtt - rtt);
      this.#srtt = 0.875 * this.#srtt + 0.125 * rtt;
    }
    const p = this.#policy;
    this.#rto = Math.min(p.timeoutMs, Math.max(p.minTimeoutMs, this.#srtt + 4 * this.#rttvar));
  }

  /**
   * Timeout (ms) of a request sent `attempts` times before: exponential backoff up to four
   * times `timeoutMs`, or one second if that is longer, so that even a tiny timeout leaves a
   * target that is merely slow time to answer before the retries run out.
   */
  timeoutFor(attempts: number): number {
    return Math.min(this.rto * 2 ** attempts, Math.max(4 * this.#policy.timeoutMs, 1000));
  }

  /**
   * Runs requests from `source` against `t` with up to `window` outstanding, until the source
   * is exhausted and every request has ended. Exceptions from the source abort the run; replies
   * to requests still outstanding are then counted stale by later runs.
   */
  run(t: TargetInfo, source: PipelineSource, window: number): void {
    if (!Number.isInteger(window) || window < 1 || window > this.capacity) {
      throw new RangeError(`window must be an integer in 1..${this.capacity}, got ${window}`);
    }
    this.#reset(t, window);
    const socket = this.#link.socket;
    let exhausted = false;
    for (;;) {
      // Fill the window, send what is queued, kick the TX ring once.
      while (!exhausted && this.#active < Math.floor(this.#cwnd) && this.#freeTop > 0) {
        const s = this.#free[--this.#freeTop];
        if (!source.next(this, s)) {
          this.#freeTop++;
          exhausted = true;
          break;
        }
        this.#attempts[s] = 0;
        this.#tag[s] = this.newTag(s);
        this.#enqueue(s);
        this.#active++;
      }
      if (this.#queueLength > 0) this.#sendQueued();
      if (this.#active === 0 && exhausted) return;

      const drained = this.#drain(t, source);

      // Retransmit what timed out. Checked on every turn, not only when RX is empty: under a
      // steady flow of replies a lost request would otherwise wait for the flow to stop.
      const now = performance.now();
      if (now >= this.#nextCheck) this.#expireDue(t, source, window, now);
      if (drained > 0 || (this.#queueLength > 0 && !this.#txBlocked)) continue;
      if (this.#active === 0 && exhausted) return;
      const wait = this.#nextCheck - now;
      this.#link.wait(Math.min(this.#txBlocked ? 10 : 1000, wait), this.#txBlocked);
      if (this.#txBlocked) {
        this.#txBlocked = false;
        socket.flush();
      }
    }
  }

  /** Expires every request past its deadline; sets the next check to the earliest other one. */
  #expireDue(t: TargetInfo, source: PipelineSource, window: number, now: number): void {
    let next = Infinity;
    for (let s = 0; s < window; s++) {
      if (this.#state[s] !== INFLIGHT) continue;
      const due = this.#sentAt[s] + this.timeoutFor(this.#attempts[s]);
      if (due <= now) this.#expire(t, s, source, now);
      else if (due < next) next = due;
    }
    this.#nextCheck = next;
  }

  #reset(t: TargetInfo, window: number): void {
    this.#state.fill(FREE);
    this.#freeTop = 0;
    // Slot 0 on top: early slots are reused first, which keeps the timeout scan short.
    for (let s = window - 1; s >= 0; s--) this.#free[this.#freeTop++] = s;
    this.#queueHead = 0;
    this.#queueLength = 0;
    this.#active = 0;
    this.#txBlocked = false;
    this.#nextCheck = Infinity;
    this.#window = window;
    this.#cwnd = window;
    this.minWindow = window;
    this.#lastLossAt = -Infinity;
    putRequestHeader(
      this.#template,
      { dst: t.mac, src: this.#link.mac, shelf: t.shelf, slot: t.slot, tag: 0 },
      AOE_CMD_ATA,
    );
  }

  #enqueue(s: number): void {
    this.#state[s] = QUEUED;
    const size = this.#queueSlot.length;
    const at = (this.#queueHead + this.#queueLength) % size;
    this.#queueSlot[at] = s;
    this.#queueTag[at] = this.#tag[s];
    this.#queueLength++;
  }

  #sendQueued(): void {
    const socket = this.#link.socket;
    const size = this.#queueSlot.length;
    let sent = 0;
    while (this.#queueLength > 0) {
      const s = this.#queueSlot[this.#queueHead];
      if (this.#state[s] === QUEUED && this.#tag[s] === this.#queueTag[this.#queueHead]) {
        const out = socket.txBuffer();
        if (out === null) {
          this.#txBlocked = true;
          break;
        }
        const length = this.#build(out, s);
        if (!socket.commit(length)) {
          this.#txBlocked = true;
          break;
        }
        const now = performance.now();
        if (this.#attempts[s] === 0) this.firstSentAt[s] = now;
        this.#sentAt[s] = now;
        this.#state[s] = INFLIGHT;
        const due = now + this.timeoutFor(this.#attempts[s]);
        if (due < this.#nextCheck) this.#nextCheck = due;
        sent++;
      }
      this.#queueHead = (this.#queueHead + 1) % size;
      this.#queueLength--;
    }
    if (sent > 0 || this.#txBlocked) socket.flush();
  }

  /** Writes the request of slot `s` into `out`; returns the frame length. */
  #build(out: Uint8Array, s: number): number {
    out.set(this.#template, 0);
    const tag = this.#tag[s];
    out[OFF_TAG] = tag >>> 24;
    out[OFF_TAG + 1] = (tag >>> 16) & 0xff;
    out[OFF_TAG + 2] = (tag >>> 8) & 0xff;
    out[OFF_TAG + 3] = tag & 0xff;
    const write = this.write[s] === 1;
    const lba = this.lba[s];
    const count = this.count[s];
    const f = this.#fields;
    f.sectorCount = count;
    if (this.#policy.lba48 || lba + count > LBA28_MASK) {
      f.aflags = AOE_AFL_EXT | (write ? AOE_AFL_WRITE : 0);
      f.cmdStatus = write ? ATA_CMD_WRITE_EXT : ATA_CMD_READ_EXT;
      f.lba = lba;
    } else {
      // LBA28 as the Linux initiator sends it: 0xE0 (the device register) in the top of LBA3.
      f.aflags = write ? AOE_AFL_WRITE : 0;
      f.cmdStatus = write ? ATA_CMD_WRITE : ATA_CMD_READ;
      f.lba = lba + 0xe0 * 0x1000000;
    }
    if (!write) return padFrame(out, putAta(out, f));
    const off = this.bufOff[s];
    return padFrame(out, putAta(out, f, this.buf[s].subarray(off, off + count * SECTOR_SIZE)));
  }

  /** Handles every frame waiting in RX; returns how many requests ended. */
  #drain(t: TargetInfo, source: PipelineSource): number {
    const socket = this.#link.socket;
    let ended = 0;
    for (;;) {
      const f = socket.receive();
      if (f === null) return ended;
      try {
        ended += this.#accept(t, f, socket.rxLength, source);
      } finally {
        socket.release();
      }
    }
  }

  /** One received frame: 1 if it ended a request, else 0 (counted ignored or stale). */
  #accept(t: TargetInfo, f: Uint8Array, length: number, source: PipelineSource): number {
    if (
      length < AOE_ATA_HDR_LEN || frameEthertype(f) !== ETH_P_AOE ||
      (f[OFF_VER_FLAGS] & 0xf8) !== VER1_RESPONSE || frameCommand(f) !== AOE_CMD_ATA ||
      frameShelf(f) !== t.shelf || frameSlot(f) !== t.slot || macAt(f, OFF_SRC) !== t.mac
    ) {
      this.#counters.ignored++;
      return 0;
    }
    const tag = frameTag(f);
    const s = tag & SLOT_MASK;
    if (s >= this.capacity || this.#state[s] === FREE || this.#tag[s] !== tag) {
      this.#counters.stale++;
      return 0;
    }
    const now = performance.now();
    const count = this.count[s];
    const write = this.write[s] === 1;
    let error: Error | null = null;
    if ((f[OFF_VER_FLAGS] & AOE_FL_ERROR) !== 0) {
      error = new AoeError(
        describe(t),
        `${write ? "write" : "read"} of ${count} sectors at LBA ${this.lba[s]}`,
        f[OFF_ERROR],
        AOE_CMD_ATA,
      );
    } else if ((f[OFF_CMD_STATUS] & ATA_ERR) !== 0) {
      error = new AtaError(
        describe(t),
        write ? ATA_CMD_WRITE_EXT : ATA_CMD_READ_EXT,
        this.lba[s],
        f[OFF_CMD_STATUS],
        f[OFF_ERR_FEATURE],
      );
    } else if (!write) {
      const bytes = count * SECTOR_SIZE;
      if (length < AOE_ATA_HDR_LEN + bytes) {
        error = new AoeProtocolError(
          `${describe(t)}: read of ${count} sectors at LBA ${this.lba[s]} answered with ${
            length - AOE_ATA_HDR_LEN
          } data bytes, expected ${bytes}`,
        );
      } else {
        this.buf[s].set(f.subarray(AOE_ATA_HDR_LEN, AOE_ATA_HDR_LEN + bytes), this.bufOff[s]);
      }
    }
    if (this.#attempts[s] === 0) this.sampleRtt(now - this.#sentAt[s]);
    this.#state[s] = FREE;
    this.#free[this.#freeTop++] = s;
    this.#active--;
    if (error !== null) {
      source.failed(this, s, error);
    } else {
      if (this.#cwnd < this.#window) {
        this.#cwnd = Math.min(this.#cwnd + 1 / this.#cwnd, this.#window);
      }
      source.done(this, s, now);
    }
    return 1;
  }

  /** Slot `s` timed out at `now`: retransmit it, or give up after `retries`. */
  #expire(t: TargetInfo, s: number, source: PipelineSource, now: number): void {
    this.#counters.timeouts++;
    const p = this.#policy;
    if (p.congestionControl && now - this.#lastLossAt > this.rto) {
      this.#cwnd = Math.max(1, Math.floor(this.#cwnd / 2));
      if (this.#cwnd < this.minWindow) this.minWindow = this.#cwnd;
      this.#lastLossAt = now;
    }
    if (this.#attempts[s] >= p.retries) {
      this.#state[s] = FREE;
      this.#free[this.#freeTop++] = s;
      this.#active--;
      source.failed(
        this,
        s,
        new AoeTimeoutError(
          `${describe(t)}: ${this.write[s] ? "write" : "read"} of ${this.count[s]} sectors at LBA ${
            this.lba[s]
          } unanswered after ${p.retries + 1} tries (${Math.round(now - this.firstSentAt[s])} ms)`,
        ),
      );
      return;
    }
    this.#attempts[s]++;
    this.#counters.retransmits++;
    this.#enqueue(s);
  }
}

/** "e0.1 (02:00:00:00:00:01)" for messages. */
export function describe(t: { shelf: number; slot: number; mac: number }): string {
  return `e${t.shelf}.${t.slot} (${formatMac(t.mac)})`;
}
