/**
 * The metrics endpoint over real loopback sockets: content negotiation as Prometheus does it,
 * 404 and 405, HEAD, what an unusable address says, and that close() really stops listening.
 * (The daemon end to end, under load: tests/e2e/metrics_test.ts.)
 */

import { assert, assertEquals, assertRejects } from "../helpers/assert.ts";
import { parseExposition, valueOf } from "../helpers/exposition.ts";
import type { ListenAddress } from "../../src/config/listen.ts";
import { CONTENT_TYPES } from "../../src/metrics/exposition.ts";
import {
  type CounterSource,
  type MetricsServer,
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
): Promise<void> {
  const source = counters();
  const server = await startMetricsServer({
    listen: listenOn(hostname, 0),
    counters: source,
    startTime: Date.now() / 1000 - 5,
    log,
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
