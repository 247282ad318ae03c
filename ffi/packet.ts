/**
 * AF_PACKET sockets for AoE (ethertype 0x88A2) with TPACKET_V2 RX and TX rings, falling back
 * per direction to recv/send. Zero allocation per frame on both paths.
 *
 * Ring frames, as the kernel lays them out (TPACKET_V2, SOCK_RAW, Ethernet):
 * ```
 * RX frame (rxFrameSize = align16(66 + frameSize))
 *   0   struct tpacket2_hdr (32)     tp_status: 0 kernel owns it, bit 0 (USER) we own it
 *   32  struct sockaddr_ll (20)
 *   66  Ethernet frame (tp_mac)      tp_snaplen bytes; the IP header would start at 80
 * TX frame (txFrameSize = align16(32 + frameSize))
 *   0   struct tpacket2_hdr (32)     tp_status: 0 available, 1 send request, 2 sending
 *   32  Ethernet frame, tp_len bytes
 * ```
 * Both rings are mapped with one mmap, RX first. Frames never straddle a block; a block holds
 * floor(blockSize / frameSize) of them.
 *
 * Memory ordering: the mapping is a plain (non-shared) ArrayBuffer, so Atomics do not apply.
 * On x86-64 (TSO) stores are not reordered with stores nor loads with loads, so it suffices to
 * read tp_status before the frame bytes (RX), and to write the frame bytes and tp_len before
 * tp_status (TX, and when handing an RX frame back). The kernel side has its own barriers.
 *
 * @module
 */

import { check, Errno, lastError, sysError } from "./errno.ts";
import { big, errno, libc } from "./libc.ts";
import { _adoptMapping, type Memory, PAGE_SIZE } from "./memory.ts";
import {
  AF_PACKET,
  BPF_ABS,
  BPF_ALU,
  BPF_AND,
  BPF_B,
  BPF_H,
  BPF_JEQ,
  BPF_JGE,
  BPF_JMP,
  BPF_K,
  BPF_LD,
  BPF_LEN,
  BPF_RET,
  BPF_W,
  ETH_HLEN,
  ETH_P_AOE,
  ETH_ZLEN,
  MAP_SHARED,
  MSG_DONTWAIT,
  MSG_NOSIGNAL,
  MSG_TRUNC,
  PACKET_HDRLEN,
  PACKET_LOSS,
  PACKET_RX_RING,
  PACKET_STATISTICS,
  PACKET_TX_RING,
  PACKET_VERSION,
  PROT_READ,
  PROT_WRITE,
  SCM_TIMESTAMPNS,
  SO_ATTACH_FILTER,
  SO_ERROR,
  SO_RCVBUF,
  SO_RCVBUFFORCE,
  SO_SNDBUF,
  SO_SNDBUFFORCE,
  SO_TIMESTAMPNS,
  SOCK_CLOEXEC,
  SOCK_NONBLOCK,
  SOCK_RAW,
  SOL_PACKET,
  SOL_SOCKET,
  TP_STATUS_AVAILABLE,
  TP_STATUS_KERNEL,
  TP_STATUS_LOSING,
  TP_STATUS_SEND_REQUEST,
  TP_STATUS_USER,
  TP_STATUS_WRONG_FORMAT,
  TPACKET_V2,
} from "./constants.ts";
import {
  CMSGHDR,
  IOVEC,
  MSGHDR,
  SOCK_FILTER,
  SOCK_FPROG,
  SOCKADDR_LL,
  TPACKET2_HDR,
  TPACKET_REQ,
} from "./structs.ts";
import { interfaceInfo } from "./netif.ts";

/** Which frames the socket's BPF filter lets through (all are ethertype 0x88A2). */
export type PacketFilter = "requests" | "responses" | "none";

/** Options of {@link PacketSocket.open}. */
export interface PacketSocketOptions {
  /** RX + TX ring bytes (half each); 0 = no rings, plain recv/send. */
  ringBytes: number;
  /** Largest frame in bytes, Ethernet header included; default link MTU + 14. */
  frameSize?: number;
  /** "requests": AoE with the response flag clear; "responses": flag set; "none": all AoE. */
  filter: PacketFilter;
  /**
   * With "requests": the addresses let through from the start, attached before the socket is
   * bound, so that no frame reaches it unfiltered (see {@link filterProgram}; default: all).
   */
  addresses?: AddressFilter | null;
  /** SO_SNDBUF in bytes (SO_SNDBUFFORCE when permitted); 0 or absent = kernel default. */
  sendBuffer?: number;
  /** SO_RCVBUF in bytes (SO_RCVBUFFORCE when permitted); 0 or absent = kernel default. */
  receiveBuffer?: number;
}

const TWO_32 = 0x1_0000_0000;
const MAP_FAILED = 0xffff_ffff_ffff_ffffn;
/** The first block size tried; it halves on failure (ggaoed's choice). */
const FIRST_BLOCK_SIZE = 65536;
/** The kernel keeps one pointer per block in a page-sized vector. */
const MAX_BLOCKS = PAGE_SIZE / 8;
/** Offset of the frame data in a TPACKET_V2 TX frame: TPACKET2_HDRLEN - sizeof(sockaddr_ll). */
const TX_DATA_OFFSET = 32;
const SEND_FLAGS = MSG_DONTWAIT | MSG_NOSIGNAL;
const RECV_FLAGS = MSG_DONTWAIT | MSG_TRUNC;

const align16 = (n: number) => (n + 15) & ~15;
/** Room for the SCM_TIMESTAMPNS control message (CMSG_SPACE(16) = 32) and some spare. */
const CONTROL_BYTES = 64;

/** Advice for the errors a packet socket gets when its link changes under it. */
const LINK_ADVICE = {
  ENETDOWN: "the interface went down",
  ENXIO: "the interface went away",
  ENODEV: "the interface went away",
} as const;

interface Ring {
  blockSize: number;
  blockNr: number;
  frameSize: number;
  frameNr: number;
}

/** An AoE address (major = shelf, minor = slot) a socket's filter lets through. */
export interface AoeAddress {
  shelf: number;
  slot: number;
}

/**
 * The AoE addresses a requests filter lets through besides broadcasts (see {@link filterProgram}):
 * these only, or every address `except` these.
 */
export type AddressFilter = readonly AoeAddress[] | { readonly except: readonly AoeAddress[] };

/** Room for this many addresses in one filter (the kernel takes at most 4096 instructions). */
export const MAX_FILTER_ADDRESSES = 2000;

/**
 * The classic BPF program of ggaoed (Appendix A): accept ethertype 0x88A2 whose flags byte
 * (offset 14) has the response bit 0x08 clear ("requests") or set ("responses").
 * ```
 * 0  ldh [12]
 * 1  jeq #0x88a2, 1, 0     ; AoE -> 3
 * 2  ret #0
 * 3  ldb [14]
 * 4  and #0x08
 * 5  jeq #0, 1, 0          ; requests: R clear -> 7   (responses: jt/jf swapped)
 * 6  ret #0
 * 7  ret #0xffffffff
 * ```
 * With `addresses` (requests only: several data-path workers, docs/workers.md), a request is
 * accepted only when it is shorter than an AoE header (the catch-all worker counts it as
 * dropped), is sent to a broadcast address (major 0xffff or minor 0xff: every worker answers for
 * its own devices), or its major/minor is one of `addresses`; an empty list accepts nothing.
 * With `{ except }` (the catch-all worker), the last test is turned round: every request whose
 * major/minor is not one of `except` is accepted, and an empty list accepts every request. The
 * comparisons replace the last instruction (7), each deciding at once (no jump is longer than
 * one):
 * ```
 *    ld  #len
 *    jge #24, 1, 0          ; an AoE header long -> on
 *    ret #0xffffffff        ; short: let it be counted
 *    ldh [16]
 *    jeq #0xffff, 0, 1      ; broadcast shelf
 *    ret #0xffffffff
 *    ldb [18]
 *    jeq #0xff, 0, 1        ; broadcast slot
 *    ret #0xffffffff
 *    ld  [16]               ; major, minor, command
 *    and #0xffffff00
 *    jeq #(shelf << 16 | slot << 8), 0, 1   ; once per address
 *    ret #0xffffffff        ; except: ret #0
 *    ...
 *    ret #0                 ; except: ret #0xffffffff
 * ```
 */
export function filterProgram(
  filter: "requests" | "responses",
  addresses: AddressFilter | null = null,
): number[][] {
  const [jt, jf] = filter === "requests" ? [1, 0] : [0, 1];
  const ACCEPT = [BPF_RET | BPF_K, 0, 0, 0xffffffff];
  const REJECT = [BPF_RET | BPF_K, 0, 0, 0];
  // AoE frames of `filter`'s direction go on past these; every other frame is refused.
  const aoeOfDirection = [
    [BPF_LD | BPF_H | BPF_ABS, 0, 0, 12],
    [BPF_JMP | BPF_JEQ | BPF_K, 1, 0, ETH_P_AOE],
    REJECT,
    [BPF_LD | BPF_B | BPF_ABS, 0, 0, 14],
    [BPF_ALU | BPF_AND | BPF_K, 0, 0, 0x08],
    [BPF_JMP | BPF_JEQ | BPF_K, jt, jf, 0],
    REJECT,
  ];
  if (addresses === null) return [...aoeOfDirection, ACCEPT];
  if (filter !== "requests") throw new RangeError("filterProgram: addresses filter requests only");
  const except = "except" in addresses;
  const listed = except ? addresses.except : addresses;
  if (listed.length === 0 && !except) return [REJECT];
  if (listed.length > MAX_FILTER_ADDRESSES) {
    throw new RangeError(
      `filterProgram: at most ${MAX_FILTER_ADDRESSES} addresses, got ${listed.length}`,
    );
  }
  const [listedOut, otherOut] = except ? [REJECT, ACCEPT] : [ACCEPT, REJECT];
  const program = [
    ...aoeOfDirection,
    [BPF_LD | BPF_W | BPF_LEN, 0, 0, 0],
    [BPF_JMP | BPF_JGE | BPF_K, 1, 0, 24],
    ACCEPT,
    [BPF_LD | BPF_H | BPF_ABS, 0, 0, 16],
    [BPF_JMP | BPF_JEQ | BPF_K, 0, 1, 0xffff],
    ACCEPT,
    [BPF_LD | BPF_B | BPF_ABS, 0, 0, 18],
    [BPF_JMP | BPF_JEQ | BPF_K, 0, 1, 0xff],
    ACCEPT,
    [BPF_LD | BPF_W | BPF_ABS, 0, 0, 16],
    [BPF_ALU | BPF_AND | BPF_K, 0, 0, 0xffffff00],
  ];
  for (const a of listed) {
    program.push([BPF_JMP | BPF_JEQ | BPF_K, 0, 1, ((a.shelf << 16) | (a.slot << 8)) >>> 0]);
    program.push(listedOut);
  }
  program.push(otherOut);
  return program;
}

/** The address of `bytes`' memory (an ArrayBuffer's backing store does not move). */
function address(bytes: ArrayBufferView<ArrayBuffer>): bigint {
  return BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(bytes)));
}

function intOption(value: number): Uint8Array<ArrayBuffer> {
  const bytes = new Uint8Array(new ArrayBuffer(4));
  new DataView(bytes.buffer).setInt32(0, value, true);
  return bytes;
}

function ringRequest(ring: Ring | null): Uint8Array<ArrayBuffer> {
  const bytes = new Uint8Array(new ArrayBuffer(TPACKET_REQ.size));
  if (ring) {
    const view = new DataView(bytes.buffer);
    view.setUint32(TPACKET_REQ.blockSize, ring.blockSize, true);
    view.setUint32(TPACKET_REQ.blockNr, ring.blockNr, true);
    view.setUint32(TPACKET_REQ.frameSize, ring.frameSize, true);
    view.setUint32(TPACKET_REQ.frameNr, ring.frameNr, true);
  }
  return bytes;
}

/**
 * An AF_PACKET socket bound to one interface and ethertype 0x88A2.
 *
 * Receive: `receive()` returns the next frame (or null), `rxLength` is its length, and
 * `release()` hands it back before the next `receive()`. Send: `txBuffer()` gives room for one
 * frame (or null while the TX ring is full), `commit(length)` queues (ring) or sends (no ring)
 * it, `flush()` kicks the kernel once for all committed ring frames.
 *
 * Congestion: the kernel reports EPOLLOUT on a packet socket whenever its send buffer has room
 * (datagram_poll), even while every TX ring frame is taken; EPOLLOUT alone does not promise a
 * free frame. Retry `txBuffer()` after a flush, or on a short timer, rather than spinning on it.
 */
export class PacketSocket {
  /** The socket descriptor (register it in an Epoll: EPOLLIN, and EPOLLOUT while congested). */
  readonly fd: number;
  /** Interface name. */
  readonly ifname: string;
  /** Interface index. */
  readonly ifindex: number;
  /** Interface MAC as a 48-bit number (src/mac.ts). */
  readonly mac: number;
  /** Link MTU when opened. */
  readonly mtu: number;
  /** Largest frame handled, Ethernet header included. */
  readonly frameSize: number;
  /** Frames are received through the RX ring (else recv). */
  readonly rxRing: boolean;
  /** Frames are sent through the TX ring (else send). */
  readonly txRing: boolean;
  /** RX ring frame count (0 without RX ring). */
  readonly rxFrames: number;
  /** TX ring frame count (0 without TX ring). */
  readonly txFrames: number;
  /** Socket send buffer the kernel granted (SO_SNDBUF as read back). */
  readonly sendBufferSize: number;
  /** Socket receive buffer the kernel granted (SO_RCVBUF as read back). */
  readonly receiveBufferSize: number;

  /** Bytes of the frame returned by the last `receive()` (snap length: at most its capacity). */
  rxLength = 0;
  /** Length of that frame on the wire (larger than rxLength when truncated). */
  rxWireLength = 0;
  /**
   * Arrival time of that frame, seconds since the epoch (CLOCK_REALTIME): when the kernel
   * received it (the ring's tp_sec/tp_nsec, or SO_TIMESTAMPNS without a ring), not when it was
   * read, so that a frame that waited while the process was stopped shows its true age.
   */
  rxTimestamp = 0;
  /** Frames the kernel dropped for lack of room (PACKET_STATISTICS tp_drops). */
  kernelDrops = 0;
  /** Times `receive()` consumed a whole lap of the RX ring without finding it empty. */
  rxRingFull = 0;
  /** TX ring kicks: send(fd, NULL, 0) calls. */
  txKicks = 0;
  /** Frames the kernel refused to queue on the send path (ENOBUFS: the qdisc was full). */
  txDropped = 0;
  /** TX ring frames the kernel marked TP_STATUS_WRONG_FORMAT (not sent). */
  txWrongFormat = 0;

  /** Both rings, RX first: one mapping. */
  readonly #rings: Memory | null;
  readonly #words: Uint32Array;
  readonly #halves: Uint16Array;
  readonly #bytes: Uint8Array;
  readonly #rxFrameSize: number;
  readonly #rxMacOffset: number;
  readonly #rxOffsets: Uint32Array;
  readonly #rxViews: Uint8Array[];
  readonly #txOffsets: Uint32Array;
  readonly #txViews: Uint8Array[];
  readonly #rxBuffer: Uint8Array<ArrayBuffer>;
  /** recvmsg's struct msghdr (as u32 words), its iovec and its control buffer, made once. */
  readonly #msg = new Uint32Array(new ArrayBuffer(MSGHDR.size));
  readonly #iov = new Uint8Array(new ArrayBuffer(IOVEC.size));
  readonly #control = new Uint32Array(new ArrayBuffer(CONTROL_BYTES));
  readonly #txBuffer: Uint8Array<ArrayBuffer>;
  readonly #stats = new Uint8Array(new ArrayBuffer(8));
  readonly #statsLength = new Uint8Array(new ArrayBuffer(4));
  readonly #errorValue = new Uint8Array(new ArrayBuffer(4));
  readonly #errorLength = new Uint8Array(new ArrayBuffer(4));
  #rxIndex = 0;
  #rxLap = 0;
  #rxHeld = false;
  #txIndex = 0;
  #txReady = false;
  #txQueued = 0;
  #closed = false;

  private constructor(init: {
    fd: number;
    ifname: string;
    ifindex: number;
    mac: number;
    mtu: number;
    frameSize: number;
    rx: Ring | null;
    tx: Ring | null;
    rxMacOffset: number;
    map: Deno.PointerObject | null;
    sendBufferSize: number;
    receiveBufferSize: number;
  }) {
    this.fd = init.fd;
    this.ifname = init.ifname;
    this.ifindex = init.ifindex;
    this.mac = init.mac;
    this.mtu = init.mtu;
    this.frameSize = init.frameSize;
    this.sendBufferSize = init.sendBufferSize;
    this.receiveBufferSize = init.receiveBufferSize;
    const { rx, tx } = init;
    this.rxRing = rx !== null;
    this.txRing = tx !== null;
    this.rxFrames = rx?.frameNr ?? 0;
    this.txFrames = tx?.frameNr ?? 0;
    this.#rxFrameSize = rx?.frameSize ?? 0;
    this.#rxMacOffset = init.rxMacOffset;
    const rxBytes = rx ? rx.blockSize * rx.blockNr : 0;
    const txBytes = tx ? tx.blockSize * tx.blockNr : 0;
    this.#rings = init.map ? _adoptMapping(init.map, rxBytes + txBytes) : null;
    const buffer = this.#rings?.bytes.buffer ?? new ArrayBuffer(0);
    this.#words = new Uint32Array(buffer);
    this.#halves = new Uint16Array(buffer);
    this.#bytes = new Uint8Array(buffer);
    this.#rxOffsets = frameOffsets(rx, 0);
    this.#txOffsets = frameOffsets(tx, rxBytes);
    // Views made once: receive() and txBuffer() hand these out without allocating.
    this.#rxViews = [...this.#rxOffsets].map((o) =>
      this.#bytes.subarray(o + this.#rxMacOffset, o + this.#rxFrameSize)
    );
    this.#txViews = [...this.#txOffsets].map((o) =>
      this.#bytes.subarray(o + TX_DATA_OFFSET, o + TX_DATA_OFFSET + this.frameSize)
    );
    this.#rxBuffer = new Uint8Array(new ArrayBuffer(this.frameSize));
    const iov = new DataView(this.#iov.buffer);
    iov.setBigUint64(IOVEC.base, address(this.#rxBuffer), true);
    iov.setBigUint64(IOVEC.len, BigInt(this.#rxBuffer.length), true);
    const msg = new DataView(this.#msg.buffer);
    msg.setBigUint64(MSGHDR.iov, address(this.#iov), true);
    msg.setBigUint64(MSGHDR.iovlen, 1n, true);
    msg.setBigUint64(MSGHDR.control, address(this.#control), true);
    this.#txBuffer = new Uint8Array(new ArrayBuffer(Math.max(this.frameSize, ETH_ZLEN)));
  }

  /**
   * Opens an AoE socket on `ifname`: TPACKET_V2 rings (when `ringBytes` > 0 and the kernel
   * agrees; otherwise per direction recv/send), the BPF filter, bound to ETH_P_AOE and the
   * interface, with the requested socket buffer sizes. Throws a SysError with advice
   * (EPERM: run as root or grant CAP_NET_RAW).
   */
  static open(ifname: string, options: PacketSocketOptions): PacketSocket {
    const info = interfaceInfo(ifname);
    if (!info.ethernet && !info.loopback) {
      throw new Error(`${ifname}: not an Ethernet interface; AoE needs Ethernet`);
    }
    const frameSize = options.frameSize ?? info.mtu + ETH_HLEN;
    if (!Number.isInteger(frameSize) || frameSize < ETH_ZLEN || frameSize > 65536) {
      throw new RangeError(`PacketSocket: frameSize must be ${ETH_ZLEN}..65536, got ${frameSize}`);
    }
    // Protocol 0: the socket receives nothing until bind, so no frame of another interface, or
    // one that the filter would refuse, can slip in while it is being set up.
    const fd = check(
      libc().socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, 0),
      "socket(AF_PACKET)",
      {
        EPERM: "run as root or grant CAP_NET_RAW",
        EACCES: "run as root or grant CAP_NET_RAW",
        EAFNOSUPPORT: "the kernel lacks AF_PACKET (CONFIG_PACKET)",
      },
    );
    let map: Deno.PointerObject | null = null;
    let mapLength = 0;
    try {
      let rx: Ring | null = null;
      let tx: Ring | null = null;
      let rxMacOffset = 0;
      if (options.ringBytes > 0) {
        const headerSize = tpacketV2(fd);
        if (headerSize > 0) {
          // Where the kernel puts the Ethernet header of a V2 RX frame (tpacket_rcv): its
          // tp_hdrlen is align16(sizeof(tpacket2_hdr)) + sizeof(sockaddr_ll) = 52, and
          // macoff = align16(tp_hdrlen + max(ETH_HLEN, 16)) - ETH_HLEN = 66.
          const tpHdrlen = align16(headerSize) + SOCKADDR_LL.size;
          rxMacOffset = align16(tpHdrlen + 16) - ETH_HLEN;
          const half = Math.floor(options.ringBytes / 2);
          rx = setRing(fd, PACKET_RX_RING, half, align16(rxMacOffset + frameSize));
          tx = setRing(fd, PACKET_TX_RING, half, align16(TX_DATA_OFFSET + frameSize));
          mapLength = (rx ? rx.blockSize * rx.blockNr : 0) + (tx ? tx.blockSize * tx.blockNr : 0);
          if (mapLength > 0) {
            map = mapRings(fd, mapLength);
            if (map === null) {
              // Without the mapping neither ring is usable: give both back, use recv/send.
              if (rx) setsockopt(fd, SOL_PACKET, PACKET_RX_RING, ringRequest(null));
              if (tx) setsockopt(fd, SOL_PACKET, PACKET_TX_RING, ringRequest(null));
              rx = tx = null;
              mapLength = 0;
            }
          }
        }
      }
      if (options.filter !== "none") {
        attachFilter(fd, filterProgram(options.filter, options.addresses ?? null));
      }
      // Without an RX ring, recvmsg reads the kernel's receive time from a control message.
      if (rx === null && !setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPNS, intOption(1))) {
        throw lastError("setsockopt(SO_TIMESTAMPNS)");
      }
      bindAoe(fd, info.index, ifname);
      const sendBufferSize = bufferSize(fd, SO_SNDBUF, SO_SNDBUFFORCE, options.sendBuffer ?? 0);
      const receiveBufferSize = bufferSize(
        fd,
        SO_RCVBUF,
        SO_RCVBUFFORCE,
        options.receiveBuffer ?? 0,
      );
      return new PacketSocket({
        fd,
        ifname,
        ifindex: info.index,
        mac: info.mac,
        mtu: info.mtu,
        frameSize,
        rx,
        tx,
        rxMacOffset,
        map,
        sendBufferSize,
        receiveBufferSize,
      });
    } catch (error) {
      if (map) libc().munmap(map, BigInt(mapLength));
      libc().close(fd);
      throw error;
    }
  }

  /**
   * The next received frame, or null when none is waiting. The view starts at the Ethernet
   * header; its first `rxLength` bytes are the frame (the view may be longer). It stays valid
   * until `release()`, which must come before the next `receive()`.
   */
  receive(): Uint8Array | null {
    if (this.#rxHeld) throw new Error("PacketSocket.receive: release() the previous frame first");
    if (!this.rxRing) return this.#recv();
    const offset = this.#rxOffsets[this.#rxIndex];
    const w = offset >>> 2;
    // Status first, then the bytes (see the module comment on ordering).
    const status = this.#words[w + TPACKET2_HDR.status / 4];
    if ((status & TP_STATUS_USER) === 0) {
      this.#rxLap = 0;
      return null;
    }
    if ((status & TP_STATUS_LOSING) !== 0) this.updateKernelDrops();
    this.rxLength = this.#words[w + TPACKET2_HDR.snaplen / 4];
    this.rxWireLength = this.#words[w + TPACKET2_HDR.len / 4];
    this.rxTimestamp = this.#words[w + TPACKET2_HDR.sec / 4] +
      this.#words[w + TPACKET2_HDR.nsec / 4] / 1e9;
    if (++this.#rxLap === this.rxFrames) {
      this.rxRingFull++;
      this.#rxLap = 0;
    }
    this.#rxHeld = true;
    const mac = this.#halves[(offset + TPACKET2_HDR.mac) >>> 1];
    if (mac === this.#rxMacOffset) return this.#rxViews[this.#rxIndex];
    return this.#bytes.subarray(offset + mac, offset + this.#rxFrameSize); // not seen in practice
  }

  #recv(): Uint8Array | null {
    const buffer = this.#rxBuffer;
    const msg = this.#msg;
    msg[MSGHDR.controllen / 4] = CONTROL_BYTES; // the kernel overwrites it with what it used
    msg[MSGHDR.flags / 4] = 0;
    const n = libc().recvmsg(this.fd, msg, RECV_FLAGS);
    if (n === -1) {
      const e = errno();
      if (e === Errno.EAGAIN || e === Errno.EINTR) return null;
      throw sysError(`recvmsg(${this.ifname})`, e, LINK_ADVICE);
    }
    this.rxWireLength = n;
    this.rxLength = Math.min(n, buffer.length);
    this.rxTimestamp = this.#controlTimestamp();
    this.#rxHeld = true;
    return buffer;
  }

  /**
   * The SCM_TIMESTAMPNS time of the frame recvmsg just read (seconds since the epoch). The
   * kernel sends it first and alone (we enable no other control message); without it (the
   * kernel did not stamp the frame) the time of reading stands in.
   */
  #controlTimestamp(): number {
    const c = this.#control;
    const used = this.#msg[MSGHDR.controllen / 4];
    const data = CMSGHDR.size / 4;
    if (
      used >= CMSGHDR.size + 16 && c[CMSGHDR.level / 4] === SOL_SOCKET &&
      c[CMSGHDR.type / 4] === SCM_TIMESTAMPNS
    ) {
      return c[data] + c[data + 1] * TWO_32 + c[data + 2] / 1e9;
    }
    return Date.now() / 1000;
  }

  /** Hands the frame from `receive()` back (to the kernel, for the RX ring). */
  release(): void {
    if (!this.#rxHeld) return;
    this.#rxHeld = false;
    if (!this.rxRing) return;
    this.#words[this.#rxOffsets[this.#rxIndex] >>> 2] = TP_STATUS_KERNEL;
    if (++this.#rxIndex === this.rxFrames) this.#rxIndex = 0;
  }

  /** Adds the kernel's drop count since the last reading (PACKET_STATISTICS) to kernelDrops. */
  updateKernelDrops(): void {
    const stats = this.#stats;
    new DataView(this.#statsLength.buffer).setUint32(0, stats.length, true);
    const r = libc().getsockopt(this.fd, SOL_PACKET, PACKET_STATISTICS, stats, this.#statsLength);
    if (r === -1) throw lastError(`getsockopt(${this.ifname}, PACKET_STATISTICS)`);
    this.kernelDrops += new DataView(stats.buffer).getUint32(4, true);
  }

  /**
   * Room for the next outgoing frame (capacity `frameSize`): a TX ring frame, or an internal
   * buffer without TX ring. Null while the TX ring is full: queue the reply and retry once the
   * socket reports EPOLLOUT. Write the frame, then `commit(length)`.
   */
  txBuffer(): Uint8Array | null {
    if (!this.txRing) {
      this.#txReady = true;
      return this.#txBuffer;
    }
    const status = this.#words[this.#txOffsets[this.#txIndex] >>> 2];
    if (status !== TP_STATUS_AVAILABLE) {
      if (status !== TP_STATUS_WRONG_FORMAT) return null;
      this.txWrongFormat++;
    }
    this.#txReady = true;
    return this.#txViews[this.#txIndex];
  }

  /**
   * The memory of both rings, for I/O that fills a TX frame in place (a read whose iovec points
   * at the frame found by {@link txFrameAhead}). Null without rings.
   */
  get ringMemory(): Memory | null {
    return this.#rings;
  }

  /**
   * Where the TX ring frame `ahead` places after the one `txBuffer()` would hand out next
   * starts in {@link ringMemory} (its Ethernet header; capacity `frameSize`), if that frame is
   * free now; -1 when it is not, or without a TX ring. Frames filled ahead this way must still
   * go out in ring order: `txBuffer()` and `commit()` for each in turn.
   */
  txFrameAhead(ahead: number): number {
    if (!this.txRing || !(ahead >= 0 && ahead < this.txFrames)) return -1;
    let index = this.#txIndex + ahead;
    if (index >= this.txFrames) index -= this.txFrames;
    const offset = this.#txOffsets[index];
    const status = this.#words[offset >>> 2];
    if (status !== TP_STATUS_AVAILABLE && status !== TP_STATUS_WRONG_FORMAT) return -1;
    return offset + TX_DATA_OFFSET;
  }

  /**
   * Sends the frame written into the last `txBuffer()`: `length` bytes, padded with zeros to
   * 60 (virtual interfaces do not pad, and initiators ignore runts). With a TX ring the frame is
   * queued until `flush()`; without, it is sent now and false means EAGAIN (the socket buffer
   * is full: queue it and retry on EPOLLOUT). A frame the kernel refuses (ENOBUFS: the qdisc is
   * full; EMSGSIZE: longer than the link's MTU now) is counted in txDropped and reported as
   * sent: the initiator retransmits. Errors of the link (down, gone) throw a SysError.
   */
  commit(length: number): boolean {
    if (!this.#txReady) throw new Error("PacketSocket.commit: call txBuffer() first");
    if (!(length >= 0 && length <= this.frameSize)) {
      throw new RangeError(`PacketSocket.commit: length ${length} outside 0..${this.frameSize}`);
    }
    this.#txReady = false;
    if (!this.txRing) return this.#send(length);
    const view = this.#txViews[this.#txIndex];
    if (length < ETH_ZLEN) {
      view.fill(0, length, ETH_ZLEN);
      length = ETH_ZLEN;
    }
    const w = this.#txOffsets[this.#txIndex] >>> 2;
    // Bytes and tp_len before tp_status (see the module comment on ordering).
    this.#words[w + TPACKET2_HDR.len / 4] = length;
    this.#words[w + TPACKET2_HDR.status / 4] = TP_STATUS_SEND_REQUEST;
    if (++this.#txIndex === this.txFrames) this.#txIndex = 0;
    this.#txQueued++;
    return true;
  }

  #send(length: number): boolean {
    const buffer = this.#txBuffer;
    if (length < ETH_ZLEN) {
      buffer.fill(0, length, ETH_ZLEN);
      length = ETH_ZLEN;
    }
    for (;;) {
      if (libc().send(this.fd, buffer, big(length), SEND_FLAGS) !== -1) return true;
      const e = errno();
      if (e === Errno.EINTR) continue;
      if (e === Errno.EAGAIN) {
        this.#txReady = true; // the buffer still holds the frame: commit() may be retried
        return false;
      }
      // ENOBUFS: the qdisc is full; EMSGSIZE: the MTU shrank under us. Lose this frame only.
      if (e === Errno.ENOBUFS || e === Errno.EMSGSIZE) {
        this.txDropped++;
        return true;
      }
      throw sysError(`send(${this.ifname})`, e, LINK_ADVICE);
    }
  }

  /**
   * Asks the kernel to send every committed TX ring frame (one send(fd, NULL, 0) call). When it
   * takes only some of them (its send buffer ran out) or none (EAGAIN, ENOBUFS), the rest stay
   * queued and {@link needsKick} stays true: kick again shortly. Other errors (the link went
   * down or away) throw a SysError.
   */
  flush(): void {
    if (this.#txQueued === 0) return;
    this.txKicks++;
    let r: number;
    do r = libc().send(this.fd, null, 0n, SEND_FLAGS); while (r === -1 && errno() === Errno.EINTR);
    if (r !== -1) {
      // The kernel sends ring frames in order: if the last one committed is still a send
      // request, it stopped short of it.
      const last = this.#txIndex === 0 ? this.txFrames - 1 : this.#txIndex - 1;
      const status = this.#words[this.#txOffsets[last] >>> 2];
      this.#txQueued = status === TP_STATUS_SEND_REQUEST ? 1 : 0;
      return;
    }
    const e = errno();
    if (e === Errno.EAGAIN || e === Errno.ENOBUFS) return;
    throw sysError(`send(${this.ifname}, TX ring)`, e, LINK_ADVICE);
  }

  /** Committed TX ring frames wait for a kick (a flush that did not take them all). */
  get needsKick(): boolean {
    return this.#txQueued > 0;
  }

  /**
   * Reads and clears the socket's pending error (SO_ERROR): the kernel sets it, and reports
   * EPOLLERR, when the link goes down or away (ENETDOWN, ENXIO, ENODEV). 0 when none.
   */
  takeError(): number {
    const value = this.#errorValue;
    const length = this.#errorLength;
    new DataView(length.buffer).setUint32(0, 4, true);
    if (libc().getsockopt(this.fd, SOL_SOCKET, SO_ERROR, value, length) === -1) return errno();
    return new DataView(value.buffer).getInt32(0, true);
  }

  /**
   * Lets only requests to `addresses` (or to every address but `{ except }`'s; and broadcasts,
   * and frames too short to be AoE) through from now on, or every request again with null (see
   * {@link filterProgram}). The kernel swaps the program atomically: no frame sees neither. A
   * socket opened with another filter than "requests" must not be given addresses.
   */
  filterAddresses(addresses: AddressFilter | null): void {
    attachFilter(this.fd, filterProgram("requests", addresses));
  }

  /** Unmaps the rings and closes the socket; idempotent. Frame views become empty. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#rings?.close(); // detaches every view, then unmaps
    check(libc().close(this.fd), `close(${this.ifname})`);
  }
}

function frameOffsets(ring: Ring | null, base: number): Uint32Array {
  if (!ring) return new Uint32Array(0);
  const perBlock = Math.floor(ring.blockSize / ring.frameSize);
  const offsets = new Uint32Array(ring.frameNr);
  for (let i = 0; i < ring.frameNr; i++) {
    offsets[i] = base + Math.floor(i / perBlock) * ring.blockSize +
      (i % perBlock) * ring.frameSize;
  }
  return offsets;
}

function setsockopt(fd: number, level: number, name: number, value: Uint8Array<ArrayBuffer>) {
  return libc().setsockopt(fd, level, name, value, value.length) === 0;
}

/**
 * Switches to TPACKET_V2 and PACKET_LOSS; returns sizeof(struct tpacket2_hdr) as the kernel
 * reports it (PACKET_HDRLEN), or 0 when rings are unavailable.
 */
function tpacketV2(fd: number): number {
  if (!setsockopt(fd, SOL_PACKET, PACKET_VERSION, intOption(TPACKET_V2))) return 0;
  // Skip malformed TX frames (status WRONG_FORMAT) instead of stalling the ring on them.
  setsockopt(fd, SOL_PACKET, PACKET_LOSS, intOption(1));
  const value = intOption(TPACKET_V2);
  const length = intOption(4);
  if (libc().getsockopt(fd, SOL_PACKET, PACKET_HDRLEN, value, length) === -1) return 0;
  return new DataView(value.buffer).getInt32(0, true);
}

/**
 * Sets up one ring of about `bytes` bytes with frames of `frameSize`: blocks of 64 KiB (or the
 * smallest power of two holding a frame) halving on failure down to a page, at most
 * page/8 blocks. Returns the ring the kernel accepted, or null.
 */
function setRing(fd: number, option: number, bytes: number, frameSize: number): Ring | null {
  let blockSize = FIRST_BLOCK_SIZE;
  while (blockSize < frameSize) blockSize *= 2;
  for (; blockSize >= PAGE_SIZE && blockSize >= frameSize; blockSize /= 2) {
    const blockNr = Math.min(MAX_BLOCKS, Math.floor(bytes / blockSize));
    if (blockNr === 0) continue;
    const frameNr = Math.floor(blockSize / frameSize) * blockNr;
    const ring = { blockSize, blockNr, frameSize, frameNr };
    if (setsockopt(fd, SOL_PACKET, option, ringRequest(ring))) return ring;
  }
  return null;
}

function mapRings(fd: number, length: number): Deno.PointerObject | null {
  const p = libc().mmap(null, BigInt(length), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0n);
  if (p === null || Deno.UnsafePointer.value(p) === MAP_FAILED) return null;
  return p;
}

function attachFilter(fd: number, program: number[][]) {
  const instructions = new Uint8Array(new ArrayBuffer(program.length * SOCK_FILTER.size));
  const view = new DataView(instructions.buffer);
  program.forEach(([code, jt, jf, k], i) => {
    const at = i * SOCK_FILTER.size;
    view.setUint16(at + SOCK_FILTER.code, code, true);
    view.setUint8(at + SOCK_FILTER.jt, jt);
    view.setUint8(at + SOCK_FILTER.jf, jf);
    view.setUint32(at + SOCK_FILTER.k, k, true);
  });
  const fprog = new Uint8Array(new ArrayBuffer(SOCK_FPROG.size));
  const fview = new DataView(fprog.buffer);
  fview.setUint16(SOCK_FPROG.len, program.length, true);
  // The kernel copies the program during the call; the pointer need not outlive it.
  const address = Number(Deno.UnsafePointer.value(Deno.UnsafePointer.of(instructions)));
  fview.setUint32(SOCK_FPROG.filter, address >>> 0, true);
  fview.setUint32(SOCK_FPROG.filter + 4, Math.floor(address / TWO_32), true);
  if (!setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, fprog)) {
    throw lastError("setsockopt(SO_ATTACH_FILTER)");
  }
}

function bindAoe(fd: number, ifindex: number, ifname: string) {
  const address = new Uint8Array(new ArrayBuffer(SOCKADDR_LL.size));
  const view = new DataView(address.buffer);
  view.setUint16(SOCKADDR_LL.family, AF_PACKET, true);
  view.setUint16(SOCKADDR_LL.protocol, ETH_P_AOE, false); // network byte order
  view.setInt32(SOCKADDR_LL.ifindex, ifindex, true);
  check(libc().bind(fd, address, address.length), `bind(${ifname}, ETH_P_AOE)`, {
    ENODEV: "the interface disappeared",
    ENETDOWN: "the interface is down; bring it up",
  });
}

/** Requests `bytes` for a socket buffer (the FORCE variant first, root may exceed rmem_max),
 * then returns what the kernel granted. */
function bufferSize(fd: number, option: number, force: number, bytes: number): number {
  if (bytes > 0) {
    const value = intOption(Math.min(bytes, 0x3fffffff));
    if (!setsockopt(fd, SOL_SOCKET, force, value) && !setsockopt(fd, SOL_SOCKET, option, value)) {
      throw lastError(`setsockopt(${option === SO_SNDBUF ? "SO_SNDBUF" : "SO_RCVBUF"})`);
    }
  }
  const value = intOption(0);
  const length = intOption(4);
  check(libc().getsockopt(fd, SOL_SOCKET, option, value, length), "getsockopt(socket buffer)");
  return new DataView(value.buffer).getInt32(0, true);
}
