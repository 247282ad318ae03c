/**
 * Writes the devices' state files for the data path, on the daemon's main thread, so that the
 * data-path worker never waits for a disk (a reserve flood used to fsync on every frame, in the
 * middle of the I/O loop).
 *
 * The worker posts the new contents of a state file with its change number; the writer writes
 * them atomically (store.ts) and reports each result back, and the worker sends the replies that
 * waited for that change to be durable. Per device:
 *
 * - writes are coalesced: while one is in progress, newer contents of the same file replace
 *   each other, and only the latest is written next;
 * - the rate is bounded: one write at a time, at least {@link MIN_INTERVAL_MS} apart;
 * - a failure (ENOSPC, EIO, EROFS...) is reported (the waiting replies become AoE errors, a
 *   waiting `ggaoectl clear-*` fails with the reason), logged once per failure streak, and the
 *   latest contents are retried with a growing pause until a write succeeds (logged too). The
 *   in-memory state and serving carry on meanwhile.
 *
 * A device may have its own {@link StateSink} instead of the state directory: a Ceph RBD device
 * keeps its state in the image's metadata (`src/rbd/state.ts`), where every host serving the
 * image sees it. The contract above holds the same for both.
 *
 * @module
 */

import { STATE_SUFFIX, type StateKind } from "./device_state.ts";
import { writeFileAtomic } from "./store.ts";

/** Shortest time between two writes of one device's state files. */
export const MIN_INTERVAL_MS = 20;
/** Pauses before retrying after consecutive failures. */
const RETRY_MS = [500, 1000, 2000, 5000, 10000, 30000];

/** The outcome of writing change `seq` of `kind` of `device`. */
export interface PersistResult {
  device: string;
  kind: StateKind;
  seq: number;
  ok: boolean;
  /** Why it failed. */
  message?: string;
}

/** Where one device's state is written instead of the state directory. */
export interface StateSink {
  /** The place `kind` is written to, for messages. */
  describe(kind: StateKind): string;
  /** Writes `bytes` (the state file's contents, store.ts layouts) of `kind`, durably. */
  write(kind: StateKind, bytes: Uint8Array): Promise<void>;
}

interface Waiter {
  kind: StateKind;
  seq: number;
  resolve: (r: { ok: boolean; message?: string }) => void;
}

/** What one device has pending, in progress and done. */
class DeviceWrites {
  readonly pending: ({ seq: number; bytes: Uint8Array } | null)[] = [null, null, null];
  readonly durable = [0, 0, 0];
  readonly waiters: Waiter[] = [];
  writing = false;
  /** The kind being written while `writing`. */
  writingKind: StateKind = 0;
  lastStart = -Infinity;
  timer: ReturnType<typeof setTimeout> | undefined;
  failures = 0;
  /** Resolves when the write in progress (if any) ends. */
  idle: Promise<void> = Promise.resolve();
}

export interface StateWriterOptions {
  /** The state directory (read at each write: a reload may change it). */
  directory: () => string;
  /** Called with every write's outcome. */
  onResult: (r: PersistResult) => void;
  log: (level: "info" | "warning" | "error", message: string) => void;
}

export class StateWriter {
  readonly #options: StateWriterOptions;
  readonly #devices = new Map<string, DeviceWrites>();
  /** Shutting down: pending writes go out at once, failures are not retried. */
  #draining = false;
  readonly #sinks = new Map<string, StateSink>();
  #closed = false;

  constructor(options: StateWriterOptions) {
    this.#options = options;
  }

  /** Writes `device`'s state to `sink` from now on (null: to the state directory again). */
  setSink(device: string, sink: StateSink | null): void {
    if (sink) this.#sinks.set(device, sink);
    else this.#sinks.delete(device);
  }

  /** Whether a change of `kind` of `device` waits to be written or is being written. */
  busy(device: string, kind: StateKind): boolean {
    const d = this.#devices.get(device);
    return d !== undefined && (d.pending[kind] !== null || (d.writing && d.writingKind === kind));
  }

  /** The highest change number of `kind` of `device` written (0: none yet). */
  durableSeq(device: string, kind: StateKind): number {
    return this.#devices.get(device)?.durable[kind] ?? 0;
  }

  /** Queues change `seq` of `kind` of `device` (the file's full new contents). */
  submit(device: string, kind: StateKind, seq: number, bytes: Uint8Array): void {
    const d = this.#device(device);
    const cur = d.pending[kind];
    if (seq <= d.durable[kind] || (cur && cur.seq >= seq)) return;
    d.pending[kind] = { seq, bytes };
    this.#pump(device, d);
  }

  /**
   * Resolves when change `seq` of `kind` of `device` is on disk (ok), or when the attempt that
   * would have written it failed (not ok, with the reason). A pending retry is started at once.
   */
  waitDurable(
    device: string,
    kind: StateKind,
    seq: number,
  ): Promise<{ ok: boolean; message?: string }> {
    const d = this.#device(device);
    if (seq <= d.durable[kind]) return Promise.resolve({ ok: true });
    return new Promise((resolve) => {
      d.waiters.push({ kind, seq, resolve });
      if (d.timer !== undefined && !d.writing) {
        clearTimeout(d.timer);
        d.timer = undefined;
        d.lastStart = -Infinity;
        this.#pump(device, d);
      }
    });
  }

  /** The newest contents of `kind` of `device` not yet on disk, or null. */
  latest(device: string, kind: StateKind): Uint8Array | null {
    return this.#devices.get(device)?.pending[kind]?.bytes ?? null;
  }

  /**
   * Shutdown: writes what is still pending at once (no rate bound, no retry after a failure),
   * waits for it (bounded by `timeoutMs`), then stops. Pending contents are changes that no
   * reply acknowledged yet; they are written if the disk lets us.
   */
  async close(timeoutMs = 2000): Promise<void> {
    this.#draining = true;
    for (const [name, d] of this.#devices) {
      clearTimeout(d.timer);
      d.timer = undefined;
      this.#pump(name, d);
    }
    const deadline = performance.now() + timeoutMs;
    const busy = () =>
      [...this.#devices.values()].some((d) =>
        d.writing || (d.failures === 0 && d.pending.some((p) => p !== null))
      );
    while (busy() && performance.now() < deadline) {
      await new Promise((r) => setTimeout(r, 5));
    }
    this.#closed = true;
  }

  #device(name: string): DeviceWrites {
    let d = this.#devices.get(name);
    if (!d) {
      d = new DeviceWrites();
      this.#devices.set(name, d);
    }
    return d;
  }

  #pump(name: string, d: DeviceWrites): void {
    if (this.#closed || d.writing || d.timer !== undefined) return;
    const kind = d.pending.findIndex((p) => p !== null) as StateKind | -1;
    if (kind === -1) return;
    const wait = this.#draining ? 0 : d.lastStart + MIN_INTERVAL_MS - performance.now();
    if (wait > 0) {
      d.timer = setTimeout(() => {
        d.timer = undefined;
        this.#pump(name, d);
      }, wait);
      return;
    }
    const job = d.pending[kind]!;
    d.pending[kind] = null;
    d.writing = true;
    d.writingKind = kind;
    d.lastStart = performance.now();
    d.idle = this.#write(name, d, kind, job.seq, job.bytes);
  }

  async #write(
    name: string,
    d: DeviceWrites,
    kind: StateKind,
    seq: number,
    bytes: Uint8Array,
  ): Promise<void> {
    const sink = this.#sinks.get(name);
    const path = sink
      ? sink.describe(kind)
      : `${this.#options.directory()}/${name}.${STATE_SUFFIX[kind]}`;
    let message: string | undefined;
    try {
      if (sink) await sink.write(kind, bytes);
      else await writeFileAtomic(path, bytes);
    } catch (e) {
      message = `cannot write ${path}: ${(e as Error).message}`;
    }
    d.writing = false;
    const ok = message === undefined;
    if (ok) {
      if (seq > d.durable[kind]) d.durable[kind] = seq;
      if (d.failures > 0) {
        this.#options.log("info", `disk/${name}: state written again (${path})`);
        d.failures = 0;
      }
    } else {
      if (d.failures === 0) {
        this.#options.log(
          "error",
          `disk/${name}: ${message}; the change is kept in memory, replies that wait for it get AoE error 3, and the write is retried`,
        );
      }
      d.failures++;
      // Retry the newest contents: these, unless newer ones arrived meanwhile.
      if (d.pending[kind] === null) d.pending[kind] = { seq, bytes };
    }
    this.#options.onResult({ device: name, kind, seq, ok, message });
    for (let i = 0; i < d.waiters.length;) {
      const w = d.waiters[i];
      if (w.kind === kind && w.seq <= seq) {
        d.waiters.splice(i, 1);
        w.resolve(ok ? { ok } : { ok, message });
      } else i++;
    }
    if (!ok && !this.#closed && !this.#draining) {
      const pause = RETRY_MS[Math.min(d.failures - 1, RETRY_MS.length - 1)];
      d.timer = setTimeout(() => {
        d.timer = undefined;
        this.#pump(name, d);
      }, pause);
      return;
    }
    this.#pump(name, d);
  }
}
