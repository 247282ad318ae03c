/**
 * The client end of the control socket, used by `ggaoectl` and by tests.
 *
 * ```ts
 * const client = await ControlClient.connect("/run/ggaoed/ggaoed.sock");
 * const { devices } = await client.request("stats", { patterns: ["disk*"] });
 * client.close();
 * ```
 *
 * @module
 */

import { LineReader, writeAll } from "./lines.ts";
import {
  CONTROL_PROTOCOL_VERSION,
  type ControlCommand,
  type ControlReplies,
  MAX_REQUEST_BYTES,
} from "./types.ts";

/** The daemon could not be reached; the message says why and what to do. */
export class ControlConnectError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "ControlConnectError";
  }
}

/** The daemon answered a request with an error (`{"ok": false}`). */
export class ControlRequestError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ControlRequestError";
  }
}

/** The daemon closed the connection, or sent something that is not an answer. */
export class ControlProtocolError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "ControlProtocolError";
  }
}

/** Arguments of a request. */
export interface ControlRequestArgs {
  /** Glob patterns (`*`, `?`) of device and interface names; absent = all. */
  patterns?: string[];
}

/** Answers can be long (many devices); they come from the daemon, so the bound is generous. */
const MAX_REPLY_BYTES = 64 * 1024 * 1024;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** One connection to the daemon's control socket. */
export class ControlClient {
  /** The daemon's version, from the hello. */
  readonly version: string;
  readonly #conn: Deno.UnixConn;
  readonly #reader: LineReader;

  private constructor(conn: Deno.UnixConn, reader: LineReader, version: string) {
    this.#conn = conn;
    this.#reader = reader;
    this.version = version;
  }

  /**
   * Connects to the daemon at `path` and exchanges the hello. Throws
   * {@link ControlConnectError} with a message for people when nothing answers there.
   */
  static async connect(path: string): Promise<ControlClient> {
    let conn: Deno.UnixConn;
    try {
      conn = await Deno.connect({ transport: "unix", path });
    } catch (e) {
      throw new ControlConnectError(connectErrorText(path, e), { cause: e });
    }
    try {
      const reader = new LineReader(conn, MAX_REPLY_BYTES);
      await writeAll(
        conn,
        encoder.encode(JSON.stringify({ hello: CONTROL_PROTOCOL_VERSION }) + "\n"),
      );
      const hello = await readMessage(reader);
      if (hello.hello !== CONTROL_PROTOCOL_VERSION || typeof hello.version !== "string") {
        const why = typeof hello.error === "string" ? hello.error : JSON.stringify(hello);
        throw new ControlProtocolError(`unexpected answer to hello from ${path}: ${why}`);
      }
      return new ControlClient(conn, reader, hello.version);
    } catch (e) {
      conn.close();
      throw e;
    }
  }

  /**
   * Sends one request and waits for its answer. Throws {@link ControlRequestError} when the
   * daemon answers with an error, {@link ControlProtocolError} when the connection breaks.
   */
  async request<C extends ControlCommand>(
    cmd: C,
    args: ControlRequestArgs = {},
  ): Promise<ControlReplies[C]> {
    const line = encoder.encode(JSON.stringify({ cmd, ...args }) + "\n");
    if (line.length - 1 > MAX_REQUEST_BYTES) {
      throw new ControlRequestError(`request too long (over ${MAX_REQUEST_BYTES} bytes)`);
    }
    try {
      await writeAll(this.#conn, line);
    } catch (e) {
      throw new ControlProtocolError(`lost the connection to ggaoed: ${errorText(e)}`, {
        cause: e,
      });
    }
    const reply = await readMessage(this.#reader);
    if (reply.ok === true) return reply as unknown as ControlReplies[C];
    if (reply.ok === false && typeof reply.error === "string") {
      throw new ControlRequestError(reply.error);
    }
    throw new ControlProtocolError(`unexpected answer from ggaoed: ${JSON.stringify(reply)}`);
  }

  /** Closes the connection. */
  close(): void {
    try {
      this.#conn.close();
    } catch {
      // Already closed.
    }
  }
}

async function readMessage(reader: LineReader): Promise<Record<string, unknown>> {
  let line: Uint8Array | null;
  try {
    line = await reader.next();
  } catch (e) {
    throw new ControlProtocolError(`lost the connection to ggaoed: ${errorText(e)}`, { cause: e });
  }
  if (line === null) throw new ControlProtocolError("ggaoed closed the connection");
  let message: unknown;
  try {
    message = JSON.parse(decoder.decode(line));
  } catch (e) {
    throw new ControlProtocolError("ggaoed sent something that is not JSON", { cause: e });
  }
  if (typeof message !== "object" || message === null || Array.isArray(message)) {
    throw new ControlProtocolError(`unexpected answer from ggaoed: ${JSON.stringify(message)}`);
  }
  return message as Record<string, unknown>;
}

/** "cannot reach ggaoed at PATH: WHY — WHAT TO DO" for a failed connect. */
function connectErrorText(path: string, e: unknown): string {
  const where = `cannot reach ggaoed at ${path}`;
  const hint = "is the daemon running? (start it, or pass -c/-s)";
  if (e instanceof Deno.errors.NotFound) return `${where}: no such file — ${hint}`;
  if (e instanceof Deno.errors.ConnectionRefused) {
    return `${where}: connection refused (a stale socket) — ${hint}`;
  }
  if (e instanceof Deno.errors.PermissionDenied) return `${where}: permission denied — run as root`;
  if (e instanceof Deno.errors.NotCapable) {
    return `${where}: ${errorText(e)} (run ggaoectl with --allow-net --allow-read --allow-write)`;
  }
  return `${where}: ${errorText(e)}`;
}

function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
