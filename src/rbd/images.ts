/**
 * Ceph RBD images on the daemon's main thread: cluster connections, image opens, the AoE state
 * kept in each image's metadata, and this daemon's record among the hosts serving an image.
 *
 * Everything that can wait for the cluster runs here, through librbd's nonblocking FFI calls
 * (helper threads), never on the data-path worker: connecting (up to `client_mount_timeout`
 * when no monitor answers), opening an image, metadata reads and writes, size reads, closing.
 * The worker asks for an image when a device needs one (`storage-open`), gets it lent
 * (`storage-opened`, with the device's state read from the metadata) and gives it back when the
 * device closes (`storage-release`); the loop keeps serving the other devices meanwhile.
 *
 * - One connection per (ceph-conf, ceph-user, ceph-options) in the process, shared by every
 *   image opened through it, shut down when its last image closes.
 * - Per image, a "metadata handle" (the image's head, opened read-write) for the state and the
 *   host records, shared by the devices of that image; per device, the image (or snapshot) it
 *   serves, lent to the worker for I/O.
 * - The state is written through the {@link StateWriter} (same coalescing, rate bound, retries
 *   and acknowledgements as files) with a sink per device that sets the metadata keys
 *   (`src/rbd/state.ts`).
 * - Changes made through other hosts: every {@link POLL_MS} ms the metadata of each served
 *   image is listed (one round trip: the keys share a prefix) and what differs from what this
 *   daemon last wrote or read is pushed to the worker (`shared-state`), which takes it unless it
 *   changed that part itself since. The image's size is re-read at the same time (`storage-size`):
 *   an `rbd resize` is seen within the interval. A watch on the image's header
 *   (`rbd_update_watch`) makes every host re-read at once when another one changed the
 *   metadata: polling is the fallback. Metadata writes on one image run one at a time; reads do
 *   not wait for them (a write may wait seconds for a stopped host that does not answer
 *   librbd's notification), and a listing that overlapped a state write of ours is not taken.
 * - Fencing: each daemon rewrites its record every {@link HOST_REFRESH_MS} (without a
 *   notification); one whose record another daemon sees unchanged for `fence-after` is fenced
 *   by that daemon (its client blocklisted), and a fenced daemon reconnects as a new client
 *   (docs/configuration.md, "Fencing hosts that go silent").
 *
 * @module
 */

import {
  EBLOCKLISTED,
  interfaceInfo,
  RadosCluster,
  type RadosOptions,
  RBD_FEATURE_EXCLUSIVE_LOCK,
  RBD_FEATURE_NAMES,
  type RbdImage,
  SysError,
} from "../../ffi/mod.ts";
import { matchesAny } from "../config/glob.ts";
import type { DeviceConfig, RbdConfig } from "../config/types.ts";
import type { RbdDeviceInfo } from "../control/types.ts";
import type { StorageOpen, ToWorker } from "../engine/messages.ts";
import { formatMac } from "../mac.ts";
import { StateKind } from "../state/device_state.ts";
import type { StateSink, StateWriter } from "../state/writer.ts";
import { DS } from "../stats.ts";
import { VERSION } from "../version.ts";
import { RbdViewStore } from "./clones.ts";
import { isViewConfig } from "../storage/views.ts";
import {
  decodeConfigValue,
  decodeMacsValue,
  encodeStateValue,
  hostKey,
  type HostRecord,
  hostsFromMetadata,
  metadataPrefix,
  stateFromMetadata,
  stateKey,
} from "./state.ts";

/**
 * How often the metadata (state, host records) and the size of served images are re-read
 * without a notification (the fallback: a change is normally seen at once, through the watch
 * on the image's header).
 */
export const POLL_MS = 250;
/**
 * How often this daemon's host record is rewritten: several times within the shortest
 * `fence-after` (2 s), so that a host that is alive is never taken for a silent one.
 */
export const HOST_REFRESH_MS = 500;
/** A host record older than this is shown as stale (its daemon stopped refreshing it). */
export const HOST_STALE_MS = 4 * HOST_REFRESH_MS;
/** How long after a failed reconnection of a fenced device it is tried again. */
const REOPEN_RETRY_MS = 2_000;
/** How long after a failed fencing it is tried again. */
const FENCE_RETRY_MS = 1_000;
/** How long {@link RbdImages.close} waits for the cluster at shutdown. */
const CLOSE_BOUND_MS = 5_000;

type Log = (level: "debug" | "info" | "warning" | "error", message: string) => void;

export interface RbdImagesOptions {
  log: Log;
  /** Posts a message to the data-path worker and wakes it. */
  post: (m: ToWorker) => void;
  writer: StateWriter;
  /** This daemon's name among the hosts of an image (unique per daemon, stable over restarts). */
  hostId: string;
  /** The host name recorded. */
  hostName: string;
  /** The interfaces the daemon serves on now. */
  interfaces: () => string[];
  /** Overrides {@link POLL_MS} (tests). */
  pollMs?: number;
}

/** `rbd:POOL/IMAGE[@SNAP]` of a device. */
export function rbdLabel(r: Pick<RbdConfig, "pool" | "image" | "snapshot">): string {
  return `rbd:${r.pool}/${r.image}${r.snapshot === null ? "" : `@${r.snapshot}`}`;
}

/** A connection shared by the images opened through it. */
interface Connection {
  key: string;
  cluster: Promise<RadosCluster>;
  users: number;
  /** Blocklisted by another host: nothing more is opened through it (a new one replaces it). */
  fenced: boolean;
}

/** An image's head, open read-write for its metadata; calls on it run one at a time. */
interface MetaHandle {
  key: string;
  connection: Connection;
  image: Promise<RbdImage>;
  users: number;
  queue: Promise<unknown>;
}

/** A device being served: where its state lives, what was last seen there. */
interface Served {
  name: string;
  config: DeviceConfig;
  rbd: RbdConfig;
  meta: MetaHandle;
  prefix: string;
  fsid: string;
  /** This daemon's librados client address, recorded for the others to fence it by. */
  address: string;
  features: string[];
  size: number;
  /** Loans of this device in the worker (two while a reload replaces it). */
  loans: Set<number>;
  /** Per state kind: the metadata value last written by us or read. */
  lastKnown: (string | null)[];
  hosts: Map<string, HostRecord>;
  hostWrittenAt: number;
  /** This daemon's record being written, if it is. */
  hostWriting: Promise<void> | null;
  /** State writes of ours that ended (a listing that overlapped one is not taken). */
  stateWrites: number;
  /** The record last written, `seen` left out: a change (interfaces) is written at once. */
  hostWritten: string;
  polling: boolean;
  /** A notification came while polling: poll again at once. */
  again: boolean;
  polledAt: number | null;
  pollError: string | null;
  /**
   * Other hosts' records as last read, and since when (performance.now() at the end of the
   * first read that showed that content) they have not changed.
   */
  observed: Map<string, { content: string; since: number }>;
  /** Its client was fenced: it is being reopened through a new one (no polling). */
  fenced: boolean;
}

/**
 * The clone a host of a views device reads and writes (src/rbd/clones.ts), lent to the worker:
 * only that host's I/O goes there, so it has no state, host records or fencing of its own (its
 * device's state lives with the golden snapshot).
 */
interface ViewLoan {
  id: number;
  label: string;
  connection: Connection;
  image: RbdImage;
}

/** An image lent to the worker. */
interface Loan {
  id: number;
  served: Served;
  connection: Connection;
  image: RbdImage;
}

export class RbdImages {
  readonly #options: RbdImagesOptions;
  readonly #connections = new Map<string, Connection>();
  readonly #metas = new Map<string, MetaHandle>();
  readonly #served = new Map<string, Served>();
  readonly #loans = new Map<number, Loan>();
  readonly #viewLoans = new Map<number, ViewLoan>();
  /** The view store of each views device, with the connection it holds. */
  readonly #viewStores = new Map<string, { store: RbdViewStore; connection: Connection }>();
  /** Client addresses fenced by this daemon, or being fenced. */
  readonly #fencing = new Set<string>();
  /** When fencing an address last failed. */
  readonly #fenceFailed = new Map<string, number>();
  /** Devices whose client was fenced and whose reopen has not succeeded yet. */
  readonly #fencedDevices = new Set<string>();
  /** Opens, releases and closes under way (close waits for them). */
  readonly #work = new Set<Promise<unknown>>();
  #timer: ReturnType<typeof setInterval> | undefined;
  #closed = false;

  constructor(options: RbdImagesOptions) {
    this.#options = options;
  }

  /** Answers the worker's `storage-open` (asynchronously: the answer is posted). */
  open(request: StorageOpen): void {
    this.#background(isViewConfig(request.device) ? this.#openView(request) : this.#open(request));
  }

  /**
   * The store of the views of device `d` (`path = "rbd:POOL/IMAGE@SNAP"`) in pool `pool`
   * (`views = "rbd:POOL"`), through the connection its images use; it replaces the device's
   * previous one (a reload).
   */
  viewStore(d: DeviceConfig, pool: string): RbdViewStore {
    const r = d.rbd!;
    const connection = this.#connect(r);
    const store = new RbdViewStore({
      device: d.name,
      golden: { pool: r.pool, image: r.image, snapshot: r.snapshot ?? undefined },
      pool,
      cluster: connection.cluster,
    });
    const old = this.#viewStores.get(d.name);
    this.#viewStores.set(d.name, { store, connection });
    if (old) this.#dropConnection(old.connection);
    return store;
  }

  /** Opens the clone of a host of a views device read-write and lends it (see ViewLoan). */
  async #openView(request: StorageOpen): Promise<void> {
    const r = request.device.rbd!;
    const label = rbdLabel(r);
    let connection: Connection | null = null;
    let image: RbdImage | null = null;
    try {
      connection = this.#connect(r);
      const cluster = await connection.cluster;
      image = await cluster.openImage({ pool: r.pool, image: r.image });
      const size = await image.sizeAsync();
      if (this.#closed) throw new Error("the daemon is stopping");
      this.#viewLoans.set(request.id, { id: request.id, label, connection, image });
      this.#options.post({
        type: "storage-opened",
        id: request.id,
        ok: true,
        loan: { id: request.id, token: image.lend(), size },
        state: { name: request.device.name, config: new Uint8Array(0), macMask: [], reserve: [] },
      });
    } catch (e) {
      if (image) await image.closeAsync().catch(() => {});
      if (connection) this.#dropConnection(connection);
      this.#openFailed(request.id, label, e);
    }
  }

  /** Remembers `p` until it settles ({@link close} waits for such work). */
  #background(p: Promise<unknown>): void {
    const tracked = p.catch(() => {}).finally(() => this.#work.delete(tracked));
    this.#work.add(tracked);
  }

  async #open(request: StorageOpen): Promise<void> {
    const d = request.device;
    const r = d.rbd!;
    const label = rbdLabel(r);
    const log = this.#options.log;
    let connection: Connection | null = null;
    let meta: MetaHandle | null = null;
    let image: RbdImage | null = null;
    try {
      connection = this.#connect(r);
      const cluster = await connection.cluster;
      meta = this.#meta(connection, cluster, r);
      const head = await meta.image;
      image = await cluster.openImage({
        pool: r.pool,
        image: r.image,
        snapshot: r.snapshot ?? undefined,
        readOnly: d.readOnly,
      });
      const size = await image.sizeAsync();
      const bits = image.features();
      const prefix = metadataPrefix(r.snapshot);
      const metadata = await head.metadataListAsync(prefix);
      const { state, problems } = stateFromMetadata(d.name, metadata, prefix);
      for (const p of problems) {
        log(
          "warning",
          `disk/${d.name}: ${label}: damaged AoE state in the image's metadata, ${p}; ` +
            "served as empty (the next change rewrites it)",
        );
      }
      if (this.#closed) throw new Error("the daemon is stopping");
      const served = this.#serve(d, meta, prefix, cluster, size, bits);
      for (const kind of [StateKind.CONFIG, StateKind.MAC_MASK, StateKind.RESERVE]) {
        served.lastKnown[kind] = metadata.get(stateKey(prefix, kind)) ?? "";
      }
      served.hosts = hostsFromMetadata(metadata, prefix);
      served.loans.add(request.id);
      this.#loans.set(request.id, { id: request.id, served, connection, image });
      this.#options.writer.setSink(d.name, this.#sink(d.name));
      const wasFenced = this.#fencedDevices.delete(d.name);
      this.#options.post({
        type: "storage-opened",
        id: request.id,
        ok: true,
        loan: { id: request.id, token: image.lend(), size },
        state,
      });
      log(
        wasFenced ? "warning" : "info",
        `disk/${d.name}: ${label} (cluster ${served.fsid}, ${cluster.name}, client ${served.address}): ` +
          `${wasFenced ? "reconnected after being fenced; " : ""}features ${
            served.features.join(", ") || "none"
          }; AoE state in its metadata (${prefix}*)`,
      );
      if (!d.readOnly && r.snapshot === null && (bits & RBD_FEATURE_EXCLUSIVE_LOCK) !== 0) {
        log(
          "warning",
          `disk/${d.name}: ${label} has the exclusive-lock feature and is served read-write: ` +
            "when several hosts serve it, every write makes them pass the lock back and forth " +
            "(a fraction of the IOPS), and a host that dies holding it blocks the others' writes " +
            "until the cluster drops it (about 30 s). Serve it read-write from one host only, or " +
            `disable the feature: rbd feature disable ${r.pool}/${r.image} exclusive-lock ` +
            "(after object-map, fast-diff and journaling, which need it)",
        );
      }
      this.#refreshHost(served);
      await served.hostWriting;
      this.#startPolling();
    } catch (e) {
      if (image) await image.closeAsync().catch(() => {});
      if (meta) this.#dropMeta(meta);
      if (connection) this.#dropConnection(connection);
      this.#openFailed(request.id, label, e);
      if (this.#fencedDevices.has(d.name) && !this.#closed) {
        // Fenced and not reconnected yet (the cluster may be out of reach): try again.
        const timer = setTimeout(() => {
          if (!this.#closed && this.#fencedDevices.has(d.name)) {
            this.#options.post({
              type: "storage-fence",
              device: d.name,
              event: "fenced",
              retry: true,
            });
          }
        }, REOPEN_RETRY_MS);
        Deno.unrefTimer(timer);
      }
    }
  }

  /** Tells the worker that storage-open `id` of `label` failed, and why. */
  #openFailed(id: number, label: string, e: unknown): void {
    this.#options.post({
      type: "storage-opened",
      id,
      ok: false,
      message: `${label}: ${message(e)}`,
    });
  }

  /** The worker is done with loan `id`: the image closes (and what only it used). */
  release(id: number): void {
    const view = this.#viewLoans.get(id);
    if (view) {
      this.#viewLoans.delete(id);
      this.#background(
        view.image.closeAsync().catch((e) => {
          this.#options.log("warning", `closing ${view.label}: ${message(e)}`);
        }).finally(() => this.#dropConnection(view.connection)),
      );
      return;
    }
    const loan = this.#loans.get(id);
    if (!loan) return;
    this.#loans.delete(id);
    this.#background(this.#release(loan));
  }

  async #release(loan: Loan): Promise<void> {
    const served = loan.served;
    served.loans.delete(loan.id);
    const log = this.#options.log;
    try {
      await loan.image.closeAsync();
    } catch (e) {
      log("warning", `disk/${served.name}: closing ${rbdLabel(served.rbd)}: ${message(e)}`);
    }
    if (served.loans.size === 0) {
      if (this.#served.get(served.name) === served) this.#served.delete(served.name);
      // No longer served by this daemon: its host record goes (after a refresh under way).
      try {
        await served.hostWriting;
        const head = await served.meta.image;
        const key = hostKey(served.prefix, this.#options.hostId);
        await this.#queue(served.meta, () => head.metadataRemoveAsync(key));
      } catch (e) {
        log("debug", `disk/${served.name}: removing the host record: ${message(e)}`);
      }
    }
    this.#dropMeta(served.meta);
    this.#dropConnection(loan.connection);
  }

  /**
   * After a (re)load of the configuration: devices that are not RBD devices (any more) keep
   * their state in the state directory, and those without RBD views (any more) need no view
   * store.
   */
  configured(devices: readonly DeviceConfig[]): void {
    for (const d of devices) if (!d.rbd) this.#options.writer.setSink(d.name, null);
    // The view stores of devices without RBD views any more let their connections go.
    const withViews = new Set(devices.filter((d) => d.rbd && d.views).map((d) => d.name));
    for (const [name, { connection }] of this.#viewStores) {
      if (withViews.has(name)) continue;
      this.#viewStores.delete(name);
      this.#dropConnection(connection);
    }
  }

  /** Reads the metadata and sizes of every served image now (a reload re-reads sizes). */
  async pollNow(): Promise<void> {
    await Promise.all([...this.#served.values()].map((s) => this.#poll(s)));
  }

  /** What `ggaoectl show-rbd` shows; `counters` gives a device's counters (src/stats.ts). */
  info(counters: (device: string) => Float64Array | undefined = () => undefined): RbdDeviceInfo[] {
    const now = Date.now();
    return [...this.#served.values()].map((s) => ({
      name: s.name,
      image: rbdLabel(s.rbd),
      cluster: { conf: s.rbd.conf, user: s.rbd.user, fsid: s.fsid },
      features: s.features,
      size: s.size,
      readOnly: s.config.readOnly,
      prefix: s.prefix,
      hosts: [...s.hosts].map(([id, h]) => {
        const age = Math.max(0, now / 1000 - h.seen);
        return {
          ...h,
          id,
          self: id === this.#options.hostId,
          ageSeconds: Math.round(age * 10) / 10,
          stale: age * 1000 > HOST_STALE_MS,
        };
      }),
      client: s.address,
      fencing: {
        enabled: s.rbd.fence && s.rbd.snapshot === null,
        afterSeconds: s.rbd.fenceAfter,
        fencings: counters(s.name)?.[DS.rbd_fencings] ?? 0,
        fenced: counters(s.name)?.[DS.rbd_fenced] ?? 0,
        droppedRequests: counters(s.name)?.[DS.rbd_fenced_drops] ?? 0,
      },
      polledAgo: s.polledAt === null ? null : Math.round((now - s.polledAt) / 100) / 10,
      pollError: s.pollError,
    }));
  }

  /**
   * Closes every image and connection (the worker must have stopped: it may not use a lent
   * image any more), removing this daemon's host records. Bounded: an unreachable cluster does
   * not hold up the exit.
   */
  async close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#timer);
    const work = (async () => {
      await Promise.allSettled([...this.#work]);
      for (const id of [...this.#loans.keys(), ...this.#viewLoans.keys()]) this.release(id);
      for (const { connection } of this.#viewStores.values()) this.#dropConnection(connection);
      this.#viewStores.clear();
      // Releases close metadata handles, which close connections: wait until all is done.
      while (this.#work.size > 0) await Promise.allSettled([...this.#work]);
    })();
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([work, new Promise((r) => timer = setTimeout(r, CLOSE_BOUND_MS))]);
    clearTimeout(timer);
  }

  // ---- connections and handles ----

  #connect(r: RbdConfig): Connection {
    const options: RadosOptions = { conf: r.conf, user: r.user, options: r.options };
    const key = JSON.stringify([r.conf, r.user, Object.entries(r.options).sort()]);
    let c = this.#connections.get(key);
    if (!c) {
      const connection: Connection = {
        key,
        cluster: RadosCluster.connect(options),
        users: 0,
        fenced: false,
      };
      // A failed connection is forgotten, so that the next open tries again.
      connection.cluster.catch(() => {
        if (this.#connections.get(key) === connection) this.#connections.delete(key);
      });
      this.#connections.set(key, connection);
      c = connection;
    }
    c.users++;
    return c;
  }

  #dropConnection(c: Connection): void {
    if (--c.users > 0) return;
    if (this.#connections.get(c.key) === c) this.#connections.delete(c.key);
    this.#background(c.cluster.then((cluster) => cluster.closeAsync()));
  }

  #meta(connection: Connection, cluster: RadosCluster, r: RbdConfig): MetaHandle {
    const key = `${connection.key} ${r.pool}/${r.image}`;
    let m = this.#metas.get(key);
    if (!m) {
      const meta: MetaHandle = {
        key,
        connection,
        image: cluster.openImage({ pool: r.pool, image: r.image }),
        users: 0,
        queue: Promise.resolve(),
      };
      meta.image.then((head) => {
        // Other hosts' changes (state, records, size) are seen at once; polling stays the
        // fallback, for a lost watch or notification.
        try {
          head.watchUpdates(() => this.#notified(meta));
        } catch (e) {
          this.#options.log(
            "warning",
            `rbd:${r.pool}/${r.image}: cannot watch the image for changes (${message(e)}); ` +
              `other hosts' changes are seen within ${this.#options.pollMs ?? POLL_MS} ms`,
          );
        }
      }, () => {
        if (this.#metas.get(key) === meta) this.#metas.delete(key);
      });
      this.#metas.set(key, meta);
      connection.users++; // the handle holds its connection
      m = meta;
    }
    m.users++;
    return m;
  }

  #dropMeta(m: MetaHandle): void {
    if (--m.users > 0) return;
    if (this.#metas.get(m.key) === m) this.#metas.delete(m.key);
    const closed = this.#queue(m, async () => (await m.image).closeAsync());
    this.#background(closed.catch(() => {}).finally(() => this.#dropConnection(m.connection)));
  }

  /** Runs `call` on `m` after every call queued before it. */
  #queue<T>(m: MetaHandle, call: () => Promise<T>): Promise<T> {
    const result = m.queue.then(call, call);
    m.queue = result.catch(() => {});
    return result;
  }

  #serve(
    d: DeviceConfig,
    meta: MetaHandle,
    prefix: string,
    cluster: RadosCluster,
    size: number,
    bits: number,
  ): Served {
    const known = this.#served.get(d.name);
    if (known && known.meta === meta && known.prefix === prefix) {
      known.config = d;
      known.size = size;
      return known;
    }
    const served: Served = {
      name: d.name,
      config: d,
      rbd: d.rbd!,
      meta,
      prefix,
      fsid: cluster.fsid(),
      address: cluster.addresses(),
      features: Object.entries(RBD_FEATURE_NAMES).filter(([, bit]) => bits & bit).map(([n]) => n),
      size,
      loans: new Set(),
      lastKnown: [null, null, null],
      hosts: new Map(),
      hostWrittenAt: 0,
      hostWriting: null,
      stateWrites: 0,
      hostWritten: "",
      polling: false,
      again: false,
      polledAt: null,
      pollError: null,
      observed: new Map(),
      fenced: false,
    };
    this.#served.set(d.name, served);
    return served;
  }

  // ---- state ----

  /** The StateWriter sink of device `name`: the metadata of the image it serves now. */
  #sink(name: string): StateSink {
    return {
      describe: (kind: StateKind) => {
        const s = this.#served.get(name);
        return s
          ? `${rbdLabel(s.rbd)} metadata ${stateKey(s.prefix, kind)}`
          : `the metadata of ${name}'s image`;
      },
      write: async (kind: StateKind, bytes: Uint8Array) => {
        const s = this.#served.get(name);
        if (!s) throw new Error("the image is not open");
        const value = encodeStateValue(kind, bytes);
        const head = await s.meta.image;
        try {
          await this.#queue(s.meta, () => head.metadataSetAsync(stateKey(s.prefix, kind), value));
          s.lastKnown[kind] = value;
        } finally {
          s.stateWrites++;
        }
      },
    };
  }

  #startPolling(): void {
    if (this.#timer !== undefined || this.#closed) return;
    this.#timer = setInterval(() => {
      for (const s of this.#served.values()) if (!s.polling) this.#poll(s);
    }, this.#options.pollMs ?? POLL_MS);
  }

  /** The image's header changed (another host, or this one): re-read what it serves from it. */
  #notified(meta: MetaHandle): void {
    for (const s of this.#served.values()) {
      if (s.meta !== meta) continue;
      if (s.polling) s.again = true;
      else this.#poll(s);
    }
  }

  async #poll(s: Served): Promise<void> {
    if (s.polling || s.loans.size === 0 || s.fenced) return;
    s.polling = true;
    s.again = false;
    try {
      const head = await s.meta.image;
      // Reads do not wait in the image's queue: a write there may wait seconds for a host that
      // does not answer librbd's notification (a stopped one), and fencing that host must not.
      const readStart = performance.now();
      const writes = s.stateWrites;
      const metadata = await head.metadataListAsync(s.prefix);
      const readEnd = performance.now();
      // A state write of ours that ended meanwhile may be missing from the listing: the next
      // poll takes the state.
      if (writes === s.stateWrites) this.#takeState(s, metadata);
      else s.again = true;
      s.hosts = hostsFromMetadata(metadata, s.prefix);
      this.#checkPeers(s, readStart, readEnd);
      if (s.rbd.snapshot === null) {
        const size = await head.sizeAsync();
        if (size !== s.size) {
          // librbd's I/O path does not refresh the header after a resize (I/O past the old end
          // fails with EINVAL) until an API call does: ask the lent images, then the worker.
          for (const loan of [...this.#loans.values()]) {
            if (loan.served === s) await loan.image.sizeAsync();
          }
          s.size = size;
          this.#options.post({ type: "storage-size", device: s.name, bytes: size });
        }
      }
      this.#refreshHost(s);
      if (s.pollError !== null) {
        this.#options.log("info", `disk/${s.name}: ${rbdLabel(s.rbd)}: metadata readable again`);
      }
      s.pollError = null;
      s.polledAt = Date.now();
    } catch (e) {
      if (e instanceof SysError && e.errno === EBLOCKLISTED) {
        this.#clientFenced(s.meta.connection, `reading the metadata of ${rbdLabel(s.rbd)}`);
        return;
      }
      if (s.pollError === null) {
        this.#options.log(
          "warning",
          `disk/${s.name}: cannot read the metadata of ${rbdLabel(s.rbd)}: ${
            message(e)
          }; changes made through other hosts are not seen until it works again`,
        );
      }
      s.pollError = message(e);
    } finally {
      s.polling = false;
      if (s.again && !this.#closed) this.#poll(s);
    }
  }

  // ---- fencing ----

  /**
   * Fences the other hosts of `s`'s image whose records have not changed for `fence-after`:
   * judged by this daemon's own monotonic clock, from the end of the first read that showed a
   * record's content to the start of the latest read that still shows it (clocks of other
   * hosts are never compared). A host that is alive rewrites its record every
   * {@link HOST_REFRESH_MS}; after a pause of this daemon, its first read shows the others'
   * newer records, so its own pause never makes it fence anyone.
   */
  #checkPeers(s: Served, readStart: number, readEnd: number): void {
    const self = this.#options.hostId;
    for (const id of s.observed.keys()) if (!s.hosts.has(id)) s.observed.delete(id);
    for (const [id, record] of s.hosts) {
      if (id === self) continue;
      const content = JSON.stringify(record);
      const seen = s.observed.get(id);
      if (!seen || seen.content !== content) {
        s.observed.set(id, { content, since: readEnd });
        continue;
      }
      const address = record.address;
      if (!s.rbd.fence || s.rbd.snapshot !== null || !address) continue;
      if (record.fenced?.address === address) continue; // fenced already
      const silentMs = readStart - seen.since;
      if (silentMs >= s.rbd.fenceAfter * 1000) {
        this.#background(this.#fence(s, id, record, silentMs));
      }
    }
  }

  /** Blocklists the client of host `id` (silent for `silentMs`), then marks its record. */
  async #fence(s: Served, id: string, record: HostRecord, silentMs: number): Promise<void> {
    const address = record.address!;
    if (this.#fencing.has(address)) return; // under way, or done (through another device)
    const failedAt = this.#fenceFailed.get(address);
    if (failedAt !== undefined && performance.now() - failedAt < FENCE_RETRY_MS) return;
    this.#fencing.add(address);
    const log = this.#options.log;
    const label = rbdLabel(s.rbd);
    const who = `host ${record.host} (pid ${record.pid}, id ${id}, client ${address})`;
    log(
      "warning",
      `disk/${s.name}: ${label}: ${who} has not refreshed its record for ${
        (silentMs / 1000).toFixed(1)
      } s (fence-after ${s.rbd.fenceAfter} s): fencing it (blocklisting its Ceph client)`,
    );
    const started = performance.now();
    try {
      const cluster = await s.meta.connection.cluster;
      await cluster.blocklistAsync(address);
      const ms = Math.round(performance.now() - started);
      this.#options.post({ type: "storage-fence", device: s.name, event: "fencing" });
      log(
        "warning",
        `disk/${s.name}: ${label}: fenced ${who} in ${ms} ms: the OSDs refuse its requests from ` +
          "now on, so none it still holds can land over newer data; it reconnects as a new " +
          "client when it runs again",
      );
    } catch (e) {
      this.#fencing.delete(address);
      this.#fenceFailed.set(address, performance.now());
      log(
        "error",
        `disk/${s.name}: ${label}: cannot fence ${who}: ${message(e)}; its late writes could ` +
          `land over newer data: trying again (give ${s.rbd.user} 'profile rbd' caps on the ` +
          "monitors if it is refused)",
      );
      return;
    }
    try {
      await this.#markFenced(s, id, address);
    } catch (e) {
      log("warning", `disk/${s.name}: ${label}: cannot mark ${who} as fenced: ${message(e)}`);
    }
  }

  /** Writes into host `id`'s record who fenced which of its clients, and when. */
  async #markFenced(s: Served, id: string, address: string): Promise<void> {
    const head = await s.meta.image;
    const key = hostKey(s.prefix, id);
    await this.#queue(s.meta, async () => {
      const value = await head.metadataGetAsync(key);
      if (value === undefined) return;
      const record = JSON.parse(value) as HostRecord;
      if (record.address !== address) return; // it came back as a new client meanwhile
      record.fenced = {
        by: this.#options.hostId,
        host: this.#options.hostName,
        at: Math.round(Date.now()) / 1000,
        address,
      };
      await head.metadataSetAsync(key, JSON.stringify(record));
    });
  }

  /** The worker's I/O on `device` failed with EBLOCKLISTED: this host's client was fenced. */
  blocklisted(device: string): void {
    const s = this.#served.get(device);
    if (s) this.#clientFenced(s.meta.connection, `I/O on disk/${device}`);
  }

  /**
   * Another host fenced connection `c` (the OSDs answer EBLOCKLISTED): nothing more is opened
   * through it, and every device served through it is reopened through a new connection (a new
   * client, with a new address), the worker dropping what it had queued meanwhile.
   */
  #clientFenced(c: Connection, how: string): void {
    if (c.fenced) return;
    c.fenced = true;
    if (this.#connections.get(c.key) === c) this.#connections.delete(c.key);
    for (const [key, m] of this.#metas) if (m.connection === c) this.#metas.delete(key);
    const served = [...this.#served.values()].filter((s) => s.meta.connection === c);
    for (const s of served) s.fenced = true;
    const names = served.map((s) => `disk/${s.name}`).join(", ") || "no device";
    this.#options.log(
      "error",
      `${names}: this host's Ceph client ${served[0]?.address ?? ""} was fenced by another ` +
        `host (the OSDs refused it, ${how}): its record went unrefreshed for longer than ` +
        "fence-after (this process was stopped or frozen, or cut off from the cluster). The " +
        "requests it had queued are dropped, never replayed; reconnecting as a new client",
    );
    for (const s of served) {
      this.#fencedDevices.add(s.name);
      this.#options.post({ type: "storage-fence", device: s.name, event: "fenced" });
    }
  }

  /** Pushes to the worker what other hosts changed (what differs from what we last knew). */
  #takeState(s: Served, metadata: ReadonlyMap<string, string>): void {
    const writer = this.#options.writer;
    for (const kind of [StateKind.CONFIG, StateKind.MAC_MASK, StateKind.RESERVE]) {
      // A change of ours waits to be written or is being written: it wins, and is written.
      if (writer.busy(s.name, kind)) continue;
      const value = metadata.get(stateKey(s.prefix, kind)) ?? "";
      if (value === s.lastKnown[kind]) continue;
      s.lastKnown[kind] = value;
      const decoded = kind === StateKind.CONFIG ? decodeConfigValue(value) : decodeMacsValue(value);
      if (typeof decoded === "string") {
        this.#options.log(
          "warning",
          `disk/${s.name}: ignoring ${stateKey(s.prefix, kind)} of ${rbdLabel(s.rbd)}: ${decoded}`,
        );
        continue;
      }
      this.#options.post({
        type: "shared-state",
        device: s.name,
        kind,
        seq: writer.durableSeq(s.name, kind),
        ...(decoded instanceof Uint8Array ? { config: decoded } : { macs: decoded }),
      });
    }
  }

  // ---- host records ----

  /** This daemon's record for `s` now. */
  #hostRecord(s: Served): HostRecord {
    const d = s.config;
    const interfaces = this.#options.interfaces().filter((n) => matchesAny(d.interfaces, n))
      .map((name) => {
        let mac = "";
        try {
          mac = formatMac(interfaceInfo(name).mac);
        } catch { /* gone meanwhile */ }
        return { name, mac };
      });
    const record: HostRecord = {
      host: this.#options.hostName,
      pid: Deno.pid,
      device: d.name,
      target: `e${d.shelf}.${d.slot}`,
      interfaces,
      seen: Math.round(Date.now()) / 1000,
      readOnly: d.readOnly,
      version: VERSION,
      address: s.address,
    };
    return record;
  }

  /**
   * Rewrites this daemon's record for `s` when {@link HOST_REFRESH_MS} passed or it changed,
   * in the background (the poll goes on); one write at a time.
   */
  #refreshHost(s: Served): void {
    if (s.hostWriting !== null || this.#closed || this.#served.get(s.name) !== s) return;
    const record = this.#hostRecord(s);
    if (
      Date.now() - s.hostWrittenAt < HOST_REFRESH_MS &&
      JSON.stringify({ ...record, seen: 0 }) === s.hostWritten
    ) return;
    const writing = this.#writeHost(s, record).catch((e) => {
      if (e instanceof SysError && e.errno === EBLOCKLISTED) {
        this.#clientFenced(s.meta.connection, `writing this host's record in ${rbdLabel(s.rbd)}`);
      } else if (s.pollError === null) {
        this.#options.log(
          "warning",
          `disk/${s.name}: cannot refresh this host's record in ${rbdLabel(s.rbd)}: ${
            message(e)
          }; other hosts may fence this one if it lasts (fence-after)`,
        );
      }
    }).finally(() => s.hostWriting = null);
    s.hostWriting = writing;
    this.#background(writing);
  }

  /**
   * Writes this daemon's record for `s`, without notifying the image's watchers (see
   * RbdImage.metadataSetQuietAsync: a notification would wait for a stopped host), outside the
   * image's queue (a state write there may wait for one): the record keeps being refreshed
   * while another host is stopped, so that a third one never takes this one for silent.
   */
  async #writeHost(s: Served, record = this.#hostRecord(s)): Promise<void> {
    const head = await s.meta.image;
    const key = hostKey(s.prefix, this.#options.hostId);
    s.hostWrittenAt = Date.now();
    s.hostWritten = JSON.stringify({ ...record, seen: 0 });
    await head.metadataSetQuietAsync(key, JSON.stringify(record));
    s.hosts.set(this.#options.hostId, record);
  }
}

function message(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
