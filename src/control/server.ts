/**
 * The control socket server: the daemon end of `ggaoectl`.
 *
 * A Unix stream socket, mode 0600 (only root may talk to it, like the original's umask 077),
 * carrying newline-delimited JSON (see `types.ts` for the conversation). Each connection is
 * served on its own, one request at a time, so a slow or stuck client delays nobody else; it is
 * dropped after a period of silence, and the number of connections is bounded.
 *
 * @module
 */

import { matchesAny } from "../config/glob.ts";
import { formatMac, parseMac } from "../mac.ts";
import { viewMac } from "../storage/views.ts";
import { DEVICE_STAT_FIELDS, IFACE_STAT_FIELDS, statsRecord } from "../stats.ts";
import { VERSION } from "../version.ts";
import { LineReader, LineTooLongError, writeAll } from "./lines.ts";
import {
  CONTROL_COMMANDS,
  CONTROL_PROTOCOL_VERSION,
  type ControlCommand,
  type ControlHandler,
  type LogFn,
  MAX_REQUEST_BYTES,
  STATS_SCHEMA_VERSION,
} from "./types.ts";

/** A running control server. */
export interface ControlServer {
  /** The socket path. */
  readonly path: string;
  /** Stops listening, drops every connection and removes the socket file. */
  close(): Promise<void>;
}

/** Limits of the control server; the defaults suit the daemon, tests shorten them. */
export interface ControlServerOptions {
  /** A connection that sends no complete request for this long is closed. Default 10 min. */
  idleTimeoutMs?: number;
  /** The hello must arrive, and an answer must be written, within this. Default 10 s. */
  requestTimeoutMs?: number;
  /** Connections served at once; more are answered with an error and closed. Default 32. */
  maxConnections?: number;
}

/** The control socket could not be set up; the message says why and what to do. */
export class ControlSocketError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "ControlSocketError";
  }
}

/** How long `close()` waits for requests still being answered. */
const CLOSE_GRACE_MS = 1000;

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });

/**
 * Listens on `path` and serves `handler` to `ggaoectl`.
 *
 * A file already at `path` is replaced only if it is a socket nobody answers on (left by a
 * daemon that died); a live socket means another ggaoed runs, and this throws
 * {@link ControlSocketError} rather than steal it.
 */
export async function startControlServer(
  path: string,
  handler: ControlHandler,
  log: LogFn,
  options: ControlServerOptions = {},
): Promise<ControlServer> {
  const limits = {
    idleTimeoutMs: options.idleTimeoutMs ?? 10 * 60_000,
    requestTimeoutMs: options.requestTimeoutMs ?? 10_000,
    maxConnections: options.maxConnections ?? 32,
  };
  await removeStaleSocket(path, log);
  const listener = await listenPrivately(path);
  const identity = await Deno.lstat(path);
  log("debug", `Ctl: listening on ${path}`);

  const connections = new Set<Deno.Conn>();
  const served = new Set<Promise<void>>();
  let closing = false;

  const acceptLoop = (async () => {
    for (;;) {
      let conn: Deno.Conn;
      try {
        conn = await listener.accept();
      } catch (e) {
        if (closing) return;
        // accept(2) errors such as EMFILE are transient: report, back off, go on.
        log("error", `Ctl: accept on ${path} failed: ${errorText(e)}`);
        await new Promise((r) => setTimeout(r, 100));
        continue;
      }
      if (connections.size >= limits.maxConnections) {
        log("warning", `Ctl: more than ${limits.maxConnections} clients; refusing one`);
        refuse(conn, limits.requestTimeoutMs);
        continue;
      }
      connections.add(conn);
      const p = serveConnection(conn, handler, log, limits).finally(() => {
        connections.delete(conn);
        served.delete(p);
      });
      served.add(p);
    }
  })();

  return {
    path,
    async close() {
      if (closing) return;
      closing = true;
      listener.close();
      for (const conn of connections) closeQuietly(conn);
      await acceptLoop;
      // A request still waiting on the handler (say, on a worker that is stopping) must not
      // hold up shutdown: its connection is closed already, so give it a moment, no more.
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([
        Promise.allSettled([...served]),
        new Promise((r) => timer = setTimeout(r, CLOSE_GRACE_MS)),
      ]);
      clearTimeout(timer);
      // Remove the file only if it is still ours: a later daemon may have replaced it.
      try {
        const now = await Deno.lstat(path);
        if (now.ino === identity.ino && now.dev === identity.dev) await Deno.remove(path);
      } catch (e) {
        if (!(e instanceof Deno.errors.NotFound)) {
          log("warning", `Ctl: cannot remove ${path}: ${errorText(e)}`);
        }
      }
    },
  };
}

/** Deletes a socket left at `path` by a dead daemon; refuses to touch a live one or a non-socket. */
async function removeStaleSocket(path: string, log: LogFn): Promise<void> {
  let info: Deno.FileInfo;
  try {
    info = await Deno.lstat(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return;
    throw new ControlSocketError(`control socket ${path}: ${errorText(e)}`, { cause: e });
  }
  if (!info.isSocket) {
    throw new ControlSocketError(
      `control socket ${path} exists and is not a socket — remove it or set another control-socket`,
    );
  }
  try {
    const probe = await Deno.connect({ transport: "unix", path });
    probe.close();
  } catch (e) {
    if (!(e instanceof Deno.errors.ConnectionRefused)) {
      throw new ControlSocketError(`control socket ${path}: ${errorText(e)}`, { cause: e });
    }
    log("info", `Ctl: removing stale control socket ${path}`);
    await Deno.remove(path);
    return;
  }
  throw new ControlSocketError(`another ggaoed is running (control socket ${path} answers)`);
}

/**
 * Binds in a fresh 0700 directory beside `path`, sets mode 0600, then renames the socket into
 * place: nobody can connect between bind and chmod, and the process umask (shared with the
 * data-path worker) is never touched.
 */
async function listenPrivately(path: string): Promise<Deno.UnixListener> {
  const slash = path.lastIndexOf("/");
  const dir = slash < 0 ? "." : slash === 0 ? "/" : path.slice(0, slash);
  let tmpDir: string;
  try {
    tmpDir = await Deno.makeTempDir({ dir, prefix: ".ggaoed-" });
  } catch (e) {
    throw new ControlSocketError(
      `cannot create the control socket in ${dir}: ${errorText(e)} — check control-socket`,
      { cause: e },
    );
  }
  const tmpPath = `${tmpDir}/s`;
  try {
    const listener = Deno.listen({ transport: "unix", path: tmpPath });
    try {
      await Deno.chmod(tmpPath, 0o600);
      await Deno.rename(tmpPath, path);
    } catch (e) {
      listener.close();
      throw e;
    }
    return listener;
  } catch (e) {
    throw new ControlSocketError(`cannot listen on ${path}: ${errorText(e)}`, { cause: e });
  } finally {
    await Deno.remove(tmpDir, { recursive: true }).catch(() => {});
  }
}

interface Limits {
  idleTimeoutMs: number;
  requestTimeoutMs: number;
  maxConnections: number;
}

/** Reads requests from one client and answers each; returns when the client is gone. */
async function serveConnection(
  conn: Deno.Conn,
  handler: ControlHandler,
  log: LogFn,
  limits: Limits,
): Promise<void> {
  const reader = new LineReader(conn, MAX_REQUEST_BYTES);
  // One timer per connection: it closes the connection, which ends a pending read or write.
  let timer: ReturnType<typeof setTimeout> | undefined;
  let timedOut = false;
  const arm = (ms: number) => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      timedOut = true;
      closeQuietly(conn);
    }, ms);
  };
  const send = async (message: unknown) => {
    arm(limits.requestTimeoutMs);
    await writeAll(conn, encoder.encode(JSON.stringify(message) + "\n"));
  };

  let greeted = false;
  try {
    for (;;) {
      arm(greeted ? limits.idleTimeoutMs : limits.requestTimeoutMs);
      let line: Uint8Array | null;
      try {
        line = await reader.next();
      } catch (e) {
        if (!(e instanceof LineTooLongError)) throw e;
        log("warning", `Ctl: request longer than ${MAX_REQUEST_BYTES} bytes; closing`);
        await send({ ok: false, error: `request longer than ${MAX_REQUEST_BYTES} bytes` });
        return;
      }
      if (line === null) return;
      clearTimeout(timer);

      let request: unknown;
      try {
        request = JSON.parse(decoder.decode(line));
      } catch {
        log("warning", "Ctl: malformed request (not JSON); closing");
        await send({ ok: false, error: "malformed request: not a JSON line" });
        return;
      }
      if (!isObject(request)) {
        log("warning", "Ctl: malformed request (not an object); closing");
        await send({ ok: false, error: "malformed request: expected a JSON object" });
        return;
      }
      if (!greeted) {
        if (request.hello !== CONTROL_PROTOCOL_VERSION) {
          log("warning", "Ctl: client did not start with a hello; closing");
          await send({
            ok: false,
            error: `expected {"hello": ${CONTROL_PROTOCOL_VERSION}} first`,
          });
          return;
        }
        greeted = true;
        await send({ hello: CONTROL_PROTOCOL_VERSION, version: VERSION });
        continue;
      }
      await send(await answer(request, handler, log));
    }
  } catch (e) {
    if (!timedOut) log("debug", `Ctl: connection ended: ${errorText(e)}`);
  } finally {
    clearTimeout(timer);
    if (timedOut) log("debug", "Ctl: client timed out");
    closeQuietly(conn);
  }
}

/** Runs one request and builds its answer; never throws. */
async function answer(
  request: Record<string, unknown>,
  handler: ControlHandler,
  log: LogFn,
): Promise<unknown> {
  const cmd = request.cmd;
  if (typeof cmd !== "string" || !(CONTROL_COMMANDS as readonly string[]).includes(cmd)) {
    log("warning", `Ctl: unknown command (${JSON.stringify(cmd) ?? "none"})`);
    return { ok: false, error: `unknown command ${JSON.stringify(cmd) ?? "(none)"}` };
  }
  const patterns = request.patterns ?? null;
  if (
    patterns !== null &&
    !(Array.isArray(patterns) && patterns.every((p) => typeof p === "string"))
  ) {
    return { ok: false, error: "patterns must be a list of strings" };
  }
  try {
    return await run(cmd as ControlCommand, patterns, handler, log);
  } catch (e) {
    log("error", `Ctl: ${cmd} failed: ${errorText(e)}`);
    return { ok: false, error: `${cmd} failed: ${errorText(e)}` };
  }
}

async function run(
  cmd: ControlCommand,
  given: string[] | null,
  handler: ControlHandler,
  log: LogFn,
): Promise<unknown> {
  // An empty list means "no names", like no list at all (the original's NUL-separated names).
  const patterns = given && given.length > 0 ? given : null;
  switch (cmd) {
    case "stats": {
      const { devices, interfaces } = await handler.stats();
      // Read after the counters arrive: monitor divides by uptime differences.
      const uptime = handler.uptime();
      return {
        ok: true,
        schema: STATS_SCHEMA_VERSION,
        uptime,
        devices: devices.filter((d) => matchesAny(patterns, d.name)).map((d) => ({
          name: d.name,
          stats: statsRecord(DEVICE_STAT_FIELDS, d.stats),
        })),
        interfaces: interfaces.filter((i) => matchesAny(patterns, i.name)).map((i) => ({
          name: i.name,
          stats: statsRecord(IFACE_STAT_FIELDS, i.stats),
        })),
      };
    }
    case "reload": {
      log("info", "Ctl: reload requested");
      const result = await handler.reload();
      return result.ok
        ? { ok: true, message: result.message }
        : { ok: false, error: result.message };
    }
    case "show-config":
    case "show-macmask":
    case "show-reserve": {
      const states = (await handler.deviceStates()).filter((d) => matchesAny(patterns, d.name));
      if (cmd === "show-config") {
        return {
          ok: true,
          devices: states.map((d) => ({ name: d.name, config: toHex(d.config) })),
        };
      }
      const list = cmd === "show-macmask" ? "macMask" : "reserve";
      return {
        ok: true,
        devices: states.map((d) => ({ name: d.name, macs: d[list].map(formatMac) })),
      };
    }
    case "show-rbd": {
      const devices = (await handler.rbdDevices()).filter((d) => matchesAny(patterns, d.name));
      return { ok: true, devices };
    }
    case "clear-stats":
      await handler.clearStats(patterns);
      return { ok: true };
    case "clear-config":
    case "clear-macmask":
    case "clear-reserve": {
      // The original ignored these without names; clearing everything by accident is worse.
      if (patterns === null) return { ok: false, error: "no names were given" };
      const clear = cmd === "clear-config"
        ? handler.clearConfig
        : cmd === "clear-macmask"
        ? handler.clearMacMask
        : handler.clearReserve;
      const cleared = await clear.call(handler, patterns);
      log("info", `Ctl: ${cmd} ${cleared.join(" ") || "(no device matched)"}`);
      return { ok: true, cleared };
    }
    case "views":
      return { ok: true, views: await handler.views(patterns) };
    case "reset-view":
    case "remove-view": {
      const [device, text] = given ?? [];
      const parsed = given?.length === 2 ? parseMac(text) : null;
      if (parsed === null) {
        return {
          ok: false,
          error: `${cmd} takes a device and a host MAC, e.g. ${cmd} farm 52:54:00:12:34:56`,
        };
      }
      const mac = viewMac(parsed);
      log("info", `Ctl: ${cmd} ${device} ${mac}`);
      const existed = await handler.dropView(device, mac, cmd === "reset-view");
      return { ok: true, device, mac, existed };
    }
  }
}

/** Answers a client over the connection limit, without holding up the accept loop. */
function refuse(conn: Deno.Conn, timeoutMs: number): void {
  const timer = setTimeout(() => closeQuietly(conn), timeoutMs);
  const line = JSON.stringify({ ok: false, error: "too many control connections; retry" });
  writeAll(conn, encoder.encode(line + "\n")).catch(() => {}).finally(() => {
    clearTimeout(timer);
    closeQuietly(conn);
  });
}

function toHex(bytes: Uint8Array): string {
  let s = "";
  for (const b of bytes) s += b.toString(16).padStart(2, "0");
  return s;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function closeQuietly(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch {
    // Already closed (by the timer, the peer or close()).
  }
}

function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
