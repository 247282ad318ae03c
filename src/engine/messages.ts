/**
 * Messages between the main thread and the data-path worker.
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

import type { Config } from "../config/types.ts";

/** Main thread to worker. */
export type ToWorker =
  | { type: "start"; config: Config; wakeFd: number }
  | { type: "reload"; id: number; config: Config }
  | { type: "states"; id: number }
  | { type: "clear"; id: number; what: "config" | "macmask" | "reserve"; names: string[] }
  | { type: "clear-stats"; id: number; patterns: string[] | null }
  | { type: "stop"; id: number; graceMs: number };

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
  | { type: "started"; devices: DeviceCounters[]; interfaces: SharedCounters[] }
  | { type: "failed"; message: string }
  | { type: "counters"; devices: DeviceCounters[]; interfaces: SharedCounters[] }
  | { type: "reply"; id: number; ok: boolean; message?: string; data?: unknown }
  | { type: "stopped"; inFlight: number };

/** Device state as the control interface shows it. */
export interface StateSnapshot {
  name: string;
  config: Uint8Array;
  macMask: number[];
  reserve: number[];
}
