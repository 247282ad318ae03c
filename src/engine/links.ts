/**
 * The interfaces the data plane listens on: which links there are (rtnetlink notifications in
 * the epoll loop, a full rescan on any of them and a slow one as a safety net), opening a packet
 * socket on each that matches the configuration and is up, closing those that went away, down,
 * changed (index, MTU, MAC, settings) or whose socket failed.
 *
 * A closed Iface is never reused: a new one (a new object, a new generation) is opened when
 * the link comes back, so a request that holds the old one is never answered through the new.
 *
 * @module
 */

import {
  type AddressFilter,
  dumpLinks,
  type Epoll,
  EPOLLIN,
  EPOLLOUT,
  type InterfaceInfo,
  interfaceInfo,
  LinkMonitor,
  listInterfaces,
  PacketSocket,
} from "../../ffi/mod.ts";
import { matchesAny } from "../config/glob.ts";
import { type Config, type InterfaceConfig, interfaceConfig } from "../config/types.ts";
import { IFACE_STAT_COUNT } from "../stats.ts";
import { effectiveMtu, Iface } from "./iface.ts";
import type { Request } from "./pool.ts";

/**
 * How often interfaces are rescanned, seconds: a safety net while rtnetlink tells of every
 * change (docs/decisions.md §4.3); the only way to notice changes when it cannot be had.
 */
const RESCAN_INTERVAL = 30;
const RESCAN_INTERVAL_WITHOUT_NETLINK = 1;

export interface InterfacesOptions {
  epoll: Epoll;
  /** epoll token of interface i: `token + i`. */
  token: number;
  /** epoll token of the rtnetlink socket. */
  netlinkToken: number;
  log: (level: "info" | "warning" | "error", message: string) => void;
  /** Releases a request whose reply will not be sent (its interface closed). */
  drop: (r: Request) => void;
  /**
   * Count socket failures in `link_errors`: false in all workers but the catch-all, since a
   * link that fails fails every worker's socket on it (docs/workers.md). Default true.
   */
  countsLinkErrors?: boolean;
  /**
   * The address filter a new socket on interface `name` starts with, and its key (see
   * Iface.addressFilter); null: every request. Attached before the socket is bound, so that a
   * socket opened for a link that came up never sees other workers' requests.
   */
  addressFilter?: (name: string) => { addresses: AddressFilter; key: string } | null;
}

export class Interfaces {
  /** By Iface.index; null where one was closed. */
  readonly byIndex: (Iface | null)[] = [];
  readonly #options: InterfacesOptions;
  readonly #counters = new Map<string, Float64Array>();
  /** Link change notifications (rtnetlink), or null when they cannot be had. */
  readonly #links: LinkMonitor | null;
  readonly #interval: number;
  #lastRescan = -Infinity;
  #rescanSoon = false;
  /** Any link event: the interfaces are rescanned at the end of the turn. */
  readonly #onLinkEvent = () => {
    this.#rescanSoon = true;
  };

  constructor(options: InterfacesOptions) {
    this.#options = options;
    let links: LinkMonitor | null = null;
    try {
      links = LinkMonitor.open();
      options.epoll.add(links.fd, EPOLLIN, options.netlinkToken);
    } catch (e) {
      links?.close();
      links = null;
      options.log(
        "warning",
        `net: no rtnetlink link notifications (${
          (e as Error).message
        }); interfaces are rescanned every ${RESCAN_INTERVAL_WITHOUT_NETLINK} s instead`,
      );
    }
    this.#links = links;
    this.#interval = links ? RESCAN_INTERVAL : RESCAN_INTERVAL_WITHOUT_NETLINK;
  }

  /** Open interfaces, in discovery order. */
  get list(): Iface[] {
    return this.byIndex.filter((i): i is Iface => i !== null);
  }

  /** Reads the link notifications; any of them (or lost ones) asks for a rescan. */
  readLinkEvents(): void {
    try {
      if (this.#links!.drain(this.#onLinkEvent) === "overrun") this.#rescanSoon = true;
    } catch (e) {
      this.#options.log("error", `net: reading link notifications: ${(e as Error).message}`);
      this.#rescanSoon = true;
    }
  }

  /**
   * Why a rescan is due at monotonic time `now` ("a link notification", or "the periodic
   * check" every RESCAN_INTERVAL s), or null when none is.
   */
  due(now: number): string | null {
    if (this.#rescanSoon) return "a link notification";
    return now - this.#lastRescan >= this.#interval ? "the periodic check" : null;
  }

  /**
   * Opens new interfaces, closes vanished or changed ones; returns the ones opened. Open
   * failures are logged, and collected in `failures` when given.
   */
  rescan(config: Config, now: number, failures?: string[]): Iface[] {
    this.#lastRescan = now;
    this.#rescanSoon = false;
    const log = this.#options.log;
    const seen = new Set<string>();
    const fresh: Iface[] = [];
    for (const info of this.#linkList()) {
      const name = info.name;
      if (!matchesAny(config.global.interfaces, name)) continue;
      if (!info.up || !(info.ethernet || info.loopback)) continue;
      seen.add(name);
      const current = this.list.find((i) => i.name === name);
      const icfg = interfaceConfig(config, name);
      if (current) {
        const same = current.socket.ifindex === info.index && current.socket.mac === info.mac &&
          current.socket.mtu === info.mtu &&
          JSON.stringify(current.config) === JSON.stringify(icfg);
        if (same) continue;
        log("info", `net/${name}: link or settings changed, reopening`);
        this.close(current);
      }
      const ifc = this.#open(name, icfg, info.mtu, failures);
      if (ifc) fresh.push(ifc);
    }
    for (const ifc of this.list) {
      if (!seen.has(ifc.name)) {
        log("info", `net/${ifc.name}: interface is gone or down, closing`);
        this.close(ifc);
      }
    }
    return fresh;
  }

  /** Closes every interface whose socket failed; the next rescan reopens it if it can. */
  closeFailed(): void {
    for (const ifc of this.byIndex) {
      if (!ifc || ifc.failure === null) continue;
      this.#options.log(
        "warning",
        `net/${ifc.name}: ${ifc.failure}; closing it (its requests in progress are dropped, the initiators retransmit), it is reopened when the link is usable`,
      );
      this.close(ifc);
      this.#rescanSoon = true;
    }
  }

  /** Watches `ifc`'s socket for EPOLLOUT (replies wait for room) or stops. */
  watchOut(ifc: Iface, on: boolean): void {
    try {
      this.#options.epoll.modify(
        ifc.socket.fd,
        on ? EPOLLIN | EPOLLOUT : EPOLLIN,
        this.#options.token + ifc.index,
      );
    } catch (e) {
      ifc.fail((e as Error).message);
    }
  }

  /** Closes `ifc`: its queued replies are dropped. */
  close(ifc: Iface): void {
    ifc.dropQueue(this.#options.drop);
    try {
      this.#options.epoll.remove(ifc.socket.fd);
    } catch { /* already gone */ }
    this.byIndex[ifc.index] = null;
    try {
      ifc.close();
    } catch (e) {
      this.#options.log("warning", `net/${ifc.name}: closing: ${(e as Error).message}`);
    }
  }

  /** Closes every interface and the notifications. */
  closeAll(): void {
    for (const ifc of this.list) this.close(ifc);
    this.#links?.close();
  }

  /** Every link with its index, flags, MTU and MAC: one rtnetlink dump (or ioctls per link). */
  #linkList(): (InterfaceInfo & { name: string })[] {
    const log = this.#options.log;
    try {
      return dumpLinks();
    } catch (e) {
      log("warning", `net: rtnetlink dump failed (${(e as Error).message}); asking each link`);
    }
    const out: (InterfaceInfo & { name: string })[] = [];
    let names: string[] = [];
    try {
      names = listInterfaces();
    } catch (e) {
      log("error", `net: cannot list interfaces: ${(e as Error).message}`);
    }
    for (const name of names) {
      try {
        out.push({ ...interfaceInfo(name), name });
      } catch { /* vanished between the listing and the query */ }
    }
    return out;
  }

  #open(
    name: string,
    icfg: InterfaceConfig,
    linkMtu: number,
    failures?: string[],
  ): Iface | null {
    const log = this.#options.log;
    let stats = this.#counters.get(name);
    if (!stats) {
      stats = new Float64Array(new SharedArrayBuffer(IFACE_STAT_COUNT * 8));
      this.#counters.set(name, stats);
    }
    let index = this.byIndex.indexOf(null);
    if (index < 0) index = this.byIndex.length;
    let socket: PacketSocket;
    const filter = this.#options.addressFilter?.(name) ?? null;
    try {
      socket = PacketSocket.open(name, {
        ringBytes: icfg.ringBufferSize,
        filter: "requests",
        addresses: filter?.addresses ?? null,
        sendBuffer: icfg.sendBufferSize,
        receiveBuffer: icfg.receiveBufferSize,
        frameSize: effectiveMtu(linkMtu, icfg.mtu) + 14,
      });
    } catch (e) {
      const message = `net/${name}: ${(e as Error).message}`;
      log("error", message);
      failures?.push(message);
      return null;
    }
    const ifc = new Iface(index, name, socket, icfg, stats, this.#options.countsLinkErrors);
    if (filter) ifc.addressFilter = filter.key;
    try {
      this.#options.epoll.add(socket.fd, EPOLLIN, this.#options.token + index);
    } catch (e) {
      ifc.close();
      log("error", `net/${name}: ${(e as Error).message}`);
      return null;
    }
    this.byIndex[index] = ifc;
    if (icfg.sendBufferSize || icfg.receiveBufferSize) {
      log(
        "info",
        `net/${name}: The send/receive buffer is ${socket.sendBufferSize}/${socket.receiveBufferSize} bytes`,
      );
    }
    log(
      "info",
      `net/${name}: Listener started (MTU: ${ifc.mtu}, ${
        socket.rxRing ? `${socket.rxFrames} RX` : "recvfrom"
      }/${socket.txRing ? `${socket.txFrames} TX ring frames` : "sendto"})`,
    );
    return ifc;
  }
}
