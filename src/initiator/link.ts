/**
 * One raw AoE socket and the epoll instance that waits on it: the initiator's only contact with
 * the kernel. Waiting blocks the calling thread (the target runs in another process).
 *
 * @module
 */

import { Epoll, EPOLLIN, EPOLLOUT, interfaceInfo, PacketSocket } from "../../ffi/mod.ts";

/** Largest frame a TPACKET ring frame may hold here (loopback's MTU is 65536). */
const MAX_FRAME_SIZE = 65536;

/** Default TPACKET ring memory (RX + TX): room for well over a window of jumbo frames each way. */
export const DEFAULT_RING_BYTES = 4 * 1024 * 1024;

/** How a {@link Link} is opened. */
export interface LinkOptions {
  /** RX + TX ring bytes; 0 = recvfrom/sendto. */
  ringBytes?: number;
  sendBuffer?: number;
  receiveBuffer?: number;
}

/** A PacketSocket filtered to AoE responses, plus a way to sleep until it is ready. */
export class Link {
  /** The interface name. */
  readonly ifname: string;
  /** The socket: `receive`/`release` for RX, `txBuffer`/`commit`/`flush` for TX. */
  readonly socket: PacketSocket;
  /** Our MAC (source of every request). */
  readonly mac: number;
  /** The interface MTU. */
  readonly mtu: number;
  readonly #epoll: Epoll;
  #watchingOut = false;
  #closed = false;

  private constructor(ifname: string, socket: PacketSocket, epoll: Epoll) {
    this.ifname = ifname;
    this.socket = socket;
    this.mac = socket.mac;
    this.mtu = socket.mtu;
    this.#epoll = epoll;
  }

  /** Opens `ifname` for AoE responses (the kernel filter drops everything else). */
  static open(ifname: string, options: LinkOptions = {}): Link {
    const socket = PacketSocket.open(ifname, {
      frameSize: Math.min(interfaceInfo(ifname).mtu + 14, MAX_FRAME_SIZE),
      ringBytes: options.ringBytes ?? DEFAULT_RING_BYTES,
      filter: "responses",
      sendBuffer: options.sendBuffer,
      receiveBuffer: options.receiveBuffer,
    });
    let epoll: Epoll;
    try {
      epoll = Epoll.open(4);
      epoll.add(socket.fd, EPOLLIN, 0);
    } catch (e) {
      socket.close();
      throw e;
    }
    return new Link(ifname, socket, epoll);
  }

  /**
   * Blocks until a frame can be received (or, with `writable`, a frame can be sent) or
   * `timeoutMs` passes. Returns false on timeout.
   */
  wait(timeoutMs: number, writable = false): boolean {
    if (writable !== this.#watchingOut) {
      this.#epoll.modify(this.socket.fd, writable ? EPOLLIN | EPOLLOUT : EPOLLIN, 0);
      this.#watchingOut = writable;
    }
    return this.#epoll.wait(Math.max(0, Math.ceil(timeoutMs))) > 0;
  }

  /** Closes the socket and the epoll instance; idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.#epoll.close();
    } finally {
      this.socket.close();
    }
  }
}
