/**
 * The main thread's side of the data-path workers (`workers = N`, docs/workers.md): N workers
 * (`worker.ts`), each with its own wake eventfd, each owning a share of the devices for the
 * daemon's life. Messages about one device go to its worker; questions about all of them
 * (`states`, `clear`, `clear-stats`, `stop`) go to every worker and the answers are combined.
 *
 * Device counters come from the device's worker; interface counters are summed per interface
 * name, so that users see one set per interface whatever the number of workers. Worker 0 is the
 * catch-all: it also receives the requests to addresses no other worker serves, and alone counts
 * the frames every worker receives (broadcasts); it is sent the other workers' devices with its
 * share ({@link othersOf}).
 *
 * @module
 */

import { EventFd } from "../../ffi/mod.ts";
import type { Config } from "../config/types.ts";
import type { Level } from "../log.ts";
import type { RbdImages } from "../rbd/images.ts";
import type { StateKind } from "../state/device_state.ts";
import type { StateWriter } from "../state/writer.ts";
import type { ViewManager } from "../views/manager.ts";
import { IFACE_STAT_COUNT } from "../stats.ts";
import type {
  DeviceCounters,
  FromWorker,
  OtherDevice,
  PersistAck,
  SharedCounters,
  SharedStateChanged,
  StateSnapshot,
  StorageFence,
  StorageOpened,
  StorageSizeChanged,
  ToWorker,
  ViewReady,
} from "./messages.ts";

type Reply = Extract<FromWorker, { type: "reply" }>;
type Started = Extract<FromWorker, { type: "started" }>;
type Failed = Extract<FromWorker, { type: "failed" }>;
/** Messages that need no reply: each concerns one device, or one worker's open. */
type Notice =
  | PersistAck
  | StorageOpened
  | SharedStateChanged
  | StorageSizeChanged
  | StorageFence
  | ViewReady;
/** Requests answered by a reply, as a worker gets them. */
type Asked = Extract<
  ToWorker,
  { type: "reload" | "states" | "clear" | "clear-stats" | "views" | "view-drop" }
>;
/** Requests answered by a reply (a reload's share and `others` are filled in per worker). */
type Request =
  | { type: "reload"; id: number; config: Config; states: Map<string, StateSnapshot> }
  | Exclude<Asked, { type: "reload" }>;

/** How long after its grace period a stopping worker may take to confirm the stop, ms. */
export const STOP_ANSWER_MS = 2000;

/**
 * The number of workers: `workers` when set (obeyed: a worker without devices idles), else one
 * per online CPU but no more than the devices configured at start, at least one.
 */
export function workerCount(config: Config, cpus = navigator.hardwareConcurrency): number {
  if (config.global.workers !== null) return config.global.workers;
  return Math.max(1, Math.min(cpus || 1, config.devices.length));
}

/** One data-path worker as the main thread sees it. */
class WorkerHandle {
  readonly index: number;
  readonly worker: Worker;
  readonly wake: EventFd;
  readonly waiting = new Map<number, (r: Reply) => void>();
  devices: DeviceCounters[] = [];
  interfaces: SharedCounters[] = [];
  onStart: ((m: Started | Failed) => void) | null = null;
  onStopped: ((inFlight: number) => void) | null = null;

  constructor(index: number) {
    this.index = index;
    this.wake = EventFd.open();
    try {
      this.worker = new Worker(new URL("./worker.ts", import.meta.url), {
        type: "module",
        name: `ggaoed-worker-${index}`,
      });
    } catch (e) {
      this.wake.close();
      throw e;
    }
  }

  post(m: ToWorker): void {
    this.worker.postMessage(m);
    if (m.type !== "start") this.wake.signal(1);
  }
}

export interface WorkersOptions {
  count: number;
  writer: StateWriter;
  rbd: () => RbdImages;
  /** Makes, lists and removes per-host views (see src/views/manager.ts). */
  views: () => ViewManager;
  log: (level: Level, message: string) => void;
}

/** The data-path workers: start, route, combine, stop. */
export class Workers {
  readonly #workers: WorkerHandle[] = [];
  readonly #writer: StateWriter;
  readonly #rbd: () => RbdImages;
  readonly #views: () => ViewManager;
  readonly #log: (level: Level, message: string) => void;
  /** Which worker owns each device name: set once, kept for the daemon's life. */
  readonly #owner = new Map<string, number>();
  /** Each worker's share as last sent (start, reload). */
  #current: Config[] = [];
  /** Storage opens in flight: the id given to RbdImages -> the worker and its own id. */
  readonly #opens = new Map<number, { worker: number; id: number }>();
  /** Views asked of the main thread, likewise (see ViewOpen). */
  readonly #viewOpens = new Map<number, { worker: number; id: number }>();
  #nextId = 1;
  #running = false;
  #onCrash: () => void = () => {};
  /** Resolves with "crash" if any worker fails after the start. */
  readonly crashed: Promise<"crash">;

  constructor(options: WorkersOptions) {
    this.#writer = options.writer;
    this.#rbd = options.rbd;
    this.#views = options.views;
    this.#log = options.log;
    this.crashed = new Promise((resolve) => (this.#onCrash = () => resolve("crash")));
    try {
      for (let i = 0; i < options.count; i++) {
        const w = new WorkerHandle(i);
        this.#workers.push(w);
        w.worker.onmessage = (e: MessageEvent<FromWorker>) => this.#receive(w, e.data);
        w.worker.onerror = (e) => {
          e.preventDefault();
          this.#failed(w, e.message);
        };
      }
    } catch (e) {
      this.terminate();
      throw e;
    }
  }

  /** The number of workers. */
  get count(): number {
    return this.#workers.length;
  }

  /** Every live device's counters, each from its worker. */
  get devices(): DeviceCounters[] {
    if (this.#workers.length === 1) return this.#workers[0].devices;
    return this.#workers.flatMap((w) => w.devices);
  }

  /** The counters of every interface, summed over the workers (one set per name). */
  get interfaces(): SharedCounters[] {
    if (this.#workers.length === 1) return this.#workers[0].interfaces;
    const sums = new Map<string, Float64Array>();
    for (const w of this.#workers) {
      for (const i of w.interfaces) {
        let sum = sums.get(i.name);
        if (!sum) sums.set(i.name, sum = new Float64Array(IFACE_STAT_COUNT));
        for (let k = 0; k < IFACE_STAT_COUNT; k++) sum[k] += i.stats[k];
      }
    }
    return [...sums].map(([name, stats]) => ({ name, stats }));
  }

  /** "N data-path workers: worker 0 serves a, b; worker 1 serves c" (live devices). */
  describe(): string {
    const parts = this.#workers.map((w) =>
      `worker ${w.index} serves ${
        w.devices.length ? w.devices.map((d) => d.name).join(", ") : "nothing (idle)"
      }`
    );
    return `${this.#workers.length} data-path workers: ${parts.join("; ")}`;
  }

  /**
   * Each worker's share of `config`: the global settings with its own devices. A device keeps
   * the worker it was first given. A new one goes to the worker that serves its path now (a
   * device renamed in a reload: the new name must wait for the old one's writes still in the
   * kernel, which only the same worker can see), else to the worker with the fewest devices of
   * `config` (the lowest index on a tie).
   */
  shares(config: Config): Config[] {
    const load = this.#workers.map(() => 0);
    for (const d of config.devices) {
      const w = this.#owner.get(d.name);
      if (w !== undefined) load[w]++;
    }
    const byPath = new Map<string, number>();
    this.#current.forEach((share, w) => {
      for (const d of share.devices) byPath.set(d.path, w);
    });
    for (const d of config.devices) {
      if (this.#owner.has(d.name)) continue;
      const w = byPath.get(d.path) ?? load.indexOf(Math.min(...load));
      this.#owner.set(d.name, w);
      load[w]++;
    }
    return this.#workers.map((w) => ({
      ...config,
      devices: config.devices.filter((d) => this.#owner.get(d.name) === w.index),
    }));
  }

  /**
   * Starts every worker with its share. Resolves to "started" (the failed devices of every
   * worker), or to "failed" when a worker could not start or no device at all could be opened.
   */
  async start(config: Config, states: Map<string, StateSnapshot>): Promise<Started | Failed> {
    const shares = this.shares(config);
    this.#current = shares;
    const multi = this.#workers.length > 1;
    const answers = await Promise.all(
      this.#workers.map((w, i) =>
        new Promise<Started | Failed>((resolve) => {
          w.onStart = resolve;
          w.post({
            type: "start",
            config: shares[i],
            wakeFd: w.wake.fd,
            states: only(states, shares[i]),
            multi,
            others: othersOf(shares, i),
          });
        })
      ),
    );
    const failed = answers.find((a): a is Failed => a.type === "failed");
    if (failed) return failed;
    const started = answers as Started[];
    if (multi && started.every((s) => s.devices.length === 0)) {
      return {
        type: "failed",
        message: "no valid devices: every device failed to open (see the errors above)",
      };
    }
    this.#running = true;
    return {
      type: "started",
      devices: this.devices,
      interfaces: this.interfaces,
      failed: started.flatMap((s) => s.failed),
    };
  }

  /** Posts a message that needs no reply to the worker it concerns. */
  post(m: ToWorker): void {
    if (!isNotice(m)) throw new TypeError(`Workers.post: ${m.type} is not routed by device`);
    if (m.type === "storage-opened" || m.type === "view-ready") {
      const opens = m.type === "storage-opened" ? this.#opens : this.#viewOpens;
      const open = opens.get(m.id);
      if (!open) return;
      opens.delete(m.id);
      this.#workers[open.worker].post({ ...m, id: open.id });
      return;
    }
    const w = this.#owner.get(m.device);
    if (w !== undefined) this.#workers[w].post(m);
  }

  /**
   * Asks every worker (a reload: each with its share of the configuration, see
   * {@link handOver}) and combines the replies: ok when every one is, their messages joined,
   * their data arrays concatenated.
   */
  async request(m: Request): Promise<Reply> {
    if (m.type === "view-drop") {
      // Only the worker that owns the device knows its hosts.
      const owner = this.#owner.get(m.device);
      if (owner === undefined) return { type: "reply", id: m.id, ok: true, data: { open: false } };
      return await this.#askOne(this.#workers[owner], m);
    }
    if (m.type !== "reload") return await this.#ask(m.id, () => m);
    const shares = this.shares(m.config);
    const first = this.#workers.length > 1
      ? handOver(this.#current, shares, this.#workers, this.#log)
      : null;
    if (first) {
      await this.#ask(m.id, (i) => ({
        ...m,
        config: first[i],
        states: only(m.states, first[i]),
        others: othersOf(first, i),
      }));
    }
    this.#current = shares;
    return await this.#ask(m.id, (i) => ({
      ...m,
      config: shares[i],
      states: only(m.states, shares[i]),
      others: othersOf(shares, i),
    }));
  }

  /** Sends worker `w` request `m` (under a number of its own) and waits for its reply. */
  #askOne(w: WorkerHandle, m: Asked): Promise<Reply> {
    const own = this.#nextId++;
    return new Promise<Reply>((resolve) => {
      w.waiting.set(own, resolve);
      w.post({ ...m, id: own });
    });
  }

  /** Sends every worker `message(i)` and combines the replies (see {@link request}). */
  async #ask(id: number, message: (worker: number) => Asked): Promise<Reply> {
    const replies = await Promise.all(this.#workers.map((w, i) => this.#askOne(w, message(i))));
    if (replies.length === 1) return replies[0];
    const data = replies.some((r) => Array.isArray(r.data))
      ? replies.flatMap((r) => (Array.isArray(r.data) ? r.data : []))
      : undefined;
    return {
      type: "reply",
      id,
      ok: replies.every((r) => r.ok),
      message: replies.map((r) => r.message ?? "").filter((s) => s !== "").join("; "),
      data,
    };
  }

  /**
   * Asks every worker to stop; resolves to the requests still in flight over all of them, or
   * -1 when one did not confirm within `graceMs` + {@link STOP_ANSWER_MS}.
   */
  async stop(graceMs: number): Promise<number> {
    const left = await Promise.all(this.#workers.map((w) =>
      new Promise<number>((resolve) => {
        w.onStopped = resolve;
        w.post({ type: "stop", id: this.#nextId++, graceMs });
        // A worker that does not answer is not waited for forever.
        setTimeout(() => resolve(-1), graceMs + STOP_ANSWER_MS);
      })
    ));
    return left.some((n) => n < 0) ? -1 : left.reduce((a, b) => a + b, 0);
  }

  /** Ends every worker at once and closes the wake eventfds. */
  terminate(): void {
    for (const w of this.#workers) {
      w.worker.terminate();
      w.wake.close();
    }
  }

  #failed(w: WorkerHandle, message: string): void {
    if (this.#running) {
      const which = this.#workers.length > 1 ? ` ${w.index}` : "";
      this.#log("error", `data path worker${which} failed: ${message}`);
      this.#onCrash();
    } else {
      w.onStart?.({ type: "failed", message }); // runDaemon reports it
    }
  }

  #receive(w: WorkerHandle, m: FromWorker): void {
    switch (m.type) {
      case "log":
        this.#log(m.level as Level, m.message);
        break;
      case "started":
        w.devices = m.devices;
        w.interfaces = m.interfaces;
        w.onStart?.(m);
        break;
      case "failed":
        this.#failed(w, m.message);
        break;
      case "counters":
        w.devices = m.devices;
        w.interfaces = m.interfaces;
        break;
      case "reply":
        w.waiting.get(m.id)?.(m);
        w.waiting.delete(m.id);
        break;
      case "persist":
        this.#writer.submit(m.device, m.kind as StateKind, m.seq, m.bytes);
        break;
      case "storage-open": {
        const id = this.#nextId++;
        this.#opens.set(id, { worker: w.index, id: m.id });
        this.#rbd().open({ ...m, id });
        break;
      }
      case "view-open": {
        const id = this.#nextId++;
        this.#viewOpens.set(id, { worker: w.index, id: m.id });
        this.#views().open({ ...m, id });
        break;
      }
      case "views-seen":
        this.#views().seen(m);
        break;
      case "storage-release":
        this.#rbd().release(m.id);
        break;
      case "storage-fenced":
        this.#rbd().blocklisted(m.device);
        break;
      case "stopped":
        w.onStopped?.(m.inFlight);
        break;
    }
  }
}

/**
 * The first step of a reload with several workers, or null when none is needed. A device that
 * moves to an address another worker's device serves now would answer there together with it
 * until that worker applied its own share: so the move waits for a second step. In this first
 * one, each worker gets its new share except for such devices, which keep their previous
 * settings (or stay out, if new, or if their own address is wanted by another device: two
 * devices swapping addresses). Devices removed or moved elsewhere leave their addresses free in
 * this step; the second sends the full shares.
 */
function handOver(
  current: readonly Config[],
  shares: readonly Config[],
  workers: readonly WorkerHandle[],
  log: (level: Level, message: string) => void,
): Config[] | null {
  const at = (d: { shelf: number; slot: number }) => `${d.shelf}.${d.slot}`;
  const serving = new Map<string, number>();
  for (const w of workers) for (const d of w.devices) serving.set(at(d), w.index);
  const wanted = new Map<string, string>();
  for (const share of shares) for (const d of share.devices) wanted.set(at(d), d.name);
  let waits = false;
  const first = shares.map((share, i) => {
    const before = new Map((current[i]?.devices ?? []).map((d) => [d.name, d]));
    const live = new Set(workers[i].devices.map((d) => d.name));
    const devices = [];
    for (const d of share.devices) {
      const holder = serving.get(at(d));
      if (holder === undefined || holder === i) {
        devices.push(d);
        continue;
      }
      waits = true;
      const old = before.get(d.name);
      if (!old || !live.has(d.name)) continue;
      const other = wanted.get(at(old));
      if (other !== undefined && other !== d.name) {
        log(
          "info",
          `disk/${d.name}: takes e${at(d)} from another worker's device while ${other} takes its e${
            at(old)
          }: closed first, then opened anew`,
        );
        continue;
      }
      devices.push(old);
    }
    return { ...share, devices };
  });
  return waits ? first : null;
}

function isNotice(m: ToWorker): m is Notice {
  return m.type === "storage-opened" || m.type === "persisted" || m.type === "shared-state" ||
    m.type === "storage-size" || m.type === "storage-fence" || m.type === "view-ready";
}

/**
 * What worker `i` must know of the other workers' devices: for worker 0 (the catch-all) of
 * several, every device of the others' `shares`; null for the rest, and for the only worker.
 */
function othersOf(shares: readonly Config[], i: number): OtherDevice[] | null {
  if (i !== 0 || shares.length === 1) return null;
  return shares.slice(1).flatMap((share) =>
    share.devices.map((d) => ({ shelf: d.shelf, slot: d.slot, interfaces: d.interfaces }))
  );
}

/** The states of `share`'s devices out of `states`. */
function only(
  states: Map<string, StateSnapshot>,
  share: Config,
): Map<string, StateSnapshot> {
  const out = new Map<string, StateSnapshot>();
  for (const d of share.devices) {
    const s = states.get(d.name);
    if (s) out.set(d.name, s);
  }
  return out;
}
