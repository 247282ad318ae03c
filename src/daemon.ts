/**
 * The daemon's main thread: configuration, pid file, logging, signals, the control socket, and
 * the data-path workers' life cycle (`src/engine/workers.ts`). The data path itself runs in
 * `src/engine/worker.ts`, one or more of them (docs/workers.md).
 *
 * Signals: SIGHUP reloads the configuration; SIGTERM, SIGINT and SIGQUIT stop taking requests,
 * let in-flight I/O finish and be answered (bounded by `stopGraceMs`), remove the pid file and
 * the control socket, and exit 0.
 *
 * @module
 */

import {
  closeFd,
  fileStatus,
  openPidFile,
  processInfo,
  SyslogWriter,
  writePidFile,
} from "../ffi/mod.ts";
import { loadConfig } from "./config/load.ts";
import { type Config, ConfigError, DEFAULTS } from "./config/types.ts";
import { type ControlServer, startControlServer } from "./control/server.ts";
import type { ControlHandler } from "./control/types.ts";
import type { ClearedState } from "./engine/dataplane.ts";
import type { HostViewInfo, SharedCounters, StateSnapshot } from "./engine/messages.ts";
import { STOP_ANSWER_MS, workerCount, Workers } from "./engine/workers.ts";
import { StateKind } from "./state/device_state.ts";
import { decodeConfigFile, decodeMacListFile, loadDeviceState } from "./state/store.ts";
import { StateWriter } from "./state/writer.ts";
import { log, setupLogging } from "./log.ts";
import { type MetricsServer, startMetricsServer } from "./metrics/server.ts";
import { ServiceNotifier } from "./service.ts";
import { RbdImages } from "./rbd/images.ts";
import { ViewManager } from "./views/manager.ts";
import { VERSION } from "./version.ts";

/** How the daemon was asked to run. */
export interface DaemonOptions {
  configPath: string;
  /** `-d`: log at debug level to stderr and trace every request. */
  debug: boolean;
  /** Grace period for in-flight I/O at shutdown, ms. */
  stopGraceMs?: number;
  /** Builds the configuration instead of loading `configPath`, at start and on every reload
   * (`ggaoed export`); throws a ConfigError as loadConfig does. */
  load?: () => Config;
}

function load(options: DaemonOptions): Config {
  return options.load ? options.load() : loadConfig(options.configPath);
}

/** Runs the daemon until a stop signal; resolves to the process exit status. */
export async function runDaemon(options: DaemonOptions): Promise<number> {
  let config: Config;
  try {
    config = withDebug(load(options), options.debug);
  } catch (e) {
    printConfigError(e);
    return 1;
  }
  let syslog: SyslogWriter | null = null;
  let syslogError = "";
  if (config.global.logTarget === "syslog" && !options.debug) {
    try {
      syslog = SyslogWriter.open("ggaoed");
    } catch (e) {
      syslogError = (e as Error).message;
    }
  }
  await setupLogging({
    level: options.debug ? "debug" : config.global.logLevel,
    sink: syslog ? (level, message) => syslog!.write(level, message) : undefined,
  });
  if (syslogError) log("warning", `cannot log to syslog, logging to stderr: ${syslogError}`);
  const survived = surviveStrayErrors();
  for (const w of config.warnings) log("warning", w);
  log("info", `ggaoed ${VERSION} starting (config ${config.file})`);

  const pidFile = config.global.pidFile;
  makeParentDirectories([pidFile, config.global.controlSocket]);
  const pidLock = claimPidFile(pidFile);
  if (typeof pidLock === "string") {
    log("error", pidLock);
    return 1;
  }
  let current = config;
  const writer = new StateWriter({
    directory: () => current.global.stateDirectory,
    onResult: (r) => link.post({ type: "persisted", ...r }),
    log,
  });
  // Ceph RBD images: opened, closed and their metadata read and written here, never in the
  // data path (see src/rbd/images.ts).
  const rbd: RbdImages = new RbdImages({
    log,
    post: (m) => link.post(m),
    writer,
    ...daemonIdentity(config),
    interfaces: (): string[] => link.interfaces.map((i: SharedCounters) => i.name),
  });
  rbd.configured(config.devices);
  // Per-host views: made, listed and removed here, never in the data path.
  const views = new ViewManager({
    log,
    post: (m) => link.post(m),
    stateDirectory: () => current.global.stateDirectory,
    rbdViews: (d, pool) => rbd.viewStore(d, pool),
  });
  const count = workerCount(config);
  let link: Workers;
  try {
    link = new Workers({ count, writer, rbd: () => rbd, views: () => views, log });
  } catch (e) {
    log("error", `cannot start the data path: ${(e as Error).message}`);
    await writer.close();
    await views.close();
    await rbd.close();
    removePidFile(pidFile, pidLock);
    closeFd(pidLock);
    return 1;
  }
  let control: ControlServer | null = null;
  let metrics: MetricsServer | null = null;
  const started = performance.now();
  const service = ServiceNotifier.fromEnvironment((m) => log("warning", m));
  let notExported: string[] = [];
  const status = () =>
    `serving ${link.devices.length} device(s) on ${link.interfaces.length} interface(s)` +
    (link.count > 1 ? ` with ${link.count} workers` : "") +
    (notExported.length ? `; NOT exported (see the log): ${notExported.join(", ")}` : "");
  let code = 0;
  try {
    const ready = await link.start(config, await loadStates(config, writer, views));
    if (ready.type === "failed") {
      log("error", `${ready.message}; shutting down`);
      return 1;
    }
    if (link.count > 1) log("info", link.describe());
    if (ready.type === "started" && ready.failed.length > 0) {
      notExported = ready.failed.map((f) => f.name);
      log(
        "error",
        `${ready.failed.length} of ${config.devices.length} devices could not be opened and are NOT exported: ${
          ready.failed.map((f) => f.name).join(", ")
        } (see the errors above; fix them and reload)`,
      );
    }
    let reloading = Promise.resolve({ ok: true, message: "" });
    const reload = () => {
      reloading = reloading.then(() =>
        service.reloading(async () => {
          const result = await reloadConfig(options, link, writer, rbd, views, config);
          if (result.config) current = result.config;
          return result;
        }, status)
      );
      return reloading;
    };
    const handler = controlHandler(link, started, reload, writer, rbd, views);
    try {
      control = await startControlServer(config.global.controlSocket, handler, log);
      const listen = config.global.metricsListen;
      const startTime = (performance.timeOrigin + started) / 1000;
      if (listen) {
        metrics = await startMetricsServer({
          listen,
          counters: link,
          startTime,
          log,
          maxConnections: config.global.metricsMaxConnections,
          mainThreadErrors: () => survived.count,
          workers: () => link.count,
        });
      }
    } catch (e) {
      log("error", (e as Error).message);
      code = 1;
      await link.stop(0);
      return code;
    }
    if (ready.type === "started" && ready.failed.length > 0) {
      log(
        "error",
        `ggaoed is running WITHOUT ${
          ready.failed.map((f) => f.name).join(", ")
        } (${ready.failed.length} of ${config.devices.length} devices not exported)`,
      );
    } else log("info", "ggaoed is running");
    service.ready(status());
    service.startWatchdog(() => link.request({ type: "states", id: 0 }));
    const stopSignal = await Promise.race([waitForStop(() => void reload()), link.crashed]);
    if (stopSignal === "crash") {
      // Without its data path the daemon would only pretend to serve: exit non-zero so that the
      // service manager restarts it.
      log("error", "the data path stopped unexpectedly; exiting");
      return 1;
    }
    log("info", `${stopSignal} received, shutting down`);
    service.stopping(`${stopSignal} received, shutting down`);
    const grace = options.stopGraceMs ?? 800;
    const left = await link.stop(grace);
    if (left > 0) log("warning", `${left} request(s) were still in flight at exit`);
    if (left < 0) {
      log(
        "warning",
        `the data path did not confirm the stop within ${
          grace + STOP_ANSWER_MS
        } ms; exiting without it`,
      );
    }
    return code;
  } finally {
    service.close();
    await control?.close();
    await metrics?.close();
    link.terminate();
    await views.close();
    await writer.close();
    await rbd.close();
    removePidFile(pidFile, pidLock);
    closeFd(pidLock);
    survived.remove();
  }
}

/**
 * Keeps a stray error on the main thread from ending the daemon: an unhandled promise rejection
 * or an uncaught exception (in a timer, an event handler, a forgotten promise of the control or
 * metrics side) is logged at error level with its stack, counted
 * (`ggaoed_main_thread_errors_total`), and survived. Without this, Deno ends the process on the
 * first one, data path included, leaving the pid file and the control socket behind. The data
 * path's own failures arrive as the worker's error event and still stop the daemon (a daemon
 * without its data path must not pretend to serve).
 */
function surviveStrayErrors(): { readonly count: number; remove(): void } {
  const state = { count: 0, remove: () => {} };
  const describe = (e: unknown) => (e instanceof Error ? e.stack ?? e.message : String(e));
  const onRejection = (event: PromiseRejectionEvent) => {
    event.preventDefault();
    state.count++;
    log(
      "error",
      `unhandled promise rejection on the main thread (survived, ${state.count} so far): ${
        describe(event.reason)
      }`,
    );
  };
  const onError = (event: ErrorEvent) => {
    event.preventDefault();
    state.count++;
    log(
      "error",
      `uncaught exception on the main thread (survived, ${state.count} so far): ${
        describe(event.error ?? event.message)
      }`,
    );
  };
  globalThis.addEventListener("unhandledrejection", onRejection);
  globalThis.addEventListener("error", onError);
  state.remove = () => {
    globalThis.removeEventListener("unhandledrejection", onRejection);
    globalThis.removeEventListener("error", onError);
  };
  return state;
}

/**
 * Loads the persistent state of every device of `config` (main thread, before the data path
 * sees the devices). State not yet written (a write that keeps failing) wins over the file. A
 * device whose state cannot be read gets `error` instead, and is not exported.
 */
async function loadStates(
  config: Config,
  writer: StateWriter,
  views: ViewManager,
): Promise<Map<string, StateSnapshot>> {
  const out = new Map<string, StateSnapshot>();
  // A device whose views cannot be made is not exported (its state says why).
  for (const [name, reason] of await views.configure(config.devices)) {
    const error = `${config.file}: devices.${name}: ${reason}`;
    out.set(name, { name, config: new Uint8Array(0), macMask: [], reserve: [], error });
  }
  for (const d of config.devices) {
    if (d.rbd || out.has(d.name)) continue; // RBD: in the image's metadata, read when opened
    try {
      const state = await loadDeviceState(
        config.global.stateDirectory,
        d.name,
        (level, message) => log(level, `disk/${d.name}: ${message}`),
      );
      const pick = (kind: StateKind, loaded: Uint8Array | number[]) => {
        const latest = writer.latest(d.name, kind);
        if (!latest) return loaded;
        const decoded = kind === StateKind.CONFIG
          ? decodeConfigFile(latest)
          : decodeMacListFile(latest);
        return typeof decoded === "string" ? loaded : decoded;
      };
      out.set(d.name, {
        name: d.name,
        config: pick(StateKind.CONFIG, state.config.slice()) as Uint8Array,
        macMask: pick(StateKind.MAC_MASK, [...state.macMask]) as number[],
        reserve: pick(StateKind.RESERVE, [...state.reserve]) as number[],
      });
    } catch (e) {
      out.set(d.name, {
        name: d.name,
        config: new Uint8Array(0),
        macMask: [],
        reserve: [],
        error: `cannot load its state: ${(e as Error).message}`,
      });
    }
  }
  return out;
}

/** `-d` forces trace-io on every device, as in the original. */
function withDebug(config: Config, debug: boolean): Config {
  if (!debug) return config;
  return { ...config, devices: config.devices.map((d) => ({ ...d, traceIo: true })) };
}

/** Prints every configuration problem to stderr. */
export function printConfigError(e: unknown): void {
  if (e instanceof ConfigError) {
    console.error(`ggaoed: the configuration has ${e.issues.length} error(s):`);
    for (const i of e.issues) {
      console.error(`  ${i.file}: ${i.key ? i.key + ": " : ""}${i.message}\n    fix: ${i.fix}`);
    }
  } else {
    console.error(`ggaoed: ${(e as Error).message ?? e}`);
  }
}

/**
 * This daemon among the hosts serving an RBD image: the host name, and the control socket when
 * it is not the default one (two daemons on one host then stay apart).
 */
function daemonIdentity(config: Config): { hostId: string; hostName: string } {
  let hostName = "unknown";
  try {
    hostName = Deno.hostname();
  } catch { /* no --allow-sys */ }
  const socket = config.global.controlSocket;
  return {
    hostName,
    hostId: socket === DEFAULTS.controlSocket ? hostName : `${hostName}:${socket}`,
  };
}

async function reloadConfig(
  options: DaemonOptions,
  link: Workers,
  writer: StateWriter,
  rbd: RbdImages,
  views: ViewManager,
  first: Config,
): Promise<{ ok: boolean; message: string; config?: Config }> {
  log("info", "Reload request received");
  let config: Config;
  try {
    config = withDebug(load(options), options.debug);
  } catch (e) {
    const issues = e instanceof ConfigError
      ? e.issues.map((i) => `${i.key ? i.key + ": " : ""}${i.message} (${i.fix})`)
      : [(e as Error).message];
    for (const i of issues) log("error", i);
    log("error", "The config file contains errors, not reloading");
    return { ok: false, message: `not reloaded: ${issues.join("; ")}` };
  }
  for (const w of config.warnings) log("warning", w);
  if (config.global.workers !== first.global.workers) {
    log(
      "warning",
      `workers changed from ${first.global.workers ?? "unset"} to ${
        config.global.workers ?? "unset"
      }, but the number of workers is fixed at start: still ${link.count}; restart the daemon to apply it`,
    );
  }
  const states = await loadStates(config, writer, views);
  rbd.configured(config.devices);
  const reply = await link.request({ type: "reload", id: 0, config, states });
  await rbd.pollNow(); // the sizes of RBD images served on, re-read like files
  if (link.count > 1) log("info", link.describe());
  if (!reply.ok) {
    // The worker logged each problem; the rest of the configuration is applied.
    log("error", "The configuration was reloaded with errors (see above)");
    return { ok: false, message: `reloaded with errors: ${reply.message}`, config };
  }
  log("info", "The configuration has been reloaded");
  return { ok: true, message: "reloaded", config };
}

function controlHandler(
  link: Workers,
  started: number,
  reload: () => Promise<{ ok: boolean; message: string }>,
  writer: StateWriter,
  rbd: RbdImages,
  views: ViewManager,
): ControlHandler {
  const copy = (c: SharedCounters) => ({ name: c.name, stats: c.stats.slice() });
  /** Clears in the data path, then waits until every change is on disk (or says why not). */
  const names = async (what: "config" | "macmask" | "reserve", patterns: string[]) => {
    const reply = await link.request({ type: "clear", id: 0, what, names: patterns });
    if (!reply.ok) throw new Error(reply.message);
    const cleared = reply.data as ClearedState[];
    const outcomes = await Promise.all(
      cleared.map((c) => writer.waitDurable(c.name, c.kind, c.seq)),
    );
    const failed = outcomes.flatMap((o, i) => o.ok ? [] : [`${cleared[i].name}: ${o.message}`]);
    if (failed.length > 0) {
      throw new Error(
        `cleared in memory (in effect now) but not saved, so it would come back after a restart: ${
          failed.join("; ")
        } (the daemon keeps retrying; free space or fix the state directory)`,
      );
    }
    return cleared.map((c) => c.name);
  };
  return {
    uptime: () => (performance.now() - started) / 1000,
    stats: () =>
      Promise.resolve({
        devices: link.devices.map(copy),
        interfaces: link.interfaces.map(copy),
      }),
    reload,
    deviceStates: async () =>
      (await link.request({ type: "states", id: 0 })).data as StateSnapshot[],
    clearStats: async (patterns) => {
      await link.request({ type: "clear-stats", id: 0, patterns });
    },
    rbdDevices: () =>
      Promise.resolve(rbd.info((name) => link.devices.find((d) => d.name === name)?.stats)),
    clearConfig: (patterns) => names("config", patterns),
    clearMacMask: (patterns) => names("macmask", patterns),
    clearReserve: (patterns) => names("reserve", patterns),
    views: async (patterns) => {
      const hosts = (await link.request({ type: "views", id: 0 })).data as HostViewInfo[];
      return await views.list(patterns, hosts);
    },
    dropView: (device, mac, recreate) =>
      views.drop(device, mac, recreate, async () => {
        await link.request({ type: "view-drop", id: 0, device, mac });
      }),
  };
}

/** Resolves with the name of the first stop signal; calls `onHup` for each SIGHUP. */
function waitForStop(onHup: () => void): Promise<string> {
  return new Promise((resolve) => {
    const stops: Deno.Signal[] = ["SIGTERM", "SIGINT", "SIGQUIT"];
    const handlers = new Map<Deno.Signal, () => void>();
    const done = (sig: Deno.Signal) => {
      for (const [s, h] of handlers) Deno.removeSignalListener(s, h);
      Deno.removeSignalListener("SIGHUP", onHup);
      resolve(sig);
    };
    for (const s of stops) {
      const h = () => done(s);
      handlers.set(s, h);
      Deno.addSignalListener(s, h);
    }
    Deno.addSignalListener("SIGHUP", onHup);
  });
}

/**
 * Takes the pid file (locks held for the life of the process): refuses when another daemon
 * holds it, and never writes a file that is not ours (see openPidFile). A file left by a daemon
 * that died is taken over, unless it names a process that is running and is not a daemon like
 * this one (another program's pid file, configured by mistake). Returns the locked descriptor or
 * an error message.
 */
function claimPidFile(path: string): number | string {
  let pidFile;
  try {
    pidFile = openPidFile(path);
  } catch (e) {
    return `cannot take the pid file: ${(e as Error).message}`;
  }
  if (pidFile === null) {
    return `Another instance of the daemon seems to be already running (pid file ${path} is locked), exiting`;
  }
  const foreign = foreignProcess(pidFile.previous);
  try {
    if (foreign !== null) {
      throw new Error(
        `${path}: ${foreign}: it looks like another program's pid file; set pid-file to a ` +
          "path of the daemon's own (or remove the file, if that process has nothing to do with it)",
      );
    }
    writePidFile(pidFile.fd, path, Deno.pid);
    return pidFile.fd;
  } catch (e) {
    closeFd(pidFile.fd);
    return `cannot take the pid file: ${(e as Error).message}`;
  }
}

/**
 * Why a pid file's old contents show it belongs to another program: they are not a process id,
 * or they name a running process of another executable than this one (its /proc/PID/exe
 * differs, or cannot be read). Null when they name no running process (a stale file), this
 * process, or a process of the same executable.
 */
function foreignProcess(previous: string): string | null {
  if (previous === "") return null;
  const m = /^\s*(\d+)\s*$/.exec(previous);
  if (!m) return `its contents ${JSON.stringify(previous.slice(0, 32))} are not a process id`;
  const pid = Number(m[1]);
  if (pid === Deno.pid || pid === 0) return null;
  const other = processInfo(pid);
  if (other === null) return null; // not running: a stale file
  if (other.exe !== null && other.exe === processInfo(Deno.pid)?.exe) return null;
  const name = other.comm;
  return `it names process ${pid} (${name}), which is running, does not lock the file and is not a daemon like this one`;
}

/**
 * Creates the directories of the pid file and the control socket (`/run/ggaoed` by default) if
 * they are missing, mode 0755. A failure is left for the pid file or the socket to report.
 */
function makeParentDirectories(paths: string[]): void {
  for (const path of paths) {
    const dir = path.slice(0, path.lastIndexOf("/"));
    if (dir === "") continue;
    try {
      Deno.mkdirSync(dir, { recursive: true, mode: 0o755 });
    } catch { /* reported when the file in it cannot be made */ }
  }
}

/** Removes the pid file if the path still names the file we hold. */
function removePidFile(path: string, fd: number): void {
  try {
    const ours = fileStatus(fd, path);
    const info = Deno.lstatSync(path);
    if (info.dev === ours.dev && info.ino === ours.ino) Deno.removeSync(path);
  } catch { /* already gone */ }
}
