/**
 * The control interface's contracts: what the daemon gives the control server
 * ({@link ControlHandler}), and the messages that travel over the control socket.
 *
 * The transport is ours, not the original's (docs/decisions.md §5.1): a Unix stream socket
 * carrying newline-delimited JSON. One conversation:
 *
 * ```
 * client: {"hello":1}
 * server: {"hello":1,"version":"2.0.0"}
 * client: {"cmd":"stats","patterns":["disk*"]}
 * server: {"ok":true,"uptime":12.5,"devices":[...],"interfaces":[...]}
 * client: {"cmd":"clear-config","patterns":["disk1"]}
 * server: {"ok":true,"cleared":["disk1"]}
 * ```
 *
 * Every request gets exactly one answer line, `{"ok":true,...}` or `{"ok":false,"error":"..."}`.
 *
 * @module
 */

import type { HostRecord } from "../rbd/state.ts";

/** Severity of a control-server log message (the daemon's log levels). */
export type LogLevel = "debug" | "info" | "warning" | "error";

/** Where the control server reports what happens on its socket. */
export type LogFn = (level: LogLevel, message: string) => void;

/**
 * What the daemon lets the control server see and do. The data-path worker owns devices and
 * counters; the daemon's main thread implements this on top of it.
 */
export interface ControlHandler {
  /** Seconds since the daemon started (the original's uptime). */
  uptime(): number;
  /** Device statistics in config order, interface statistics in discovery order. */
  stats(): Promise<{
    devices: { name: string; stats: Float64Array }[];
    interfaces: { name: string; stats: Float64Array }[];
  }>;
  /** Re-reads the configuration file; `message` says what happened (or what is wrong). */
  reload(): Promise<{ ok: boolean; message: string }>;
  /** Query Config string, MAC Mask List and Reserve list of every device, in config order. */
  deviceStates(): Promise<
    { name: string; config: Uint8Array; macMask: number[]; reserve: number[] }[]
  >;
  /** Zeroes the counters of devices and interfaces matching the patterns; null = everything. */
  clearStats(patterns: string[] | null): Promise<void>;
  /** The Ceph RBD devices: image, cluster, features and the hosts known to serve each. */
  rbdDevices(): Promise<RbdDeviceInfo[]>;
  /** Empties the Query Config string of devices matching the patterns; returns their names. */
  clearConfig(names: string[]): Promise<string[]>;
  /** Empties the MAC Mask List of devices matching the patterns; returns their names. */
  clearMacMask(names: string[]): Promise<string[]>;
  /** Empties the Reserve list of devices matching the patterns; returns their names. */
  clearReserve(names: string[]): Promise<string[]>;
  /** The views of the devices with views whose names match the patterns (null: all). */
  views(patterns: string[] | null): Promise<ViewInfo[]>;
  /**
   * Drops the view of host `mac` (12 hex digits) of `device`: closed in the data path, removed
   * from disk, and with `recreate` made again at once from the golden image. Resolves whether
   * a view existed.
   */
  dropView(device: string, mac: string, recreate: boolean): Promise<boolean>;
}

/** One view of a device with views (`views`). */
export interface ViewInfo {
  device: string;
  /** The host's MAC, 12 lower-case hex digits (as the view is named). */
  mac: string;
  /** It exists on disk (or in the pool). */
  exists: boolean;
  /** Open in the data path: the host reads and writes it. */
  open: boolean;
  /** Bytes written through it since the daemon started (not since the view was made). */
  written: number;
  /** Unix seconds of the host's last frame as kept on disk (up to 5 s late), or null. */
  lastSeen: number | null;
}

/**
 * Version of the `stats` answer's schema (docs/ggaoectl.md, "stats --json"): fields are only ever
 * added within a version; removing, renaming or retyping one makes a new version.
 */
export const STATS_SCHEMA_VERSION = 1;

/** Version of the control protocol, exchanged in the hello. */
export const CONTROL_PROTOCOL_VERSION = 1;

/** Longest request line the server accepts, newline excluded. */
export const MAX_REQUEST_BYTES = 64 * 1024;

/** The request names, which are also the `ggaoectl` command names. */
export const CONTROL_COMMANDS = [
  "stats",
  "reload",
  "show-config",
  "show-macmask",
  "show-reserve",
  "show-rbd",
  "clear-stats",
  "clear-config",
  "clear-macmask",
  "clear-reserve",
  "views",
  "reset-view",
  "remove-view",
] as const;

/** One of {@link CONTROL_COMMANDS}. */
export type ControlCommand = typeof CONTROL_COMMANDS[number];

/** Counters of one device or interface, by field name (`src/stats.ts` names). */
export interface NamedStats {
  name: string;
  stats: Record<string, number>;
}

/** Answer to `stats`. */
export interface StatsReply {
  ok: true;
  /** {@link STATS_SCHEMA_VERSION}. */
  schema: number;
  /** Seconds since the daemon started. */
  uptime: number;
  devices: NamedStats[];
  interfaces: NamedStats[];
}

/** Answer to `reload` when it worked (a failed reload answers `ok: false`). */
export interface ReloadReply {
  ok: true;
  message: string;
}

/** Answer to `show-config`: each device's Query Config string as lowercase hex. */
export interface ShowConfigReply {
  ok: true;
  devices: { name: string; config: string }[];
}

/** Answer to `show-macmask` and `show-reserve`: MACs formatted as `00:1b:21:0a:aa:22`. */
export interface MacListReply {
  ok: true;
  devices: { name: string; macs: string[] }[];
}

/** A daemon serving an RBD image: its record in the image's metadata, and how old it is. */
export interface RbdHostInfo extends HostRecord {
  /** Its id among the image's hosts: the host name (and its control socket if not the default). */
  id: string;
  /** How long ago it last refreshed its record ({@link HostRecord.seen}), in seconds. */
  ageSeconds: number;
  /** Not refreshed for 2 s: that daemon stopped, or is paused or cut off from the cluster. */
  stale: boolean;
  /** The daemon answering. */
  self: boolean;
}

/** One Ceph RBD device, for `show-rbd`. */
export interface RbdDeviceInfo {
  name: string;
  /** `rbd:POOL/IMAGE` or `rbd:POOL/IMAGE@SNAP`. */
  image: string;
  cluster: { conf: string; user: string; fsid: string };
  /** Feature names as `rbd info` prints them. */
  features: string[];
  /** The image's size in bytes. */
  size: number;
  readOnly: boolean;
  /** The prefix of its metadata keys (`ggaoed.`, or `ggaoed@SNAP.` for a snapshot). */
  prefix: string;
  hosts: RbdHostInfo[];
  /** This daemon's librados client address (what another host would blocklist). */
  client: string;
  /**
   * Fencing of silent hosts (`fence`, `fence-after`), and the device's counters: other hosts
   * fenced by this daemon, times this daemon was fenced, requests dropped because it was.
   */
  fencing: {
    enabled: boolean;
    afterSeconds: number;
    fencings: number;
    fenced: number;
    droppedRequests: number;
  };
  /** Seconds since its metadata was last read (null: not yet), and that read's error. */
  polledAgo: number | null;
  pollError: string | null;
}

/** Answer to `show-rbd`. */
export interface ShowRbdReply {
  ok: true;
  devices: RbdDeviceInfo[];
}

/** Answer to `clear-stats`. */
export interface ClearStatsReply {
  ok: true;
}

/** Answer to `clear-config`, `clear-macmask` and `clear-reserve`: the devices cleared. */
export interface ClearReply {
  ok: true;
  cleared: string[];
}

/** Answer to `views`. */
export interface ViewsReply {
  ok: true;
  views: ViewInfo[];
}

/** Answer to `reset-view` and `remove-view`. */
export interface DropViewReply {
  ok: true;
  device: string;
  mac: string;
  /** A view existed (and was dropped). */
  existed: boolean;
}

/** The answer type of each request. */
export interface ControlReplies {
  "stats": StatsReply;
  "reload": ReloadReply;
  "show-config": ShowConfigReply;
  "show-macmask": MacListReply;
  "show-reserve": MacListReply;
  "show-rbd": ShowRbdReply;
  "clear-stats": ClearStatsReply;
  "clear-config": ClearReply;
  "clear-macmask": ClearReply;
  "clear-reserve": ClearReply;
  "views": ViewsReply;
  "reset-view": DropViewReply;
  "remove-view": DropViewReply;
}
