/**
 * The metrics endpoint (`metrics-listen`): HTTP on the daemon's main thread, `GET /metrics` in
 * Prometheus text format 0.0.4, or in OpenMetrics 1.0.0 when the Accept header prefers
 * `application/openmetrics-text` (as Prometheus' scraper does). Every other path is 404.
 *
 * A scrape copies the shared counters that the data-path worker writes; the worker never waits
 * for it and does no HTTP.
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

export interface MetricsServerOptions {
  listen: ListenAddress;
  counters: CounterSource;
  /** Daemon start, seconds since the Unix epoch. */
  startTime: number;
  log: LogFn;
}

/** A running metrics endpoint. */
export interface MetricsServer {
  /** `http://HOST:PORT/metrics` */
  readonly url: string;
  /** Stops listening and closes every connection (waits at most a second for requests). */
  close(): Promise<void>;
}

/** How long `close()` waits for requests being answered. */
const CLOSE_GRACE_MS = 1000;

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

/** Answers one HTTP request. */
export function handleMetricsRequest(
  request: Request,
  snapshot: () => MetricsSnapshot,
  log: LogFn,
): Response {
  const path = new URL(request.url).pathname;
  if (path !== "/metrics") {
    return new Response("Not found: ggaoed serves its metrics at /metrics\n", {
      status: 404,
      headers: { "content-type": "text/plain; charset=utf-8" },
    });
  }
  if (request.method !== "GET" && request.method !== "HEAD") {
    return new Response("Only GET and HEAD are allowed here\n", {
      status: 405,
      headers: { "allow": "GET, HEAD", "content-type": "text/plain; charset=utf-8" },
    });
  }
  const format = negotiateFormat(request.headers.get("accept"));
  let body: string;
  try {
    body = renderMetrics(snapshot(), format);
  } catch (e) {
    log("error", `metrics: cannot render the metrics: ${(e as Error).stack ?? e}`);
    return new Response("Internal error: see the daemon's log\n", { status: 500 });
  }
  return new Response(request.method === "HEAD" ? null : body, {
    headers: { "content-type": CONTENT_TYPES[format] },
  });
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

/** Starts the endpoint; throws an Error saying what to do when the address cannot be used. */
export function startMetricsServer(options: MetricsServerOptions): Promise<MetricsServer> {
  const { listen, counters, startTime, log } = options;
  const snapshot = (): MetricsSnapshot => ({
    devices: counters.devices,
    interfaces: counters.interfaces,
    startTime,
    now: Date.now() / 1000,
  });
  return new Promise((resolve, reject) => {
    let server: Deno.HttpServer<Deno.NetAddr>;
    try {
      server = Deno.serve({
        hostname: listen.hostname,
        port: listen.port,
        onListen: (addr) => {
          const url = urlOf(addr);
          log("info", `metrics: serving ${url}`);
          resolve({
            url,
            close: async () => {
              let timer: ReturnType<typeof setTimeout> | undefined;
              await Promise.race([
                server.shutdown(),
                new Promise((r) => (timer = setTimeout(r, CLOSE_GRACE_MS))),
              ]);
              clearTimeout(timer);
            },
          });
        },
        onError: (e) => {
          log("error", `metrics: ${(e as Error).message ?? e}`);
          return new Response("Internal error\n", { status: 500 });
        },
      }, (request) => handleMetricsRequest(request, snapshot, log));
    } catch (e) {
      reject(listenError(listen, e));
    }
  });
}
