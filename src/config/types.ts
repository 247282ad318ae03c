/**
 * The validated configuration, as the rest of the daemon sees it. Produced by `loadConfig()`
 * (`src/config/load.ts`) from a TOML file or the original's INI file; every default is applied,
 * every ACL resolved, every path and range checked. Units are converted: sizes in bytes, delays
 * in seconds, MACs as numbers (`src/mac.ts`).
 *
 * @module
 */

import type { ListenAddress } from "./listen.ts";

/** Built-in defaults (docs/decisions.md §1.3). */
export const DEFAULTS = {
  queueLength: 64,
  directIo: true,
  traceIo: false,
  pidFile: "/run/ggaoed/ggaoed.pid",
  controlSocket: "/run/ggaoed/ggaoed.sock",
  stateDirectory: "/var/lib/ggaoed",
  mtu: 0,
  ringBufferSizeKiB: 4096,
  sendBufferSizeKiB: 0,
  receiveBufferSizeKiB: 0,
  maxDelay: 0.001,
  mergeDelay: 0,
  /** Seconds; see docs/configuration.md "Stale requests" for why (the Linux aoe driver's timers). */
  maxRequestAge: 2,
  maxStall: 2,
  configPath: "/etc/ggaoed/ggaoed.conf",
  cephConf: "/etc/ceph/ceph.conf",
  cephUser: "admin",
  fence: true,
  fenceAfter: 2.5,
  metricsMaxConnections: 16,
  viewsLifecycle: "persist",
  maxViews: 64,
  viewsQuiet: 600,
} as const;

/**
 * Per-initiator copy-on-write views of a device (`views = ...`): every host (by source MAC) gets
 * its own writable view of the golden image `path`, which is never written.
 */
export interface ViewsConfig {
  /**
   * `views`: where the views live: a directory of reflinked copies `<dir>/<mac>.img`, or
   * `rbd:POOL` (one RBD clone `POOL/<device>-<mac>` per host).
   */
  location: string;
  /**
   * `views-lifecycle`: `persist` (views survive restarts and reboots of their hosts), or
   * `reset-on-discover` (a Query Config after {@link quiet} seconds of silence starts afresh).
   */
  lifecycle: "persist" | "reset-on-discover";
  /** `max-views`: views one device may have, 1-4096. */
  maxViews: number;
  /** `views-quiet`: seconds without a frame after which a Query Config counts as a boot. */
  quiet: number;
}

/** The `path` prefix of a Ceph RBD image: `rbd:POOL/IMAGE` or `rbd:POOL/IMAGE@SNAP`. */
export const RBD_PATH_PREFIX = "rbd:";

/** A device served from a Ceph RBD image through librbd (`path = "rbd:POOL/IMAGE[@SNAP]"`). */
export interface RbdConfig {
  pool: string;
  image: string;
  /** A snapshot (served read-only), or null for the image itself. */
  snapshot: string | null;
  /** `ceph-conf`: the cluster's ceph.conf. */
  conf: string;
  /** `ceph-user`: the Ceph user without `client.` (a name with a dot is taken whole). */
  user: string;
  /**
   * `ceph-options`: librados/librbd settings, set after the conf file and after ggaoed's safe
   * defaults (which they may override), `[defaults]` first, then the device's own.
   */
  options: Record<string, string>;
  /**
   * `fence`: blocklist the Ceph client of another host serving the image whose record went
   * unrefreshed for {@link fenceAfter} seconds (src/rbd/images.ts).
   */
  fence: boolean;
  /** `fence-after`: seconds, 2 to 600. */
  fenceAfter: number;
}

/** Where the daemon's own files live and how it logs. */
export interface GlobalConfig {
  /** Glob patterns (`*`, `?`) of interfaces to listen on; null = every usable interface. */
  interfaces: string[] | null;
  pidFile: string;
  controlSocket: string;
  stateDirectory: string;
  /** `log-target`: "stderr" (default) or "syslog". */
  logTarget: "stderr" | "syslog";
  /** `log-level`: "debug" | "info" | "warning" | "error". */
  logLevel: "debug" | "info" | "warning" | "error";
  /** `metrics-listen`: where to serve Prometheus metrics over HTTP; null = not at all. */
  metricsListen: ListenAddress | null;
  /** `metrics-max-connections`: connections the metrics endpoint serves at once. */
  metricsMaxConnections: number;
  /**
   * `workers`: data-path workers (docs/workers.md); null = the default, one per online CPU but
   * no more than the devices configured at start. Read at startup only.
   */
  workers: number | null;
}

/** Settings of one network interface (an `[interfaces.NAME]` table, or the defaults). */
export interface InterfaceConfig {
  /** MTU clamp in bytes: 0 = the link's MTU, else min(link MTU, mtu); >= 1056. */
  mtu: number;
  /** RX + TX packet ring bytes together; 0 disables the rings (recvfrom/sendto). */
  ringBufferSize: number;
  /** SO_SNDBUF in bytes; 0 = the kernel's default. */
  sendBufferSize: number;
  /** SO_RCVBUF in bytes; 0 = the kernel's default. */
  receiveBufferSize: number;
}

/** One exported device (a `[devices.NAME]` table). */
export interface DeviceConfig {
  /** The table name: log prefix, state file name, ggaoectl name. */
  name: string;
  /** Path of the block device or regular file (a `uuid` is resolved to its device node). */
  path: string;
  shelf: number;
  slot: number;
  queueLength: number;
  directIo: boolean;
  traceIo: boolean;
  readOnly: boolean;
  broadcast: boolean;
  /** Seconds; requests arriving within this window are sorted by offset. */
  maxDelay: number;
  /** Seconds; 0 = submit at once, else the first request on an idle device waits this long. */
  mergeDelay: number;
  /**
   * `max-request-age`: seconds; a request older than this when it would start (its I/O
   * submitted, or its command run) is dropped unanswered; 0 = never.
   */
  maxRequestAge: number;
  /**
   * `max-stall`: seconds; when the data-path loop did not run, or the device's I/O did not
   * complete, for longer than this, every request received before it ran again is dropped
   * unanswered; 0 = never.
   */
  maxStall: number;
  /** Glob patterns of interfaces the device is visible on; null = all the daemon listens on. */
  interfaces: string[] | null;
  /** Source MACs served; null = everyone. Never empty (an empty accept list is an error). */
  accept: number[] | null;
  /** Source MACs never served; null = nobody denied. */
  deny: number[] | null;
  /**
   * `admin`: the only source MACs whose MAC Mask List edits and Reserve/Release sets are obeyed
   * (the others get AoE error 6); null = every host served may make them. May be empty.
   */
  admin: number[] | null;
  /**
   * `admin-config-string`: `admin` covers Query Config set and force set too (the others get
   * AoE error 6). No effect without `admin`.
   */
  adminConfigString: boolean;
  /** `offset`: the first sector of the file or device that is exported (its sector 0). */
  offsetSectors: number;
  /** `length`: sectors exported from offsetSectors on; null = all that follow it. */
  lengthSectors: number | null;
  /** `sync-writes`: open with O_DSYNC, so that a write is answered once it is durable. */
  syncWrites: boolean;
  /** IDENTIFY serial number (1-20 printable ASCII characters): `serial`, else `shelf.slot:host`. */
  serial: string;
  /** The Ceph RBD image when `path` is `rbd:...`; null for block devices and files. */
  rbd: RbdConfig | null;
  /** Per-initiator views of `path` (`views = ...`), or null: one image for every host. */
  views: ViewsConfig | null;
}

/** The whole validated configuration. */
export interface Config {
  /** The file it came from. */
  file: string;
  /** "toml" or "ini" (the original's GKeyFile format). */
  format: "toml" | "ini";
  global: GlobalConfig;
  /** Settings for interfaces without their own table. */
  interfaceDefaults: InterfaceConfig;
  /** `[interfaces.NAME]` tables, defaults applied. */
  interfaces: Map<string, InterfaceConfig>;
  /** Resolved named ACLs (`[acls]`). */
  acls: Map<string, number[]>;
  /** Devices in file order. */
  devices: DeviceConfig[];
  /** Non-fatal remarks (obsolete keys and the like), each naming file and key. */
  warnings: string[];
}

/** One configuration problem: where, what, and what to do. */
export interface ConfigIssue {
  file: string;
  /** Dotted key path, e.g. `devices.disk1.shelf`; "" for the file as a whole. */
  key: string;
  message: string;
  /** What to change, in a few words. */
  fix: string;
}

/** Thrown by `loadConfig()` with every problem found, not just the first. */
export class ConfigError extends Error {
  readonly issues: ConfigIssue[];
  constructor(issues: ConfigIssue[]) {
    super(
      issues.map((i) => `${i.file}: ${i.key ? i.key + ": " : ""}${i.message} (${i.fix})`).join(
        "\n",
      ),
    );
    this.name = "ConfigError";
    this.issues = issues;
  }
}

/**
 * What is wrong with `device`'s `offset`/`length` on a file or device of `sizeBytes` bytes, or
 * null when the range lies within it.
 */
export function exportRangeProblem(
  device: Pick<DeviceConfig, "path" | "offsetSectors" | "lengthSectors">,
  sizeBytes: number,
): { message: string; fix: string } | null {
  const total = Math.floor(sizeBytes / 512);
  const offset = device.offsetSectors;
  const length = device.lengthSectors;
  const holds = `${device.path} holds ${total} sectors of 512 bytes`;
  if (length === null) {
    if (offset === 0 || offset < total) return null;
    return {
      message: `${holds}: offset ${offset} is at or past its end`,
      fix: "lower offset (in sectors), or grow the file",
    };
  }
  if (offset + length <= total) return null;
  return {
    message: `${holds}: offset ${offset} + length ${length} = ${offset + length} is past its end`,
    fix: "lower offset or length (in sectors), or grow the file",
  };
}

/**
 * The number of sectors `device` exports from a file or device of `sizeBytes` bytes: `length`,
 * or all that follow `offset`. Throws a RangeError saying what to change when the range does not
 * lie within it.
 */
export function exportedSectors(device: DeviceConfig, sizeBytes: number): number {
  const problem = exportRangeProblem(device, sizeBytes);
  if (problem) throw new RangeError(`${problem.message} (${problem.fix})`);
  return device.lengthSectors ?? Math.floor(sizeBytes / 512) - device.offsetSectors;
}

/** Effective settings of interface `name`: its own table, else the defaults. */
export function interfaceConfig(config: Config, name: string): InterfaceConfig {
  return config.interfaces.get(name) ?? config.interfaceDefaults;
}
