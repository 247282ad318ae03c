/**
 * One network interface on the data path: its packet socket (TPACKET_V2 rings, or
 * recvfrom/sendto), the {@link Port} the engine sees, its counters, the devices visible on it, and
 * its TX queue.
 *
 * TX congestion (docs/decisions.md §4.2): a reply that finds no free TX frame waits in a FIFO, and so
 * does every later reply until the FIFO drains (order is kept); the data plane then watches the
 * socket for EPOLLOUT. The FIFO is bounded by the request pools: a queued reply holds its request.
 *
 * Link faults: a socket call that fails because the link went down, went away, or changed under
 * it never throws out of here. The interface records the failure ({@link Iface.failure}), counts
 * it (`link_errors`), stops sending, and the data plane closes it at the end of the turn and
 * opens a fresh one when the link is usable again. A frame the kernel refuses on its own
 * (ENOBUFS, EMSGSIZE, a TX ring frame marked WRONG_FORMAT) is counted in `tx_dropped`, not in
 * `tx_cnt`. An Iface object is never reused: a request holds the object it came from, and
 * {@link Iface.open} tells whether its reply can still go there.
 *
 * @module
 */

import { type AoeAddress, copyBytes, type Memory, type PacketSocket } from "../../ffi/mod.ts";
import type { InterfaceConfig } from "../config/types.ts";
import { macBytes } from "../mac.ts";
import { MAX_MTU, maxSectorsForMtu } from "../protocol/engine.ts";
import { ATA_DATA_OFFSET } from "../protocol/types.ts";
import type { Port } from "../protocol/types.ts";
import { IS } from "../stats.ts";
import type { Device } from "./device.ts";
import type { Request } from "./pool.ts";
import { TUNING } from "./tuning.ts";

let generations = 0;

export class Iface implements Port {
  readonly index: number;
  /** Counts every Iface opened in this process: tells two lives of one name or index apart. */
  readonly generation = ++generations;
  /** False once closed: replies to its requests are dropped, never sent elsewhere. */
  open = true;
  /** Why its socket failed (the link went down or away), or null while it works. */
  failure: string | null = null;
  readonly name: string;
  readonly socket: PacketSocket;
  readonly config: InterfaceConfig;
  readonly stats: Float64Array;
  readonly mac: Uint8Array;
  readonly mtu: number;
  readonly maxSectors: number;
  /** Devices visible on this interface. */
  devices: Device[] = [];
  /**
   * The catch-all worker's: the other workers' device addresses on this interface (DataPlane
   * #attachAll), which its filter leaves out and its broadcast count looks at.
   */
  others: AoeAddress[] = [];
  /**
   * The addresses its socket's filter lets through (DataPlane #filter), as a sorted list;
   * null until one is set (every request passes).
   */
  addressFilter: string | null = null;
  /** Replies waiting for TX room, oldest first. */
  readonly #queue: Request[] = [];
  #queueHead = 0;
  /** Frames committed to the TX ring since the last kick. */
  #unkicked = 0;
  /** TX ring frames handed out by reserveReply() and not yet sent. */
  #reserved = 0;
  /** The socket's kernel drop count already added to the counters. */
  #kernelDrops = 0;
  /** The socket's full-ring count already added to the counters. */
  #ringFull = 0;
  /** The socket's refused-frame counts already added to the counters. */
  #txDropped = 0;
  #txWrongFormat = 0;
  /** Counts its failures in `link_errors` (see InterfacesOptions.countsLinkErrors). */
  readonly #countsLinkErrors: boolean;

  constructor(
    index: number,
    name: string,
    socket: PacketSocket,
    config: InterfaceConfig,
    stats: Float64Array,
    countsLinkErrors = true,
  ) {
    this.index = index;
    this.#countsLinkErrors = countsLinkErrors;
    this.name = name;
    this.socket = socket;
    this.config = config;
    this.stats = stats;
    this.mac = macBytes(socket.mac);
    this.mtu = effectiveMtu(socket.mtu, config.mtu);
    this.maxSectors = maxSectorsForMtu(this.mtu);
  }

  /** True while replies wait for TX room. */
  get congested(): boolean {
    return this.#queueHead < this.#queue.length;
  }

  /** Replies waiting. */
  get queued(): number {
    return this.#queue.length - this.#queueHead;
  }

  /**
   * Sends (or queues) the reply in `r.frame[0..r.length]`. Returns true if it went to the
   * socket (the caller may release `r`), false if it was queued (released after it is sent).
   */
  send(r: Request): boolean {
    if (r.txFrame >= 0) return this.#sendReserved(r);
    if (this.failure !== null) {
      this.stats[IS.dropped]++;
      return true;
    }
    if (this.congested || !this.#transmit(r.frame, r.length)) {
      this.#queue.push(r);
      return false;
    }
    return true;
  }

  /**
   * Reserves the next free TX ring frame for the reply to read `r`, so that the read can put
   * its data straight there (one copy fewer than through the request's slot). Returns the ring
   * memory, with `r.txFrame` set to where the frame starts in it (the ATA data goes at
   * `r.txFrame + 36`); null when there is no TX ring, replies are queued, or no frame is free.
   *
   * Reserved frames are consumed in order: the caller must send the replies of reserved reads
   * in the order it reserved them, before sending any other reply on this interface, within the
   * same turn (the synchronous buffered read path does exactly that).
   */
  reserveReply(r: Request): Memory | null {
    const socket = this.socket;
    if (
      this.congested || this.failure !== null || ATA_DATA_OFFSET + r.bytes > socket.frameSize
    ) return null;
    const at = socket.txFrameAhead(this.#reserved);
    if (at < 0) return null;
    r.txFrame = at;
    this.#reserved++;
    return socket.ringMemory;
  }

  /** Sends a frame that no request owns (advertisements); false if no TX room right now. */
  sendFrame(frame: Uint8Array, length: number): boolean {
    return !this.congested && this.failure === null && this.#transmit(frame, length);
  }

  /**
   * Sends queued replies in order while there is room; each one sent is passed to `done`.
   * Returns true when the queue is empty.
   */
  drainQueue(done: (r: Request) => void): boolean {
    while (this.#queueHead < this.#queue.length) {
      const r = this.#queue[this.#queueHead];
      // A failed link keeps its queue until the data plane closes it (dropQueue releases it).
      if (this.failure !== null || !this.#transmit(r.frame, r.length)) return false;
      this.#queue[this.#queueHead++] = undefined as unknown as Request;
      done(r);
    }
    this.#queue.length = 0;
    this.#queueHead = 0;
    return true;
  }

  /** Removes every queued reply (interface going away); they are passed to `drop`. */
  dropQueue(drop: (r: Request) => void): void {
    for (let i = this.#queueHead; i < this.#queue.length; i++) drop(this.#queue[i]);
    this.#queue.length = 0;
    this.#queueHead = 0;
  }

  /**
   * Adds what the socket saw since the last call to the counters: frames the kernel dropped
   * (`dropped`) and drains that found the RX ring full (`rx_buffers_full`).
   */
  countSocketEvents(): void {
    const socket = this.socket;
    if (socket.txDropped !== this.#txDropped || socket.txWrongFormat !== this.#txWrongFormat) {
      // Refused on send: never counted as sent. Marked WRONG_FORMAT in the ring: counted as
      // sent when committed, so taken back out.
      const wrong = socket.txWrongFormat - this.#txWrongFormat;
      this.stats[IS.tx_dropped] += socket.txDropped - this.#txDropped + wrong;
      this.stats[IS.tx_cnt] -= wrong;
      this.#txDropped = socket.txDropped;
      this.#txWrongFormat = socket.txWrongFormat;
    }
    const drops = this.socket.kernelDrops;
    if (drops !== this.#kernelDrops) {
      this.stats[IS.dropped] += drops - this.#kernelDrops;
      this.#kernelDrops = drops;
    }
    const full = this.socket.rxRingFull;
    if (full !== this.#ringFull) {
      this.stats[IS.rx_buffers_full] += full - this.#ringFull;
      this.#ringFull = full;
    }
  }

  /** Kicks the TX ring once for everything committed since the last kick. */
  flush(): void {
    this.#reserved = 0; // reservations live within one turn (see reserveReply)
    this.#kick();
  }

  /** The last kick left frames in the TX ring (the kernel took only some): kick again soon. */
  get needsKick(): boolean {
    return this.failure === null && this.socket.needsKick;
  }

  /** Kicks the TX ring again if the last kick left frames behind. */
  retryKick(): void {
    if (!this.needsKick) return;
    this.#unkicked++;
    this.#kick();
  }

  /**
   * Records that the socket failed because of its link (a SysError from a socket call, or the
   * error behind EPOLLERR): counted once, and the interface sends nothing more.
   */
  fail(reason: string): void {
    if (this.failure !== null) return;
    this.failure = reason;
    if (this.#countsLinkErrors) this.stats[IS.link_errors]++;
  }

  close(): void {
    this.open = false;
    this.socket.close();
  }

  #kick(): void {
    if (this.#unkicked === 0 || this.failure !== null) return;
    this.#unkicked = 0;
    try {
      this.socket.flush();
    } catch (e) {
      this.fail((e as Error).message);
      return;
    }
    this.stats[IS.tx_runs]++;
  }

  /**
   * Sends the reply of a read whose data is already in its reserved TX frame: the header (and,
   * for an error reply, the zero padding) goes over the frame's first bytes. A reply that does
   * not find its frame next in the ring (a broken reservation order: a bug) is not sent, and
   * is counted as dropped: the initiator asks again, and no reply ever carries another's data.
   */
  #sendReserved(r: Request): boolean {
    const frame = r.txFrame;
    r.txFrame = -1;
    if (this.#reserved > 0) this.#reserved--;
    const socket = this.socket;
    const buf = this.congested || this.failure !== null || socket.txFrameAhead(0) !== frame
      ? null
      : socket.txBuffer();
    if (buf === null) {
      this.stats[IS.dropped]++;
      return true;
    }
    // A good read is header + data (longer than 60); anything else is at most 60 bytes, all of
    // them in r.frame (completeRequest pads error replies with zeros).
    const header = r.length > 60 ? ATA_DATA_OFFSET : r.length;
    copyBytes(buf, r.frame, header);
    if (this.#commit(r.length)) this.stats[IS.tx_in_place]++;
    return true;
  }

  #transmit(frame: Uint8Array, length: number): boolean {
    const buf = this.socket.txBuffer();
    if (buf === null) {
      this.stats[IS.tx_buffers_full]++;
      return false;
    }
    copyBytes(buf, frame, length);
    return this.#commit(length);
  }

  /**
   * Commits the frame written into the socket's TX buffer. False when it must wait for room
   * (queue it); true when it went out, or was refused by the kernel or by a failed link (both
   * counted: the initiator retransmits).
   */
  #commit(length: number): boolean {
    const socket = this.socket;
    const dropped = socket.txDropped;
    try {
      if (!socket.commit(length)) {
        this.stats[IS.tx_buffers_full]++;
        return false;
      }
    } catch (e) {
      this.fail((e as Error).message);
      this.stats[IS.dropped]++;
      return true;
    }
    if (socket.txDropped !== dropped) {
      this.#txDropped = socket.txDropped;
      this.stats[IS.tx_dropped]++;
      return true;
    }
    if (socket.txRing) {
      this.#unkicked++;
      if (TUNING.txKickEach) this.#kick();
    }
    this.stats[IS.tx_cnt]++;
    this.stats[IS.tx_bytes] += length < 60 ? 60 : length;
    return true;
  }
}

/** The MTU requests are sized for: the link's, capped at 16384, lowered by the `mtu` setting. */
export function effectiveMtu(linkMtu: number, configured: number): number {
  const mtu = Math.min(linkMtu, MAX_MTU);
  return configured > 0 ? Math.min(mtu, configured) : mtu;
}
