/**
 * The data plane: every interface, device and request of the daemon, and one turn of the event
 * loop ({@link DataPlane.runOnce}): wait on epoll, drain every ready RX ring through the protocol
 * engine, reap AIO completions, submit the device queues, kick the TX rings.
 *
 * It runs inside the data-path Worker (`worker.ts`), but has no Worker-specific code, so tests and
 * tools can drive it directly.
 *
 * Faults it rides out without stopping (none may take the daemon down, stall it, or send a reply
 * where it does not belong):
 * - a link that goes down, away, or changes (MTU, MAC, name): its interface is closed when its
 *   socket fails or the rescan sees the change, and opened afresh once the link is usable;
 *   requests of the old interface that complete later are dropped (their Iface is closed, and
 *   an Iface is never reused), and the initiator retransmits them;
 * - a reload that cannot reopen a device: the device keeps serving with its old settings and the
 *   reload reports the error; a replaced or removed device retires without blocking the loop;
 * - state that cannot be written (ENOSPC): the state files are written by the main thread
 *   (`src/state/writer.ts`); replies that acknowledge a state change wait for it, and become AoE
 *   error 3 if the write fails; serving goes on;
 * - a frame that makes the engine throw (a bug): dropped, counted, logged, its request released;
 * - a stop of the whole process (SIGSTOP, a frozen VM) or storage that hangs: requests that
 *   waited through it may have been given up by their initiator and sent to another target of
 *   the same storage, so they must never start (they would write late over newer data).
 *   Requests carry the kernel's receive time; one older than its device's `max-request-age`
 *   when it would start is dropped ({@link Device.dropStale}); when the loop did not run for
 *   longer than a device's `max-stall`, everything received before it ran again, in the rings,
 *   the socket queues and the device queues, is dropped ({@link DataPlane.runOnce});
 * - storage whose opening may block (a Ceph RBD image whose cluster is slow or unreachable): it
 *   is opened by the main thread and lent to the plane ({@link DataPlane.storageOpened}); the
 *   loop serves the other devices meanwhile. Which backend serves a device, and what it
 *   supports, is `src/storage/`'s business: the plane never asks which one it talks to.
 *
 * @module
 */

import {
  type AddressFilter,
  type AoeAddress,
  Epoll,
  EPOLLERR,
  EPOLLIN,
  EPOLLOUT,
  Errno,
  type EventFd,
  MAX_FILTER_ADDRESSES,
  type Memory,
  realtimeSeconds,
  sysError,
} from "../../ffi/mod.ts";
import { matchesAny } from "../config/glob.ts";
import { MAX_RING_KIB } from "../config/schema.ts";
import type { Config, DeviceConfig } from "../config/types.ts";
import { BROADCAST_MAC, formatMac, macAt } from "../mac.ts";
import { AOE_CMD_CFG, ATA_ERR } from "../protocol/constants.ts";
import { OFF_COMMAND, OFF_SRC } from "../protocol/header.ts";
import { OFF_CMD_STATUS } from "../protocol/ata.ts";
import {
  answersWildcard,
  buildAdvertisement,
  classifyFrame,
  completeRequest,
  describeRequest,
  FrameClass,
  frameShelf,
  frameSlot,
  handleRequest,
  isBroadcastAddress,
  setsState,
  targetMatches,
} from "../protocol/engine.ts";
import { Action, Drop, WORK_FRAME_SIZE } from "../protocol/types.ts";
import type { DeviceState, StateKind } from "../state/device_state.ts";
import { DEVICE_SHARED_LENGTH, DS, IS, LatencyKind, recordLatency } from "../stats.ts";
import { Device, type ReplyPlacer, STALL_RETRY_MS } from "./device.ts";
import type { Iface } from "./iface.ts";
import { Interfaces } from "./links.ts";
import { type ClearedState, DeviceStates } from "./states.ts";
import type {
  DeviceCounters,
  OtherDevice,
  PersistAck,
  PersistRequest,
  SharedCounters,
  SharedStateChanged,
  StateSnapshot,
  StorageFence,
  StorageFenced,
  StorageOpen,
  StorageOpened,
  StorageRelease,
  StorageSizeChanged,
  ViewOpen,
  ViewReady,
  ViewsSeen,
} from "./messages.ts";
import type { HostViewInfo } from "./messages.ts";
import { HostView, VIEW_RETRY_SECONDS, ViewAsk, ViewSet, ViewStatus } from "./views.ts";
import { viewConfig } from "../storage/views.ts";
import type { Request } from "./pool.ts";
import type { BackendIo, BackendModule, StorageLoan } from "../storage/backend.ts";
import { backendFor } from "../storage/registry.ts";

/** Log sink: the worker forwards these to the main thread's logger. */
export type LogFn = (level: "debug" | "info" | "warning" | "error", message: string) => void;

/** Frames taken from one interface per turn before others get their share. */
const RX_BUDGET = 256;
/** A retiring device still busy after this long is reported (it keeps waiting). */
const RETIRE_WARN_SECONDS = 5;
/** After a stall, RX_BUDGET passes at most over each interface drain what it received. */
const STALL_DRAIN_PASSES = 64;
/** Drops of stale requests are logged at most once per device per this many seconds. */
const STALE_LOG_SECONDS = 10;
/** Hosts of views devices seen lately are reported to the main thread this often, seconds. */
const VIEWS_SEEN_SECONDS = 5;

// epoll tokens: kind * 2^20 + index
const TOKEN_IFACE = 1 << 20;
const TOKEN_AIO = 2 << 20;
const TOKEN_TIMER = 3 << 20;
const TOKEN_WAKE = 4 << 20;
const TOKEN_NETLINK = 5 << 20;
const TOKEN_INDEX = (1 << 20) - 1;

function sharedCounters(count: number): Float64Array {
  return new Float64Array(new SharedArrayBuffer(count * 8));
}

/** Monotonic seconds (the clock of arrivals, service times, timers). */
function monotonic(): number {
  return performance.now() / 1000;
}

export interface DataPlaneOptions {
  config: Config;
  log: LogFn;
  /** Persistent state of the devices as loaded from disk, by name (missing: empty). */
  states?: ReadonlyMap<string, StateSnapshot>;
  /**
   * Hands the new contents of a state file to whoever writes it (the worker posts them to the
   * main thread); the outcome comes back through {@link DataPlane.persisted}. Without it,
   * state lives in memory only and every change counts as durable at once.
   */
  persist?: (m: PersistRequest) => void;
  /** Wakes the loop from another thread (the worker's command channel), if any. */
  wake?: EventFd;
  /**
   * Asks whoever opens lent storage (the main thread; `BackendModule.lent`) to open one, gives
   * loans back, and says when a device found this host fenced off its storage; the answers
   * come through {@link DataPlane.storageOpened} and {@link DataPlane.storageFence}. Without it
   * such devices cannot be opened.
   */
  lend?: (m: StorageOpen | StorageRelease | StorageFenced | ViewOpen | ViewsSeen) => void;
  /**
   * Let each packet socket receive only requests to this plane's devices on its interface
   * (and broadcasts): set when several data-path workers share the interfaces
   * (docs/workers.md). Off: every request, as with one worker.
   */
  filterAddresses?: boolean;
  /**
   * This plane counts the frames every worker receives (broadcasts, runts) and link failures in
   * the interface counters, and, with `filterAddresses`, its sockets receive every request but
   * those to `others`' addresses: the only worker, or the catch-all of several (docs/workers.md,
   * "Counters"). False: its sockets take its own devices' requests only, and it leaves those
   * frames to the catch-all. Default true.
   */
  catchAll?: boolean;
  /** The catch-all's: the other workers' devices (see {@link OtherDevice}); default none. */
  others?: readonly OtherDevice[];
}

/** A view the data path asked the main thread to make, or to open and lend. */
interface PendingView {
  parent: Device;
  host: HostView;
}

/** A device whose storage the main thread is opening to lend it. */
interface PendingOpen {
  config: DeviceConfig;
  /** The device it replaces (reload), which serves on until the new one is ready. */
  previous: Device | null;
  /** Opened at start: a failure counts among {@link DataPlane.failedDevices}. */
  atStart: boolean;
}

export class DataPlane {
  #config: Config;
  readonly #log: LogFn;
  readonly #persist: ((m: PersistRequest) => void) | null;
  readonly #lend:
    | ((m: StorageOpen | StorageRelease | StorageFenced | ViewOpen | ViewsSeen) => void)
    | null;
  /** Views asked of the main thread (made, or opened and lent), by request number. */
  readonly #viewOpens = new Map<number, PendingView>();
  readonly #viewLoans = new Map<number, PendingView>();
  /** When hosts of views devices were last reported as seen (monotonic seconds). */
  #viewsReportedAt = 0;
  /** Opens asked of the main thread, by request number. */
  readonly #opening = new Map<number, PendingOpen>();
  #nextOpen = 1;
  /** Loop turns: which interface kicks first (runOnce). */
  #turns = 0;
  /** Problems of the main thread's opens that ended since the last {@link takeOpenProblems}. */
  readonly #openProblems: string[] = [];
  readonly #epoll = Epoll.open(64);
  /** Indexed by Device.index / Iface.index; null where one was closed. Retiring ones included. */
  readonly #devices: (Device | null)[] = [];
  readonly #ifaces: Interfaces;
  readonly #deviceCounters = new Map<string, Float64Array>();
  readonly #states: DeviceStates;
  readonly #active: Device[] = [];
  readonly #retiring: Device[] = [];
  readonly #scratch = new Uint8Array(WORK_FRAME_SIZE);
  /** Monotonic seconds at the start of this turn. */
  #now = 0;
  /** Realtime minus monotonic at the start of this turn (converts RX ring timestamps). */
  #realtimeOffset = 0;
  /** The clock reading of the last stall found from a frame's age (see #drainRx). */
  #stallFoundAt = -Infinity;

  #accepting = true;
  readonly #filterAddresses: boolean;
  readonly #catchAll: boolean;
  #others: readonly OtherDevice[];
  /** Devices of the configuration that could not be opened at start: name and reason. */
  readonly failedDevices: { name: string; reason: string }[] = [];
  /** Set when the wake eventfd fired during the last turn. */
  woken = false;

  constructor(options: DataPlaneOptions) {
    this.#config = options.config;
    this.#log = options.log;
    this.#persist = options.persist ?? null;
    this.#lend = options.lend ?? null;
    this.#filterAddresses = options.filterAddresses ?? false;
    this.#catchAll = options.catchAll ?? true;
    this.#others = options.others ?? [];
    if (options.wake) this.#epoll.add(options.wake.fd, EPOLLIN, TOKEN_WAKE);
    this.#ifaces = new Interfaces({
      epoll: this.#epoll,
      token: TOKEN_IFACE,
      netlinkToken: TOKEN_NETLINK,
      log: this.#log,
      drop: (r) => this.#finish(r),
      countsLinkErrors: this.#catchAll,
      addressFilter: (name) => {
        if (!this.#filterAddresses) return null;
        const f = this.#addressesOn(name);
        const n = "except" in f.addresses ? f.addresses.except.length : f.addresses.length;
        // Too many for one program: opened open, and #filter logs why it cannot be filtered.
        return n <= MAX_FILTER_ADDRESSES ? f : null;
      },
    });
    this.#states = new DeviceStates({
      persist: options.persist ?? null,
      reply: (r) => this.#reply(r),
      counters: (name) => this.#deviceCounters.get(name),
      log: this.#log,
    });
    this.#tick();
    this.#states.take(options.states);
  }

  /**
   * Opens the devices and interfaces of the configuration and advertises every device. Throws
   * when no device could be opened (unless `allowNone`: one of several workers, which may have
   * none), or when interfaces match but no packet socket could be opened on any of them (no
   * CAP_NET_RAW, typically): a daemon that cannot serve must not look as if it did.
   */
  start(allowNone = false): void {
    for (const d of this.#config.devices) {
      const dev = this.#openDevice(d, null, true);
      if (typeof dev !== "string") continue;
      this.#log("error", `disk/${d.name}: ${dev}; device not exported`);
      this.failedDevices.push({ name: d.name, reason: dev });
    }
    if (!allowNone && !this.#devices.some((d) => d) && this.#opening.size === 0) {
      throw new Error("no valid devices: every device failed to open (see the errors above)");
    }
    const failures: string[] = [];
    this.#rescanInterfaces(false, failures);
    if (this.#ifaces.list.length === 0 && failures.length > 0) {
      throw new Error(`no packet socket could be opened: ${failures.join("; ")}`);
    }
    this.#tick(); // opening took time, but the loop has not been kept from running
  }

  /**
   * True while storage is being opened by the main thread: its devices start serving (or are
   * reported as failed) when the answers come ({@link storageOpened}). The loop keeps
   * serving the other devices meanwhile.
   */
  get opening(): boolean {
    return this.#opening.size > 0;
  }

  /** The problems of the main thread's opens that ended since the last call (the reload's answer). */
  takeOpenProblems(): string[] {
    return this.#openProblems.splice(0);
  }

  /** Live devices (not retiring), in configuration order. */
  get devices(): Device[] {
    return this.#devices.filter((d): d is Device => d !== null && !d.retiring && d.parent === null);
  }

  /** Live interfaces, in discovery order. */
  get interfaces(): Iface[] {
    return this.#ifaces.list;
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

  /** Requests in flight, over every device's pool (retiring ones included). */
  get inFlight(): number {
    let n = 0;
    for (const d of this.#devices) if (d && d.parent === null) n += d.inFlight;
    return n;
  }

  /** True while any request is queued, in the kernel, waiting for TX room or for a state write. */
  get busy(): boolean {
    return this.inFlight > 0;
  }

  /**
   * One turn of the loop. `timeoutMs` caps the wait; the plane waits less when it has work
   * pending (a stalled queue, a congested interface, a TX ring left unkicked).
   */
  runOnce(timeoutMs: number): void {
    this.woken = false;
    // A pause is looked for twice per turn, so that frames received during a legitimate wait
    // are never taken for stale: the last turn (and whatever ran between turns) took too long
    // (the process was stopped, or a system call blocked), or the wait returned later than its
    // timeout (the process was stopped while it waited).
    const turnStart = this.#now;
    const waitStart = monotonic();
    if (waitStart - turnStart > this.#minStall) {
      this.#tick();
      this.#stalled(waitStart - turnStart);
    }
    const timeout = this.#nextTimeout(timeoutMs);
    const n = this.#epoll.wait(timeout);
    this.#tick();
    const late = this.#now - waitStart - timeout / 1000;
    if (late > this.#minStall) this.#stalled(late);
    for (let i = 0; i < n; i++) {
      const token = this.#epoll.tokenAt(i);
      const index = token & TOKEN_INDEX;
      switch (token - index) {
        case TOKEN_IFACE: {
          const ifc = this.#ifaces.byIndex[index];
          if (ifc) this.#ifaceEvent(ifc, this.#epoll.eventsAt(i));
          break;
        }
        case TOKEN_AIO:
          this.#reap(this.#devices[index]);
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
        case TOKEN_NETLINK:
          this.#ifaces.readLinkEvents();
          break;
      }
    }
    this.#runDevices();
    // The TX kicks, from a different interface each turn: on veth a kick delivers the replies
    // and wakes their initiator, so a fixed order would always serve the same initiator first.
    const ifaces = this.#ifaces.byIndex;
    const count = ifaces.length;
    const first = count > 1 ? this.#turns++ % count : 0;
    for (let k = 0; k < count; k++) {
      const ifc = ifaces[(first + k) % count];
      if (!ifc) continue;
      if (ifc.congested) this.#drainTx(ifc);
      ifc.flush();
      ifc.retryKick();
    }
    this.#states.flush();
    this.#logDropped();
    this.#ifaces.closeFailed();
    this.#closeRetired();
    if (this.#now - this.#viewsReportedAt >= VIEWS_SEEN_SECONDS) this.reportViews();
    const rescan = this.#ifaces.due(this.#now);
    if (rescan !== null) {
      this.#log("debug", `net: rescanning the interfaces after ${rescan}`);
      this.#rescanInterfaces();
    }
  }

  /**
   * The loop did not run for `gap` seconds. For every device whose max-stall that exceeds,
   * everything received before now is stale: its queue is dropped at once, and so is every
   * frame for it still in an RX ring or socket queue (drained here, so that the count is known
   * for the log line; frames received after now are served as usual).
   */
  #stalled(gap: number): void {
    let before = 0;
    for (const dev of this.#devices) {
      if (dev && !dev.parent && gap > dev.maxStall) before += dev.stats[DS.stall_drop];
    }
    if (!this.#markStalled(gap)) return;
    if (this.#accepting) {
      for (const ifc of this.#ifaces.byIndex) {
        if (!ifc || ifc.failure !== null) continue;
        // Until the ring or socket queue is empty (bounded: a flood must not hold the loop).
        for (let pass = 0; pass < STALL_DRAIN_PASSES; pass++) {
          if (this.#drainRx(ifc) < RX_BUDGET) break;
        }
      }
    }
    let after = 0;
    for (const dev of this.#devices) {
      if (dev && !dev.parent && gap > dev.maxStall) after += dev.stats[DS.stall_drop];
    }
    this.#log(
      "warning",
      `the data path did not run for ${gap.toFixed(1)} s (longer than max-stall): dropped ${
        after - before
      } request(s) received before it ran again, unanswered and never started (their initiators may have sent them elsewhere)`,
    );
    for (const dev of this.#devices) {
      if (dev) dev.droppedLogged = dev.stats[DS.stall_drop] + dev.stats[DS.stale_drop];
    }
  }

  /**
   * Marks everything received before now as stale on every device whose max-stall `gap`
   * exceeds (its queue is dropped at once; frames still to be read are dropped as they are
   * read). Returns whether any device was.
   */
  #markStalled(gap: number): boolean {
    let any = false;
    for (const dev of this.#devices) {
      if (!dev || !(gap > dev.maxStall)) continue;
      any = true;
      dev.staleBefore = this.#now;
      dev.dropStale(this.#now);
    }
    return any;
  }

  /**
   * The time now, for work done later in a turn than the turn's clock reading. A turn that was
   * itself held up longer than max-stall (the process was stopped while it drained a ring or
   * submitted I/O, not while it waited) makes what was received before now stale, exactly as
   * a pause between turns does: without this, frames read after such a stop would be dated
   * no later than the turn's old clock reading, and look fresh.
   */
  #heldUp(minStall: number): number {
    const t = monotonic();
    const gap = t - this.#now;
    if (!(gap > minStall)) return t;
    this.#tick();
    if (this.#markStalled(gap)) {
      this.#log(
        "warning",
        `the data path was held up for ${
          gap.toFixed(1)
        } s within a turn (longer than max-stall): what it received before it ran again is dropped, unanswered and never started (their initiators may have sent them elsewhere)`,
      );
    }
    return this.#now;
  }

  /** Logs drops of stale requests, at most once per device per STALE_LOG_SECONDS. */
  #logDropped(): void {
    const now = this.#now;
    for (const dev of this.#devices) {
      if (!dev || dev.parent) continue; // a view counts into its parent's
      const st = dev.stats;
      const total = st[DS.stale_drop] + st[DS.stall_drop];
      if (total === dev.droppedLogged || now - dev.droppedLoggedAt < STALE_LOG_SECONDS) continue;
      this.#log(
        "warning",
        `disk/${dev.name}: ${
          total - dev.droppedLogged
        } request(s) dropped unanswered, never started, because they waited too long (older than max-request-age ${dev.config.maxRequestAge} s, or received before a stall longer than max-stall ${dev.config.maxStall} s); ${
          st[DS.stale_drop]
        } by age and ${st[DS.stall_drop]} by stall in all`,
      );
      dev.droppedLogged = total;
      dev.droppedLoggedAt = now;
    }
  }

  /** Stops taking requests (shutdown); in-flight I/O still completes and is answered. */
  stopAccepting(): void {
    this.#accepting = false;
  }

  /**
   * Applies a new configuration (SIGHUP / ggaoectl reload). A device whose settings changed is
   * opened anew first; only when that works does the new one take over (the old one retires:
   * it takes no new requests and closes once its last request is answered, without blocking
   * the loop). When the new one cannot be opened, the old one keeps serving with its old
   * settings. Returns the problems, one message per device (empty: all applied).
   */
  reload(
    config: Config,
    states?: ReadonlyMap<string, StateSnapshot>,
    others?: readonly OtherDevice[] | null,
  ): string[] {
    this.#config = config;
    if (others) this.#others = others;
    this.#states.take(states);
    const problems: string[] = [];
    const live = new Map(this.devices.map((d) => [d.name, d]));
    const kept: Device[] = [];
    // Removed devices retire first: a device added in their place over the same storage (a
    // rename) then finds them retiring, and waits for the writes they still have in the
    // kernel before it starts its own (Device.follow).
    for (const [name, dev] of live) {
      if (!config.devices.some((d) => d.name === name)) {
        this.#log("info", `disk/${name}: removed from the configuration, closing`);
        this.#retire(dev);
      }
    }
    for (const d of config.devices) {
      const cur = live.get(d.name);
      if (cur && JSON.stringify(cur.config) === JSON.stringify(d)) {
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
      const dev = this.#openDevice(d, cur ?? null, false);
      if (dev === null) continue; // being opened by the main thread: storageOpened finishes
      if (typeof dev === "string") {
        problems.push(
          cur
            ? `disk/${d.name}: cannot apply the new settings: ${dev}; it keeps serving with the previous ones`
            : `disk/${d.name}: ${dev}; not exported`,
        );
        if (cur) kept.push(cur);
        continue;
      }
      if (cur) {
        this.#log("info", `disk/${d.name}: reopened with the new settings`);
        this.#retire(cur);
      }
    }
    // A device kept with its old settings must not share an address with another one.
    for (const dev of kept) this.#retireOnClash(dev, problems);
    for (const p of problems) this.#log("error", p);
    this.#rescanInterfaces(true);
    return problems;
  }

  /** Retires `dev` (kept with old settings) if another device took its address. */
  #retireOnClash(dev: Device, problems: string[]): void {
    const clash = this.devices.find((o) =>
      o !== dev && o.shelf === dev.shelf && o.slot === dev.slot
    );
    if (!clash) return;
    problems.push(
      `disk/${dev.name}: its previous address e${dev.shelf}.${dev.slot} is now ${clash.name}'s; it is no longer exported`,
    );
    this.#retire(dev);
  }

  /**
   * The main thread's answer to an open: the device starts serving (replacing the one it
   * was opened for, on reload) and is advertised, or the failure is reported (start: among the
   * failed devices; reload: the previous device keeps serving, as for files).
   */
  storageOpened(m: StorageOpened): void {
    const view = this.#viewLoans.get(m.id);
    if (view) {
      this.#viewLoans.delete(m.id);
      const { parent, host } = view;
      const wanted = this.#accepting && !parent.retiring && host.status === ViewStatus.OPENING;
      if (!m.ok || !wanted) {
        if (m.ok) this.#release(m.loan.id);
        else {
          host.refuse(ViewStatus.FAILED, this.#now);
          this.#log("error", `disk/${parent.name}: host ${formatMac(host.mac)}: ${m.message}`);
        }
        return;
      }
      this.#openView(parent, host, m.loan, false);
      return;
    }
    const pending = this.#opening.get(m.id);
    this.#opening.delete(m.id);
    if (!pending || !this.#accepting) {
      // Not wanted any more (stopping): give the image straight back.
      if (m.ok) this.#release(m.loan.id);
      return;
    }
    const { config: d, previous } = pending;
    if (previous) previous.reopening = false;
    const problems: string[] = [];
    let dev: Device | string;
    if (m.ok) {
      this.#states.takeShared(d.name, m.state);
      try {
        dev = this.#install(d, backendFor(d), previous, m.loan);
      } catch (e) {
        dev = (e as Error).message;
      }
    } else {
      dev = m.message;
    }
    if (typeof dev === "string") {
      if (pending.atStart) {
        this.#log("error", `disk/${d.name}: ${dev}; device not exported`);
        this.failedDevices.push({ name: d.name, reason: dev });
        return;
      }
      const live = previous && !previous.retiring;
      if (live && previous.fenced) {
        // Its client was fenced: nothing is served until a reconnection works (retried).
        this.#log(
          "error",
          `disk/${d.name}: cannot reconnect after being fenced: ${dev}; trying again`,
        );
        return;
      }
      problems.push(
        live
          ? `disk/${d.name}: cannot apply the new settings: ${dev}; it keeps serving with the previous ones`
          : `disk/${d.name}: ${dev}; not exported`,
      );
      if (live) this.#retireOnClash(previous, problems);
    } else if (previous && !previous.retiring) {
      this.#log(
        "info",
        previous.fenced
          ? `disk/${d.name}: serving again, through a new Ceph client`
          : `disk/${d.name}: reopened with the new settings`,
      );
      this.#retire(previous);
    }
    for (const p of problems) this.#log("error", p);
    this.#openProblems.push(...problems);
    this.#attachAll(false, []);
  }

  /** The main thread read a new size of a device's lent storage. */
  storageSizeChanged(m: StorageSizeChanged): void {
    const dev = this.devices.find((d) =>
      d.name === m.device && d.backend.features.resize === "told"
    );
    if (!dev) return;
    try {
      if (dev.setStorageSize(m.bytes)) {
        this.#log(
          "info",
          `disk/${dev.name}: New size ${humanSize(dev.size)} (sectors ${dev.sectors})`,
        );
      }
    } catch (e) {
      this.#log("error", `disk/${dev.name}: cannot take the new size: ${(e as Error).message}`);
    }
  }

  /**
   * The main thread's word about fencing on a device (see StorageFence): a fencing it did is
   * counted; when this host was fenced, the device drops its queued requests (they were
   * received before or while it was fenced: never started, never answered) and its storage is
   * opened anew (an RBD image through a new client; the old device serves nothing meanwhile:
   * its I/O fails at once; it retires when the new one is there).
   */
  storageFence(m: StorageFence): void {
    const dev = this.devices.find((d) => d.name === m.device && d.backend.features.fencing);
    if (!dev) return;
    if (m.event === "fencing") {
      dev.stats[DS.rbd_fencings]++;
      return;
    }
    if (dev.reopening) return;
    if (!m.retry) dev.stats[DS.rbd_fenced]++;
    dev.fenced = true;
    dev.reopening = true;
    for (const r of dev.takeQueued()) {
      dev.stats[DS.rbd_fenced_drops]++;
      this.#finish(r);
    }
    const problem = this.#openDevice(dev.config, dev, false);
    if (typeof problem === "string") {
      dev.reopening = false;
      this.#log("error", `disk/${dev.name}: cannot reopen after being fenced: ${problem}`);
    }
  }

  /** Closes everything. Queued requests are dropped; call after the plane went idle. */
  close(): void {
    for (const dev of this.#devices) {
      if (!dev) continue;
      for (const r of dev.takeQueued()) this.#finish(r);
      this.#closeDevice(dev);
    }
    this.#ifaces.closeAll();
    this.#epoll.close();
  }

  /** Hands every changed state file to the writer (see DeviceStates.flush). */
  flushPersist(): void {
    this.#states.flush();
  }

  /** The writer's outcome for a state file: replies that waited for it go out. */
  persisted(ack: PersistAck): void {
    this.#states.persisted(ack);
    for (const ifc of this.#ifaces.byIndex) ifc?.flush();
  }

  /** Another host changed state kept with a device's storage (read by the main thread). */
  sharedStateChanged(m: SharedStateChanged): void {
    this.#states.sharedChanged(m);
  }

  /**
   * Empties the config string, mask list or reserve list of the live devices matching
   * `patterns` (ggaoectl clear-*); see DeviceStates.clear.
   */
  clearState(what: "config" | "macmask" | "reserve", patterns: string[]): ClearedState[] {
    return this.#states.clear(this.devices, what, patterns);
  }

  /** Device states, for the control interface. */
  deviceStates(): { name: string; state: DeviceState }[] {
    return this.devices.map((d) => ({ name: d.name, state: d.state }));
  }

  // ---- persistent state ----

  // ---- receive ----

  #ifaceEvent(ifc: Iface, events: number): void {
    if (events & EPOLLERR) {
      const e = ifc.socket.takeError();
      if (e !== 0) ifc.fail(sysError("socket", e).message);
    }
    if (events & EPOLLOUT) this.#drainTx(ifc);
    if (this.#accepting && ifc.failure === null) this.#drainRx(ifc);
  }

  /**
   * Takes up to RX_BUDGET frames from `ifc`; returns how many. Nothing taken is served before
   * the whole drain is in (docs/decisions.md §4.4): a stall found by a later frame's age must
   * still drop the earlier ones.
   */
  #drainRx(ifc: Iface): number {
    const sock = ifc.socket;
    const st = ifc.stats;
    let now = this.#now;
    const offset = this.#realtimeOffset;
    // Once per drain, not per frame: it looks at every device.
    const minStall = this.#minStall;
    let n = 0;
    while (n < RX_BUDGET) {
      let rx: Uint8Array | null;
      try {
        rx = sock.receive();
      } catch (e) {
        ifc.fail((e as Error).message);
        break;
      }
      if (rx === null) break;
      n++;
      // The kernel's receive time is on the realtime clock: converted to the monotonic one
      // with the offset sampled this turn. Its true age is kept however large (a frame that
      // waited through a stop is old, and must look it); a time in the future (the realtime
      // clock stepped back) counts as now. A forward step makes the frames received before it
      // look older: at worst they are dropped as stale, and the initiator sends them again.
      let arrival = sock.rxTimestamp - offset;
      if (!(arrival <= now)) {
        // Received after this turn read the clock: was the turn itself held up?
        now = this.#heldUp(minStall);
        if (!(arrival <= now)) arrival = now;
      } else if (now - arrival > minStall && arrival >= this.#stallFoundAt) {
        // A frame wakes the wait at once, so one that sat in the ring longer than max-stall
        // means the loop did not run for that long, even where the clock readings around the
        // wait cannot show it (a stop between the last reading and the wait itself).
        this.#stallFoundAt = this.#now;
        if (this.#markStalled(now - arrival)) {
          this.#log(
            "warning",
            `net/${ifc.name}: a frame waited ${
              (now - arrival).toFixed(1)
            } s in the receive queue (longer than max-stall): the data path did not run for that long; what it received before it ran again is dropped, unanswered and never started`,
          );
        }
      }
      try {
        this.#handleFrame(ifc, rx, sock.rxLength, arrival);
      } catch (e) {
        // A bug must not take the target down: drop the frame, count it, say what happened.
        st[IS.dropped]++;
        this.#log("error", `net/${ifc.name}: frame dropped: ${(e as Error).stack ?? e}`);
      }
      sock.release();
    }
    if (n > 0) st[IS.rx_runs]++;
    try {
      ifc.countSocketEvents();
    } catch (e) {
      ifc.fail((e as Error).message);
    }
    return n;
  }

  #handleFrame(ifc: Iface, rx: Uint8Array, length: number, arrival: number): void {
    const st = ifc.stats;
    const cls = classifyFrame(rx, length);
    // Every worker's filter lets runts and wildcard frames through: only the catch-all counts
    // them, so that the interface counters are one worker's whatever their number.
    if (cls === FrameClass.SHORT) {
      if (this.#catchAll) st[IS.dropped]++;
      return;
    }
    const shelf = frameShelf(rx);
    const slot = frameSlot(rx);
    const wildcard = isBroadcastAddress(shelf, slot);
    const counts = this.#catchAll || !wildcard;
    if (counts) {
      st[IS.rx_cnt]++;
      st[IS.rx_bytes] += length;
    }
    if (cls !== FrameClass.OK) {
      if (counts) st[IS.ignored]++;
      return;
    }
    if (wildcard && !answersWildcard(rx, length)) {
      if (counts) st[IS.wildcard_dropped]++;
      return;
    }
    const devices = ifc.devices;
    let matched = 0;
    for (let i = 0; i < devices.length; i++) {
      const dev = devices[i];
      if (!targetMatches(dev, shelf, slot)) continue;
      matched++;
      this.#serve(ifc, dev, rx, length, arrival);
    }
    if (!counts) return;
    if (!wildcard) {
      if (matched === 0) st[IS.ignored]++;
    } else if (matched > 0 || anyMatches(ifc.others, shelf, slot)) st[IS.broadcast]++;
    else st[IS.ignored]++;
  }

  #serve(ifc: Iface, dev: Device, rx: Uint8Array, length: number, arrival: number): void {
    const pool = dev.pool;
    const ds = dev.stats;
    // Never start stale work (see Device.dropStale), not even a command answered at once.
    if (arrival < dev.staleBefore) {
      ds[DS.stall_drop]++;
      return;
    }
    if (this.#now - arrival > dev.maxRequestAge) {
      ds[DS.stale_drop]++;
      return;
    }
    if (setsState(rx, length)) {
      // A flood of state changes must not take the buffers the device's I/O needs: changes
      // use at most a quarter of them, and only while another quarter is free; beyond that
      // they are dropped (the initiator retransmits) before they take a buffer or change
      // anything.
      const share = pool.size >> 2;
      if (
        this.#states.held(dev.name) >= Math.max(1, share) || pool.size - pool.inUse <= share
      ) {
        ds[DS.state_drop]++;
        return;
      }
    }
    ds[DS.queue_length] += pool.inUse;
    const r = pool.get();
    if (r === null) {
      // The device holds its Buffer Count already (AoE r11: messages beyond it are dropped).
      ds[DS.queue_over]++;
      ds[DS.queue_drop]++;
      return;
    }
    r.ifc = ifc;
    r.arrival = arrival;
    let handedOff = false;
    try {
      if (dev.config.traceIo) {
        this.#log("debug", `disk/${dev.name}: ${describeRequest(rx, length)}`);
      }
      const action = handleRequest(rx, length, ifc, dev, r);
      const host = dev.views !== null && r.drop !== Drop.DENIED
        ? this.#contact(dev, dev.views, rx)
        : null;
      switch (action) {
        case Action.DROP:
          if (r.drop === Drop.SHORT) ifc.stats[IS.dropped]++;
          break;
        case Action.REPLY: {
          handedOff = true;
          const kind = r.stateKind as StateKind | -1;
          if (kind >= 0 && !dev.state.isDurable(kind as StateKind)) {
            this.#states.hold(dev, r, kind as StateKind);
          } else {
            this.#reply(r);
          }
          break;
        }
        default:
          handedOff = true;
          if (dev.views !== null) this.#toView(dev, host, r);
          else if (!dev.enqueue(r)) this.#activate(dev);
      }
    } finally {
      if (!handedOff) pool.put(r);
    }
  }

  // ---- per-host views ----

  /** A frame from a host of device `dev` with views; returns the host (null: too many). */
  #contact(dev: Device, views: ViewSet, rx: Uint8Array): HostView | null {
    const h = views.host(macAt(rx, OFF_SRC));
    if (h === null) return null;
    const ask = views.contact(h, this.#now, rx[OFF_COMMAND] === AOE_CMD_CFG);
    if (ask !== ViewAsk.NOTHING) this.#askView(dev, h, ask);
    return h;
  }

  /** Sends read, write or flush `r` of host `h` to its view (or drops or refuses it). */
  #toView(dev: Device, h: HostView | null, r: Request): void {
    if (h !== null && h.status === ViewStatus.OPEN) {
      const child = h.child!;
      if (!child.enqueue(r)) this.#activate(child);
      return;
    }
    if (h === null || h.status === ViewStatus.LIMIT) {
      dev.stats[DS.view_limit]++;
      completeRequest(r, -Errno.ENOSPC, dev.stats); // ATA ABRT (any errno but EIO)
      this.#reply(r);
      return;
    }
    // Being made or opened: its initiator sends it again.
    dev.stats[DS.view_wait_drop]++;
    this.#finish(r);
  }

  /** Asks the main thread for the view of host `h` of `dev` (see ViewSet.contact). */
  #askView(dev: Device, h: HostView, ask: ViewAsk): void {
    if (ask === ViewAsk.RESET) {
      this.#log(
        "info",
        `disk/${dev.name}: host ${
          formatMac(h.mac)
        } sent a Query Config after more than views-quiet = ${
          dev.views!.config.quiet
        } s of silence: its view starts again from the golden image (views-lifecycle = "reset-on-discover")`,
      );
      this.#closeView(dev, h);
    }
    if (!this.#lend) {
      h.refuse(ViewStatus.FAILED, this.#now);
      return;
    }
    h.status = ViewStatus.OPENING;
    const id = this.#nextOpen++;
    this.#viewOpens.set(id, { parent: dev, host: h });
    this.#lend({
      type: "view-open",
      id,
      device: dev.config,
      mac: h.hex,
      reset: ask === ViewAsk.RESET,
      boot: ask === ViewAsk.BOOT,
    });
  }

  /** Closes the view of host `h` of `dev` (it closes once its I/O is done). */
  #closeView(dev: Device, h: HostView): void {
    if (h.child !== null) this.#retire(h.child);
    h.child = null;
    h.status = ViewStatus.NONE;
    dev.stats[DS.views] = dev.views!.open;
  }

  /** The main thread's answer to a view-open: the view exists (it is opened), or why not. */
  viewReady(m: ViewReady): void {
    const pending = this.#viewOpens.get(m.id);
    this.#viewOpens.delete(m.id);
    if (!pending) return;
    const { parent: dev, host: h } = pending;
    if (dev.retiring || h.status !== ViewStatus.OPENING || !this.#accepting) return;
    const who = `disk/${dev.name}: host ${formatMac(h.mac)}`;
    if (!m.ok) {
      h.refuse(m.limit ? ViewStatus.LIMIT : ViewStatus.FAILED, this.#now);
      if (m.limit) {
        if (!h.limitLogged) {
          h.limitLogged = true;
          this.#log(
            "warning",
            `${who} has no view and the device has max-views = ${
              dev.views!.config.maxViews
            } views already: its reads and writes are answered ATA ABRT; raise max-views in [devices.${dev.name}] and reload, or drop the view of a host that is gone (ggaoectl remove-view ${dev.name} MAC)`,
          );
        }
      } else {
        this.#log(
          "error",
          `${who}: its view cannot be made: ${m.message}; its requests are dropped (asked again in ${VIEW_RETRY_SECONDS} s)`,
        );
      }
      return;
    }
    h.limitLogged = false;
    this.#openView(dev, h, null, m.made);
  }

  /** Opens the view of host `h` of `dev` (from `loan` when the main thread lent it). */
  #openView(dev: Device, h: HostView, loan: StorageLoan | null, made: boolean): void {
    const d = viewConfig(dev.config, h.hex);
    try {
      const module = backendFor(d);
      if (module.lent && loan === null) {
        if (!this.#lend) throw new Error(`${d.path} is opened by the daemon's main thread`);
        const id = this.#nextOpen++;
        this.#viewLoans.set(id, { parent: dev, host: h });
        this.#lend({ type: "storage-open", id, device: d });
        return;
      }
      h.child = this.#install(d, module, null, loan, dev, h);
    } catch (e) {
      h.refuse(ViewStatus.FAILED, this.#now);
      this.#log(
        "error",
        `disk/${dev.name}: host ${formatMac(h.mac)}: cannot open its view ${d.path}: ${
          (e as Error).message
        }; its requests are dropped (tried again in ${VIEW_RETRY_SECONDS} s)`,
      );
      return;
    }
    h.status = ViewStatus.OPEN;
    dev.stats[DS.views] = dev.views!.open;
    this.#log(
      "info",
      `disk/${dev.name}: host ${formatMac(h.mac)} reads and writes its view ${d.path}${
        made ? " (made now from the golden image)" : ""
      }`,
    );
  }

  /** A view's finished request: counted as written to views, then sent. */
  #viewCompleted(h: HostView): (r: Request) => void {
    return (r: Request) => {
      if (
        r.action === Action.WRITE && r.drop === Drop.NONE &&
        (r.frame[OFF_CMD_STATUS] & ATA_ERR) === 0
      ) {
        h.written += r.bytes;
        r.dev.stats[DS.view_write_bytes] += r.bytes;
      }
      this.#completed(r);
    };
  }

  /**
   * Drops the view of host `mac` (12 hex digits) of `device` (ggaoectl reset-view and
   * remove-view): it is closed, and `done` is called once it is (`open`: it was open). The
   * host's next frame asks for its view again.
   */
  dropView(device: string, mac: string, done: (open: boolean) => void): void {
    const dev = this.devices.find((d) => d.name === device && d.views !== null);
    const h = dev?.views?.hosts.get(parseInt(mac, 16));
    if (!dev || !h) {
      done(false);
      return;
    }
    const child = h.child;
    this.#closeView(dev, h);
    h.lastSeen = -Infinity; // its next frame is a first contact again
    if (child === null) {
      done(false);
      return;
    }
    child.onClosed = () => done(true);
    this.#closeRetired(); // at once when idle
  }

  /** What the data path knows of the hosts of every device with views. */
  viewHosts(): HostViewInfo[] {
    const out: HostViewInfo[] = [];
    for (const dev of this.devices) {
      if (!dev.views) continue;
      for (const h of dev.views.hosts.values()) {
        out.push({
          device: dev.name,
          mac: h.hex,
          status: h.statusName,
          written: h.written,
          idle: h.lastSeen === -Infinity ? -1 : this.#now - h.lastSeen,
        });
      }
    }
    return out;
  }

  /**
   * Refreshes the views gauges, and tells the main thread which hosts were seen lately (every
   * few seconds, and at shutdown).
   */
  reportViews(): void {
    this.#viewsReportedAt = this.#now;
    const now = monotonic(); // also called at shutdown, when the turn's clock may be old
    for (const dev of this.devices) {
      if (!dev.views) continue;
      dev.stats[DS.views] = dev.views.open;
      const macs: string[] = [];
      const ages: number[] = [];
      for (const h of dev.views.hosts.values()) {
        if (!h.seenUnreported) continue;
        h.seenUnreported = false;
        macs.push(h.hex);
        ages.push(now - h.lastSeen);
      }
      if (macs.length > 0) this.#lend?.({ type: "views-seen", device: dev.name, macs, ages });
    }
  }

  // ---- devices ----

  #activate(dev: Device | null | undefined): void {
    if (dev && !this.#active.includes(dev)) this.#active.push(dev);
  }

  #reap(dev: Device | null | undefined): void {
    if (!dev) return;
    try {
      dev.reap(this.#now);
    } catch (e) {
      this.#log("error", `disk/${dev.name}: reaping completions failed: ${(e as Error).message}`);
    }
    this.#activate(dev);
  }

  #runDevices(): void {
    const active = this.#active;
    if (active.length === 0) return;
    // Nothing is started with the turn's old clock reading if the turn was held up.
    const now = this.#heldUp(this.#minStall);
    let keep = 0;
    for (let i = 0; i < active.length; i++) {
      const dev = active[i];
      if (this.#devices[dev.index] !== dev) continue; // closed meanwhile
      dev.retryStall(now);
      if (dev.runnable) {
        try {
          dev.submit(now);
        } catch (e) {
          this.#log("error", `disk/${dev.name}: submitting I/O failed: ${(e as Error).message}`);
        }
      }
      // Stalled, or waiting for its timer, with work left: try again on a later turn.
      if (dev.runnable || dev.stalledIdle) active[keep++] = dev;
    }
    active.length = keep;
  }

  /** Reserves the TX frame that the reply to read `r` will go out in (Device's ReplyPlacer). */
  readonly #place: ReplyPlacer = (r: Request): Memory | null => {
    const ifc = r.ifc;
    return ifc !== null && ifc.open ? ifc.reserveReply(r) : null;
  };

  /** A request finished on its device (reply built): send it. */
  readonly #completed = (r: Request): void => {
    if (r.drop === Drop.FENCED) {
      // This host was fenced off the storage: never answered; the main thread opens it anew.
      this.#finish(r);
      const dev = r.dev;
      if (!dev.fenced) {
        dev.fenced = true;
        this.#lend?.({ type: "storage-fenced", device: dev.name });
      }
      return;
    }
    if (r.drop === Drop.STALE) {
      this.#finish(r); // an error its initiator no longer waits for: never answered
      return;
    }
    this.#reply(r);
  };

  // ---- transmit ----

  #reply(r: Request): void {
    const ifc = r.ifc;
    if (ifc === null || !ifc.open) {
      // Its interface went away while the request was in progress: never send it elsewhere.
      if (ifc) ifc.stats[IS.dropped]++;
      this.#finish(r);
      return;
    }
    if (ifc.send(r)) this.#sent(r);
    else if (!ifc.socket.txRing) {
      // sendto() said EAGAIN: EPOLLOUT tells when the socket has room again. (With a TX ring
      // EPOLLOUT does not mean a free ring frame; the loop retries every millisecond instead.)
      this.#ifaces.watchOut(ifc, true);
    }
  }

  readonly #sent = (r: Request): void => {
    const dt = this.#now - r.arrival;
    const ds = r.dev.stats;
    if (r.action === Action.READ) recordLatency(ds, LatencyKind.READ, dt);
    else if (r.action === Action.WRITE) recordLatency(ds, LatencyKind.WRITE, dt);
    else recordLatency(ds, LatencyKind.OTHER, dt);
    this.#finish(r);
  };

  #finish(r: Request): void {
    r.pool.put(r);
  }

  #drainTx(ifc: Iface): void {
    if (ifc.drainQueue(this.#sent) && !ifc.socket.txRing) this.#ifaces.watchOut(ifc, false);
  }

  /** The smallest max-stall of the devices (Infinity: none looks for stalls). */
  get #minStall(): number {
    let min = Infinity;
    for (const dev of this.#devices) if (dev && dev.maxStall < min) min = dev.maxStall;
    return min;
  }

  #nextTimeout(cap: number): number {
    for (const dev of this.#active) if (dev.runnable) return 0;
    let timeout = cap;
    for (const ifc of this.#ifaces.byIndex) {
      if (ifc && (ifc.congested || ifc.needsKick)) timeout = Math.min(timeout, 1);
    }
    for (const dev of this.#active) {
      if (dev.stalledIdle) timeout = Math.min(timeout, STALL_RETRY_MS);
    }
    return timeout;
  }

  #tick(): void {
    this.#now = monotonic();
    this.#realtimeOffset = realtimeSeconds() - this.#now;
  }

  // ---- setup and teardown ----

  /**
   * Opens device `d` through the backend that serves it (which may take over `previous`'s
   * storage, so that an exclusive claim carries over) and makes it live. Returns the device, or
   * why it could not be opened (logged), or null when the main thread opens its storage and
   * lends it ({@link storageOpened} finishes the job).
   */
  #openDevice(d: DeviceConfig, previous: Device | null, atStart: boolean): Device | string | null {
    const stateError = this.#states.loadError(d.name);
    if (stateError !== undefined) return stateError;
    let module: BackendModule;
    try {
      module = backendFor(d);
    } catch (e) {
      return (e as Error).message;
    }
    if (module.lent) {
      // Opening may block for round trips to a cluster: the main thread does it.
      if (!this.#lend) return `${d.path} is opened by the daemon's main thread (none here)`;
      const id = this.#nextOpen++;
      this.#opening.set(id, { config: d, previous, atStart });
      this.#lend({ type: "storage-open", id, device: d });
      return null;
    }
    try {
      return this.#install(d, module, previous, null);
    } catch (e) {
      return (e as Error).message;
    }
  }

  /** Gives storage lent by the main thread back to it. */
  readonly #release = (id: number): void => {
    this.#lend?.({ type: "storage-release", id });
  };

  /**
   * Makes device `d` live on storage opened by `module` (from `loan` when the main thread lent
   * it; `previous` is the device it replaces). Throws when it cannot; what it opened is closed
   * again, and a loan given back.
   */
  #install(
    d: DeviceConfig,
    module: BackendModule,
    previous: Device | null,
    loan: StorageLoan | null,
    parent: Device | null = null,
    host: HostView | null = null,
  ): Device {
    let stats = parent?.stats ?? this.#deviceCounters.get(d.name);
    if (!stats) {
      stats = sharedCounters(DEVICE_SHARED_LENGTH);
      this.#deviceCounters.set(d.name, stats);
    }
    let index = this.#devices.indexOf(null);
    if (index < 0) index = this.#devices.length;
    const state = parent?.state ?? this.#states.of(d.name);
    let opened = false;
    // The golden image of a device with views is never written: opened read-only.
    const config = d.views ? { ...d, readOnly: true } : d;
    const open = (io: BackendIo) => {
      opened = true;
      const release = this.#release;
      return module.open({ config, previous: previous?.backend ?? null, loan, release, io });
    };
    const sink = host ? this.#viewCompleted(host) : this.#completed;
    let dev: Device;
    try {
      dev = new Device(index, d, state, stats, sink, this.#place, open, parent);
    } catch (e) {
      if (!opened && loan) this.#release(loan.id);
      throw e;
    }
    // A write that a device it replaces (or one removed before) still has in the kernel must
    // not land after a newer write through this one: it waits for them (Device.follow).
    const identity = dev.backend.identity;
    for (const old of this.#retiring) if (old.backend.identity === identity) dev.follow(old);
    if (previous && previous.backend.identity === identity) dev.follow(previous);
    this.#devices[index] = dev;
    try {
      this.#epoll.add(dev.events.fd, EPOLLIN, TOKEN_AIO + index);
      if (dev.timer) this.#epoll.add(dev.timer.fd, EPOLLIN, TOKEN_TIMER + index);
    } catch (e) {
      this.#devices[index] = null;
      dev.close();
      throw e;
    }
    if (parent) return dev; // logged by #openView
    if (d.views) dev.views = new ViewSet(d.views);
    const size = humanSize(dev.size);
    const how = dev.backend.how;
    this.#log(
      "info",
      `disk/${d.name}: Shelf ${d.shelf}, slot ${d.slot}, path '${d.path}' (size ${size}, sectors ${dev.sectors}) opened${
        d.readOnly ? " R/O" : ""
      }${how}${d.views ? `, a view per host in ${d.views.location}` : ""}`,
    );
    return dev;
  }

  /**
   * Takes a device out of service without waiting for it: queued requests are dropped (the
   * initiator retransmits), it leaves every interface, and it closes once the requests it still
   * has (in the kernel, waiting for TX room or for a state write) are done ({@link #closeRetired}).
   */
  #retire(dev: Device): void {
    if (dev.retiring) return;
    if (dev.views) {
      for (const h of dev.views.hosts.values()) if (h.child) this.#retire(h.child);
    }
    dev.retiring = true;
    dev.retiredAt = this.#now;
    for (const r of dev.takeQueued()) this.#finish(r);
    for (const ifc of this.interfaces) ifc.devices = ifc.devices.filter((d) => d !== dev);
    const i = this.#active.indexOf(dev);
    if (i >= 0) this.#active.splice(i, 1);
    this.#retiring.push(dev);
  }

  #closeRetired(): void {
    const list = this.#retiring;
    for (let i = 0; i < list.length;) {
      const dev = list[i];
      if (dev.successors.length > 0 && dev.inKernel === 0) {
        // Its I/O is done: the devices that replaced it may start theirs.
        for (const next of dev.successors) this.#activate(next);
        dev.successors.length = 0;
      }
      if (dev.inFlight === 0) {
        list.splice(i, 1);
        this.#closeDevice(dev);
        continue;
      }
      if (this.#now - dev.retiredAt > RETIRE_WARN_SECONDS && dev.retiredAt > 0) {
        this.#log(
          "warning",
          `disk/${dev.name}: the replaced device still has ${dev.inFlight} request(s) in progress (${dev.inKernel} in the kernel) after ${RETIRE_WARN_SECONDS} s; it closes when they finish`,
        );
        dev.retiredAt = -1; // warned once
      }
      i++;
    }
  }

  #closeDevice(dev: Device): void {
    try {
      this.#epoll.remove(dev.events.fd);
      if (dev.timer) this.#epoll.remove(dev.timer.fd);
    } catch { /* already gone */ }
    this.#devices[dev.index] = null;
    try {
      dev.close();
    } catch (e) {
      this.#log("error", `disk/${dev.name}: closing: ${(e as Error).message}`);
    }
    dev.onClosed?.();
  }

  /**
   * Rescans the interfaces (see Interfaces.rescan) and attaches devices to the new ones (to
   * every one with `reattach`).
   */
  #rescanInterfaces(reattach = false, failures?: string[]): void {
    const fresh = this.#ifaces.rescan(this.#config, this.#now, failures);
    if (reattach || fresh.length > 0) this.#attachAll(reattach, fresh);
  }

  /** Attaches devices to interfaces by pattern; advertises where a device is new on one. */
  #attachAll(all: boolean, fresh: Iface[]): void {
    for (const ifc of this.interfaces) {
      const before = new Set(ifc.devices);
      ifc.devices = this.devices.filter((d) => matchesAny(d.config.interfaces, ifc.name));
      if (this.#catchAll) ifc.others = this.#othersOn(ifc);
      if (this.#filterAddresses) this.#filter(ifc);
      this.#checkRxRing(ifc);
      for (const dev of ifc.devices) {
        if (all || fresh.includes(ifc) || !before.has(dev)) this.#advertise(dev, ifc);
      }
    }
  }

  /** The other workers' device addresses on `ifc` that none of its own devices has. */
  #othersOn(ifc: Iface): AoeAddress[] {
    return this.#othersOnName(ifc.name, ifc.devices);
  }

  /** The other workers' device addresses on interface `name` that none of `own` has. */
  #othersOnName(name: string, own: readonly Device[]): AoeAddress[] {
    const taken = new Set(own.map((d) => `${d.shelf}.${d.slot}`));
    return this.#others
      .filter((o) => matchesAny(o.interfaces, name) && !taken.has(`${o.shelf}.${o.slot}`))
      .map((o) => ({ shelf: o.shelf, slot: o.slot }));
  }

  /**
   * What the socket on interface `name` lets through: the requests to this worker's devices on
   * it (and broadcasts), or, in the catch-all, every request but those to the other workers'
   * devices on it; with the key that says when it changed (Iface.addressFilter).
   */
  #addressesOn(
    name: string,
    own = this.devices.filter((d) => matchesAny(d.config.interfaces, name)),
  ): { addresses: AddressFilter; key: string } {
    const listed = this.#catchAll
      ? this.#othersOnName(name, own)
      : own.map((d) => ({ shelf: d.shelf, slot: d.slot }));
    const key = (this.#catchAll ? "except " : "") +
      listed.map((a) => `${a.shelf}.${a.slot}`).sort().join(",");
    return { addresses: this.#catchAll ? { except: listed } : listed, key };
  }

  /**
   * Sets `ifc`'s socket filter ({@link #addressesOn}) when its set of addresses changed. A
   * failure is logged: the socket keeps its previous program, and frames to devices of other
   * workers are then counted as `ignored` here.
   */
  #filter(ifc: Iface): void {
    const { addresses, key } = this.#addressesOn(ifc.name, ifc.devices);
    if (key === ifc.addressFilter) return;
    try {
      ifc.socket.filterAddresses(addresses);
      ifc.addressFilter = key;
    } catch (e) {
      this.#log("error", `net/${ifc.name}: cannot set the address filter: ${(e as Error).message}`);
    }
  }

  /**
   * Warns when the RX ring cannot take one host's full window on one device (its Buffer Count,
   * which an initiator sends back to back): the frames beyond the ring are dropped by the kernel
   * and each costs the initiator a retransmit timeout. Frames wait in the ring only until the
   * next turn drains them, so the sum of every device's Buffer Count is not what to size it for
   * ("Sizing the RX ring" in docs/configuration.md).
   */
  #checkRxRing(ifc: Iface): void {
    if (!ifc.socket.rxRing) return;
    let window = 0;
    for (const d of ifc.devices) window = Math.max(window, d.bufferCount);
    const frames = ifc.socket.rxFrames;
    if (frames >= window) return;
    const kib = Math.ceil(ifc.config.ringBufferSize / 1024 * window / Math.max(frames, 1));
    const fix = kib <= MAX_RING_KIB
      ? `raise ring-buffer-size to about ${kib} KiB, or lower queue-length`
      : `lower queue-length (a ring of ${MAX_RING_KIB} KiB, the most ring-buffer-size allows, would not hold them)`;
    this.#log(
      "warning",
      `net/${ifc.name}: the RX ring holds ${frames} frames, fewer than the ${window} requests one host may send at once to one device (its queue-length): ${fix}`,
    );
  }

  /** Sends the unsolicited Query Config reply (docs/decisions.md §2.4). */
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

export type { ClearedState };

/** True if a request to (shelf, slot) is for one of `targets` (allocates nothing). */
function anyMatches(targets: readonly AoeAddress[], shelf: number, slot: number): boolean {
  for (let i = 0; i < targets.length; i++) if (targetMatches(targets[i], shelf, slot)) return true;
  return false;
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
