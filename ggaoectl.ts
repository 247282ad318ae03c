/**
 * `ggaoectl`: looks at and steers a running ggaoed through its control socket.
 *
 * ```sh
 * deno run --allow-read --allow-write --allow-env --allow-net ggaoectl.ts stats
 * ```
 *
 * Commands and output as the original's (docs/decisions.md §5.2); `--json` prints the daemon's
 * answers as JSON lines instead. See docs/ggaoectl.md.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { loadConfig } from "./src/config/load.ts";
import { DEFAULTS } from "./src/config/types.ts";
import {
  ControlClient,
  ControlConnectError,
  ControlProtocolError,
  ControlRequestError,
} from "./src/control/client.ts";
import {
  emptyBaseline,
  formatConfigs,
  formatMacLists,
  formatRbdDevices,
  formatStats,
  formatViews,
  hexToBytes,
  type MonitorBaseline,
  monitorSample,
  parseInterval,
} from "./src/control/format.ts";
import { writeAll } from "./src/control/lines.ts";
import { CONTROL_COMMANDS } from "./src/control/types.ts";
import { VERSION } from "./src/version.ts";

const USAGE = `Usage: ggaoectl [options] <command> [name...]

Options:
  -c, --config FILE   read control-socket from the daemon's config FILE
                      (default ${DEFAULTS.configPath}; if that file does not exist,
                      the socket is ${DEFAULTS.controlSocket})
  -s, --socket PATH   talk to the daemon at the control socket PATH (overrides -c)
      --json          machine-readable output: the daemon's answer as one JSON line
                      (monitor: one line per sample)
  -h, --help          print this help and exit
  -V, --version       print the version and exit

Commands (a name is a device or interface name; * and ? match like in a shell,
so quote them; no names means all):
  stats [name...]                  dump device and interface statistics (with --json:
                                   a stable, versioned schema, see docs/ggaoectl.md)
                                     ggaoectl stats 'disk*' eth0
  monitor [interval] [name...]     print rates every interval seconds (default 1)
                                   until interrupted; qdrop and denied are requests
                                   dropped for want of buffers and by ACLs or the mask
                                     ggaoectl monitor 0.5 disk1 eth0
  reload                           re-read the configuration file
                                     ggaoectl reload
  show-config [name...]            hex dump of each device's AoE config string
                                     ggaoectl show-config disk1
  show-macmask [name...]           each device's AoE MAC Mask list
                                     ggaoectl show-macmask
  show-reserve [name...]           each device's AoE Reserve list
                                     ggaoectl show-reserve 'disk?'
  show-rbd [name...]               each Ceph RBD device: image, cluster, features, and
                                   the hosts serving it (from the image's metadata;
                                   * marks this daemon)
                                     ggaoectl show-rbd shared
  clear-stats [name...]            zero statistics (all of them without names)
                                     ggaoectl clear-stats
  clear-config name [name...]      empty the AoE config string
                                     ggaoectl clear-config disk1
  clear-macmask name [name...]     empty the AoE MAC Mask list
                                     ggaoectl clear-macmask disk1
  clear-reserve name [name...]     empty the AoE Reserve list
                                     ggaoectl clear-reserve 'disk*'
  views [device...]                per-host views: host MAC, bytes written since the
                                   daemon started, last seen, open or not
                                     ggaoectl views farm
  reset-view device mac            drop the host's view and make a fresh one from the
                                   golden image now (the host reads golden data next)
                                     ggaoectl reset-view farm 52:54:00:12:34:56
  remove-view device mac           drop the host's view and free its space; a new one
                                   is made only when the host sends again
                                     ggaoectl remove-view farm 525400123456
`;

/** The daemon's requests, plus `monitor` (repeated `stats`). */
const COMMANDS: ReadonlySet<string> = new Set([...CONTROL_COMMANDS, "monitor"]);

/** Where output goes; tests may capture it. */
export interface Output {
  stdout: (text: string) => Promise<void>;
  stderr: (text: string) => Promise<void>;
}

const encoder = new TextEncoder();

const consoleOutput: Output = {
  stdout: (text) => writeAll(Deno.stdout, encoder.encode(text)),
  stderr: (text) => writeAll(Deno.stderr, encoder.encode(text)),
};

/** A failure already explained to the user; carries the exit status. */
class Exit extends Error {
  readonly status: number;
  constructor(status: number) {
    super(`exit ${status}`);
    this.status = status;
  }
}

/** Runs `ggaoectl` with `args`; returns the exit status. */
export async function main(args: string[], out: Output = consoleOutput): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      options: {
        config: { type: "string", short: "c" },
        socket: { type: "string", short: "s" },
        json: { type: "boolean" },
        help: { type: "boolean", short: "h" },
        version: { type: "boolean", short: "V" },
      },
      allowPositionals: true,
      strict: true,
    });
  } catch (e) {
    await out.stderr(`ggaoectl: ${(e as Error).message}\n\n${USAGE}`);
    return 1;
  }
  const { values, positionals } = parsed;
  if (values.help) {
    await out.stdout(USAGE);
    return 0;
  }
  if (values.version) {
    await out.stdout(`ggaoectl (ggaoed) ${VERSION}\n`);
    return 0;
  }
  const [command, ...names] = positionals;
  if (command === undefined) {
    await out.stderr("You must specify a command. (ggaoectl --help lists them)\n");
    return 1;
  }
  if (!COMMANDS.has(command)) {
    await out.stderr(`Unknown command "${command}"\n\n${USAGE}`);
    return 1;
  }
  if (command.startsWith("clear-") && command !== "clear-stats" && names.length === 0) {
    await out.stderr("No names were given on the command line\n");
    return 1;
  }
  if (command === "reload" && names.length > 0) {
    await out.stderr("reload takes no names\n");
    return 1;
  }

  const json = values.json ?? false;
  let client: ControlClient | null = null;
  try {
    const path = await socketPath(values.socket, values.config);
    client = await ControlClient.connect(path);
    if (command === "monitor") return await monitor(client, path, names, json, out);
    await runOnce(client, command, names, json, out);
    return 0;
  } catch (e) {
    if (e instanceof Exit) return e.status;
    if (e instanceof Deno.errors.BrokenPipe) return 0; // `ggaoectl stats | head`
    const message = e instanceof ControlRequestError
      ? `ggaoed: ${e.message}`
      : e instanceof ControlConnectError || e instanceof ControlProtocolError ||
          e instanceof UserError
      ? e.message
      : `ggaoectl: ${(e as Error)?.message ?? String(e)}`;
    if (json) await out.stdout(JSON.stringify({ ok: false, error: message }) + "\n");
    else await out.stderr(message + "\n");
    return 1;
  } finally {
    client?.close();
  }
}

/** The control socket: `-s`, else `control-socket` from the config file, else the default. */
async function socketPath(socket?: string, config?: string): Promise<string> {
  if (socket !== undefined) return socket;
  const file = config ?? DEFAULTS.configPath;
  if (config === undefined) {
    try {
      await Deno.stat(file);
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) return DEFAULTS.controlSocket;
      throw e;
    }
  }
  try {
    return controlSocketFromConfig(file);
  } catch (e) {
    throw new UserError(`Loading the config file has failed: ${(e as Error).message}`);
  }
}

/** A failure whose message is complete as it is. */
class UserError extends Error {}

/** Reads only `control-socket` from the daemon's configuration (TOML or the original's INI). */
function controlSocketFromConfig(file: string): string {
  // Devices need not be reachable from here, and the host name (which only goes into default
  // serial numbers) would need --allow-sys: skip both.
  return loadConfig(file, { checkFilesystem: false, hostname: "" }).global.controlSocket;
}

async function runOnce(
  client: ControlClient,
  command: string,
  names: string[],
  json: boolean,
  out: Output,
): Promise<void> {
  const args = names.length > 0 ? { patterns: names } : {};
  switch (command) {
    case "stats": {
      const reply = await client.request("stats", args);
      await out.stdout(
        json ? JSON.stringify(reply) + "\n" : formatStats(reply.devices, reply.interfaces),
      );
      return;
    }
    case "show-config": {
      const reply = await client.request("show-config", args);
      await out.stdout(
        json ? JSON.stringify(reply) + "\n" : formatConfigs(
          reply.devices.map((d) => ({ name: d.name, config: hexToBytes(d.config) })),
        ),
      );
      return;
    }
    case "show-macmask":
    case "show-reserve": {
      const reply = await client.request(command, args);
      await out.stdout(json ? JSON.stringify(reply) + "\n" : formatMacLists(reply.devices));
      return;
    }
    case "show-rbd": {
      const reply = await client.request("show-rbd", args);
      await out.stdout(json ? JSON.stringify(reply) + "\n" : formatRbdDevices(reply.devices));
      return;
    }
    case "views": {
      const reply = await client.request("views", args);
      await out.stdout(
        json ? JSON.stringify(reply) + "\n" : formatViews(reply.views, Date.now() / 1000),
      );
      return;
    }
    case "reset-view":
    case "remove-view": {
      const reply = await client.request(command, args);
      await out.stdout(
        json
          ? JSON.stringify(reply) + "\n"
          : reply.existed
          ? ""
          : `${reply.device} had no view of ${reply.mac}\n`,
      );
      return;
    }
    case "reload":
    case "clear-stats":
    case "clear-config":
    case "clear-macmask":
    case "clear-reserve": {
      // Quiet on success, as the original; --json shows what happened.
      const reply = await client.request(command, args);
      if (json) await out.stdout(JSON.stringify(reply) + "\n");
      return;
    }
  }
}

/** `monitor [interval] [name...]`: a sample per interval until SIGINT, SIGTERM or SIGQUIT. */
async function monitor(
  first: ControlClient,
  path: string,
  args: string[],
  json: boolean,
  out: Output,
): Promise<number> {
  let interval = 1;
  let names = args;
  if (args.length > 0) {
    const parsed = parseInterval(args[0]);
    if (parsed !== null) {
      if (!(parsed > 0 && Number.isFinite(parsed))) {
        await out.stderr("monitor: the interval must be a positive number of seconds\n");
        return 1;
      }
      interval = parsed;
      names = args.slice(1);
    }
  }
  const request = names.length > 0 ? { patterns: names } : {};

  // A signal ends the loop even while a request or the sleep is pending.
  let onSignal = () => {};
  const stopped = new Promise<"stop">((resolve) => onSignal = () => resolve("stop"));
  const signals: Deno.Signal[] = ["SIGINT", "SIGTERM", "SIGQUIT"];
  for (const s of signals) Deno.addSignalListener(s, onSignal);

  let client = first;
  let baseline: MonitorBaseline = emptyBaseline();
  try {
    for (;;) {
      let reply = await Promise.race([client.request("stats", request).catch((e) => e), stopped]);
      if (reply === "stop") break;
      if (reply instanceof ControlProtocolError) {
        // The daemon drops idle connections (long intervals) and restarts: connect again once.
        if (client !== first) client.close();
        client = await ControlClient.connect(path);
        reply = await Promise.race([client.request("stats", request), stopped]);
        if (reply === "stop") break;
      } else if (reply instanceof Error) {
        throw reply;
      }
      const sample = monitorSample(reply, baseline, names);
      baseline = sample.baseline;
      await out.stdout(
        json
          ? JSON.stringify({
            uptime: reply.uptime,
            elapsed: sample.elapsed,
            devices: sample.devices,
            interfaces: sample.interfaces,
          }) + "\n"
          : sample.text,
      );
      let timer: ReturnType<typeof setTimeout> | undefined;
      const slept = new Promise<"tick">((resolve) => {
        timer = setTimeout(() => resolve("tick"), interval * 1000);
      });
      const woke = await Promise.race([slept, stopped]);
      clearTimeout(timer);
      if (woke === "stop") break;
    }
  } finally {
    for (const s of signals) Deno.removeSignalListener(s, onSignal);
    if (client !== first) client.close();
  }
  return 0;
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
