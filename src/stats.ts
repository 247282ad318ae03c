/**
 * Statistics counters, laid out as `Float64Array`s so that the data-path worker can count into
 * shared memory (a `SharedArrayBuffer`) while the main thread reads it for `ggaoectl stats`.
 *
 * A counter is a float64: exact up to 2^53, no BigInt on the hot path. Times are seconds.
 * The field order is the order `ggaoectl stats` prints (the original's order, then ours).
 *
 * A device's shared array holds its counters followed by its latency histograms (one array, one
 * SharedArrayBuffer, so that whatever carries the counters to the main thread carries these too):
 *
 *     [0 .. DEVICE_STAT_COUNT)                          DEVICE_STAT_FIELDS
 *     [LATENCY_OFFSET + k * LATENCY_BUCKETS + b]        requests of kind k (read, write, other)
 *                                                       whose service time fell in bucket b
 *
 * Bucket b counts times t with LATENCY_BOUNDS[b-1] < t <= LATENCY_BOUNDS[b]; the last bucket
 * counts the times above the largest bound. Buckets are not cumulative here (one increment per
 * request); the exposition (`src/metrics/`) adds them up. The histogram's sum is the kind's
 * `*_time` counter, its count the sum of its buckets.
 *
 * @module
 */

/** Per-device counters, in print order. */
export const DEVICE_STAT_FIELDS = [
  "read_cnt", // ATA reads accepted for I/O
  "read_bytes",
  "read_time", // sum of (reply handed to the NIC - arrival), seconds
  "write_cnt",
  "write_bytes",
  "write_time",
  "other_cnt", // IDENTIFY, FLUSH, CHECK POWER, config, mask, reserve, advertisements
  "other_time",
  "io_slots", // iocbs submitted: (reads + writes) / io_slots is the merge factor
  "io_runs", // successful io_submit calls
  "queue_length", // sum of the in-flight count sampled at each arrival
  "queue_stall", // io_submit answered EAGAIN
  "queue_over", // arrivals while in-flight >= queue-length (Buffer Count): dropped, = queue_drop
  "ata_err", // ATA replies with the ERR status bit
  "proto_err", // AoE error replies
  "queue_drop", // requests dropped: the device already held its Buffer Count (initiator retransmits)
  "denied", // requests silently dropped by accept/deny or the MAC mask list
  "io_retries", // merged transfers that failed or came back short: their requests went again one by one
  "state_writes", // state files (config string, mask list, reserve list) written to disk
  "state_errors", // state file writes that failed (retried; the change stays in memory)
  "stale_drop", // requests older than max-request-age when they would start: dropped unanswered
  "stall_drop", // requests received before a stall longer than max-stall: dropped, or failed after it, unanswered
  "rbd_fencings", // other hosts of the RBD image this daemon fenced (blocklisted their client)
  "rbd_fenced", // times this daemon found its own client fenced (it reconnected)
  "rbd_fenced_drops", // requests dropped unanswered because the client was fenced
  "state_drop", // state changes dropped to keep buffers for I/O (see docs/configuration.md, admin)
  "views", // a gauge: views of its hosts open in the data path (devices with views)
  "view_write_bytes", // bytes written to its hosts' views
  "view_wait_drop", // ATA requests dropped while the host's view was being made or opened
  "view_limit", // ATA requests answered ABRT: the host has no view and max-views were made
] as const;

/**
 * Per-interface counters, in print order. With several data-path workers, each frame counts once:
 * docs/workers.md ("Counters") says which worker counts what.
 */
export const IFACE_STAT_FIELDS = [
  "rx_cnt", // frames that passed the length checks
  "rx_bytes",
  "rx_runs", // receive passes (one per ring drain or recv burst)
  "rx_buffers_full", // a ring drain consumed every frame of the RX ring
  "tx_cnt",
  "tx_bytes",
  "tx_runs", // TX ring kicks (send(fd, NULL, 0))
  "tx_buffers_full", // no free TX frame, or sendto EAGAIN: the reply waited in the TX queue
  "dropped", // too short, too long, kernel ring drops, TX queue overflow
  "ignored", // wrong version, response flag, no matching device
  "broadcast", // broadcast requests matched by at least one device
  "tx_in_place", // read replies whose data was read straight into their TX ring frame
  "tx_dropped", // replies the kernel refused (ENOBUFS, EMSGSIZE, a malformed TX ring frame)
  "link_errors", // the socket failed with the link (down, deleted, changed): closed, reopened
  "wildcard_dropped", // commands other than Query Config read/test to shelf 0xFFFF or slot 0xFF
] as const;

export type DeviceStatName = typeof DEVICE_STAT_FIELDS[number];
export type IfaceStatName = typeof IFACE_STAT_FIELDS[number];

function indexOf<T extends string>(fields: readonly T[]): { readonly [K in T]: number } {
  return Object.fromEntries(fields.map((f, i) => [f, i])) as { [K in T]: number };
}

/** Index of each device counter: `stats[DS.read_cnt]++`. */
export const DS = indexOf(DEVICE_STAT_FIELDS);
/** Index of each interface counter: `stats[IS.rx_cnt]++`. */
export const IS = indexOf(IFACE_STAT_FIELDS);

export const DEVICE_STAT_COUNT = DEVICE_STAT_FIELDS.length;
export const IFACE_STAT_COUNT = IFACE_STAT_FIELDS.length;

/**
 * Upper bounds of the latency histogram buckets, seconds (Prometheus `le`): 50 µs to 5 s in
 * 1-2.5-5 steps. A reply from the page cache takes tens of microseconds, one from a disk
 * milliseconds; seconds mean a stalled device.
 */
export const LATENCY_BOUNDS: readonly number[] = [
  0.00005,
  0.0001,
  0.00025,
  0.0005,
  0.001,
  0.0025,
  0.005,
  0.01,
  0.025,
  0.05,
  0.1,
  0.25,
  0.5,
  1,
  2.5,
  5,
];

/** The kinds of request with a latency histogram, in layout order. */
export const LATENCY_KINDS = ["read", "write", "other"] as const;

/** Index of each kind: `recordLatency(stats, LatencyKind.READ, seconds)`. */
export const LatencyKind = { READ: 0, WRITE: 1, OTHER: 2 } as const;
export type LatencyKind = typeof LatencyKind[keyof typeof LatencyKind];

/** Buckets per histogram: one per bound, plus the one above the largest bound. */
export const LATENCY_BUCKETS = LATENCY_BOUNDS.length + 1;
/** Where the histograms start in a device's shared array. */
export const LATENCY_OFFSET = DEVICE_STAT_COUNT;
/** Length of a device's shared array: counters and histograms. */
export const DEVICE_SHARED_LENGTH = LATENCY_OFFSET + LATENCY_KINDS.length * LATENCY_BUCKETS;

const BOUNDS = Float64Array.from(LATENCY_BOUNDS);
const TIME_FIELD = Int32Array.of(DS.read_time, DS.write_time, DS.other_time);

/**
 * Counts one answered request of `kind` that took `seconds` (arrival to reply handed to the
 * NIC) in `stats`, a device's shared array: adds the time to the kind's `*_time` counter and
 * counts it in its histogram bucket. No allocation: the data path calls it for every reply.
 *
 * A time below zero (the loop samples its clock once per turn, so a request that arrived during
 * the turn can look younger than that sample) counts as zero: the sums are counters and must
 * never go down.
 */
export function recordLatency(stats: Float64Array, kind: LatencyKind, seconds: number): void {
  if (!(seconds > 0)) seconds = 0;
  stats[TIME_FIELD[kind]] += seconds;
  let b = 0;
  while (b < BOUNDS.length && seconds > BOUNDS[b]) b++;
  stats[LATENCY_OFFSET + kind * LATENCY_BUCKETS + b]++;
}

/** Bucket counts (not cumulative) of one kind's histogram in a device's shared array. */
export function latencyBuckets(stats: Float64Array, kind: LatencyKind): Float64Array {
  const start = LATENCY_OFFSET + kind * LATENCY_BUCKETS;
  return stats.subarray(start, start + LATENCY_BUCKETS);
}

/** Sum of one kind's latencies in a device's shared array: the histogram's sum. */
export function latencySum(stats: Float64Array, kind: LatencyKind): number {
  return stats[TIME_FIELD[kind]];
}

/** Fresh device counters and histograms in ordinary memory (tests, tools). */
export function newDeviceStats(): Float64Array {
  return new Float64Array(DEVICE_SHARED_LENGTH);
}

/** Fresh interface counters in ordinary memory (tests, tools). */
export function newIfaceStats(): Float64Array {
  return new Float64Array(IFACE_STAT_COUNT);
}

/** Names and values, for printing and JSON. */
export function statsRecord<T extends string>(
  fields: readonly T[],
  values: Float64Array,
): Record<T, number> {
  return Object.fromEntries(fields.map((f, i) => [f, values[i]])) as Record<T, number>;
}
