/**
 * Link events and link listings through rtnetlink (NETLINK_ROUTE), as the original ggaoed's
 * netlink.c does (docs/decisions.md §4.3): a {@link LinkMonitor} subscribed to RTMGRP_LINK tells the
 * data-path loop within milliseconds that an interface appeared, went up or down, was renamed,
 * changed MTU or MAC, or vanished; {@link dumpLinks} lists every link with one RTM_GETLINK dump.
 *
 * A datagram holds one or more messages, each 4-byte aligned:
 * ```
 * struct nlmsghdr (16)     nlmsg_len, nlmsg_type, nlmsg_flags, nlmsg_seq, nlmsg_pid
 * struct ifinfomsg (16)    ifi_family, ifi_type (ARPHRD_*), ifi_index, ifi_flags, ifi_change
 * struct rtattr (4) + payload, RTA_ALIGN'd, up to nlmsg_len:
 *   IFLA_ADDRESS   hardware address (6 bytes on Ethernet)
 *   IFLA_IFNAME    NUL-terminated name
 *   IFLA_MTU       u32
 * ```
 * NLMSG_DONE ends a dump; NLMSG_ERROR carries -errno (0 is an acknowledgement).
 *
 * @module
 */

import { check, Errno, lastError, sysError } from "./errno.ts";
import { big, errno, libc } from "./libc.ts";
import {
  AF_NETLINK,
  AF_UNSPEC,
  ARPHRD_ETHER,
  IFF_LOOPBACK,
  IFF_LOWER_UP,
  IFF_RUNNING,
  IFF_UP,
  IFLA_ADDRESS,
  IFLA_IFNAME,
  IFLA_MTU,
  MSG_DONTWAIT,
  MSG_TRUNC,
  NETLINK_ROUTE,
  NLA_F_NESTED,
  NLA_F_NET_BYTEORDER,
  NLM_F_DUMP,
  NLM_F_DUMP_INTR,
  NLM_F_REQUEST,
  NLMSG_ALIGNTO,
  NLMSG_DONE,
  NLMSG_ERROR,
  NLMSG_HDRLEN,
  NLMSG_OVERRUN,
  RTA_ALIGNTO,
  RTM_DELLINK,
  RTM_GETLINK,
  RTM_NEWLINK,
  RTMGRP_LINK,
  SO_RCVBUF,
  SO_RCVBUFFORCE,
  SOCK_CLOEXEC,
  SOCK_NONBLOCK,
  SOCK_RAW,
  SOL_SOCKET,
} from "./constants.ts";
import { IFINFOMSG, NLMSGERR, NLMSGHDR, RTATTR, SOCKADDR_NL } from "./structs.ts";
import { macAt } from "./mac.ts";

/** One link as rtnetlink describes it. */
export interface LinkInfo {
  /** Kernel interface index (ifi_index): stable while the link exists, reused after. */
  index: number;
  /** Interface name (IFLA_IFNAME); "" if the message had none. */
  name: string;
  /** Link type (ifi_type): ARPHRD_ETHER (1), ARPHRD_LOOPBACK (772), ... */
  type: number;
  /** Interface flags (ifi_flags): IFF_UP, IFF_RUNNING, IFF_LOOPBACK, IFF_LOWER_UP, ... */
  flags: number;
  /** IFF_UP: administratively up. */
  up: boolean;
  /** IFF_RUNNING: operationally up (carrier, not dormant). */
  running: boolean;
  /** IFF_LOWER_UP: the driver reports carrier. */
  lowerUp: boolean;
  /** IFF_LOOPBACK. */
  loopback: boolean;
  /** Link MTU (IFLA_MTU); 0 if the message had none. */
  mtu: number;
  /** Hardware address (IFLA_ADDRESS) as a 48-bit number (src/mac.ts); 0 unless 6 bytes long. */
  mac: number;
  /** ARPHRD_ETHER with a 6-byte address: AoE can run on it. */
  ethernet: boolean;
}

/** A link notification: RTM_NEWLINK ("new": appeared or changed) or RTM_DELLINK ("del"). */
export interface LinkEvent extends LinkInfo {
  /** "new" for RTM_NEWLINK (a new link or any change to one), "del" for RTM_DELLINK. */
  kind: "new" | "del";
  /** ifi_change: the flag bits that changed (0 when only attributes such as MTU changed). */
  change: number;
}

/** What {@link LinkMonitor.drain} found besides events. */
export type DrainResult = "ok" | "overrun";

/** Options of {@link LinkMonitor.open}. */
export interface LinkMonitorOptions {
  /**
   * Socket receive buffer in bytes (SO_RCVBUFFORCE, else SO_RCVBUF capped by
   * net.core.rmem_max); default 4 MiB, room for thousands of notifications between two drains.
   */
  receiveBuffer?: number;
  /** Bytes of the buffer each datagram is read into; default 64 KiB, at least 16 KiB. */
  readBuffer?: number;
}

const DEFAULT_RECEIVE_BUFFER = 4 << 20;
const DEFAULT_READ_BUFFER = 64 << 10;
const MIN_READ_BUFFER = 16 << 10;
const ATTR_TYPE_MASK = ~(NLA_F_NESTED | NLA_F_NET_BYTEORDER) & 0xffff;
const RECV_FLAGS = MSG_DONTWAIT | MSG_TRUNC;
/** How many times {@link dumpLinks} restarts a dump the kernel interrupted or could not finish. */
const DUMP_ATTEMPTS = 5;

const SOCKET_ADVICE = {
  EAFNOSUPPORT: "the kernel lacks netlink (CONFIG_NET)",
  EPROTONOSUPPORT: "the kernel lacks rtnetlink",
} as const;
const RECV_ADVICE = {
  EBADF: "the monitor's descriptor was closed behind its back; open a new LinkMonitor",
  ENOTSOCK: "the monitor's descriptor was closed behind its back; open a new LinkMonitor",
} as const;

const align4 = (n: number) => (n + NLMSG_ALIGNTO - 1) & ~(NLMSG_ALIGNTO - 1);
const rtaAlign = (n: number) => (n + RTA_ALIGNTO - 1) & ~(RTA_ALIGNTO - 1);

function newLinkEvent(): LinkEvent {
  return {
    kind: "new",
    change: 0,
    index: 0,
    name: "",
    type: 0,
    flags: 0,
    up: false,
    running: false,
    lowerUp: false,
    loopback: false,
    mtu: 0,
    mac: 0,
    ethernet: false,
  };
}

/**
 * Reads rtnetlink link messages out of one buffer into one reused {@link LinkEvent}. Interface
 * names are cached by index, so a notification for a known link allocates nothing.
 */
class LinkParser {
  readonly bytes: Uint8Array<ArrayBuffer>;
  readonly view: DataView;
  readonly event = newLinkEvent();
  readonly #names = new Map<number, string>();
  readonly #decoder = new TextDecoder();

  constructor(size: number) {
    this.bytes = new Uint8Array(new ArrayBuffer(size));
    this.view = new DataView(this.bytes.buffer);
  }

  /**
   * Fills {@link event} from the RTM_NEWLINK/RTM_DELLINK message at `at`, `length` bytes long
   * (header included). False for a message that is not about a link as a whole (a bridge
   * port's AF_BRIDGE notification) or too short to hold an ifinfomsg.
   */
  parse(at: number, length: number, kind: "new" | "del"): boolean {
    const body = at + NLMSG_HDRLEN;
    if (length < NLMSG_HDRLEN + IFINFOMSG.size) return false;
    const view = this.view;
    if (view.getUint8(body + IFINFOMSG.family) !== AF_UNSPEC) return false;
    const e = this.event;
    e.kind = kind;
    e.index = view.getInt32(body + IFINFOMSG.index, true);
    e.type = view.getUint16(body + IFINFOMSG.type, true);
    const flags = view.getUint32(body + IFINFOMSG.flags, true);
    e.flags = flags;
    e.change = view.getUint32(body + IFINFOMSG.change, true);
    e.up = (flags & IFF_UP) !== 0;
    e.running = (flags & IFF_RUNNING) !== 0;
    e.lowerUp = (flags & IFF_LOWER_UP) !== 0;
    e.loopback = (flags & IFF_LOOPBACK) !== 0;
    e.name = "";
    e.mtu = 0;
    e.mac = 0;
    let addressLength = 0;
    const end = at + length;
    for (let a = body + IFINFOMSG.size; a + RTATTR.size <= end;) {
      const attrLength = view.getUint16(a + RTATTR.len, true);
      if (attrLength < RTATTR.size || a + attrLength > end) break;
      const payload = a + RTATTR.size;
      const payloadLength = attrLength - RTATTR.size;
      switch (view.getUint16(a + RTATTR.type, true) & ATTR_TYPE_MASK) {
        case IFLA_IFNAME:
          e.name = this.#name(e.index, payload, payloadLength);
          break;
        case IFLA_MTU:
          if (payloadLength >= 4) e.mtu = view.getUint32(payload, true);
          break;
        case IFLA_ADDRESS:
          addressLength = payloadLength;
          if (payloadLength === 6) e.mac = macAt(this.bytes, payload);
          break;
      }
      a += rtaAlign(attrLength);
    }
    e.ethernet = e.type === ARPHRD_ETHER && addressLength === 6;
    return true;
  }

  /** Forgets a deleted link's cached name. */
  forget(index: number): void {
    this.#names.delete(index);
  }

  #name(index: number, at: number, length: number): string {
    const bytes = this.bytes;
    let n = 0;
    let ascii = true;
    for (; n < length && bytes[at + n] !== 0; n++) if (bytes[at + n] >= 0x80) ascii = false;
    const cached = this.#names.get(index);
    if (ascii && cached !== undefined && cached.length === n) {
      let same = true;
      for (let i = 0; i < n && same; i++) same = cached.charCodeAt(i) === bytes[at + i];
      if (same) return cached;
    }
    const name = this.#decoder.decode(bytes.subarray(at, at + n));
    this.#names.set(index, name);
    return name;
  }
}

/** A snapshot of a parsed link, detached from the parser's reused event. */
function copyLink(e: LinkInfo): LinkInfo {
  return {
    index: e.index,
    name: e.name,
    type: e.type,
    flags: e.flags,
    up: e.up,
    running: e.running,
    lowerUp: e.lowerUp,
    loopback: e.loopback,
    mtu: e.mtu,
    mac: e.mac,
    ethernet: e.ethernet,
  };
}

/**
 * A NETLINK_ROUTE socket subscribed to link notifications (RTMGRP_LINK), non-blocking.
 *
 * Register {@link fd} in an Epoll for EPOLLIN; on readiness call {@link drain}. Open the monitor
 * before the first {@link dumpLinks}: every change after the dump then arrives as an event.
 */
export class LinkMonitor {
  /** The netlink socket descriptor (register it for EPOLLIN). */
  readonly fd: number;
  /** Socket receive buffer the kernel granted (SO_RCVBUF as read back; twice the request). */
  readonly receiveBufferSize: number;
  /** Times the kernel dropped notifications for lack of room (recv gave ENOBUFS). */
  overruns = 0;
  /** Datagrams longer than the read buffer (their messages past the buffer were lost). */
  truncated = 0;
  /** Link events delivered. */
  events = 0;
  readonly #parser: LinkParser;
  readonly #length: bigint;
  #closed = false;

  private constructor(fd: number, receiveBufferSize: number, readBuffer: number) {
    this.fd = fd;
    this.receiveBufferSize = receiveBufferSize;
    this.#parser = new LinkParser(readBuffer);
    this.#length = big(readBuffer);
  }

  /**
   * socket(AF_NETLINK, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, NETLINK_ROUTE) bound to
   * RTMGRP_LINK, with a large receive buffer. Needs no privilege (a larger buffer than
   * net.core.rmem_max needs CAP_NET_ADMIN; without it the kernel caps the request).
   */
  static open(options: LinkMonitorOptions = {}): LinkMonitor {
    const receiveBuffer = options.receiveBuffer ?? DEFAULT_RECEIVE_BUFFER;
    const readBuffer = options.readBuffer ?? DEFAULT_READ_BUFFER;
    if (!Number.isSafeInteger(receiveBuffer) || receiveBuffer < 1) {
      throw new RangeError(`LinkMonitor: receiveBuffer must be a positive integer`);
    }
    if (!Number.isSafeInteger(readBuffer) || readBuffer < MIN_READ_BUFFER) {
      throw new RangeError(`LinkMonitor: readBuffer must be at least ${MIN_READ_BUFFER} bytes`);
    }
    const fd = netlinkSocket();
    try {
      bindNetlink(fd, RTMGRP_LINK);
      return new LinkMonitor(fd, setReceiveBuffer(fd, receiveBuffer), readBuffer);
    } catch (error) {
      libc().close(fd);
      throw error;
    }
  }

  /** Whether {@link close} has been called. */
  get closed(): boolean {
    return this.#closed;
  }

  /**
   * Reads every pending notification (never blocks) and calls `onEvent` once per link event,
   * in the kernel's order. The event object is reused: copy what you keep. `onEvent` must not
   * throw (the rest of the datagram would be lost).
   *
   * Returns "overrun" when the kernel dropped notifications since the last drain (recv gave
   * ENOBUFS) or a datagram did not fit the read buffer: events were lost, so the caller must
   * rescan (e.g. {@link dumpLinks}); the events delivered are still valid. "ok" otherwise,
   * including when nothing was pending. Other errors throw a SysError.
   */
  drain(onEvent: (event: Readonly<LinkEvent>) => void): DrainResult {
    if (this.#closed) throw new Error("LinkMonitor.drain: the monitor is closed");
    const parser = this.#parser;
    let result: DrainResult = "ok";
    for (;;) {
      const n = libc().recv(this.fd, parser.bytes, this.#length, RECV_FLAGS);
      if (n === -1) {
        const e = errno();
        if (e === Errno.EAGAIN) return result;
        if (e === Errno.EINTR) continue;
        if (e === Errno.ENOBUFS) {
          // The kernel reports the loss once and keeps what it had queued: read on.
          this.overruns++;
          result = "overrun";
          continue;
        }
        throw sysError("recv(NETLINK_ROUTE link monitor)", e, RECV_ADVICE);
      }
      let length = n;
      if (n > parser.bytes.length) {
        this.truncated++;
        result = "overrun";
        length = parser.bytes.length;
      }
      if (this.#deliver(length, onEvent)) result = "overrun";
    }
  }

  /** Delivers the link events of one datagram; true if it carried an overrun notice. */
  #deliver(length: number, onEvent: (event: Readonly<LinkEvent>) => void): boolean {
    const parser = this.#parser;
    const view = parser.view;
    let overrun = false;
    for (let at = 0; at + NLMSGHDR.size <= length;) {
      const messageLength = view.getUint32(at + NLMSGHDR.len, true);
      if (messageLength < NLMSGHDR.size || at + messageLength > length) break;
      const type = view.getUint16(at + NLMSGHDR.type, true);
      if (type === RTM_NEWLINK || type === RTM_DELLINK) {
        const kind = type === RTM_NEWLINK ? "new" : "del";
        if (parser.parse(at, messageLength, kind)) {
          this.events++;
          onEvent(parser.event);
          if (kind === "del") parser.forget(parser.event.index);
        }
      } else if (type === NLMSG_OVERRUN) {
        overrun = true;
      }
      // NLMSG_NOOP, NLMSG_DONE and NLMSG_ERROR answer requests; this socket sends none.
      at += align4(messageLength);
    }
    return overrun;
  }

  /** Closes the socket; idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    check(libc().close(this.fd), "close(NETLINK_ROUTE link monitor)");
  }
}

/** The read buffer of {@link dumpLinks}, made on first use (one per thread). */
let dumpParser: LinkParser | null = null;
let dumpSequence = 0;

/**
 * Every link in this network namespace, in the kernel's order (by index), from one RTM_GETLINK
 * dump (NLM_F_REQUEST | NLM_F_DUMP) on a socket of its own. A dump the kernel marks
 * interrupted (NLM_F_DUMP_INTR: links changed meanwhile) is repeated. Throws a SysError with
 * advice if the kernel refuses.
 */
export function dumpLinks(): LinkInfo[] {
  const parser = dumpParser ??= new LinkParser(DEFAULT_READ_BUFFER);
  for (let attempt = 1;; attempt++) {
    // A fresh socket each time: an abandoned dump would keep the old one busy (EBUSY).
    const fd = netlinkSocket();
    try {
      dumpSequence = (dumpSequence + 1) >>> 0;
      const links = dumpOnce(fd, parser, dumpSequence);
      if (links !== null) return links;
    } finally {
      libc().close(fd);
    }
    if (attempt === DUMP_ATTEMPTS) {
      throw new Error(
        `RTM_GETLINK dump: links kept changing during ${DUMP_ATTEMPTS} dumps in a row; ` +
          `retry once interfaces settle`,
      );
    }
  }
}

/** Asks for a link dump and reads it to NLMSG_DONE; null if it must be repeated. */
function dumpOnce(fd: number, parser: LinkParser, sequence: number): LinkInfo[] | null {
  const request = new Uint8Array(new ArrayBuffer(NLMSGHDR.size + IFINFOMSG.size));
  const view = new DataView(request.buffer);
  view.setUint32(NLMSGHDR.len, request.length, true);
  view.setUint16(NLMSGHDR.type, RTM_GETLINK, true);
  view.setUint16(NLMSGHDR.flags, NLM_F_REQUEST | NLM_F_DUMP, true);
  view.setUint32(NLMSGHDR.seq, sequence, true);
  view.setUint8(NLMSGHDR.size + IFINFOMSG.family, AF_UNSPEC);
  // An unconnected netlink socket sends to the kernel (port 0).
  if (libc().send(fd, request, big(request.length), 0) !== request.length) {
    throw lastError("send(RTM_GETLINK dump request)");
  }
  const links: LinkInfo[] = [];
  let interrupted = false;
  for (;;) {
    const n = libc().recv(fd, parser.bytes, big(parser.bytes.length), RECV_FLAGS);
    if (n === -1) {
      const e = errno();
      if (e === Errno.EINTR) continue;
      // The kernel could not queue the next part (memory, receive buffer): dump again.
      if (e === Errno.ENOBUFS) return null;
      if (e === Errno.EAGAIN) {
        // The kernel queues each part of a dump before the recv that made room returns.
        throw new Error(
          "RTM_GETLINK dump: the kernel stopped answering before the end of the dump " +
            "(recv: EAGAIN); retry",
        );
      }
      throw sysError("recv(RTM_GETLINK dump)", e);
    }
    if (n > parser.bytes.length) {
      throw new Error(
        `RTM_GETLINK dump: a ${n}-byte datagram does not fit the ${parser.bytes.length}-byte ` +
          `buffer`,
      );
    }
    const pv = parser.view;
    for (let at = 0; at + NLMSGHDR.size <= n;) {
      const length = pv.getUint32(at + NLMSGHDR.len, true);
      if (length < NLMSGHDR.size || at + length > n) {
        throw new Error(`RTM_GETLINK dump: malformed message at byte ${at} of a ${n}-byte reply`);
      }
      const next = at + align4(length);
      if (pv.getUint32(at + NLMSGHDR.seq, true) !== sequence) {
        at = next; // not an answer to this request (the socket is ours alone: never seen)
        continue;
      }
      if ((pv.getUint16(at + NLMSGHDR.flags, true) & NLM_F_DUMP_INTR) !== 0) interrupted = true;
      const type = pv.getUint16(at + NLMSGHDR.type, true);
      if (type === NLMSG_DONE) return interrupted ? null : links;
      if (type === NLMSG_ERROR) {
        const error = length >= NLMSG_HDRLEN + NLMSGERR.size
          ? pv.getInt32(at + NLMSG_HDRLEN + NLMSGERR.error, true)
          : -Errno.EINVAL;
        if (error !== 0) throw sysError("RTM_GETLINK dump", -error);
      } else if (type === RTM_NEWLINK && parser.parse(at, length, "new")) {
        links.push(copyLink(parser.event));
      }
      at = next;
    }
  }
}

/** socket(AF_NETLINK, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, NETLINK_ROUTE). */
function netlinkSocket(): number {
  return check(
    libc().socket(AF_NETLINK, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, NETLINK_ROUTE),
    "socket(AF_NETLINK, NETLINK_ROUTE)",
    SOCKET_ADVICE,
  );
}

function bindNetlink(fd: number, groups: number): void {
  const address = new Uint8Array(new ArrayBuffer(SOCKADDR_NL.size));
  const view = new DataView(address.buffer);
  view.setUint16(SOCKADDR_NL.family, AF_NETLINK, true);
  view.setUint32(SOCKADDR_NL.groups, groups, true);
  // nl_pid 0: the kernel picks a free port id.
  check(libc().bind(fd, address, address.length), "bind(NETLINK_ROUTE, RTMGRP_LINK)", {
    EPERM: "a security policy forbids listening to link notifications",
  });
}

/** Asks for `bytes` of receive buffer (FORCE first: root may exceed rmem_max); returns the grant. */
function setReceiveBuffer(fd: number, bytes: number): number {
  const value = new Uint8Array(new ArrayBuffer(4));
  const view = new DataView(value.buffer);
  view.setInt32(0, Math.min(bytes, 0x3fffffff), true);
  if (
    libc().setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, value, 4) !== 0 &&
    libc().setsockopt(fd, SOL_SOCKET, SO_RCVBUF, value, 4) !== 0
  ) {
    throw lastError("setsockopt(NETLINK_ROUTE, SO_RCVBUF)");
  }
  const length = new Uint8Array(new ArrayBuffer(4));
  new DataView(length.buffer).setUint32(0, 4, true);
  check(
    libc().getsockopt(fd, SOL_SOCKET, SO_RCVBUF, value, length),
    "getsockopt(NETLINK_ROUTE, SO_RCVBUF)",
  );
  return view.getInt32(0, true);
}
