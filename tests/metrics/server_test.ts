/**
 * The metrics endpoint over real loopback sockets: content negotiation as Prometheus does it,
 * 404 and 405, HEAD, what an unusable address says, that close() really stops listening, and the
 * limits: the connection cap, the idle, header and write timeouts, keep-alive and pipelining.
 * (The daemon end to end, under load: tests/e2e/metrics_test.ts.)
 */

import { assert, assertEquals, assertRejects } from "../helpers/assert.ts";
import { parseExposition, valueOf } from "../helpers/exposition.ts";
import type { ListenAddress } from "../../src/config/listen.ts";
import { CONTENT_TYPES } from "../../src/metrics/exposition.ts";
import {
  type CounterSource,
  MAX_HEADER_BYTES,
  type MetricsServer,
  type MetricsServerOptions,
  negotiateFormat,
  startMetricsServer,
} from "../../src/metrics/server.ts";
import { DS, IFACE_STAT_COUNT, newDeviceStats } from "../../src/stats.ts";

/** What Prometheus 2.x sends when it scrapes. */
const PROMETHEUS_ACCEPT =
  "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

Deno.test("Accept: OpenMetrics when preferred, text format otherwise", () => {
  const cases: [string | null, string][] = [
    [PROMETHEUS_ACCEPT, "openmetrics"],
    ["application/openmetrics-text; version=1.0.0; charset=utf-8", "openmetrics"],
    ["application/openmetrics-text", "openmetrics"],
    ["text/plain;version=0.0.4;q=0.9,application/openmetrics-text;q=0.5", "prometheus"],
    ["application/openmetrics-text;version=2.0.0", "prometheus"], // a version we do not speak
    ["application/openmetrics-text;q=0", "prometheus"],
    ["text/plain", "prometheus"],
    ["*/*", "prometheus"],
    ["application/json", "prometheus"],
    ["", "prometheus"],
    [null, "prometheus"],
  ];
  for (const [accept, format] of cases) assertEquals(negotiateFormat(accept), format, accept ?? "");
});

function listenOn(hostname: string, port: number): ListenAddress {
  const host = hostname.includes(":") ? `[${hostname}]` : hostname;
  return { text: `${host}:${port}`, hostname, port };
}

const logs: string[] = [];
const log = (level: string, message: string) => void logs.push(`${level}: ${message}`);

function counters(): CounterSource & { disk: Float64Array } {
  const disk = newDeviceStats();
  return {
    disk,
    devices: [{ name: "disk1", shelf: 3, slot: 4, stats: disk }],
    interfaces: [{ name: "eth0", stats: new Float64Array(IFACE_STAT_COUNT) }],
  };
}

async function withServer(
  body: (server: MetricsServer, source: ReturnType<typeof counters>) => Promise<void>,
  hostname = "127.0.0.1",
  limits: Partial<MetricsServerOptions> = {},
): Promise<void> {
  const source = counters();
  const server = await startMetricsServer({
    listen: listenOn(hostname, 0),
    counters: source,
    startTime: Date.now() / 1000 - 5,
    log,
    ...limits,
  });
  try {
    await body(server, source);
  } finally {
    await server.close();
  }
}

Deno.test("GET /metrics serves live counters in the negotiated format; other paths are 404", async () => {
  await withServer(async (server, source) => {
    assert(/^http:\/\/127\.0\.0\.1:\d+\/metrics$/.test(server.url), server.url);
    assert(logs.some((l) => l === `info: metrics: serving ${server.url}`), logs.join("\n"));
    source.disk[DS.read_cnt] = 41;
    let r = await fetch(server.url);
    assertEquals(r.status, 200);
    assertEquals(r.headers.get("content-type"), CONTENT_TYPES.prometheus);
    let e = parseExposition(await r.text(), "prometheus");
    const labels = { device: "disk1", shelf: "3", slot: "4" };
    assertEquals(valueOf(e, "ggaoed_device_reads_total", labels), 41);
    // The counters are read at each scrape, not copied at start.
    source.disk[DS.read_cnt] = 42;
    r = await fetch(server.url, { headers: { accept: PROMETHEUS_ACCEPT } });
    assertEquals(r.headers.get("content-type"), CONTENT_TYPES.openmetrics);
    e = parseExposition(await r.text(), "openmetrics");
    assertEquals(valueOf(e, "ggaoed_device_reads_total", labels), 42);
    const uptime = valueOf(e, "ggaoed_uptime_seconds");
    assert(uptime >= 5 && uptime < 60, String(uptime));

    const base = server.url.replace(/\/metrics$/, "");
    for (const path of ["/", "/metrics/", "/metricsx", "/favicon.ico"]) {
      const nf = await fetch(base + path);
      assertEquals(nf.status, 404, path);
      assert(/\/metrics/.test(await nf.text()));
    }
    const post = await fetch(server.url, { method: "POST", body: "x" });
    assertEquals(post.status, 405);
    assertEquals(post.headers.get("allow"), "GET, HEAD");
    await post.body?.cancel();
    const head = await fetch(server.url, { method: "HEAD" });
    assertEquals(head.status, 200);
    assertEquals(head.headers.get("content-type"), CONTENT_TYPES.prometheus);
    assertEquals(await head.text(), "");
    // A query string does not change the path.
    const q = await fetch(`${server.url}?x=1`);
    assertEquals(q.status, 200);
    await q.body?.cancel();
  });
});

Deno.test("the endpoint listens on IPv6 loopback too", async () => {
  await withServer(async (server) => {
    assert(/^http:\/\/\[::1\]:\d+\/metrics$/.test(server.url), server.url);
    const r = await fetch(server.url);
    assertEquals(r.status, 200);
    await r.body?.cancel();
  }, "::1");
});

Deno.test("an address in use or not of this host is refused with the key and what to do", async () => {
  await withServer(async (server) => {
    const port = Number(new URL(server.url).port);
    const source = counters();
    const err = await assertRejects(() =>
      startMetricsServer({
        listen: listenOn("127.0.0.1", port),
        counters: source,
        startTime: 0,
        log,
      })
    );
    assert(err.message.startsWith(`cannot serve metrics at metrics-listen = "127.0.0.1:${port}"`));
    assert(/the port is in use — stop the program holding it/.test(err.message), err.message);
    // 192.0.2.1 (TEST-NET-1) is no address of this machine: nothing is sent, bind fails.
    const away = await assertRejects(() =>
      startMetricsServer({
        listen: listenOn("192.0.2.1", port),
        counters: source,
        startTime: 0,
        log,
      })
    );
    assert(/192\.0\.2\.1 is not an address of this host/.test(away.message), away.message);
  });
});

Deno.test("close() stops listening", async () => {
  let url = "";
  await withServer(async (server) => {
    url = server.url;
    const r = await fetch(url);
    await r.body?.cancel();
  });
  await assertRejects(() => fetch(url));
});

/** A raw TCP client: what a scraper, an idle attacker or a slow one does. */
class Raw {
  readonly conn: Deno.TcpConn;
  text = "";
  constructor(conn: Deno.TcpConn) {
    this.conn = conn;
  }
  static async open(server: MetricsServer): Promise<Raw> {
    const u = new URL(server.url);
    return new Raw(await Deno.connect({ hostname: u.hostname, port: Number(u.port) }));
  }
  send(text: string): Promise<number> {
    return this.conn.write(new TextEncoder().encode(text));
  }
  /** Reads until the server closes (or resets) the connection; the ms it took, bounded. */
  async untilClosed(boundMs = 20_000): Promise<number> {
    const t0 = performance.now();
    const buf = new Uint8Array(1 << 16);
    const timer = setTimeout(() => this.close(), boundMs);
    try {
      for (;;) {
        const n = await this.conn.read(buf);
        if (n === null) break;
        this.text += new TextDecoder().decode(buf.subarray(0, n));
      }
    } catch {
      /* a reset counts as closed */
    } finally {
      clearTimeout(timer);
    }
    const took = performance.now() - t0;
    assert(took < boundMs, `still open after ${boundMs} ms`);
    return took;
  }
  /** Reads until `count` complete answers are in. */
  async answers(count: number): Promise<string[]> {
    const buf = new Uint8Array(1 << 16);
    for (;;) {
      const parts = splitAnswers(this.text);
      if (parts.length >= count) return parts;
      const n = await this.conn.read(buf);
      if (n === null) throw new Error(`closed after ${parts.length} answers: ${this.text}`);
      this.text += new TextDecoder().decode(buf.subarray(0, n));
    }
  }
  close(): void {
    try {
      this.conn.close();
    } catch { /* closed */ }
  }
}

/** Complete answers (header + content-length bytes of body) at the start of `text`. */
function splitAnswers(text: string): string[] {
  const out: string[] = [];
  let rest = text;
  for (;;) {
    const head = rest.indexOf("\r\n\r\n");
    if (head < 0) return out;
    const length = Number(/content-length: *(\d+)/i.exec(rest.slice(0, head))?.[1] ?? 0);
    const end = head + 4 + length; // the bodies here are ASCII
    if (rest.length < end) return out;
    out.push(rest.slice(0, end));
    rest = rest.slice(end);
  }
}

/** Polls `check` every 20 ms until it holds, at most `ms`. */
async function until(check: () => boolean, what: string, ms = 20_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`never: ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

Deno.test("beyond metrics-max-connections a connection is refused with 503 at once, and counted", async () => {
  await withServer(
    async (server) => {
      const held = await Promise.all([1, 2, 3].map(() => Raw.open(server)));
      try {
        await until(() => server.stats.open === 3, "3 connections open");
        const extra = await Raw.open(server);
        const took = await extra.untilClosed();
        assert(/^HTTP\/1\.1 503 /.test(extra.text), extra.text);
        assert(/retry-after: 5/i.test(extra.text), extra.text);
        assert(took < 5000, `refusal took ${took} ms`);
        assertEquals(server.stats.refused, 1);
        assert(
          logs.some((l) => /warning: metrics: refused 1 connection\(s\): 3 were open/.test(l)),
        );
        // The refused one left no trace; the held ones are still served.
        await held[0].send("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        const [answer] = await held[0].answers(1);
        assert(/^HTTP\/1\.1 200 /.test(answer), answer);
        assert(/\nggaoed_metrics_connections_refused_total 1\n/.test(answer), answer);
        assert(/\nggaoed_metrics_connections 3\n/.test(answer), answer);
        // Once one closes, a scrape is answered again.
        held[1].close();
        await until(() => server.stats.open === 2, "one closed");
        const r = await fetch(server.url);
        assertEquals(r.status, 200);
        await r.body?.cancel();
      } finally {
        for (const h of held) h.close();
      }
    },
    "127.0.0.1",
    { maxConnections: 3 },
  );
});

Deno.test("idle, slow-header and half-header connections are closed after their timeouts", async () => {
  await withServer(
    async (server) => {
      const idle = await Raw.open(server);
      const half = await Raw.open(server);
      await half.send("GET /metrics HTTP/1.1\r\nHost: x\r\n");
      // One byte every 100 ms: each byte is progress, but the header timeout counts from the first.
      const slow = await Raw.open(server);
      let dribbling = true;
      const dribble = (async () => {
        for (const c of "GET /metrics HTTP/1.1\r\nHost: slowloris.example\r\nX-A: b") {
          if (!dribbling) break;
          await slow.send(c).catch(() => (dribbling = false));
          await new Promise((r) => setTimeout(r, 100));
        }
      })();
      const [tIdle, tHalf, tSlow] = await Promise.all([
        idle.untilClosed(),
        half.untilClosed(),
        slow.untilClosed(),
      ]);
      dribbling = false;
      await dribble;
      assert(tIdle >= 2900, `idle closed after ${tIdle} ms`);
      assert(tHalf >= 400 && tHalf < 2500, `half header closed after ${tHalf} ms`);
      assert(tSlow >= 400 && tSlow < 2500, `slow header closed after ${tSlow} ms`);
      for (const c of [idle, half, slow]) assertEquals(c.text, "", "nothing is answered");
      assertEquals(server.stats.timedOut, 3);
      await until(() => server.stats.open === 0, "all closed");
      // Between two requests of a keep-alive connection the idle timeout applies again.
      const kept = await Raw.open(server);
      await kept.send("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
      await kept.answers(1);
      const tKept = await kept.untilClosed();
      assert(tKept >= 2900, `kept-alive closed after ${tKept} ms`);
      assertEquals(server.stats.timedOut, 4);
    },
    "127.0.0.1",
    { idleTimeoutMs: 3000, headerTimeoutMs: 500 },
  );
});

Deno.test("a client that does not read its answer is closed after the write timeout", async () => {
  // 300 devices make an answer of about 2 MB; requests pipelined and never read fill the socket.
  const many: CounterSource = {
    devices: Array.from({ length: 300 }, (_, i) => ({
      name: `disk${i}`,
      shelf: 1,
      slot: i % 255,
      stats: newDeviceStats(),
    })),
    interfaces: [],
  };
  await withServer(
    async (server) => {
      const c = await Raw.open(server);
      await c.send("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n".repeat(20));
      await until(() => server.stats.timedOut === 1, "the write timed out");
      await until(() => server.stats.open === 0, "closed");
      c.close();
    },
    "127.0.0.1",
    { writeTimeoutMs: 500, idleTimeoutMs: 60_000, counters: many },
  );
});

Deno.test("keep-alive and pipelined requests are answered in order; bad ones get 400 or 431", async () => {
  await withServer(async (server) => {
    const c = await Raw.open(server);
    await c.send(
      "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\nGET http://x:9642/metrics?a=b HTTP/1.1\r\nHost: x\r\n\r\n" +
        "GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    const answers = await c.answers(3);
    assert(/^HTTP\/1\.1 200 [^]*ggaoed_up 1\n/.test(answers[0]), answers[0]);
    assert(/^HTTP\/1\.1 200 [^]*ggaoed_up 1\n/.test(answers[1]), answers[1]);
    assert(/^HTTP\/1\.1 404 [^]*connection: close/.test(answers[2]), answers[2]);
    await c.untilClosed();

    const bad = await Raw.open(server);
    await bad.send("BREW /pot HTCPCP/1.0\r\n\r\n");
    await bad.untilClosed();
    assert(/^HTTP\/1\.1 400 /.test(bad.text), bad.text);

    const big = await Raw.open(server);
    await big.send(`GET /metrics HTTP/1.1\r\nX: ${"a".repeat(MAX_HEADER_BYTES)}\r\n\r\n`)
      .catch(() => 0);
    await big.untilClosed();
    assert(/^HTTP\/1\.1 431 /.test(big.text), big.text);

    // A request with a body is answered, then the connection is closed.
    const post = await Raw.open(server);
    await post.send("POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc");
    await post.untilClosed();
    assert(/^HTTP\/1\.1 405 [^]*allow: GET, HEAD/.test(post.text), post.text);
    assertEquals(server.stats.timedOut, 0);
  });
});
