/**
 * Ceph RBD images on the daemon's main thread: cluster connections, image opens, the AoE state
 * kept in each image's metadata, and this daemon's record among the hosts serving an image.
 *
 * Everything that can wait for the cluster runs here, through librbd's nonblocking FFI calls
 * (helper threads), never on the data-path worker: connecting (up to `client_mount_timeout`
 * when no monitor answers), opening an image, metadata reads and writes, size reads, closing.
 * The worker asks for an image when a device needs one (`rbd-open`), gets it lent
 * (`rbd-opened`, with the device's state read from the metadata) and gives it back when the
 * device closes (`rbd-release`); the loop keeps serving the other devices meanwhile.
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
 *   daemon last wrote or read is pushed to the worker (`rbd-state`), which takes it unless it
 *   changed that part itself since. The image's size is re-read at the same time (`rbd-size`):
 *   an `rbd resize` is seen within the interval. Metadata calls on one image run one at a time,
 *   so a listing always reflects the writes that finished before it.
 *
 * @module
 */

import {
  interfaceInfo,
  RadosCluster,
  type RadosOptions,
  RBD_FEATURE_EXCLUSIVE_LOCK,
  RBD_FEATURE_NAMES,
  type RbdImage,
} from "../../ffi/mod.ts";
import { matchesAny } from "../config/glob.ts";
import type { DeviceConfig, RbdConfig } from "../config/types.ts";
import type { RbdDeviceInfo } from "../control/types.ts";
import type { RbdOpen, ToWorker } from "../engine/messages.ts";
import { formatMac } from "../mac.ts";
import { StateKind } from "../state/device_state.ts";
import type { StateSink, StateWriter } from "../state/writer.ts";
import { VERSION } from "../version.ts";
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

/** How often the metadata (state, host records) and the size of served images are re-read. */
export const POLL_MS = 250;
/** How often this daemon's host record is rewritten. */
export const HOST_REFRESH_MS = 10_000;
/** A host record older than this is shown as stale (its daemon stopped refreshing it). */
export const HOST_STALE_MS = 3 * HOST_REFRESH_MS;
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
  features: string[];
  size: number;
  /** Loans of this device in the worker (two while a reload replaces it). */
  loans: Set<number>;
  /** Per state kind: the metadata value last written by us or read. */
  lastKnown: (string | null)[];
  hosts: Map<string, HostRecord>;
  hostWrittenAt: number;
  /** The record last written, `seen` left out: a change (interfaces) is written at once. */
  hostWritten: string;
  polling: boolean;
  polledAt: number | null;
  pollError: string | null;
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
  /** Opens, releases and closes under way (close waits for them). */
  readonly #work = new Set<Promise<unknown>>();
  #timer: ReturnType<typeof setInterval> | undefined;
  #closed = false;

  constructor(options: RbdImagesOptions) {
    this.#options = options;
  }

  /** Answers the worker's `rbd-open` (asynchronously: the answer is posted). */
  open(request: RbdOpen): void {
    this.#background(this.#open(request));
  }

  /** Remembers `p` until it settles ({@link close} waits for such work). */
  #background(p: Promise<unknown>): void {
    const tracked = p.catch(() => {}).finally(() => this.#work.delete(tracked));
    this.#work.add(tracked);
  }

  async #open(request: RbdOpen): Promise<void> {
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
      });
      const size = await image.sizeAsync();
      const bits = image.features();
      const prefix = metadataPrefix(r.snapshot);
      const metadata = await this.#queue(meta, () => head.metadataListAsync(prefix));
      const { state, problems } = stateFromMetadata(d.name, metadata, prefix);
      for (const p of problems) {
        log(
          "warning",
          `disk/${d.name}: ${label}: damaged AoE state in the image's metadata, ${p}; ` +
            "served as empty (the next change rewrites it)",
        );
      }
      if (this.#closed) throw new Error("the daemon is stopping");
      const served = this.#serve(d, meta, prefix, cluster.fsid(), size, bits);
      for (const kind of [StateKind.CONFIG, StateKind.MAC_MASK, StateKind.RESERVE]) {
        served.lastKnown[kind] = metadata.get(stateKey(prefix, kind)) ?? "";
      }
      served.hosts = hostsFromMetadata(metadata, prefix);
      served.loans.add(request.id);
      this.#loans.set(request.id, { id: request.id, served, connection, image });
      this.#options.writer.setSink(d.name, this.#sink(d.name));
      this.#options.post({
        type: "rbd-opened",
        id: request.id,
        ok: true,
        loan: { id: request.id, token: image.lend(), size },
        state,
      });
      log(
        "info",
        `disk/${d.name}: ${label} (cluster ${served.fsid}, ${cluster.name}): features ${
          served.features.join(", ") || "none"
        }; AoE state in its metadata (${prefix}*)`,
      );
      if (!d.readOnly && (bits & RBD_FEATURE_EXCLUSIVE_LOCK) !== 0) {
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
      await this.#writeHost(served).catch((e) =>
        log("warning", `disk/${d.name}: cannot record this host in ${label}: ${message(e)}`)
      );
      this.#startPolling();
    } catch (e) {
      if (image) await image.closeAsync().catch(() => {});
      if (meta) this.#dropMeta(meta);
      if (connection) this.#dropConnection(connection);
      this.#options.post({
        type: "rbd-opened",
        id: request.id,
        ok: false,
        message: `${label}: ${message(e)}`,
      });
    }
  }

  /** The worker is done with loan `id`: the image closes (and what only it used). */
  release(id: number): void {
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
      // No longer served by this daemon: its host record goes.
      try {
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
   * their state in the state directory.
   */
  configured(devices: readonly DeviceConfig[]): void {
    for (const d of devices) if (!d.rbd) this.#options.writer.setSink(d.name, null);
  }

  /** Reads the metadata and sizes of every served image now (a reload re-reads sizes). */
  async pollNow(): Promise<void> {
    await Promise.all([...this.#served.values()].map((s) => this.#poll(s)));
  }

  /** What `ggaoectl show-rbd` shows. */
  info(): RbdDeviceInfo[] {
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
      for (const id of [...this.#loans.keys()]) this.release(id);
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
      const connection: Connection = { key, cluster: RadosCluster.connect(options), users: 0 };
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
      meta.image.catch(() => {
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
    fsid: string,
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
      fsid,
      features: Object.entries(RBD_FEATURE_NAMES).filter(([, bit]) => bits & bit).map(([n]) => n),
      size,
      loans: new Set(),
      lastKnown: [null, null, null],
      hosts: new Map(),
      hostWrittenAt: 0,
      hostWritten: "",
      polling: false,
      polledAt: null,
      pollError: null,
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
        await this.#queue(s.meta, () => head.metadataSetAsync(stateKey(s.prefix, kind), value));
        s.lastKnown[kind] = value;
      },
    };
  }

  #startPolling(): void {
    if (this.#timer !== undefined || this.#closed) return;
    this.#timer = setInterval(() => {
      for (const s of this.#served.values()) if (!s.polling) this.#poll(s);
    }, this.#options.pollMs ?? POLL_MS);
  }

  async #poll(s: Served): Promise<void> {
    if (s.polling || s.loans.size === 0) return;
    s.polling = true;
    try {
      const head = await s.meta.image;
      const metadata = await this.#queue(s.meta, () => head.metadataListAsync(s.prefix));
      this.#takeState(s, metadata);
      s.hosts = hostsFromMetadata(metadata, s.prefix);
      if (s.rbd.snapshot === null) {
        const size = await this.#queue(s.meta, () => head.sizeAsync());
        if (size !== s.size) {
          // librbd's I/O path does not refresh the header after a resize (I/O past the old end
          // fails with EINVAL) until an API call does: ask the lent images, then the worker.
          for (const loan of [...this.#loans.values()]) {
            if (loan.served === s) await loan.image.sizeAsync();
          }
          s.size = size;
          this.#options.post({ type: "rbd-size", device: s.name, bytes: size });
        }
      }
      const record = this.#hostRecord(s);
      if (
        Date.now() - s.hostWrittenAt >= HOST_REFRESH_MS ||
        JSON.stringify({ ...record, seen: 0 }) !== s.hostWritten
      ) {
        await this.#writeHost(s, record);
      }
      if (s.pollError !== null) {
        this.#options.log("info", `disk/${s.name}: ${rbdLabel(s.rbd)}: metadata readable again`);
      }
      s.pollError = null;
      s.polledAt = Date.now();
    } catch (e) {
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
        type: "rbd-state",
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
      seen: Math.floor(Date.now() / 1000),
      readOnly: d.readOnly,
      version: VERSION,
    };
    return record;
  }

  async #writeHost(s: Served, record = this.#hostRecord(s)): Promise<void> {
    const head = await s.meta.image;
    const key = hostKey(s.prefix, this.#options.hostId);
    s.hostWrittenAt = Date.now();
    s.hostWritten = JSON.stringify({ ...record, seen: 0 });
    await this.#queue(s.meta, () => head.metadataSetAsync(key, JSON.stringify(record)));
    s.hosts.set(this.#options.hostId, record);
  }
}

function message(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
