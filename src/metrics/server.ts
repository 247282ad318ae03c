/**
 * The metrics endpoint (`metrics-listen`): HTTP on the daemon's main thread, `GET /metrics` in
 * Prometheus text format 0.0.4, or in OpenMetrics 1.0.0 when the Accept header prefers
 * `application/openmetrics-text` (as Prometheus' scraper does). Every other path is 404.
 *
 * A scrape copies the shared counters that the data-path worker writes; the worker never waits
 * for it and does no HTTP.
 *
 * The HTTP/1.1 server is our own, on `Deno.listen`, so that nobody on the network can exhaust the
 * daemon through it: at most `maxConnections` connections are open (more are answered 503 and
 * closed at once, and counted); a connection that sends nothing for `idleTimeoutMs`, or does not
 * complete a request's header within `headerTimeoutMs` of its first byte, or does not take its
 * answer within `writeTimeoutMs`, is closed (and counted); a request header is at most
 * `MAX_HEADER_BYTES`; a failing accept (EMFILE: the process is out of descriptors) is logged,
 * counted, and retried after a back-off instead of ending anything. `Deno.serve` offers neither
 * a connection cap nor header or idle timeouts, and its accept errors reject a promise nobody
 * holds. Only GET and HEAD without a body are served; keep-alive is honoured, pipelined
 * requests are answered in order.
 *
 * @module
 */

import type { ListenAddress } from "../config/listen.ts";
import {
  CONTENT_TYPES,
  type ExpositionFormat,
  type MetricsSnapshot,
  renderMetrics,
} from "./exposition.ts";

/** Log sink (the daemon's logger). */
export type LogFn = (level: "debug" | "info" | "warning" | "error", message: string) => void;

/** Where the counters come from: the daemon's worker link (updated on reload). */
export interface CounterSource {
  readonly devices: MetricsSnapshot["devices"];
  readonly interfaces: MetricsSnapshot["interfaces"];
}

/** What the endpoint itself counts (exposed as `ggaoed_metrics_*`). */
export interface EndpointCounters {
  /** Connections open now. */
  open: number;
  /** Connections refused because `maxConnections` were open. */
  refused: number;
  /** Connections closed by the idle, header or write timeout. */
  timedOut: number;
  /** Accepts that failed (e.g. EMFILE), each followed by a back-off. */
  acceptErrors: number;
}

export interface MetricsServerOptions {
  listen: ListenAddress;
  counters: CounterSource;
  /** Daemon start, seconds since the Unix epoch. */
  startTime: number;
  log: LogFn;
  /** Connections served at once (`metrics-max-connections`); more are refused. */
  maxConnections?: number;
  /** A connection that sends nothing for this long (before a request or between two) is closed. */
  idleTimeoutMs?: number;
  /** A request header not complete this long after its first byte closes the connection. */
  headerTimeoutMs?: number;
  /** An answer the client does not take within this long closes the connection. */
  writeTimeoutMs?: number;
  /** Main-thread errors survived by the daemon (`ggaoed_main_thread_errors_total`). */
  mainThreadErrors?: () => number;
  /** Data-path workers (`ggaoed_workers`); absent: 1. */
  workers?: () => number;
}

/** A running metrics endpoint. */
export interface MetricsServer {
  /** `http://HOST:PORT/metrics` */
  readonly url: string;
  /** What the endpoint counted so far. */
  readonly stats: Readonly<EndpointCounters>;
  /** Stops listening and closes every connection. */
  close(): Promise<void>;
}

/** Defaults of the limits (`metrics-max-connections` is the configuration's). */
export const METRICS_LIMITS = {
  maxConnections: 16,
  idleTimeoutMs: 10_000,
  headerTimeoutMs: 5_000,
  writeTimeoutMs: 10_000,
} as const;

/** The largest request header accepted (request line and header fields). */
export const MAX_HEADER_BYTES = 8192;
/** Back-off after a failed accept: doubles from the first to the last, reset by a success. */
const ACCEPT_BACKOFF_MS = [10, 1000] as const;
/**
 * Refusals whose 503 is still being written; beyond this many, a refused connection is closed
 * without one, so that a burst of connections never holds more descriptors than this.
 */
const MAX_REFUSING = 32;
/** Repeated warnings (refusals, accept errors) are logged at most this often. */
const WARN_INTERVAL_MS = 60_000;

/**
 * Picks the format for an Accept header: OpenMetrics 1.0 when `application/openmetrics-text`
 * (version 1.0.x or 0.0.1, or none) is acceptable with a quality at least that of text/plain,
 * else Prometheus text. Without a header, text.
 */
export function negotiateFormat(accept: string | null): ExpositionFormat {
  if (!accept) return "prometheus";
  let best: ExpositionFormat = "prometheus";
  let bestQuality = 0;
  for (const range of accept.split(",")) {
    const [type, ...params] = range.split(";").map((s) => s.trim().toLowerCase());
    let quality = 1;
    let version: string | null = null;
    for (const p of params) {
      const [k, v = ""] = p.split("=").map((s) => s.trim());
      if (k === "q") quality = Number(v);
      else if (k === "version") version = v;
    }
    if (!(quality > 0)) continue;
    let format: ExpositionFormat | null = null;
    if (type === "application/openmetrics-text") {
      if (version === null || version.startsWith("1.0.") || version === "0.0.1") {
        format = "openmetrics";
      }
    } else if (type === "text/plain" || type === "text/*" || type === "*/*") {
      format = "prometheus";
    }
    if (format && quality > bestQuality) {
      best = format;
      bestQuality = quality;
    }
  }
  return best;
}

/** An answer: status, headers, body (the body of a HEAD is not sent). */
export interface Answer {
  status: number;
  headers: Record<string, string>;
  body: string;
}

const TEXT = "text/plain; charset=utf-8";

/**
 * Answers one request: `method`, the request target (origin form `/metrics?...` or absolute form
 * `http://host/metrics`; the query is ignored), the Accept header.
 */
export function answerMetricsRequest(
  method: string,
  requestTarget: string,
  accept: string | null,
  snapshot: () => MetricsSnapshot,
  log: LogFn,
): Answer {
  const absolute = /^https?:\/\/[^/?]*([/?].*)?$/i.exec(requestTarget);
  const target = absolute ? absolute[1] ?? "/" : requestTarget;
  const query = target.indexOf("?");
  const path = query >= 0 ? target.slice(0, query) : target;
  if (path !== "/metrics") {
    return {
      status: 404,
      headers: { "content-type": TEXT },
      body: "Not found: ggaoed serves its metrics at /metrics\n",
    };
  }
  if (method !== "GET" && method !== "HEAD") {
    return {
      status: 405,
      headers: { "allow": "GET, HEAD", "content-type": TEXT },
      body: "Only GET and HEAD are allowed here\n",
    };
  }
  const format = negotiateFormat(accept);
  try {
    return {
      status: 200,
      headers: { "content-type": CONTENT_TYPES[format] },
      body: renderMetrics(snapshot(), format),
    };
  } catch (e) {
    log("error", `metrics: cannot render the metrics: ${(e as Error).stack ?? e}`);
    return {
      status: 500,
      headers: { "content-type": TEXT },
      body: "Internal error: see the daemon's log\n",
    };
  }
}

/** `http://HOST:PORT/metrics`, IPv6 in brackets. */
function urlOf(addr: Deno.NetAddr): string {
  const host = addr.hostname.includes(":") ? `[${addr.hostname}]` : addr.hostname;
  return `http://${host}:${addr.port}/metrics`;
}

/** Why a listen failed, and what to do, for people. */
function listenError(listen: ListenAddress, e: unknown): Error {
  const where = `metrics-listen = "${listen.text}"`;
  let advice: string;
  if (e instanceof Deno.errors.AddrInUse) {
    advice =
      `the port is in use — stop the program holding it (ss -ltnp 'sport = :${listen.port}') or choose another port`;
  } else if (e instanceof Deno.errors.AddrNotAvailable) {
    advice =
      `${listen.hostname} is not an address of this host — use one of its addresses, 127.0.0.1 or 0.0.0.0`;
  } else if (e instanceof Deno.errors.PermissionDenied) {
    advice =
      `permission denied — use a port above 1023, or grant CAP_NET_BIND_SERVICE (and run with --allow-net)`;
  } else {
    advice = `${(e as Error).message ?? e} — check the address in the configuration`;
  }
  return new Error(`cannot serve metrics at ${where}: ${advice}`, { cause: e });
}

const encoder = new TextEncoder();
const decoder = new TextDecoder("latin1");

const REASONS: Record<number, string> = {
  200: "OK",
  400: "Bad Request",
  404: "Not Found",
  405: "Method Not Allowed",
  431: "Request Header Fields Too Large",
  500: "Internal Server Error",
  503: "Service Unavailable",
};

/** An answer's bytes, header and body; `close` adds `Connection: close`. */
function responseBytes(answer: Answer, head: boolean, close: boolean): Uint8Array {
  const body = encoder.encode(answer.body);
  const lines = [`HTTP/1.1 ${answer.status} ${REASONS[answer.status] ?? ""}`];
  for (const [k, v] of Object.entries(answer.headers)) lines.push(`${k}: ${v}`);
  lines.push(`content-length: ${body.length}`);
  if (close) lines.push("connection: close");
  const header = encoder.encode(lines.join("\r\n") + "\r\n\r\n");
  if (head) return header;
  const out = new Uint8Array(header.length + body.length);
  out.set(header);
  out.set(body, header.length);
  return out;
}

const plain = (status: number, body: string): Answer => ({
  status,
  headers: { "content-type": "text/plain; charset=utf-8" },
  body,
});

const REFUSAL = responseBytes(
  {
    status: 503,
    headers: { "content-type": "text/plain; charset=utf-8", "retry-after": "5" },
    body: "Too many connections to the metrics endpoint; try again later\n",
  },
  false,
  true,
);

/** Index of the `\r\n\r\n` ending a header in `buf[0, used)`, or -1. */
function headerEnd(buf: Uint8Array, used: number): number {
  for (let i = 3; i < used; i++) {
    if (buf[i] === 10 && buf[i - 1] === 13 && buf[i - 2] === 10 && buf[i - 3] === 13) {
      return i - 3;
    }
  }
  return -1;
}

/** One parsed request header, or an error answer. */
type Parsed =
  | { method: string; target: string; accept: string | null; keepAlive: boolean; body: boolean }
  | { error: Answer };

function parseRequest(head: string): Parsed {
  const lines = head.split("\r\n");
  const m = /^([A-Z]+) (\S+) HTTP\/1\.([01])$/.exec(lines[0]);
  if (!m) return { error: plain(400, "Bad request: expected GET /metrics HTTP/1.1\n") };
  const [, method, target, minor] = m;
  let accept: string | null = null;
  let connection = "";
  let body = false;
  for (let i = 1; i < lines.length; i++) {
    const colon = lines[i].indexOf(":");
    if (colon <= 0) return { error: plain(400, "Bad request: a malformed header field\n") };
    const name = lines[i].slice(0, colon).trim().toLowerCase();
    const value = lines[i].slice(colon + 1).trim();
    if (name === "accept") accept = accept === null ? value : `${accept},${value}`;
    else if (name === "connection") connection = value.toLowerCase();
    else if (name === "transfer-encoding") body = true;
    else if (name === "content-length" && value !== "0") body = true;
  }
  // HTTP/1.0 keep-alive would need its own header in the answer: 1.0 clients get one answer.
  const keepAlive = minor === "1" && !/\bclose\b/.test(connection);
  return { method, target, accept, keepAlive, body };
}

/** Starts the endpoint; throws an Error saying what to do when the address cannot be used. */
export function startMetricsServer(options: MetricsServerOptions): Promise<MetricsServer> {
  const { listen, counters, startTime, log } = options;
  const maxConnections = options.maxConnections ?? METRICS_LIMITS.maxConnections;
  const idleTimeoutMs = options.idleTimeoutMs ?? METRICS_LIMITS.idleTimeoutMs;
  const headerTimeoutMs = options.headerTimeoutMs ?? METRICS_LIMITS.headerTimeoutMs;
  const writeTimeoutMs = options.writeTimeoutMs ?? METRICS_LIMITS.writeTimeoutMs;
  const stats: EndpointCounters = { open: 0, refused: 0, timedOut: 0, acceptErrors: 0 };
  const snapshot = (): MetricsSnapshot => ({
    devices: counters.devices,
    interfaces: counters.interfaces,
    startTime,
    now: Date.now() / 1000,
    endpoint: {
      connections: stats.open,
      refused: stats.refused,
      timedOut: stats.timedOut,
      acceptErrors: stats.acceptErrors,
      mainThreadErrors: options.mainThreadErrors?.() ?? 0,
    },
    workers: options.workers?.() ?? 1,
  });

  let listener: Deno.Listener<Deno.TcpConn, Deno.NetAddr>;
  try {
    listener = Deno.listen({ hostname: listen.hostname, port: listen.port });
  } catch (e) {
    return Promise.reject(listenError(listen, e));
  }
  const url = urlOf(listener.addr);
  log("info", `metrics: serving ${url}`);

  let closed = false;
  const open = new Set<Deno.TcpConn>();
  let backoffTimer: ReturnType<typeof setTimeout> | undefined;
  let wakeBackoff: (() => void) | undefined;

  /** Logs a repeated warning at most once per WARN_INTERVAL_MS, with the count since. */
  const throttled = (what: (n: number) => string) => {
    let last = -Infinity;
    let since = 0;
    return () => {
      since++;
      const now = performance.now();
      if (now - last < WARN_INTERVAL_MS) return;
      log("warning", `metrics: ${what(since)}`);
      last = now;
      since = 0;
    };
  };
  const warnRefused = throttled((n) =>
    `refused ${n} connection(s): ${maxConnections} were open (metrics-max-connections; ` +
    `more than a few scrapers at once means someone else is connecting)`
  );
  let acceptError = "";
  const warnAccept = throttled((n) =>
    `${n} accept(s) failed (${acceptError}); retrying with a back-off` +
    (/open files/i.test(acceptError)
      ? " — the process is out of file descriptors: raise its limit (LimitNOFILE=)"
      : "")
  );

  let refusing = 0;
  const refuse = (conn: Deno.TcpConn) => {
    stats.refused++;
    warnRefused();
    const close = () => {
      try {
        conn.close();
      } catch { /* already closed */ }
    };
    if (refusing >= MAX_REFUSING) return close();
    // 503 fits in the socket's send buffer: the write completes at once, then the close.
    refusing++;
    conn.write(REFUSAL).catch(() => {}).finally(() => {
      refusing--;
      close();
    });
  };

  /** Serves one connection until it closes, times out or fails. */
  const serve = async (conn: Deno.TcpConn) => {
    open.add(conn);
    stats.open = open.size;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const arm = (ms: number) => {
      clearTimeout(timer);
      timer = setTimeout(() => {
        stats.timedOut++;
        try {
          conn.close();
        } catch { /* already closed */ }
      }, ms);
    };
    const buf = new Uint8Array(MAX_HEADER_BYTES);
    let used = 0;
    try {
      for (;;) {
        arm(idleTimeoutMs);
        let end = headerEnd(buf, used);
        if (used > 0 && end < 0) arm(headerTimeoutMs);
        while (end < 0) {
          if (used === buf.length) {
            await send(conn, responseBytes(plain(431, "Request header too large\n"), false, true));
            return;
          }
          const n = await conn.read(buf.subarray(used));
          if (n === null) return;
          if (used === 0 && n > 0) arm(headerTimeoutMs);
          used += n;
          end = headerEnd(buf, used);
        }
        const request = parseRequest(decoder.decode(buf.subarray(0, end)));
        buf.copyWithin(0, end + 4, used);
        used -= end + 4;
        if ("error" in request) {
          await send(conn, responseBytes(request.error, false, true));
          return;
        }
        // A request body is not read: answer and close rather than parse it.
        const keepAlive = request.keepAlive && !request.body && !closed;
        const answer = answerMetricsRequest(
          request.method,
          request.target,
          request.accept,
          snapshot,
          log,
        );
        arm(writeTimeoutMs);
        await send(conn, responseBytes(answer, request.method === "HEAD", !keepAlive));
        if (!keepAlive) return;
      }
    } catch {
      // Reset by the peer, or closed by a timeout or close(): nothing to answer.
    } finally {
      clearTimeout(timer);
      try {
        conn.close();
      } catch { /* already closed */ }
      open.delete(conn);
      stats.open = open.size;
    }
  };

  const send = async (conn: Deno.TcpConn, bytes: Uint8Array) => {
    for (let off = 0; off < bytes.length;) off += await conn.write(bytes.subarray(off));
  };

  const acceptLoop = async () => {
    let backoff = 0;
    while (!closed) {
      let conn: Deno.TcpConn;
      try {
        conn = await listener.accept();
      } catch (e) {
        if (closed) break;
        stats.acceptErrors++;
        acceptError = (e as Error).message ?? String(e);
        warnAccept();
        backoff = Math.min(Math.max(backoff * 2, ACCEPT_BACKOFF_MS[0]), ACCEPT_BACKOFF_MS[1]);
        await new Promise<void>((r) => {
          wakeBackoff = r;
          backoffTimer = setTimeout(r, backoff);
        });
        continue;
      }
      backoff = 0;
      if (closed) {
        conn.close();
        break;
      }
      if (open.size >= maxConnections) refuse(conn);
      else serve(conn);
    }
  };
  const accepting = acceptLoop().catch((e) => {
    log("error", `metrics: the accept loop failed: ${(e as Error).stack ?? e}`);
  });

  return Promise.resolve({
    url,
    stats,
    close: async () => {
      if (closed) return;
      closed = true;
      clearTimeout(backoffTimer);
      wakeBackoff?.();
      try {
        listener.close();
      } catch { /* already closed */ }
      for (const conn of open) {
        try {
          conn.close();
        } catch { /* already closed */ }
      }
      await accepting;
    },
  });
}
