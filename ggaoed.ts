/**
 * ggaoed: the AoE target daemon.
 *
 *     deno run --allow-ffi --allow-read --allow-write --allow-env --allow-sys --allow-net ggaoed.ts [options]
 *     ggaoed convert-config OLD.conf > NEW.toml
 *     ggaoed check-config [-c FILE]
 *     ggaoed export [-r] [-d] [-s] [-o OFFSET] [-l LENGTH] [-m MACS] [-b BUFCOUNT] SHELF SLOT IFACE FILE
 *
 * @module
 */

import { parseArgs } from "node:util";
import { convertIniToToml } from "./src/config/convert.ts";
import {
  EXPORT_SOURCE,
  EXPORT_USAGE,
  formatExportIssues,
  parseExportArgs,
} from "./src/config/export.ts";
import { loadConfig } from "./src/config/load.ts";
import { ConfigError, DEFAULTS } from "./src/config/types.ts";
import { printConfigError, runDaemon } from "./src/daemon.ts";
import { formatMac } from "./src/mac.ts";
import { VERSION } from "./src/version.ts";
import {
  closeFd,
  openStorage,
  RadosCluster,
  RBD_FEATURE_EXCLUSIVE_LOCK,
  type RbdImage,
} from "./ffi/mod.ts";
import type { DeviceConfig } from "./src/config/types.ts";
import { rbdLabel } from "./src/rbd/images.ts";

const USAGE = `Usage: ggaoed [options]                 run the AoE target in the foreground
       ggaoed check-config [-c FILE]    validate the configuration, open every device (Ceph
                                        RBD images through their cluster) and print what
                                        it exports
       ggaoed convert-config OLD.conf   print the TOML equivalent of an original (INI) config
       ggaoed export [-r] [-d] [-s] [-o OFFSET] [-l LENGTH] [-m MAC[,MAC...]] [-b BUFCOUNT]
                     SHELF SLOT IFACE FILE
                                        export one file or device without a configuration
                                        file, with vblade's options (ggaoed export --help)

Options:
  -c, --config FILE   configuration file (default ${DEFAULTS.configPath})
  -d, --debug         log at debug level and trace every request (trace-io for all devices)
  -n, --nofork        accepted for compatibility: ggaoed always runs in the foreground
                      (use systemd, or your init system, to run it in the background)
  -V, --version       print the version and exit
  -h, --help          print this help and exit

Signals: SIGHUP reloads the configuration; SIGTERM/SIGINT/SIGQUIT stop it cleanly
(in-flight I/O completes and is answered first).

Examples:
  ggaoed                (reads ${DEFAULTS.configPath})
  ggaoed check-config -c ./ggaoed.conf
                        (prints each RBD image's size and features, warns about exclusive-lock)
  ggaoed convert-config /etc/ggaoed.conf > ${DEFAULTS.configPath}
                        (the original ggaoed's file, INI, to TOML at the new path)
  ggaoed export -m 00:1b:21:0a:aa:22 0 1 eth0 /srv/aoe/disk.img
  ggaoectl stats        (see ggaoectl --help)

Under systemd (Type=notify) ggaoed reports READY=1, RELOADING=1, STOPPING=1 and WATCHDOG=1
through $NOTIFY_SOCKET; see contrib/ggaoed.service.

Run as root, or as a user with CAP_NET_RAW (CAP_NET_ADMIN only for socket buffers above
net.core.rmem_max/wmem_max) that can read and write the exported files and devices.

Ceph RBD images: path = "rbd:POOL/IMAGE" (or @SNAP, read-only) with ceph-conf, ceph-user and
ceph-options; needs librbd1. Several hosts may serve one image as the same shelf.slot (README,
"Serving Ceph RBD images from several hosts"); ggaoectl show-rbd lists them.`;

async function main(args: string[]): Promise<number> {
  // export has vblade's options (its -d is O_DIRECT): it parses its own arguments.
  if (args[0] === "export") return await runExport(args.slice(1));
  let parsed;
  try {
    parsed = parseArgs({
      args,
      allowPositionals: true,
      options: {
        config: { type: "string", short: "c" },
        debug: { type: "boolean", short: "d" },
        nofork: { type: "boolean", short: "n" },
        version: { type: "boolean", short: "V" },
        help: { type: "boolean", short: "h" },
      },
    });
  } catch (e) {
    console.error(`ggaoed: ${(e as Error).message}\n\n${USAGE}`);
    return 1;
  }
  const { values, positionals } = parsed;
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  if (values.version) {
    console.log(`ggaoed ${VERSION}`);
    return 0;
  }
  const configPath = values.config ?? DEFAULTS.configPath;
  const [command, ...rest] = positionals;
  const moved = values.config === undefined && command !== "convert-config"
    ? movedConfigAdvice(configPath, exists)
    : null;
  if (moved) {
    console.error(`ggaoed: ${moved}`);
    return 1;
  }
  switch (command) {
    case undefined:
      return await runDaemon({ configPath, debug: values.debug ?? false });
    case "check-config":
      return await checkConfig(configPath);
    case "convert-config": {
      const file = rest[0];
      if (!file) {
        console.error("ggaoed convert-config: name the old configuration file\n\n" + USAGE);
        return 1;
      }
      let text: string;
      try {
        text = Deno.readTextFileSync(file);
      } catch (e) {
        console.error(`ggaoed convert-config: cannot read ${file}: ${(e as Error).message}`);
        return 1;
      }
      try {
        console.log(convertIniToToml(text, file));
      } catch (e) {
        printConfigError(e);
        return 1;
      }
      return 0;
    }
    default:
      console.error(`ggaoed: unknown command '${command}'\n\n${USAGE}`);
      return 1;
  }
}

async function runExport(args: string[]): Promise<number> {
  const parsed = parseExportArgs(args);
  if (parsed.kind === "help") {
    console.log(EXPORT_USAGE);
    return 0;
  }
  if (parsed.kind === "usage") {
    const synopsis = EXPORT_USAGE.split("\n").slice(0, 3).join("\n");
    console.error(
      `${EXPORT_SOURCE}: ${parsed.message}\n\n${synopsis}\n(ggaoed export --help explains each)`,
    );
    return 1;
  }
  // The state directory is created when missing, and removed again if the export is refused.
  const created = firstMissing(parsed.stateDirectory);
  try {
    Deno.mkdirSync(parsed.stateDirectory, { recursive: true, mode: 0o700 });
  } catch {
    // The validation below says what is wrong with it.
  }
  try {
    parsed.build();
  } catch (e) {
    if (created !== null) Deno.removeSync(created, { recursive: true });
    if (!(e instanceof ConfigError)) throw e;
    console.error(formatExportIssues(e.issues));
    return 1;
  }
  return await runDaemon({ configPath: EXPORT_SOURCE, debug: parsed.debug, load: parsed.build });
}

/** The outermost directory of `path` that does not exist yet, or null when it all exists. */
function firstMissing(path: string): string | null {
  let missing: string | null = null;
  for (let p = path.replace(/\/+$/, ""); p !== "" && p !== "."; p = p.replace(/\/?[^/]*$/, "")) {
    try {
      Deno.statSync(p);
      break;
    } catch {
      missing = p;
    }
  }
  return missing;
}

/** The original ggaoed's configuration file. */
export const ORIGINAL_CONFIG_PATH = "/etc/ggaoed.conf";

/**
 * When the default configuration file is missing but the original's `/etc/ggaoed.conf` exists:
 * what to do about it. Null otherwise.
 */
export function movedConfigAdvice(
  configPath: string,
  exists: (path: string) => boolean,
): string | null {
  if (exists(configPath) || !exists(ORIGINAL_CONFIG_PATH)) return null;
  return `${configPath} does not exist, but ${ORIGINAL_CONFIG_PATH} (the original ggaoed's ` +
    `path) does. Move it: mkdir -p ${dirname(configPath)} && ` +
    `mv ${ORIGINAL_CONFIG_PATH} ${configPath} (or convert an INI file on the way: ` +
    `ggaoed convert-config ${ORIGINAL_CONFIG_PATH} > ${configPath}), or run with ` +
    `-c ${ORIGINAL_CONFIG_PATH}`;
}

function dirname(path: string): string {
  return path.slice(0, path.lastIndexOf("/")) || "/";
}

function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

/**
 * Opens the Ceph RBD image of every RBD device as the daemon would (one connection per
 * cluster settings); returns what to print after each device, or why it cannot be opened.
 */
async function checkRbdDevices(
  devices: DeviceConfig[],
): Promise<Map<string, { ok: boolean; text: string }>> {
  const out = new Map<string, { ok: boolean; text: string }>();
  const clusters = new Map<string, Promise<RadosCluster>>();
  for (const d of devices) {
    const r = d.rbd;
    if (!r) continue;
    const key = JSON.stringify([r.conf, r.user, Object.entries(r.options).sort()]);
    let cluster = clusters.get(key);
    if (!cluster) {
      cluster = RadosCluster.connect({ conf: r.conf, user: r.user, options: r.options });
      clusters.set(key, cluster);
    }
    let image: RbdImage | null = null;
    try {
      image = await (await cluster).openImage({
        pool: r.pool,
        image: r.image,
        snapshot: r.snapshot ?? undefined,
      });
      const size = await image.sizeAsync();
      const lock = (image.features() & RBD_FEATURE_EXCLUSIVE_LOCK) !== 0 && !d.readOnly;
      out.set(d.name, {
        ok: true,
        text: ` (${size} bytes, features ${image.featureNames().join(", ") || "none"})${
          lock ? "\n    warning: exclusive-lock and read-write: serve it from one host only" : ""
        }`,
      });
    } catch (e) {
      out.set(d.name, { ok: false, text: `${rbdLabel(r)}: ${(e as Error).message}` });
    } finally {
      await image?.closeAsync();
    }
  }
  for (const c of clusters.values()) await c.then((cluster) => cluster.closeAsync(), () => {});
  return out;
}

async function checkConfig(path: string): Promise<number> {
  try {
    const config = loadConfig(path);
    for (const w of config.warnings) console.log(`warning: ${w}`);
    // The daemon opens each device with these flags; a device it cannot open would not be
    // exported, so check-config fails for it. (Not exclusively: a running daemon holds the
    // exclusive claim of its block devices.) RBD images are opened through librbd.
    const unopenable: string[] = [];
    const rbd = await checkRbdDevices(config.devices);
    for (const d of config.devices) {
      const image = rbd.get(d.name);
      if (image) {
        if (!image.ok) unopenable.push(`devices.${d.name}: ${image.text}`);
        continue;
      }
      try {
        const s = openStorage(d.path, {
          readOnly: d.readOnly,
          direct: d.directIo,
          exclusive: false,
          sync: d.syncWrites,
        });
        closeFd(s.fd);
      } catch (e) {
        unopenable.push(`devices.${d.name}: ${(e as Error).message}`);
      }
    }
    if (unopenable.length > 0) {
      console.error(
        `ggaoed: ${unopenable.length} device(s) cannot be opened and would not be exported:`,
      );
      for (const u of unopenable) console.error(`  ${config.file}: ${u}`);
      return 1;
    }
    console.log(`${config.file}: OK (${config.format})`);
    for (const d of config.devices) {
      const acl = d.accept ? `, accept ${d.accept.map(formatMac).join(" ")}` : "";
      const admin = d.admin ? `, admin ${d.admin.map(formatMac).join(" ") || "(none)"}` : "";
      const range = d.offsetSectors > 0 || d.lengthSectors !== null
        ? ` [sectors ${d.offsetSectors}+${d.lengthSectors ?? "rest"}]`
        : "";
      console.log(
        `  e${d.shelf}.${d.slot}  ${d.name}  ${d.path}${range}${
          d.readOnly ? " (read-only)" : ""
        }${acl}${admin}${rbd.get(d.name)?.text ?? ""}`,
      );
    }
    return 0;
  } catch (e) {
    printConfigError(e);
    return 1;
  }
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
