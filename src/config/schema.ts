/**
 * Every configuration key: where it may appear, its type and its valid range. One table serves
 * the loader (both formats), the INI converter and the documentation, so that they cannot
 * disagree.
 *
 * @module
 */

/**
 * How a value is written:
 * - `integer`, `kib` (an integer count of KiB), `number` (seconds), `boolean`, `string`;
 * - `patterns` (interface glob list) and `tokens` (ACL token list): a list of strings;
 * - `enum`: a string out of `values`;
 * - `listen`: a TCP address `HOST:PORT` (`src/config/listen.ts`);
 * - `options`: NAME = VALUE settings passed through (a TOML table, or `"name=value, ..."`);
 * - `obsolete`: accepted with a warning and ignored.
 */
export type KeyKind =
  | "integer"
  | "kib"
  | "number"
  | "boolean"
  | "string"
  | "patterns"
  | "tokens"
  | "enum"
  | "listen"
  | "options"
  | "obsolete";

/** One key of one kind of table. */
export interface KeySpec {
  key: string;
  kind: KeyKind;
  /** Accepted values of an `enum`. */
  values?: readonly string[];
  /** Range check of numeric kinds (in file units: KiB, seconds). */
  valid?: (v: number) => boolean;
  /** The range as people read it, e.g. `0-65534`. */
  range?: string;
  /** What to write instead, in a few words. */
  fix?: string;
}

export const MAX_RING_KIB = 65536;

const between = (lo: number, hi: number) => (v: number) => v >= lo && v <= hi;
// Written as `!(v < 0)`-free comparisons so that NaN fails every check.
const nonNegative = (v: number) => v >= 0 && v <= Number.MAX_SAFE_INTEGER / 1024;
const mtuValid = (v: number) => v === 0 || (v >= 1056 && v <= 16384);

const MTU: KeySpec = {
  key: "mtu",
  kind: "integer",
  valid: mtuValid,
  range: "0 or 1056-16384",
  fix: "0 uses the link's MTU; a clamp must hold a 1024-byte config string plus headers",
};
const RING: KeySpec = {
  key: "ring-buffer-size",
  kind: "kib",
  valid: (v) => v >= 0 && v <= MAX_RING_KIB,
  range: `0-${MAX_RING_KIB} KiB`,
  fix: "give the RX+TX ring size in KiB, at most 64 MiB; 0 disables the rings",
};
const SNDBUF: KeySpec = {
  key: "send-buffer-size",
  kind: "kib",
  valid: nonNegative,
  range: "0 or more KiB",
  fix: "give SO_SNDBUF in KiB; 0 keeps the kernel's default",
};
const RCVBUF: KeySpec = {
  key: "receive-buffer-size",
  kind: "kib",
  valid: nonNegative,
  range: "0 or more KiB",
  fix: "give SO_RCVBUF in KiB; 0 keeps the kernel's default",
};
const QUEUE: KeySpec = {
  key: "queue-length",
  kind: "integer",
  valid: between(1, 65535),
  range: "1-65535",
  fix: "give the number of requests a device may queue",
};
const MAX_DELAY: KeySpec = {
  key: "max-delay",
  kind: "number",
  valid: (v) => v > 0 && v < 1,
  range: "0 < x < 1 seconds",
  fix: "give the sorting window in seconds, e.g. 0.001",
};
const MERGE_DELAY: KeySpec = {
  key: "merge-delay",
  kind: "number",
  valid: (v) => v >= 0 && v < 1,
  range: "0 <= x < 1 seconds",
  fix: "give the submission delay in seconds; 0 submits at once",
};
const MAX_REQUEST_AGE: KeySpec = {
  key: "max-request-age",
  kind: "number",
  valid: (v) => v === 0 || (v >= 0.1 && v <= 3600),
  range: "0, or 0.1-3600 seconds",
  fix: "give the age in seconds after which a request is dropped instead of started, e.g. 2; " +
    "0 turns the check off",
};
const MAX_STALL: KeySpec = {
  key: "max-stall",
  kind: "number",
  valid: (v) => v === 0 || (v >= 0.1 && v <= 3600),
  range: "0, or 0.1-3600 seconds",
  fix: "give the pause in seconds after which everything received before it is dropped, " +
    "e.g. 2; 0 turns the check off",
};
const BUFFERS: KeySpec = { key: "buffers", kind: "obsolete", fix: "use ring-buffer-size instead" };
const ADMIN: KeySpec = { key: "admin", kind: "tokens" };
const ADMIN_CONFIG: KeySpec = { key: "admin-config-string", kind: "boolean" };
const SYNC_WRITES: KeySpec = { key: "sync-writes", kind: "boolean" };
// Ceph RBD devices (`path = "rbd:POOL/IMAGE"`): the cluster to connect to, and as whom.
const CEPH_CONF: KeySpec = { key: "ceph-conf", kind: "string" };
const CEPH_USER: KeySpec = { key: "ceph-user", kind: "string" };
const CEPH_OPTIONS: KeySpec = {
  key: "ceph-options",
  kind: "options",
  fix: 'write ceph-options = { keyring = "/etc/ceph/ceph.client.ggaoed.keyring" } ' +
    "(librados option names as in 'ceph config help')",
};
// Fencing of a host that stopped refreshing its record in a shared image (src/rbd/fence.ts).
const FENCE: KeySpec = { key: "fence", kind: "boolean" };
const FENCE_AFTER: KeySpec = {
  key: "fence-after",
  kind: "number",
  valid: (v) => v >= 2 && v <= 600,
  range: "2-600 seconds",
  fix: "give the seconds without a record refresh after which another host is fenced, " +
    "e.g. 2.5 (below the aoe driver's failover, aoe_deadsecs / targets)",
};

/**
 * Sectors an export may reach (offset + length): 2^44 sectors of 512 bytes are 2^53 bytes, the
 * largest byte offset a JavaScript number holds exactly.
 */
export const MAX_EXPORT_SECTORS = 2 ** 44;

/** Keys of `[defaults]`, in the order the original documents them. */
export const DEFAULTS_KEYS: readonly KeySpec[] = [
  QUEUE,
  { key: "interfaces", kind: "patterns" },
  { key: "direct-io", kind: "boolean" },
  { key: "trace-io", kind: "boolean" },
  { key: "pid-file", kind: "string" },
  { key: "control-socket", kind: "string" },
  { key: "state-directory", kind: "string" },
  MTU,
  RING,
  SNDBUF,
  RCVBUF,
  {
    key: "tx-ring-bug",
    kind: "obsolete",
    fix: "remove it: it worked around a TX ring bug of Linux 2.6.31, which no supported kernel has",
  },
  MAX_DELAY,
  MERGE_DELAY,
  MAX_REQUEST_AGE,
  MAX_STALL,
  { key: "log-target", kind: "enum", values: ["stderr", "syslog"] },
  { key: "log-level", kind: "enum", values: ["debug", "info", "warning", "error"] },
  { key: "metrics-listen", kind: "listen" },
  {
    key: "metrics-max-connections",
    kind: "integer",
    valid: between(1, 4096),
    range: "1-4096",
    fix: "a few per Prometheus server scraping the daemon; the default is 16",
  },
  {
    key: "workers",
    kind: "integer",
    valid: between(1, 1024),
    range: "1-1024",
    fix:
      "a whole number of data-path workers, at least 1; leave it out for one per CPU (docs/workers.md)",
  },
  BUFFERS,
  SYNC_WRITES,
  ADMIN,
  ADMIN_CONFIG,
  CEPH_CONF,
  CEPH_USER,
  CEPH_OPTIONS,
  FENCE,
  FENCE_AFTER,
];

/** Keys of an interface table. */
export const INTERFACE_KEYS: readonly KeySpec[] = [MTU, RING, SNDBUF, RCVBUF, BUFFERS];

/** Keys of a device table. */
export const DEVICE_KEYS: readonly KeySpec[] = [
  { key: "path", kind: "string" },
  { key: "uuid", kind: "string" },
  {
    key: "shelf",
    kind: "integer",
    valid: between(0, 65534),
    range: "0-65534",
    fix: "use a shelf number from 0 to 65534; 65535 is the broadcast address",
  },
  {
    key: "slot",
    kind: "integer",
    valid: between(0, 254),
    range: "0-254",
    fix: "use a slot number from 0 to 254; 255 is the broadcast address",
  },
  QUEUE,
  { key: "direct-io", kind: "boolean" },
  { key: "trace-io", kind: "boolean" },
  { key: "read-only", kind: "boolean" },
  { key: "broadcast", kind: "boolean" },
  MAX_DELAY,
  MERGE_DELAY,
  MAX_REQUEST_AGE,
  MAX_STALL,
  { key: "interfaces", kind: "patterns" },
  { key: "accept", kind: "tokens" },
  { key: "deny", kind: "tokens" },
  ADMIN,
  ADMIN_CONFIG,
  {
    key: "offset",
    kind: "integer",
    valid: between(0, MAX_EXPORT_SECTORS - 1),
    range: "0 to 2^44-1 sectors",
    fix: "give the first exported sector of the file or device (512-byte sectors)",
  },
  {
    key: "length",
    kind: "integer",
    valid: between(1, MAX_EXPORT_SECTORS),
    range: "1 to 2^44 sectors",
    fix: "give the number of 512-byte sectors to export, or remove length to export the rest",
  },
  SYNC_WRITES,
  { key: "serial", kind: "string" },
  CEPH_CONF,
  CEPH_USER,
  CEPH_OPTIONS,
  FENCE,
  FENCE_AFTER,
  // Per-initiator copy-on-write views (README "Boot farms").
  { key: "views", kind: "string" },
  { key: "views-lifecycle", kind: "enum", values: ["persist", "reset-on-discover"] },
  {
    key: "max-views",
    kind: "integer",
    valid: between(1, 4096),
    range: "1-4096",
    fix: "give the most hosts that may have a view of this device, e.g. 64",
  },
  {
    key: "views-quiet",
    kind: "number",
    valid: (v) => v >= 1 && v <= 31536000,
    range: "1-31536000 seconds",
    fix: "give the seconds of silence after which a host's Query Config counts as a boot, e.g. 600",
  },
];

/** The spec of `key` in `specs`, if any. */
export function findKey(specs: readonly KeySpec[], key: string): KeySpec | undefined {
  return specs.find((s) => s.key === key);
}

/** Edit distance counting a swap of two neighbours as one edit (`mut` → `mtu` is 1). */
function editDistance(a: string, b: string): number {
  const d: number[][] = Array.from(
    { length: a.length + 1 },
    (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)),
  );
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        d[i][j] = Math.min(d[i][j], d[i - 2][j - 2] + 1);
      }
    }
  }
  return d[a.length][b.length];
}

/**
 * The known name closest to a misspelt `name` (`queue_length`, `Queue-Length`, `mut`), or null
 * when nothing is close enough to be a likely typo.
 */
export function suggest(name: string, known: readonly string[]): string | null {
  const norm = (s: string) => s.toLowerCase().replace(/[_ ]/g, "-");
  // An abbreviation (`warn`, `ring-buffer`) names the key it starts.
  if (name.length >= 3) {
    const prefixed = known.filter((k) => norm(k).startsWith(norm(name)));
    if (prefixed.length === 1) return prefixed[0];
  }
  let best: string | null = null;
  let bestDistance = Infinity;
  for (const k of known) {
    const d = norm(k) === norm(name) ? 0 : editDistance(norm(name), norm(k));
    if (d < bestDistance) {
      best = k;
      bestDistance = d;
    }
  }
  const limit = Math.max(1, Math.min(3, Math.floor(name.length / 3)));
  return bestDistance <= limit ? best : null;
}
