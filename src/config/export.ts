/**
 * `ggaoed export`: a one-line export without a configuration file, with vblade's options.
 *
 *     ggaoed export [-r] [-d] [-s] [-o OFFSET] [-l LENGTH] [-m MAC[,MAC...]] [-b BUFCOUNT]
 *                   SHELF SLOT IFACE FILE
 *
 * The arguments become the tables a TOML file would parse to, and {@link buildConfig} validates
 * them: the same checks, defaults and Config object as `loadConfig()`, so the daemon runs the
 * same engine and shows the same statistics. Problems are reported all at once, each naming the
 * option or argument it came from instead of a configuration key.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { listInterfaces } from "../../ffi/mod.ts";
import { buildConfig, type LoadOptions } from "./load.ts";
import { type Config, ConfigError, type ConfigIssue } from "./types.ts";

/** Where an export keeps its files unless told otherwise (NAME is `e<shelf>.<slot>-<iface>`). */
export const EXPORT_DEFAULTS = {
  controlSocket: "/run/ggaoed-NAME.sock",
  pidFile: "/run/ggaoed-NAME.pid",
  stateDirectory: "/var/lib/ggaoed/export/NAME",
} as const;

/** What `ggaoed export` is called in messages and as the configuration's file name. */
export const EXPORT_SOURCE = "ggaoed export";

export const EXPORT_USAGE =
  `Usage: ggaoed export [-r] [-d] [-s] [-o OFFSET] [-l LENGTH] [-m MAC[,MAC...]] [-b BUFCOUNT]
                     [--admin MAC[,MAC...]] [--control-socket PATH] [--pid-file PATH]
                     [--state-directory DIR] [--debug] SHELF SLOT IFACE FILE

Exports FILE (a regular file or a block device) as AoE target eSHELF.SLOT on network interface
IFACE, without a configuration file, with vblade's options. It runs in the foreground until
SIGTERM/SIGINT (SIGHUP re-reads FILE's size); the same engine, statistics and ggaoectl as the
daemon with a configuration file.

Arguments:
  SHELF               AoE shelf, 0-65534
  SLOT                AoE slot, 0-254
  IFACE               the network interface to serve on (exact name, e.g. eth0)
  FILE                the regular file or block device to export

Options (vblade's):
  -r                  read-only: writes are refused (ATA ABRT)
  -d                  O_DIRECT: bypass the page cache (default: buffered, as vblade)
  -s                  sync writes: O_DSYNC, a write is answered once it is durable
  -o OFFSET           export from sector OFFSET of FILE on (512-byte sectors; default 0)
  -l LENGTH           export LENGTH sectors (default: the rest of FILE after OFFSET)
  -m MAC[,MAC...]     serve only these initiators (MACs, or host names from /etc/ethers)
  -b BUFCOUNT         Buffer Count advertised to initiators = requests queued per device,
                      1-65535 (default 64)

Options (ggaoed's):
  --admin MAC[,...]   only these initiators may edit the MAC Mask List and reservations
                      (others get AoE error 6); default: every host served
  --control-socket P  ggaoectl's socket (default ${EXPORT_DEFAULTS.controlSocket})
  --pid-file PATH     pid file, locked while running (default ${EXPORT_DEFAULTS.pidFile})
  --state-directory D AoE config string, MAC Mask List and Reserve list, kept across restarts;
                      created if missing (default ${EXPORT_DEFAULTS.stateDirectory})
  --debug             log at debug level and trace every request
  -h, --help          print this help and exit

NAME is eSHELF.SLOT-IFACE, so two exports never share these files.

Examples:
  ggaoed export 0 1 eth0 /srv/aoe/disk.img
  ggaoed export -r -m 00:1b:21:0a:aa:22,00:1b:21:0a:aa:23 1 0 eth1 /dev/sdb
  ggaoed export -o 2048 -l 2097152 -s 0 2 eth0 /srv/aoe/big.img      (1 GiB from 1 MiB on)
  ggaoectl -s /run/ggaoed-e0.1-eth0.sock stats`;

/** The outcome of reading the command line. */
export type ExportArgs =
  | { kind: "help" }
  | { kind: "usage"; message: string }
  | {
    kind: "plan";
    /** `--debug`: log at debug level and trace every request. */
    debug: boolean;
    /** The state directory: the caller creates it when missing, before `build`. */
    stateDirectory: string;
    /**
     * Validates the export (FILE, the range, IFACE, ...) and returns its configuration; throws
     * a ConfigError whose issues name options and arguments. Called again on every reload.
     */
    build: (options?: LoadOptions) => Config;
  };

/** Where each key of the generated tables came from on the command line. */
const SOURCES: Record<string, string> = {
  "defaults.interfaces": "IFACE",
  "defaults.control-socket": "--control-socket",
  "defaults.pid-file": "--pid-file",
  "defaults.state-directory": "--state-directory",
  "defaults.queue-length": "-b BUFCOUNT",
  "defaults.direct-io": "-d",
  "defaults.sync-writes": "-s",
  "path": "FILE",
  "shelf": "SHELF",
  "slot": "SLOT",
  "read-only": "-r",
  "offset": "-o OFFSET",
  "length": "-l LENGTH",
  "accept": "-m",
  "admin": "--admin",
};

/** Key names as they appear in fixes, and the options to name instead. */
const FIX_WORDS: [RegExp, string][] = [
  [/\boffset or length\b/g, "-o or -l"],
  [/\blower offset\b/g, "lower -o"],
  [/\bset state-directory\b/g, "give --state-directory DIR"],
  [/\bremove length to export the rest\b/g, "leave out -l to export the rest"],
  [/, define the ACL,/g, ","],
];

/** Words of messages that speak of a configuration file an export does not have. */
const MESSAGE_WORDS: [RegExp, string][] = [[/, not an ACL in \[acls\],/g, ","]];

function optionOf(key: string, device: string): string {
  if (key === device) return "SHELF SLOT";
  const own = key.startsWith(device + ".") ? key.slice(device.length + 1) : key;
  return SOURCES[own] ?? key;
}

function reword(text: string, words: [RegExp, string][]): string {
  return words.reduce((t, [re, to]) => t.replace(re, to), text);
}

/** A whole number written in decimal, or null. */
function wholeNumber(text: string): number | null {
  return /^\d{1,16}$/.test(text) ? Number(text) : null;
}

/** Reads the command line of `ggaoed export` (the arguments after `export`). */
export function parseExportArgs(args: string[]): ExportArgs {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      allowPositionals: true,
      options: {
        r: { type: "boolean", short: "r" },
        d: { type: "boolean", short: "d" },
        s: { type: "boolean", short: "s" },
        o: { type: "string", short: "o" },
        l: { type: "string", short: "l" },
        m: { type: "string", short: "m", multiple: true },
        b: { type: "string", short: "b" },
        admin: { type: "string", multiple: true },
        "control-socket": { type: "string" },
        "pid-file": { type: "string" },
        "state-directory": { type: "string" },
        debug: { type: "boolean" },
        help: { type: "boolean", short: "h" },
      },
    });
  } catch (e) {
    return { kind: "usage", message: (e as Error).message };
  }
  const { values: v, positionals } = parsed;
  if (v.help) return { kind: "help" };
  if (positionals.length !== 4) {
    return {
      kind: "usage",
      message: positionals.length < 4
        ? `give SHELF SLOT IFACE FILE (${positionals.length} of the 4 arguments given)`
        : `unexpected argument '${positionals[4]}' after SHELF SLOT IFACE FILE`,
    };
  }
  const [shelfText, slotText, iface, file] = positionals;
  const problems: string[] = [];
  const number = (text: string | undefined, what: string, example: string): number | null => {
    if (text === undefined) return null;
    const n = wholeNumber(text);
    if (n === null) problems.push(`${what}: '${text}' is not a whole number (e.g. ${example})`);
    return n;
  };
  const shelf = number(shelfText, "SHELF", "0");
  const slot = number(slotText, "SLOT", "1");
  const offset = number(v.o, "-o OFFSET", "-o 2048 for 1 MiB in");
  const length = number(v.l, "-l LENGTH", "-l 2097152 for 1 GiB");
  const buffers = number(v.b, "-b BUFCOUNT", "-b 64");
  const list = (values: string[] | undefined, what: string): string[] | null => {
    if (values === undefined) return null;
    const items = values.flatMap((x) => x.split(",")).map((x) => x.trim());
    if (items.some((x) => x === "")) {
      problems.push(
        `${what}: an empty address in '${
          values.join(",")
        }' (e.g. ${what} 00:1b:21:0a:aa:22,00:1b:21:0a:aa:23)`,
      );
    }
    return items.filter((x) => x !== "");
  };
  const accept = list(v.m, "-m");
  const admin = list(v.admin, "--admin");
  if (problems.length > 0) return { kind: "usage", message: problems.join("\n") };

  const name = `e${shelf}.${slot}-${iface}`;
  const device = `devices.e${shelf}.${slot}`;
  const fill = (pattern: string) => pattern.replace("NAME", name);
  const stateDirectory = v["state-directory"] ?? fill(EXPORT_DEFAULTS.stateDirectory);
  const defaults: Record<string, unknown> = {
    interfaces: [iface],
    "control-socket": v["control-socket"] ?? fill(EXPORT_DEFAULTS.controlSocket),
    "pid-file": v["pid-file"] ?? fill(EXPORT_DEFAULTS.pidFile),
    "state-directory": stateDirectory,
    "direct-io": v.d ?? false,
    "sync-writes": v.s ?? false,
  };
  if (buffers !== null) defaults["queue-length"] = buffers;
  const table: Record<string, unknown> = {
    path: file,
    shelf,
    slot,
    "read-only": v.r ?? false,
  };
  if (offset !== null) table.offset = offset;
  if (length !== null) table.length = length;
  if (accept !== null) table.accept = accept;
  if (admin !== null) table.admin = admin;

  const build = (options: LoadOptions = {}): Config => {
    const issues: ConfigIssue[] = [];
    let config: Config | null = null;
    try {
      config = buildConfig(
        { defaults, devices: { [`e${shelf}.${slot}`]: table } },
        EXPORT_SOURCE,
        options,
      );
    } catch (e) {
      if (!(e instanceof ConfigError)) throw e;
      for (const i of e.issues) {
        issues.push({
          ...i,
          key: optionOf(i.key, device),
          message: reword(i.message, MESSAGE_WORDS),
          fix: reword(i.fix, FIX_WORDS),
        });
      }
    }
    const known = listInterfaces();
    if (!known.includes(iface)) {
      issues.push({
        file: EXPORT_SOURCE,
        key: "IFACE",
        message: `there is no network interface '${iface}' here (there are: ${known.join(", ")})`,
        fix: "name one of them; `ip link` lists them",
      });
    }
    if (issues.length > 0 || config === null) throw new ConfigError(issues);
    // The one warning an export can get is about admin: name the option, not the key.
    config.warnings = config.warnings.map((w) =>
      w.replace(`${device}: `, "").replace("(its accept list)", "(-m)").replace(
        "(no accept list)",
        "(no -m)",
      ).replace(
        /\(set admin = .*\)$/,
        "(give --admin MAC[,MAC...] to allow these edits only from the hosts listed)",
      )
    );
    return config;
  };
  return { kind: "plan", debug: v.debug ?? false, stateDirectory, build };
}

/** The problems of an export for people: one per option, each with its fix. */
export function formatExportIssues(issues: readonly ConfigIssue[]): string {
  const lines = [`${EXPORT_SOURCE}: ${issues.length} problem(s) with the arguments:`];
  for (const i of issues) {
    lines.push(`  ${i.key ? i.key + ": " : ""}${i.message}`);
    if (i.fix) lines.push(`    fix: ${i.fix}`);
  }
  return lines.join("\n");
}
