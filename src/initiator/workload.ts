/**
 * Timed or sized I/O workloads over the {@link Pipeline}: sequential and random reads,
 * sequential writes, a read/write mix. An I/O of `ioBytes` is split into requests of at most
 * the target's maxSectors, issued back to back; its latency runs from its creation (just before
 * its first request is sent) to its last reply.
 *
 * Everything the loop touches is allocated before it starts: I/O records in typed arrays,
 * latency samples in a Float64Array, one read buffer and one write pattern.
 *
 * @module
 */

import { SECTOR_SIZE } from "../protocol/constants.ts";
import type { Pipeline, PipelineSource } from "./pipeline.ts";
import type { WorkloadKind, WorkloadOptions, WorkloadResult } from "./types.ts";

/** What the initiator works out before a workload: region, request size, window. */
export interface WorkloadPlan {
  regionSectors: number;
  /** Most sectors per request. */
  perRequest: number;
  window: number;
}

/** A 32-bit PRNG (mulberry32): small, fast, good enough for offsets and data. */
export class Prng {
  #state: number;
  constructor(seed: number) {
    this.#state = seed >>> 0;
  }
  /** Next 32-bit unsigned integer. */
  nextU32(): number {
    this.#state = (this.#state + 0x6d2b79f5) >>> 0;
    let t = this.#state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  }
  /** Integer in [0, n) for n <= 2^32. */
  below(n: number): number {
    return Math.floor((this.nextU32() / 0x1_0000_0000) * n);
  }
  /** Fills `bytes` with pseudo-random data. */
  fill(bytes: Uint8Array): void {
    for (let i = 0; i < bytes.length; i++) bytes[i] = this.nextU32() & 0xff;
  }
}

/** The value below which `fraction` of `sorted` lies (nearest rank). */
export function percentile(sorted: Float64Array, fraction: number): number {
  if (sorted.length === 0) return 0;
  const rank = Math.ceil(fraction * sorted.length) - 1;
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank))];
}

/** Issues and accounts the I/Os of one workload. */
class WorkloadSource implements PipelineSource {
  readonly kind: WorkloadKind;
  readonly ioSectors: number;
  readonly perRequest: number;
  readonly partsPerIo: number;
  readonly slotsInRegion: number;
  readonly readPercent: number;
  readonly stopAt: number;
  readonly stopBytes: number;
  readonly prng: Prng;
  readonly readBuf: Uint8Array;
  readonly writeBuf: Uint8Array;
  readonly samples: Float64Array;
  sampleCount = 0;

  // I/O records, recycled through a free stack: at most `window` I/Os have requests out.
  readonly ioStart: Float64Array;
  readonly ioLba: Float64Array;
  readonly ioPending: Int32Array;
  readonly ioFailed: Uint8Array;
  readonly ioWrite: Uint8Array;
  readonly ioFree: Int32Array;
  ioFreeTop = 0;

  /** I/O being issued (-1: none) and how many of its parts are issued. */
  current = -1;
  currentParts = 0;
  seqCursor = 0;
  issuedBytes = 0;

  ios = 0;
  bytes = 0;
  errors = 0;
  firstError: Error | null = null;

  constructor(options: WorkloadOptions, plan: WorkloadPlan, now: number) {
    this.kind = options.kind;
    this.perRequest = plan.perRequest;
    const ioBytes = options.ioBytes ?? plan.perRequest * SECTOR_SIZE;
    if (!Number.isInteger(ioBytes) || ioBytes <= 0 || ioBytes % SECTOR_SIZE !== 0) {
      throw new RangeError(`ioBytes must be a positive multiple of 512, got ${ioBytes}`);
    }
    this.ioSectors = ioBytes / SECTOR_SIZE;
    this.partsPerIo = Math.ceil(this.ioSectors / this.perRequest);
    this.slotsInRegion = Math.floor(plan.regionSectors / this.ioSectors);
    if (this.slotsInRegion < 1) {
      throw new RangeError(
        `workload region of ${plan.regionSectors} sectors is smaller than one ${ioBytes}-byte I/O`,
      );
    }
    this.readPercent = options.readPercent ?? 70;
    const duration = options.durationMs ?? (options.totalBytes === undefined ? 5000 : Infinity);
    this.stopAt = now + duration;
    this.stopBytes = options.totalBytes ?? Infinity;
    this.prng = new Prng(options.seed ?? 1);
    this.readBuf = new Uint8Array(ioBytes);
    this.writeBuf = new Uint8Array(ioBytes);
    this.prng.fill(this.writeBuf);
    this.samples = new Float64Array(options.maxSamples ?? 1 << 20);
    const records = plan.window + 1;
    this.ioStart = new Float64Array(records);
    this.ioLba = new Float64Array(records);
    this.ioPending = new Int32Array(records);
    this.ioFailed = new Uint8Array(records);
    this.ioWrite = new Uint8Array(records);
    this.ioFree = new Int32Array(records);
    for (let i = records - 1; i >= 0; i--) this.ioFree[this.ioFreeTop++] = i;
  }

  #startIo(): boolean {
    const now = performance.now();
    if (now >= this.stopAt || this.issuedBytes >= this.stopBytes || this.ioFreeTop === 0) {
      return false;
    }
    const io = this.ioFree[--this.ioFreeTop];
    let write = 0;
    let lba: number;
    switch (this.kind) {
      case "seq-read":
      case "seq-write":
        lba = this.seqCursor * this.ioSectors;
        this.seqCursor = (this.seqCursor + 1) % this.slotsInRegion;
        write = this.kind === "seq-write" ? 1 : 0;
        break;
      case "rand-read":
        lba = this.prng.below(this.slotsInRegion) * this.ioSectors;
        break;
      case "mixed":
        lba = this.prng.below(this.slotsInRegion) * this.ioSectors;
        write = this.prng.below(100) < this.readPercent ? 0 : 1;
        break;
    }
    this.ioStart[io] = now;
    this.ioLba[io] = lba;
    this.ioWrite[io] = write;
    this.ioPending[io] = 0;
    this.ioFailed[io] = 0;
    this.current = io;
    this.currentParts = 0;
    this.issuedBytes += this.ioSectors * SECTOR_SIZE;
    return true;
  }

  next(p: Pipeline, s: number): boolean {
    if (this.current < 0 && !this.#startIo()) return false;
    const io = this.current;
    const first = this.currentParts * this.perRequest;
    const left = this.ioSectors - first;
    const n = left < this.perRequest ? left : this.perRequest;
    p.lba[s] = this.ioLba[io] + first;
    p.count[s] = n;
    p.write[s] = this.ioWrite[io];
    p.buf[s] = this.ioWrite[io] ? this.writeBuf : this.readBuf;
    p.bufOff[s] = first * SECTOR_SIZE;
    p.io[s] = io;
    this.ioPending[io]++;
    if (++this.currentParts === this.partsPerIo) this.current = -1;
    return true;
  }

  #partEnded(io: number, now: number): void {
    if (--this.ioPending[io] > 0 || this.current === io) return;
    if (this.ioFailed[io] === 0) {
      this.ios++;
      this.bytes += this.ioSectors * SECTOR_SIZE;
      this.samples[this.sampleCount++ % this.samples.length] = now - this.ioStart[io];
    }
    this.ioFree[this.ioFreeTop++] = io;
  }

  done(p: Pipeline, s: number, now: number): void {
    this.#partEnded(p.io[s], now);
  }

  failed(p: Pipeline, s: number, error: Error): void {
    this.errors++;
    this.firstError ??= error;
    this.ioFailed[p.io[s]] = 1;
    this.#partEnded(p.io[s], performance.now());
  }
}

/**
 * Runs `options` on `pipeline` with the initiator's `plan`. Failed requests are counted in
 * `errors` (the first one is kept for messages), not thrown.
 */
export function runWorkload(
  pipeline: Pipeline,
  options: WorkloadOptions,
  plan: WorkloadPlan,
): WorkloadResult {
  const start = performance.now();
  const source = new WorkloadSource(options, plan, start);
  pipeline.run(options.target, source, plan.window);
  const seconds = (performance.now() - start) / 1000;
  const n = Math.min(source.sampleCount, source.samples.length);
  const sorted = source.samples.slice(0, n).sort();
  let sum = 0;
  for (let i = 0; i < n; i++) sum += sorted[i];
  return {
    kind: options.kind,
    ios: source.ios,
    bytes: source.bytes,
    seconds,
    mbPerSec: seconds > 0 ? source.bytes / seconds / 1e6 : 0,
    iops: seconds > 0 ? source.ios / seconds : 0,
    latency: {
      p50: percentile(sorted, 0.5),
      p99: percentile(sorted, 0.99),
      max: n > 0 ? sorted[n - 1] : 0,
      mean: n > 0 ? sum / n : 0,
    },
    retransmits: 0,
    errors: source.errors,
    stale: 0,
    minWindow: pipeline.minWindow,
    firstError: source.firstError?.message ?? null,
  };
}
