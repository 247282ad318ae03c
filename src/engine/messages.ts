/**
 * Messages between the main thread and a data-path worker (each of them, docs/workers.md).
 *
 * Why an eventfd as well as postMessage: the worker spends its life blocked in epoll_wait (a
 * synchronous FFI call), so its JavaScript event loop does not turn and a posted message would
 * wait until the next frame arrives. The main thread therefore posts the message and then writes
 * 1 to a wake eventfd that the worker's epoll watches; the worker reads the counter (n messages),
 * yields to its event loop until n messages have been delivered, handles them, and goes back to
 * epoll_wait. The data path never waits for the main thread.
 *
 * @module
 */

import type { Config, DeviceConfig } from "../config/types.ts";
import type { StorageLoan } from "../storage/backend.ts";

/** Main thread to worker. */
export type ToWorker =
  | {
    type: "start";
    config: Config;
    wakeFd: number;
    states: Map<string, StateSnapshot>;
    /**
     * One of several workers (docs/workers.md): its sockets take only its devices' frames, and
     * it idles rather than fails without devices.
     */
    multi: boolean;
    /** The catch-all worker's: the other workers' devices (see {@link OtherDevice}). */
    others: OtherDevice[] | null;
  }
  | {
    type: "reload";
    id: number;
    config: Config;
    states: Map<string, StateSnapshot>;
    others: OtherDevice[] | null;
  }
  | { type: "states"; id: number }
  | { type: "clear"; id: number; what: "config" | "macmask" | "reserve"; names: string[] }
  | { type: "clear-stats"; id: number; patterns: string[] | null }
  | PersistAck
  | StorageOpened
  | SharedStateChanged
  | StorageSizeChanged
  | StorageFence
  | ViewReady
  | { type: "view-drop"; id: number; device: string; mac: string }
  | { type: "views"; id: number }
  | { type: "stop"; id: number; graceMs: number };

/**
 * A device of another worker, as the catch-all worker (worker 0 of several, docs/workers.md)
 * knows it: its sockets let through every request but those to these addresses on the
 * interfaces the patterns select (null: every one), and it counts a broadcast that one of them
 * matches as `broadcast`, not `ignored`. Sent with each share (start, reload); null for every
 * other worker, and for the only one.
 */
export interface OtherDevice {
  shelf: number;
  slot: number;
  interfaces: string[] | null;
}

/**
 * Worker to main thread: host `mac` (12 hex digits) of views device `device` has no view open:
 * make it unless it exists (see src/storage/views.ts), and answer with a {@link ViewReady} of
 * the same `id`. `reset`: the host booted (a Query Config after views-quiet seconds of silence
 * in this run): drop its view first. `boot`: its first frame since the daemon started is a
 * Query Config: drop its view first if it was last seen longer ago than views-quiet (with
 * `views-lifecycle = "reset-on-discover"`).
 */
export interface ViewOpen {
  type: "view-open";
  id: number;
  device: DeviceConfig;
  mac: string;
  reset: boolean;
  boot: boolean;
}

/**
 * Main thread to worker: the view of request `id` exists now (`made`: it was made for this
 * request), or why not (`limit`: the device has max-views views already).
 */
export type ViewReady =
  | { type: "view-ready"; id: number; ok: true; made: boolean }
  | { type: "view-ready"; id: number; ok: false; limit: boolean; message: string };

/**
 * Worker to main thread: these hosts of views device `device` sent frames lately, the last one
 * `ages[i]` seconds ago.
 */
export interface ViewsSeen {
  type: "views-seen";
  device: string;
  macs: string[];
  ages: number[];
}

/** What the data path knows of one host of a views device (`views` command). */
export interface HostViewInfo {
  device: string;
  mac: string;
  /** "open", "opening" (being made or opened), "limit" (max-views reached), "failed", "none". */
  status: string;
  /** Bytes written through its view since the daemon started. */
  written: number;
  /** Seconds since its last frame. */
  idle: number;
}

/**
 * Worker to main thread: open the storage of `device` (its config; a backend whose opening may
 * block, such as a Ceph RBD image, see `src/storage/`) and lend it to the worker. Answered with
 * a {@link StorageOpened} of the same `id`.
 */
export interface StorageOpen {
  type: "storage-open";
  id: number;
  device: DeviceConfig;
}

/**
 * Main thread to worker: the storage of request `id`, lent (with the AoE state kept with it),
 * or why it could not be opened.
 */
export type StorageOpened =
  | { type: "storage-opened"; id: number; ok: true; loan: StorageLoan; state: StateSnapshot }
  | { type: "storage-opened"; id: number; ok: false; message: string };

/** Worker to main thread: the worker is done with loan `id` (the device closed). */
export interface StorageRelease {
  type: "storage-release";
  id: number;
}

/**
 * Main thread to worker: state `kind` of device `device`, kept with its storage (an RBD image's
 * metadata), was changed by another host. Applied only if the worker's change number of that kind is still
 * `seq` (the last change the main thread wrote): a newer local change wins, and is written.
 */
export interface SharedStateChanged {
  type: "shared-state";
  device: string;
  kind: number;
  seq: number;
  config?: Uint8Array;
  macs?: number[];
}

/** Main thread to worker: the lent storage of `device` is now `bytes` long. */
export interface StorageSizeChanged {
  type: "storage-size";
  device: string;
  bytes: number;
}

/**
 * Main thread to worker, about device `device` (an RBD image's):
 * - `fencing`: this daemon fenced another host of its image (counted in `rbd_fencings`);
 * - `fenced`: this daemon's Ceph client was fenced by another host: drop what is queued, count
 *   it (`rbd_fenced`) and reopen the image (the main thread opens it through a new client);
 *   again with `retry` while the reopen fails (not counted again).
 */
export interface StorageFence {
  type: "storage-fence";
  device: string;
  event: "fencing" | "fenced";
  retry?: boolean;
}

/**
 * Worker to main thread: I/O on device `device` found this host fenced off its storage (an RBD
 * image: EBLOCKLISTED, its Ceph client blocklisted by another host). Answered with a
 * `storage-fence` `fenced`.
 */
export interface StorageFenced {
  type: "storage-fenced";
  device: string;
}

/**
 * Worker to main thread: write these contents of state file `kind` (StateKind) of `device`;
 * they are its change number `seq`. Answered with a {@link PersistAck}.
 */
export interface PersistRequest {
  type: "persist";
  device: string;
  kind: number;
  seq: number;
  bytes: Uint8Array;
}

/** Main thread to worker: the outcome of writing change `seq` of `kind` of `device`. */
export interface PersistAck {
  type: "persisted";
  device: string;
  kind: number;
  seq: number;
  ok: boolean;
  message?: string;
}

/** One device's or interface's counters: a Float64Array over a SharedArrayBuffer. */
export interface SharedCounters {
  name: string;
  stats: Float64Array;
}

/**
 * A device's counters (and latency histograms, `src/stats.ts` DEVICE_SHARED_LENGTH long) with
 * its AoE address, which labels its metrics.
 */
export interface DeviceCounters extends SharedCounters {
  shelf: number;
  slot: number;
}

/** Worker to main thread. */
export type FromWorker =
  | { type: "log"; level: "debug" | "info" | "warning" | "error"; message: string }
  | {
    type: "started";
    devices: DeviceCounters[];
    interfaces: SharedCounters[];
    /** Devices that could not be opened, and why. */
    failed: { name: string; reason: string }[];
  }
  | { type: "failed"; message: string }
  | { type: "counters"; devices: DeviceCounters[]; interfaces: SharedCounters[] }
  | { type: "reply"; id: number; ok: boolean; message?: string; data?: unknown }
  | PersistRequest
  | StorageOpen
  | StorageRelease
  | StorageFenced
  | ViewOpen
  | ViewsSeen
  | { type: "stopped"; inFlight: number };

/** Device state as the control interface shows it, and as the main thread loads it. */
export interface StateSnapshot {
  name: string;
  config: Uint8Array;
  macMask: number[];
  reserve: number[];
  /** Loading: the state could not be read (the device is not exported), and why. */
  error?: string;
}
