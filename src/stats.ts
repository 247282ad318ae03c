/**
 * Statistics counters, laid out as `Float64Array`s so that the data-path worker can count into
 * shared memory (a `SharedArrayBuffer`) while the main thread reads it for `ggaoectl stats`.
 *
 * A counter is a float64: exact up to 2^53, no BigInt on the hot path. Times are seconds.
 * The field order is the order `ggaoectl stats` prints (the original's order, then ours).
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
] as const;

/** Per-interface counters, in print order. */
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

/** Fresh device counters in ordinary memory (tests, tools). */
export function newDeviceStats(): Float64Array {
  return new Float64Array(DEVICE_STAT_COUNT);
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
