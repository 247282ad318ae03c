/**
 * Every metric ggaoed exposes, in one table: its name, type, unit and help text. These names are
 * a stable interface (dashboards and alerts use them; `docs/metrics.md` lists them): rename
 * nothing, add freely.
 *
 * Names follow Prometheus' conventions: `ggaoed_` prefix, base units (seconds, bytes) in the
 * name, counters exposed as `NAME_total`. `name` here is the OpenMetrics family name, i.e.
 * without the `_total` of a counter or the `_info` of an info metric.
 *
 * @module
 */

import type { DeviceStatName, IfaceStatName } from "../stats.ts";

export type MetricType = "counter" | "gauge" | "histogram" | "info";

/** One metric family. */
export interface Family {
  name: string;
  type: MetricType;
  /** OpenMetrics UNIT; when set, `name` ends in `_${unit}`. */
  unit: "" | "seconds" | "bytes";
  help: string;
}

function family(type: MetricType, name: string, help: string): Family {
  const unit = name.endsWith("_seconds") ? "seconds" : name.endsWith("_bytes") ? "bytes" : "";
  return { name, type, unit, help };
}
const counter = (name: string, help: string) => family("counter", name, help);

/** `ggaoed_build_info{version, deno, v8, typescript} 1`. */
export const BUILD_INFO = family(
  "info",
  "ggaoed_build",
  "Version of ggaoed and of the runtime it runs on.",
);
/** `ggaoed_up 1` while the daemon answers. */
export const UP = family(
  "gauge",
  "ggaoed_up",
  "1 while the daemon serves: its data path is running.",
);
export const START_TIME = family(
  "gauge",
  "ggaoed_start_time_seconds",
  "When the daemon started, seconds since the Unix epoch.",
);
export const UPTIME = family(
  "gauge",
  "ggaoed_uptime_seconds",
  "Seconds since the daemon started.",
);
export const WORKERS = family(
  "gauge",
  "ggaoed_workers",
  "Data-path workers (threads) serving the devices, each its own share (fixed at start).",
);

/** The main thread's survived errors and the metrics endpoint's own counters. */
export const ENDPOINT_FAMILIES = {
  mainThreadErrors: counter(
    "ggaoed_main_thread_errors",
    "Unhandled promise rejections and uncaught exceptions on the main thread: logged, survived.",
  ),
  connections: family(
    "gauge",
    "ggaoed_metrics_connections",
    "Connections to the metrics endpoint open now.",
  ),
  refused: counter(
    "ggaoed_metrics_connections_refused",
    "Connections to the metrics endpoint refused (503) because metrics-max-connections were open.",
  ),
  timedOut: counter(
    "ggaoed_metrics_connections_timed_out",
    "Connections to the metrics endpoint closed by the idle, header or write timeout.",
  ),
  acceptErrors: counter(
    "ggaoed_metrics_accept_errors",
    "Failed accepts on the metrics endpoint (e.g. out of file descriptors), each retried later.",
  ),
} as const;

/** The device counters of `src/stats.ts`; the compiler makes sure that none is left out. */
export const DEVICE_FAMILIES: { readonly [K in DeviceStatName]: Family } = {
  read_cnt: counter("ggaoed_device_reads", "ATA READ requests accepted for I/O."),
  read_bytes: counter("ggaoed_device_read_bytes", "Bytes requested by accepted ATA READs."),
  read_time: counter(
    "ggaoed_device_read_seconds",
    "Service time of ATA READs (arrival to reply handed to the NIC), summed.",
  ),
  write_cnt: counter("ggaoed_device_writes", "ATA WRITE requests accepted for I/O."),
  write_bytes: counter("ggaoed_device_write_bytes", "Bytes carried by accepted ATA WRITEs."),
  write_time: counter(
    "ggaoed_device_write_seconds",
    "Service time of ATA WRITEs (arrival to reply handed to the NIC), summed.",
  ),
  other_cnt: counter(
    "ggaoed_device_other_requests",
    "Other requests: IDENTIFY, FLUSH, CHECK POWER, config, MAC mask, reserve, refused I/O.",
  ),
  other_time: counter(
    "ggaoed_device_other_seconds",
    "Service time of the other requests that were answered, summed.",
  ),
  io_slots: counter(
    "ggaoed_device_io_slots",
    "I/O control blocks submitted to the kernel; (reads + writes) / slots is the merge factor.",
  ),
  io_runs: counter("ggaoed_device_io_submits", "Successful io_submit calls."),
  queue_length: counter(
    "ggaoed_device_queue_length",
    "Requests in flight on the device, summed over every arrival; per arrival, the mean depth.",
  ),
  queue_stall: counter("ggaoed_device_queue_stalls", "io_submit calls answered EAGAIN."),
  queue_over: counter(
    "ggaoed_device_queue_overruns",
    "Requests that arrived while queue-length (the advertised Buffer Count) were in flight.",
  ),
  ata_err: counter("ggaoed_device_ata_errors", "ATA replies with the ERR status bit."),
  proto_err: counter("ggaoed_device_protocol_errors", "AoE error replies."),
  queue_drop: counter(
    "ggaoed_device_queue_drops",
    "Requests dropped because the device already held its Buffer Count; the initiator retransmits.",
  ),
  denied: counter(
    "ggaoed_device_denied_requests",
    "Requests dropped silently by accept/deny or the MAC mask list.",
  ),
  io_retries: counter(
    "ggaoed_device_io_retries",
    "Merged transfers that failed or came back short; their requests went again one by one.",
  ),
  state_writes: counter(
    "ggaoed_device_state_writes",
    "State files (config string, MAC mask list, reserve list) written to disk.",
  ),
  state_errors: counter(
    "ggaoed_device_state_write_errors",
    "State file writes that failed (retried; the change stays in effect in memory).",
  ),
  stale_drop: counter(
    "ggaoed_device_stale_drops",
    "Requests older than max-request-age when they would have started: dropped, never started.",
  ),
  stall_drop: counter(
    "ggaoed_device_stall_drops",
    "Requests received before the loop or the device's I/O stalled longer than max-stall: never started, or failed after it; not answered.",
  ),
  rbd_fencings: counter(
    "ggaoed_device_rbd_fencings",
    "Other hosts of the RBD image whose Ceph client this daemon blocklisted (fenced).",
  ),
  rbd_fenced: counter(
    "ggaoed_device_rbd_fenced",
    "Times this daemon found its own Ceph client blocklisted by another host and reconnected.",
  ),
  rbd_fenced_drops: counter(
    "ggaoed_device_rbd_fenced_drops",
    "Requests dropped unanswered because this daemon's Ceph client was blocklisted.",
  ),
  state_drop: counter(
    "ggaoed_device_state_drops",
    "State changes dropped unanswered to keep request buffers for I/O; the initiator retransmits.",
  ),
  views: family(
    "gauge",
    "ggaoed_device_views",
    "Views of their hosts open in the data path (devices with views).",
  ),
  view_write_bytes: counter(
    "ggaoed_device_view_write_bytes",
    "Bytes written to the views of the device's hosts (the golden image is never written).",
  ),
  view_wait_drop: counter(
    "ggaoed_device_view_wait_drops",
    "ATA requests dropped while their host's view was being made or opened; the initiator retransmits.",
  ),
  view_limit: counter(
    "ggaoed_device_view_limit_aborts",
    "ATA requests answered ABRT because their host has no view and the device has max-views.",
  ),
};

/** Per-device service time histogram, label `op` = read, write or other. */
export const REQUEST_DURATION = family(
  "histogram",
  "ggaoed_device_request_duration_seconds",
  "Service time of answered requests (arrival to reply handed to the NIC), by op.",
);

/** The interface counters of `src/stats.ts`. */
export const INTERFACE_FAMILIES: { readonly [K in IfaceStatName]: Family } = {
  rx_cnt: counter("ggaoed_interface_rx_frames", "AoE frames received that passed the checks."),
  rx_bytes: counter("ggaoed_interface_rx_bytes", "Bytes of the frames counted in rx_frames."),
  rx_runs: counter("ggaoed_interface_rx_runs", "Receive passes (ring drains or recv bursts)."),
  rx_buffers_full: counter(
    "ggaoed_interface_rx_buffers_full",
    "Ring drains that found every frame of the RX ring in use.",
  ),
  tx_cnt: counter("ggaoed_interface_tx_frames", "Frames sent."),
  tx_bytes: counter("ggaoed_interface_tx_bytes", "Bytes sent."),
  tx_runs: counter("ggaoed_interface_tx_runs", "TX ring kicks."),
  tx_buffers_full: counter(
    "ggaoed_interface_tx_buffers_full",
    "Replies that waited in the TX queue: no free TX frame, or sendto answered EAGAIN.",
  ),
  dropped: counter(
    "ggaoed_interface_dropped_frames",
    "Frames dropped: too short or too long, kernel ring drops, TX queue overflow.",
  ),
  ignored: counter(
    "ggaoed_interface_ignored_frames",
    "Frames ignored: other AoE version, responses, no matching device.",
  ),
  broadcast: counter(
    "ggaoed_interface_broadcast_requests",
    "Broadcast requests matched by at least one device.",
  ),
  tx_in_place: counter(
    "ggaoed_interface_tx_in_place_replies",
    "Read replies whose data was read straight into their TX ring frame.",
  ),
  tx_dropped: counter(
    "ggaoed_interface_tx_dropped_frames",
    "Replies the kernel refused (ENOBUFS, EMSGSIZE, a malformed TX ring frame).",
  ),
  link_errors: counter(
    "ggaoed_interface_link_errors",
    "Socket failures with the link (down, deleted, changed): the interface was closed and reopened.",
  ),
  wildcard_dropped: counter(
    "ggaoed_interface_wildcard_dropped_requests",
    "Commands other than Query Config read/test sent to shelf 0xFFFF or slot 0xFF: dropped.",
  ),
};

/** Every family, in exposition order. */
export const ALL_FAMILIES: readonly Family[] = [
  BUILD_INFO,
  UP,
  START_TIME,
  UPTIME,
  WORKERS,
  ...Object.values(ENDPOINT_FAMILIES),
  ...Object.values(DEVICE_FAMILIES),
  REQUEST_DURATION,
  ...Object.values(INTERFACE_FAMILIES),
];

/** The names samples of `f` carry in the exposition (what PromQL queries). */
export function sampleNames(f: Family): string[] {
  switch (f.type) {
    case "counter":
      return [`${f.name}_total`];
    case "info":
      return [`${f.name}_info`];
    case "histogram":
      return [`${f.name}_bucket`, `${f.name}_sum`, `${f.name}_count`];
    case "gauge":
      return [f.name];
  }
}
