/**
 * The data plane: every interface, device and request of the daemon, and one turn of the event
 * loop ({@link DataPlane.runOnce}): wait on epoll, drain every ready RX ring through the protocol
 * engine, reap AIO completions, submit the device queues, kick the TX rings.
 *
 * It runs inside the data-path Worker (`worker.ts`), but has no Worker-specific code, so tests and
 * tools can drive it directly.
 *
 * @module
 */

import {
  Epoll,
  EPOLLIN,
  EPOLLOUT,
  type EventFd,
  interfaceInfo,
  listInterfaces,
  type Memory,
  PacketSocket,
} from "../../ffi/mod.ts";
import { matchesAny } from "../config/glob.ts";
import { type Config, type DeviceConfig, interfaceConfig } from "../config/types.ts";
import { BROADCAST_MAC } from "../mac.ts";
import {
  buildAdvertisement,
  classifyFrame,
  describeRequest,
  FrameClass,
  frameShelf,
  frameSlot,
  handleRequest,
  isBroadcastAddress,
  targetMatches,
} from "../protocol/engine.ts";
import { Action, Drop, WORK_FRAME_SIZE } from "../protocol/types.ts";
import type { DeviceState } from "../state/device_state.ts";
import {
  DEVICE_SHARED_LENGTH,
  DS,
  IFACE_STAT_COUNT,
  IS,
  LatencyKind,
  recordLatency,
} from "../stats.ts";
import { Device } from "./device.ts";
import { effectiveMtu, Iface } from "./iface.ts";
import type { DeviceCounters, SharedCounters } from "./messages.ts";
import { type Request, RequestPool } from "./pool.ts";

/** Log sink: the worker forwards these to the main thread's logger. */
export type LogFn = (level: "debug" | "info" | "warning" | "error", message: string) => void;

/** Opens the persistent state of a device (the file store, or memory in tools). */
export type StateOpener = (directory: string, name: string) => DeviceState;

/** Frames taken from one interface per turn before others get their share. */
const RX_BUDGET = 256;
/** How often interfaces are rescanned for hotplug, seconds. */
const RESCAN_INTERVAL = 1;

// epoll tokens: kind * 2^20 + index
const TOKEN_IFACE = 1 << 20;
const TOKEN_AIO = 2 << 20;
const TOKEN_TIMER = 3 << 20;
const TOKEN_WAKE = 4 << 20;
const TOKEN_INDEX = (1 << 20) - 1;

function sharedCounters(count: number): Float64Array {
  return new Float64Array(new SharedArrayBuffer(count * 8));
}

export interface DataPlaneOptions {
  config: Config;
  log: LogFn;
  openState: StateOpener;
  /** Wakes the loop from another thread (the worker's command channel), if any. */
  wake?: EventFd;
  /** Requests in flight at most; default from the devices' queue lengths. */
  poolSize?: number;
}

export class DataPlane {
  #config: Config;
  readonly #log: LogFn;
  readonly #openState: StateOpener;
  readonly #epoll = Epoll.open(64);
  readonly #pool: RequestPool;
  /** Indexed by Device.index / Iface.index; null where one was removed. */
  readonly #devices: (Device | null)[] = [];
  readonly #ifaces: (Iface | null)[] = [];
  readonly #deviceCounters = new Map<string, Float64Array>();
  readonly #ifaceCounters = new Map<string, Float64Array>();
  readonly #active: Device[] = [];
  readonly #scratch = new Uint8Array(WORK_FRAME_SIZE);
  #now = 0;
  #lastRescan = 0;
  #accepting = true;
  /** Set when the wake eventfd fired during the last turn. */
  woken = false;

  constructor(options: DataPlaneOptions) {
    this.#config = options.config;
    this.#log = options.log;
    this.#openState = options.openState;
    const wanted = options.poolSize ??
      options.config.devices.reduce((sum, d) => sum + 2 * d.queueLength, 64);
    this.#pool = new RequestPool(Math.max(256, Math.min(wanted, 8192)));
    if (options.wake) this.#epoll.add(options.wake.fd, EPOLLIN, TOKEN_WAKE);
    this.#now = wallClock();
  }

  /** Opens the devices and interfaces of the configuration and advertises every device. */
  start(): void {
    for (const d of this.#config.devices) this.#openDevice(d);
    if (!this.#devices.some((d) => d)) {
      throw new Error("no valid devices: every device failed to open (see the errors above)");
    }
    this.#rescanInterfaces();
  }

  /** Live devices, in configuration order. */
  get devices(): Device[] {
    return this.#devices.filter((d): d is Device => d !== null);
  }

  /** Live interfaces, in discovery order. */
  get interfaces(): Iface[] {
    return this.#ifaces.filter((i): i is Iface => i !== null);
  }

  /** Counters of every device and interface (shared memory: the main thread reads them). */
  counters(): { devices: DeviceCounters[]; interfaces: SharedCounters[] } {
    return {
      devices: this.devices.map((d) => ({
        name: d.name,
        shelf: d.shelf,
        slot: d.slot,
        stats: d.stats,
      })),
      interfaces: this.interfaces.map((i) => ({ name: i.name, stats: i.stats })),
    };
  }

  /** Requests in flight (pool slots in use). */
  get inFlight(): number {
    return this.#pool.inUse;
  }

  /**
   * One turn of the loop. `timeoutMs` caps the wait; the plane waits less when it has work
   * pending (a stalled queue, a congested interface).
   */
  runOnce(timeoutMs: number): void {
    this.woken = false;
    const n = this.#epoll.wait(this.#nextTimeout(timeoutMs));
    this.#now = wallClock();
    for (let i = 0; i < n; i++) {
      const token = this.#epoll.tokenAt(i);
      const index = token & TOKEN_INDEX;
      switch (token - index) {
        case TOKEN_IFACE: {
          const ifc = this.#ifaces[index];
          if (!ifc) break;
          if (this.#epoll.eventsAt(i) & EPOLLOUT) this.#drainTx(ifc);
          if (this.#accepting) this.#drainRx(ifc);
          break;
        }
        case TOKEN_AIO:
          this.#devices[index]?.reap();
          this.#activate(this.#devices[index]);
          break;
        case TOKEN_TIMER: {
          const dev = this.#devices[index];
          if (dev) {
            dev.timerExpired();
            this.#activate(dev);
          }
          break;
        }
        case TOKEN_WAKE:
          this.woken = true;
          break;
      }
    }
    this.#runDevices();
    for (const ifc of this.#ifaces) {
      if (!ifc) continue;
      if (ifc.congested) this.#drainTx(ifc);
      ifc.flush();
    }
    if (this.#now - this.#lastRescan >= RESCAN_INTERVAL) this.#rescanInterfaces();
  }

  /** Stops taking requests (shutdown); in-flight I/O still completes and is answered. */
  stopAccepting(): void {
    this.#accepting = false;
  }

  /** True while any request is queued, in the kernel, or waiting for TX room. */
  get busy(): boolean {
    return this.#pool.inUse > 0;
  }

  /** Applies a new configuration (SIGHUP / ggaoectl reload). */
  reload(config: Config): void {
    const old = new Map(this.devices.map((d) => [d.name, d]));
    const keep = new Set<string>();
    this.#config = config;
    for (const d of config.devices) {
      const cur = old.get(d.name);
      if (cur && JSON.stringify(cur.config) === JSON.stringify(d)) {
        keep.add(d.name);
        try {
          if (cur.refreshSize()) {
            this.#log(
              "info",
              `disk/${d.name}: New size ${humanSize(cur.size)} (sectors ${cur.sectors})`,
            );
          }
        } catch (e) {
          this.#log("error", `disk/${d.name}: cannot re-read the size: ${(e as Error).message}`);
        }
        continue;
      }
      if (cur) {
        this.#log("info", `disk/${d.name}: configuration changed, reopening`);
        this.#closeDevice(cur);
      }
      this.#openDevice(d);
    }
    for (const [name, dev] of old) {
      if (!keep.has(name) && !config.devices.some((d) => d.name === name)) {
        this.#log("info", `disk/${name}: removed from the configuration, closing`);
        this.#closeDevice(dev);
      }
    }
    this.#rescanInterfaces(true);
  }

  /** Closes everything. Queued requests are dropped; call after the plane went idle. */
  close(): void {
    for (const dev of this.devices) this.#closeDevice(dev);
    for (const ifc of this.interfaces) this.#closeIface(ifc);
    this.#epoll.close();
    this.#pool.close();
  }

  /** Device states, for the control interface. */
  deviceStates(): { name: string; state: DeviceState }[] {
    return this.devices.map((d) => ({ name: d.name, state: d.state }));
  }

  // ---- receive ----

  #drainRx(ifc: Iface): void {
    const sock = ifc.socket;
    const st = ifc.stats;
    let n = 0;
    while (n < RX_BUDGET) {
      const rx = sock.receive();
      if (rx === null) break;
      n++;
      try {
        this.#handleFrame(ifc, rx, sock.rxLength, sock.rxTimestamp);
      } catch (e) {
        // A bug must not take the target down: drop the frame, count it, say what happened.
        st[IS.dropped]++;
        this.#log("error", `net/${ifc.name}: frame dropped: ${(e as Error).stack ?? e}`);
      }
      sock.release();
    }
    if (n > 0) st[IS.rx_runs]++;
    ifc.countSocketEvents();
  }

  #handleFrame(ifc: Iface, rx: Uint8Array, length: number, arrival: number): void {
    const st = ifc.stats;
    const cls = classifyFrame(rx, length);
    if (cls === FrameClass.SHORT) {
      st[IS.dropped]++;
      return;
    }
    st[IS.rx_cnt]++;
    st[IS.rx_bytes] += length;
    if (cls !== FrameClass.OK) {
      st[IS.ignored]++;
      return;
    }
    const shelf = frameShelf(rx);
    const slot = frameSlot(rx);
    const devices = ifc.devices;
    let matched = 0;
    for (let i = 0; i < devices.length; i++) {
      const dev = devices[i];
      if (!targetMatches(dev, shelf, slot)) continue;
      matched++;
      this.#serve(ifc, dev, rx, length, arrival);
    }
    if (matched === 0) st[IS.ignored]++;
    else if (isBroadcastAddress(shelf, slot)) st[IS.broadcast]++;
  }

  #serve(ifc: Iface, dev: Device, rx: Uint8Array, length: number, arrival: number): void {
    const r = this.#pool.get();
    if (r === null) {
      dev.stats[DS.queue_drop]++;
      return;
    }
    const ds = dev.stats;
    ds[DS.queue_length] += dev.inFlight;
    if (dev.inFlight >= dev.bufferCount) ds[DS.queue_over]++;
    dev.inFlight++;
    r.device = dev.index;
    r.iface = ifc.index;
    r.arrival = arrival;
    if (dev.config.traceIo) this.#log("debug", `disk/${dev.name}: ${describeRequest(rx, length)}`);
    switch (handleRequest(rx, length, ifc, dev, r)) {
      case Action.DROP:
        if (r.drop === Drop.SHORT) ifc.stats[IS.dropped]++;
        this.#finish(r, dev);
        break;
      case Action.REPLY:
        this.#reply(r);
        break;
      default:
        if (!dev.enqueue(r)) this.#activate(dev);
    }
  }

  // ---- devices ----

  #activate(dev: Device | null | undefined): void {
    if (dev && !this.#active.includes(dev)) this.#active.push(dev);
  }

  #runDevices(): void {
    const active = this.#active;
    let keep = 0;
    for (let i = 0; i < active.length; i++) {
      const dev = active[i];
      if (this.#devices[dev.index] !== dev) continue; // closed meanwhile
      if (dev.runnable) dev.submit();
      if (dev.runnable) active[keep++] = dev; // stalled with work left: try again next turn
    }
    active.length = keep;
  }

  /** Reserves the TX frame that the reply to read `r` will go out in (Device's ReplyPlacer). */
  readonly #place = (r: Request): Memory | null => {
    const ifc = this.#ifaces[r.iface];
    return ifc ? ifc.reserveReply(r) : null;
  };

  /** A request finished on its device (reply built): send it. */
  readonly #completed = (r: Request): void => {
    this.#reply(r);
  };

  // ---- transmit ----

  #reply(r: Request): void {
    const ifc = this.#ifaces[r.iface];
    const dev = this.#devices[r.device];
    if (!ifc) {
      // The interface went away while the request was in progress: nothing to send on.
      this.#finish(r, dev);
      return;
    }
    if (ifc.send(r)) this.#sent(r);
    else if (!ifc.socket.txRing) {
      // sendto() said EAGAIN: EPOLLOUT tells when the socket has room again. (With a TX ring
      // EPOLLOUT does not mean a free ring frame; the loop retries every millisecond instead.)
      this.#epoll.modify(ifc.socket.fd, EPOLLIN | EPOLLOUT, TOKEN_IFACE + ifc.index);
    }
  }

  readonly #sent = (r: Request): void => {
    const dev = this.#devices[r.device];
    if (dev) {
      const dt = this.#now - r.arrival;
      const ds = dev.stats;
      if (r.action === Action.READ) recordLatency(ds, LatencyKind.READ, dt);
      else if (r.action === Action.WRITE) recordLatency(ds, LatencyKind.WRITE, dt);
      else recordLatency(ds, LatencyKind.OTHER, dt);
    }
    this.#finish(r, dev);
  };

  #finish(r: Request, dev: Device | null | undefined): void {
    if (dev && this.#devices[r.device] === dev) dev.inFlight--;
    this.#pool.put(r);
  }

  #drainTx(ifc: Iface): void {
    if (ifc.drainQueue(this.#sent) && !ifc.socket.txRing) {
      this.#epoll.modify(ifc.socket.fd, EPOLLIN, TOKEN_IFACE + ifc.index);
    }
  }

  #nextTimeout(cap: number): number {
    for (const dev of this.#active) if (dev.runnable) return 0;
    for (const ifc of this.#ifaces) if (ifc?.congested) return Math.min(cap, 1);
    return cap;
  }

  // ---- setup and teardown ----

  #openDevice(d: DeviceConfig): Device | null {
    let stats = this.#deviceCounters.get(d.name);
    if (!stats) {
      stats = sharedCounters(DEVICE_SHARED_LENGTH);
      this.#deviceCounters.set(d.name, stats);
    }
    let index = this.#devices.indexOf(null);
    if (index < 0) index = this.#devices.length;
    try {
      const state = this.#openState(this.#config.global.stateDirectory, d.name);
      const dev = new Device(index, d, state, stats, this.#pool, this.#completed, this.#place);
      this.#devices[index] = dev;
      this.#epoll.add(dev.events.fd, EPOLLIN, TOKEN_AIO + index);
      if (dev.timer) this.#epoll.add(dev.timer.fd, EPOLLIN, TOKEN_TIMER + index);
      const size = humanSize(dev.size);
      this.#log(
        "info",
        `disk/${d.name}: Shelf ${d.shelf}, slot ${d.slot}, path '${d.path}' (size ${size}, sectors ${dev.sectors}) opened${
          d.readOnly ? " R/O" : ""
        }${d.directIo ? ", using direct I/O" : ""}`,
      );
      return dev;
    } catch (e) {
      this.#log("error", `disk/${d.name}: ${(e as Error).message}; device not exported`);
      return null;
    }
  }

  #closeDevice(dev: Device): void {
    this.#quiesce(dev);
    for (const r of dev.takeQueued()) this.#finish(r, dev);
    try {
      this.#epoll.remove(dev.events.fd);
      if (dev.timer) this.#epoll.remove(dev.timer.fd);
    } catch { /* already gone */ }
    for (const ifc of this.interfaces) ifc.devices = ifc.devices.filter((d) => d !== dev);
    const i = this.#active.indexOf(dev);
    if (i >= 0) this.#active.splice(i, 1);
    this.#devices[dev.index] = null;
    dev.close();
  }

  /** Waits (bounded) for a device's in-kernel I/O so that its requests return to the pool. */
  #quiesce(dev: Device): void {
    const deadline = performance.now() + 5000;
    const nap = new Int32Array(new SharedArrayBuffer(4));
    while (dev.pending > 0 && performance.now() < deadline) {
      dev.reap();
      if (dev.pending > 0) Atomics.wait(nap, 0, 0, 1);
    }
  }

  /** Opens new interfaces, closes vanished or changed ones, re-attaches devices. */
  #rescanInterfaces(reattach = false): void {
    this.#lastRescan = this.#now;
    const cfg = this.#config;
    const seen = new Set<string>();
    const fresh: Iface[] = [];
    let names: string[] = [];
    try {
      names = listInterfaces();
    } catch (e) {
      this.#log("error", `net: cannot list interfaces: ${(e as Error).message}`);
    }
    for (const name of names) {
      if (!matchesAny(cfg.global.interfaces, name)) continue;
      let info;
      try {
        info = interfaceInfo(name);
      } catch {
        continue; // vanished between the listing and the query
      }
      if (!info.up || !(info.ethernet || info.loopback)) continue;
      seen.add(name);
      const current = this.interfaces.find((i) => i.name === name);
      const icfg = interfaceConfig(cfg, name);
      if (current) {
        const same = current.socket.ifindex === info.index && current.socket.mac === info.mac &&
          current.socket.mtu === info.mtu &&
          JSON.stringify(current.config) === JSON.stringify(icfg);
        if (same) continue;
        this.#log("info", `net/${name}: link or settings changed, reopening`);
        this.#closeIface(current);
      }
      const ifc = this.#openIface(name, icfg, info.mtu);
      if (ifc) fresh.push(ifc);
    }
    for (const ifc of this.interfaces) {
      if (!seen.has(ifc.name)) {
        this.#log("info", `net/${ifc.name}: interface is gone or down, closing`);
        this.#closeIface(ifc);
      }
    }
    if (reattach || fresh.length > 0) this.#attachAll(reattach, fresh);
  }

  #openIface(
    name: string,
    icfg: ReturnType<typeof interfaceConfig>,
    linkMtu: number,
  ): Iface | null {
    let stats = this.#ifaceCounters.get(name);
    if (!stats) {
      stats = sharedCounters(IFACE_STAT_COUNT);
      this.#ifaceCounters.set(name, stats);
    }
    let index = this.#ifaces.indexOf(null);
    if (index < 0) index = this.#ifaces.length;
    try {
      const socket = PacketSocket.open(name, {
        ringBytes: icfg.ringBufferSize,
        filter: "requests",
        sendBuffer: icfg.sendBufferSize,
        receiveBuffer: icfg.receiveBufferSize,
        frameSize: effectiveMtu(linkMtu, icfg.mtu) + 14,
      });
      const ifc = new Iface(index, name, socket, icfg, stats);
      this.#ifaces[index] = ifc;
      this.#epoll.add(socket.fd, EPOLLIN, TOKEN_IFACE + index);
      if (icfg.sendBufferSize || icfg.receiveBufferSize) {
        this.#log(
          "info",
          `net/${name}: The send/receive buffer is ${socket.sendBufferSize}/${socket.receiveBufferSize} bytes`,
        );
      }
      this.#log(
        "info",
        `net/${name}: Listener started (MTU: ${ifc.mtu}, ${
          socket.rxRing ? `${socket.rxFrames} RX` : "recvfrom"
        }/${socket.txRing ? `${socket.txFrames} TX ring frames` : "sendto"})`,
      );
      return ifc;
    } catch (e) {
      this.#log("error", `net/${name}: ${(e as Error).message}`);
      return null;
    }
  }

  #closeIface(ifc: Iface): void {
    ifc.dropQueue((r) => this.#finish(r, this.#devices[r.device]));
    try {
      this.#epoll.remove(ifc.socket.fd);
    } catch { /* already gone */ }
    this.#ifaces[ifc.index] = null;
    ifc.close();
  }

  /** Attaches devices to interfaces by pattern; advertises where a device is new on one. */
  #attachAll(all: boolean, fresh: Iface[]): void {
    for (const ifc of this.interfaces) {
      const before = new Set(ifc.devices);
      ifc.devices = this.devices.filter((d) => matchesAny(d.config.interfaces, ifc.name));
      const advertised = ifc.devices.reduce((sum, d) => sum + d.bufferCount, 0);
      if (ifc.socket.rxRing && ifc.socket.rxFrames < advertised) {
        // An initiator may keep Buffer Count requests outstanding; more than the ring holds are
        // dropped by the kernel and cost it a retransmit timeout.
        this.#log(
          "warning",
          `net/${ifc.name}: the RX ring holds ${ifc.socket.rxFrames} frames, fewer than the ${advertised} requests its devices advertise (queue-length); raise ring-buffer-size`,
        );
      }
      for (const dev of ifc.devices) {
        if (all || fresh.includes(ifc) || !before.has(dev)) this.#advertise(dev, ifc);
      }
    }
  }

  /** Sends the unsolicited Query Config reply (REFERENCE 2.10). */
  #advertise(dev: Device, ifc: Iface): void {
    const targets = dev.accept && !dev.config.broadcast ? [...dev.accept].sort((a, b) => a - b) : [
      BROADCAST_MAC,
    ];
    for (const dst of targets) {
      const len = buildAdvertisement(dev, ifc, dst, this.#scratch);
      if (!ifc.sendFrame(this.#scratch, len)) {
        this.#log("warning", `net/${ifc.name}: no TX room for the advertisement of ${dev.name}`);
      }
    }
    ifc.flush();
  }
}

/**
 * Wall-clock seconds with sub-millisecond resolution: the same clock as the kernel's RX
 * timestamps, which are the requests' arrival times (service times and max-delay sorting).
 */
function wallClock(): number {
  return (performance.timeOrigin + performance.now()) / 1000;
}

/** The original's size format: KiB, then MiB/GiB/TiB while the value is >= 10240. */
export function humanSize(bytes: number): string {
  const units = ["KiB", "MiB", "GiB", "TiB"];
  let v = Math.floor(bytes / 1024);
  let u = 0;
  while (v >= 10240 && u < units.length - 1) {
    v = Math.floor(v / 1024);
    u++;
  }
  return `${v} ${units[u]}`;
}
