/**
 * The storage backend interface: what a {@link Device} drives its I/O through, whatever serves
 * the bytes (a file or block device through kernel AIO or through plain system calls, a Ceph RBD
 * image through librbd). Device queues, sorts, merges and orders flushes; a backend moves the
 * bytes. Neither Device nor the data plane asks which backend it talks to: they read its
 * {@link BackendFeatures}. Each backend is one module of this folder; `registry.ts` picks the
 * one that serves a device (see docs/storage.md).
 *
 * The I/O calls are shaped for batching without allocation, after the kernel's AIO interface:
 * the device owns numbered slots (0 .. `slots`-1); it fills a slot with {@link Backend.prepare}
 * and {@link Backend.setIovec} (one iovec per request it merged) or {@link Backend.prepareFlush},
 * then either submits a list of slots and later reaps their completions (asynchronous backends:
 * the backend signals the device's eventfd), or has each slot transferred at once
 * ({@link BackendFeatures.synchronous}: completions come through {@link BackendIo.finish}).
 *
 * @module
 */

import type { EventFd, Memory } from "../../ffi/mod.ts";
import type { DeviceConfig } from "../config/types.ts";

/** What a backend does, for the layers above to ask instead of asking which backend it is. */
export interface BackendFeatures {
  /** Transfers bypass the page cache (O_DIRECT): buffers and offsets are 512-byte aligned. */
  readonly direct: boolean;
  /**
   * Transfers run on the loop's thread when asked ({@link Backend.transfer}), in order: no
   * completion events, replies leave in request order within the turn (so reads may land
   * straight in their replies' TX frames). False: {@link Backend.submit} and
   * {@link Backend.reap}.
   */
  readonly synchronous: boolean;
  /** Reads are copies out of a mapping of the storage, run in one batch per turn. */
  readonly mappedReads: boolean;
  /** FLUSH reaches the storage ({@link Backend.prepareFlush}); false: nothing to make durable. */
  readonly flush: boolean;
  /**
   * How the size is kept up to date: `reread`, the backend measures it itself on reload
   * ({@link Backend.refreshSize}); `told`, whoever lent the storage measures it (that may
   * block) and tells ({@link Backend.setSize}).
   */
  readonly resize: "reread" | "told";
  /** Opened read-only. */
  readonly readOnly: boolean;
  /**
   * The device's AoE state (config string, MAC Mask List, reservations) is kept with the
   * storage and shared with the other hosts that serve it, rather than in local state files.
   */
  readonly sharedState: boolean;
  /**
   * Another host may fence this one off the storage: transfers then fail with a result that
   * {@link Backend.fenced} recognises, and the storage must be opened anew.
   */
  readonly fencing: boolean;
}

/** What the device gives a backend when opening it. */
export interface BackendIo {
  /** Slots the backend must provide (prepare/submit/reap take slot numbers below this). */
  slots: number;
  /** Signalled when completions of an asynchronous backend are ready to be reaped. */
  events: EventFd;
  /**
   * A synchronous backend's completions: slot `slot` moved `result` bytes (or -errno). Called
   * from {@link Backend.transfer}, {@link Backend.finishQueued} and {@link Backend.setExportEnd}.
   */
  finish: (slot: number, result: number) => void;
}

/** Storage lent by the main thread (opened there because opening may block), see `lent`. */
export interface StorageLoan {
  /** The main thread's number for this loan (given back with the release). */
  id: number;
  /** Size in bytes when it was opened. */
  size: number;
  /** What the backend takes the storage over with (structured-cloneable: it crosses threads). */
  token: unknown;
}

/** How a device's storage is opened (see {@link BackendModule.open}). */
export interface OpenContext {
  config: DeviceConfig;
  /**
   * The backend of the device this one replaces (reload), still open: a backend may take its
   * storage over (so that an exclusive claim carries over). Null on a first open.
   */
  previous: Backend | null;
  /** The storage the main thread lent, for a {@link BackendModule.lent} backend. */
  loan: StorageLoan | null;
  /** Gives a loan back to the main thread. */
  release: (id: number) => void;
  io: BackendIo;
}

/** One backend module: the storage it serves and how it opens it. */
export interface BackendModule {
  /** Short name (logs, docs). */
  readonly name: string;
  /**
   * The main thread opens this storage (opening may block for seconds) and lends it to the
   * data path, which asks for it and waits for the loan; false: opened on the data path.
   */
  readonly lent: boolean;
  /** Whether this module serves the device `config` (the registry takes the first that does). */
  serves(config: DeviceConfig): boolean;
  /**
   * Opens the storage (or takes over the loan) and its I/O. Throws an Error that says what
   * failed and what to do; what it opened is closed again (a loan is given back).
   */
  open(context: OpenContext): Backend;
}

/** An open storage backend of one device, driven by that device on the data-path thread only. */
export interface Backend {
  readonly features: BackendFeatures;
  /** Size in bytes of the storage. */
  readonly size: number;
  /**
   * What it is, independent of the path or name used to open it (two opens of the same storage
   * have the same identity).
   */
  readonly identity: string;
  /** How it is served, for the log line of the open: ", using direct I/O", or "". */
  readonly how: string;

  /**
   * Prepares `slot` for a vectored read (`write` false) or write of `count` iovecs (set with
   * {@link setIovec}) at byte `offset` of the storage.
   */
  prepare(slot: number, write: boolean, offset: number, count: number): void;
  /** Points iovec `index` of `slot` at `memory[offset .. offset + length]`. */
  setIovec(slot: number, index: number, memory: Memory, offset: number, length: number): void;
  /** Prepares `slot` as a flush: every write completed before it is durable once it completes. */
  prepareFlush(slot: number): void;

  /**
   * Asynchronous start of `slots[0..count)`: how many were accepted, in order (fewer when the
   * backend ran short of room: resubmit the rest after a completion), or a negative number when
   * it accepted none for lack of room. Other errors throw (with an `errno`).
   */
  submit(slots: Int32Array, count: number): number;
  /** Collects up to `max` completions without waiting; read them with eventSlot/eventResult. */
  reap(max: number): number;
  /** The slot of reaped completion `i`. */
  eventSlot(i: number): number;
  /** The result of reaped completion `i`: bytes moved (0 for a flush), or -errno. */
  eventResult(i: number): number;

  /**
   * Synchronous backends: the transfer of `slot`, now or queued for {@link finishQueued} (reads
   * out of a mapping); either way its completion, in slot order, comes through
   * {@link BackendIo.finish}.
   */
  transfer(slot: number): void;
  /** Synchronous backends: runs what {@link transfer} queued and finishes it. */
  finishQueued(): void;
  /** Synchronous backends: the transfer of `slot` now, its result returned (not finished). */
  transferNow(slot: number): number;
  /** A flush now, when {@link submit} refused a prepared flush: 0 or -errno. */
  flushNow(): number;

  /** Whether `result` says this host was fenced off the storage ({@link BackendFeatures.fencing}). */
  fenced(result: number): boolean;
  /** The exported bytes now end at byte `end` of the storage (at open and after a resize). */
  setExportEnd(end: number): void;
  /** Measures the size again (`resize: "reread"`) and returns it. */
  refreshSize(): number;
  /** The size as measured by whoever lent the storage (`resize: "told"`). */
  setSize(bytes: number): void;
  /**
   * Closes the storage and its I/O (a loan is given back). Call only once nothing is in flight.
   */
  close(): void;
}
