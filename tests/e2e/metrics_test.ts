/**
 * The metrics endpoint of the real daemon, end to end: scraped over HTTP inside the daemon's
 * network namespace (where its loopback listener is) while the project's initiator loads a device
 * over the veth pair. The numbers must move exactly as the load says, every scrape must be valid
 * exposition text (the strict parser, and Prometheus' promtool when installed), and the listener
 * must exist only when configured and be gone after SIGTERM. Under attack (a flood of idle
 * connections past the open-file limit) and after stray errors on its main thread, the daemon
 * keeps serving AoE with every byte right.
 */

import { assert, assertEquals } from "../helpers/assert.ts";
import {
  bucketsOf,
  type Exposition,
  type Format,
  parseExposition,
  valueOf,
} from "../helpers/exposition.ts";
import { promtool } from "../helpers/promtool.ts";
import { CONTENT_TYPES } from "../../src/metrics/exposition.ts";
import { VERSION } from "../../src/version.ts";
import {
  assertRoundTrip,
  DENO,
  firstDifference,
  pattern,
  REPO,
  targetConfig,
  type TestTarget,
  withTarget,
} from "../../lab/target.ts";

const opts = { sanitizeResources: false, sanitizeOps: false };

const LISTEN = "127.0.0.1:9642";
const METRICS_URL = `http://${LISTEN}/metrics`;
const SCRAPE = `${REPO}tests/e2e/fixtures/scrape.ts`;
/** What Prometheus 2.x sends when it scrapes. */
const PROMETHEUS_ACCEPT =
  "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
const DISK1 = { device: "disk1", shelf: "0", slot: "1" };
const DURATION = "ggaoed_device_request_duration_seconds";

type Answer =
  | { status: number; contentType: string; body: string; ms: number }
  | { error: string; ms: number };

/** One HTTP request from inside the daemon's namespace. */
async function get(t: TestTarget, url: string, accept = "", method = "GET"): Promise<Answer> {
  const r = await t.lab.exec(
    t.ns,
    [DENO, "run", "--allow-net", SCRAPE, "get", url, accept, method],
    {
      check: true,
      timeoutMs: 30_000,
    },
  );
  return JSON.parse(r.stdout);
}

/** Scrapes /metrics in `format` and checks it strictly (and with promtool, if installed). */
async function scrape(t: TestTarget, format: Format): Promise<Exposition> {
  const accept = format === "openmetrics" ? PROMETHEUS_ACCEPT : "text/plain;version=0.0.4";
  const r = await get(t, METRICS_URL, accept);
  if ("error" in r) throw new Error(`scrape failed: ${r.error}`);
  assertEquals(r.status, 200, r.body);
  assertEquals(r.contentType, CONTENT_TYPES[format]);
  const e = parseExposition(r.body, format);
  const tool = promtool();
  if (tool && format === "prometheus") {
    const lint = await tool.checkMetrics(r.body);
    assertEquals([lint.code, lint.output.trim()], [0, ""], "promtool check metrics");
  } else if (tool) {
    const read = await tool.importOpenMetrics(r.body);
    assertEquals(read.samples, e.samples.length, read.output);
  }
  return e;
}

const device = (e: Exposition, name: string) => valueOf(e, `ggaoed_device_${name}_total`, DISK1);
const iface = (e: Exposition, t: TestTarget, name: string) =>
  valueOf(e, `ggaoed_interface_${name}_total`, { interface: t.targetIf });
const count = (e: Exposition, op: string) => valueOf(e, `${DURATION}_count`, { ...DISK1, op });
const sum = (e: Exposition, op: string) => valueOf(e, `${DURATION}_sum`, { ...DISK1, op });

/**
 * `after - before` of a counter equals what the initiator sent; with retransmissions (none on a
 * quiet veth) the target may have seen up to `retransmits` requests more.
 */
function assertGrew(
  what: string,
  before: number,
  after: number,
  expected: number,
  slack: number,
): void {
  const grew = after - before;
  assert(
    grew >= expected && grew <= expected + slack,
    `${what} grew by ${grew}, the load says ${expected}${
      slack ? ` (+${slack} retransmitted)` : ""
    }`,
  );
}

/** The histogram of `op` is consistent, and grew from `before` as `requests` answered ones. */
function assertHistogramGrew(
  before: Exposition,
  after: Exposition,
  op: string,
  requests: number,
  phaseSeconds: number,
): void {
  const b0 = bucketsOf(before, DURATION, { ...DISK1, op });
  const b1 = bucketsOf(after, DURATION, { ...DISK1, op });
  assertEquals(b1.length, 17);
  // Every bucket can only grow, by at most the requests of the phase, +Inf by all of them.
  b1.forEach((b, i) => {
    const grew = b.count - b0[i].count;
    assert(grew >= 0 && grew <= requests, `${op} bucket le=${b.le} grew by ${grew}`);
  });
  assertEquals(b1[b1.length - 1].count - b0[b0.length - 1].count, requests, `${op} +Inf`);
  assertEquals(count(after, op) - count(before, op), requests, `${op} _count`);
  // The sum is the op's time counter; each request took more than 0 and less than the phase.
  const grew = sum(after, op) - sum(before, op);
  assert(grew > 0 && grew <= requests * phaseSeconds, `${op} _sum grew by ${grew}`);
  assertEquals(sum(after, op), device(after, `${op}_seconds`));
}

/** Collects a child's standard output; `waitFor` polls it for a pattern. */
function watch(child: Deno.ChildProcess) {
  let text = "";
  const done = (async () => {
    for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) text += chunk;
  })();
  return {
    done,
    async waitFor(pattern: RegExp, timeoutMs: number): Promise<string> {
      const deadline = Date.now() + timeoutMs;
      while (!pattern.test(text)) {
        if (Date.now() > deadline) throw new Error(`never saw ${pattern}; output: ${text}`);
        await new Promise((r) => setTimeout(r, 50));
      }
      return text;
    },
  };
}

Deno.test({
  ...opts,
  name:
    "scrapes during a load count exactly the reads and writes made, histograms match them, and SIGTERM closes the listener",
  fn: () =>
    withTarget({
      mtu: 9000,
      devices: [{ name: "disk1", sizeMiB: 16 }],
      defaults: `metrics-listen = "${LISTEN}"`,
    }, async (t) => {
      await t.waitForLog(/metrics: serving http:\/\/127\.0\.0\.1:9642\/metrics/);
      const ini = t.initiator();
      const disk = ini.find(0, 1, { waitMs: 5000 });
      const per = ini.maxSectors(disk);

      const s0 = await scrape(t, "openmetrics");
      assertEquals(valueOf(s0, "ggaoed_up"), 1);
      assertEquals(valueOf(s0, "ggaoed_build_info", { version: VERSION }), 1);
      const start = valueOf(s0, "ggaoed_start_time_seconds");
      assert(Math.abs(Date.now() / 1000 - start) < 120, `start time ${start}`);
      const uptime = valueOf(s0, "ggaoed_uptime_seconds");
      assert(uptime > 0 && uptime < 120, `uptime ${uptime}`);
      // Discovery answered: the other histogram already counts it, like other_requests.
      assert(count(s0, "other") >= 1);

      // Writes: 1 MiB in requests of `per` sectors.
      const sectors = 2048;
      const data = pattern(sectors * 512, 11);
      ini.resetCounters();
      let t0 = performance.now();
      ini.writeRange(disk, 0, data);
      let phase = (performance.now() - t0) / 1000;
      const writes = Math.ceil(sectors / per);
      let retx = ini.retransmits;
      const s1 = await scrape(t, "prometheus");
      assertGrew("writes", device(s0, "writes"), device(s1, "writes"), writes, retx);
      assertGrew(
        "write bytes",
        device(s0, "write_bytes"),
        device(s1, "write_bytes"),
        sectors * 512,
        retx * per * 512,
      );
      assertHistogramGrew(s0, s1, "write", device(s1, "writes") - device(s0, "writes"), phase);
      assertEquals(count(s1, "write"), device(s1, "writes"));
      assertEquals(device(s1, "reads"), device(s0, "reads"));

      // Reads of the same range: the data comes back, and so do the numbers.
      ini.resetCounters();
      t0 = performance.now();
      const back = ini.readRange(disk, 0, sectors);
      phase = (performance.now() - t0) / 1000;
      retx = ini.retransmits;
      assertEquals(firstDifference(back, data), -1);
      const reads = Math.ceil(sectors / per);
      const s2 = await scrape(t, "openmetrics");
      assertGrew("reads", device(s1, "reads"), device(s2, "reads"), reads, retx);
      assertGrew(
        "read bytes",
        device(s1, "read_bytes"),
        device(s2, "read_bytes"),
        sectors * 512,
        retx * per * 512,
      );
      const answered = device(s2, "reads") - device(s1, "reads");
      assertHistogramGrew(s1, s2, "read", answered, phase);
      assertEquals(count(s2, "read"), device(s2, "reads"));
      assertEquals(count(s2, "other"), count(s1, "other"));
      assertEquals(device(s2, "writes"), device(s1, "writes"));
      // The interface saw each request arrive and each reply leave: 36 header bytes + data.
      assertGrew("rx frames", iface(s1, t, "rx_frames"), iface(s2, t, "rx_frames"), reads, retx);
      assertGrew("tx frames", iface(s1, t, "tx_frames"), iface(s2, t, "tx_frames"), reads, retx);
      assertGrew(
        "tx bytes",
        iface(s1, t, "tx_bytes"),
        iface(s2, t, "tx_bytes"),
        sectors * 512 + reads * 36,
        retx * (36 + per * 512),
      );
      assertEquals(device(s2, "queue_drops"), 0);
      assertEquals(device(s2, "denied_requests"), 0);

      // A load running in another process while we scrape: every scrape valid, counters rise.
      const load = new Deno.Command(DENO, {
        args: ["run", "-A", `${REPO}tests/e2e/fixtures/writer.ts`, t.hostIf, "23"],
        stdout: "piped",
        stderr: "inherit",
      }).spawn();
      const loadOutput = watch(load);
      try {
        await loadOutput.waitFor(/acked(.|\n)*acked/, 20_000);
        // Three times: scrape (both formats in turn) until the load's writes have been both
        // accepted and answered since the last time; every scrape on the way must be valid and
        // no counter may go back.
        let last = s2;
        let scrapes = 0;
        for (let grew = 0; grew < 3;) {
          const deadline = Date.now() + 30_000;
          let s: Exposition;
          do {
            assert(Date.now() < deadline, "the writes and their histogram did not grow under load");
            s = await scrape(t, scrapes++ % 2 ? "prometheus" : "openmetrics");
            assert(device(s, "writes") >= device(last, "writes"), "writes went back");
            assert(count(s, "write") <= device(s, "writes"), "more answered than accepted");
            bucketsOf(s, DURATION, { ...DISK1, op: "write" }).forEach((b, j) => {
              assert(b.count >= bucketsOf(last, DURATION, { ...DISK1, op: "write" })[j].count);
            });
          } while (
            device(s, "writes") <= device(last, "writes") ||
            count(s, "write") <= count(last, "write")
          );
          last = s;
          grew++;
        }
      } finally {
        load.kill("SIGTERM");
        await load.status;
        await loadOutput.done;
      }

      // Other paths and methods.
      const missing = await get(t, `http://${LISTEN}/`);
      assert(!("error" in missing) && missing.status === 404, JSON.stringify(missing));
      const post = await get(t, METRICS_URL, "", "POST");
      assert(!("error" in post) && post.status === 405, JSON.stringify(post));

      // ggaoectl clear-stats clears the histograms with the counters.
      assertEquals((await t.ctl("clear-stats", "disk1")).code, 0);
      const cleared = await scrape(t, "prometheus");
      assertEquals(device(cleared, "reads"), 0);
      assertEquals(count(cleared, "read"), 0);
      assertEquals(sum(cleared, "read"), 0);

      // SIGTERM with a scraper's keep-alive connection open: the daemon still exits at once,
      // closes the connection, and nothing listens afterwards.
      const hold = t.lab.spawn(t.ns, [
        DENO,
        "run",
        "--allow-net",
        SCRAPE,
        "hold",
        "127.0.0.1",
        "9642",
        "10",
      ]);
      const holdOutput = watch(hold);
      await holdOutput.waitFor(/held/, 20_000);
      t0 = performance.now();
      const status = await t.stop("SIGTERM");
      const took = performance.now() - t0;
      assertEquals(status.code, 0, t.log);
      assert(took < 3000, `shutdown took ${took.toFixed(0)} ms`);
      const held = await holdOutput.waitFor(/closed after \d+ ms|still open/, 15_000);
      assert(/closed after/.test(held), held);
      const gone = await get(t, METRICS_URL);
      assert("error" in gone, `still answering after SIGTERM: ${JSON.stringify(gone)}`);
      const ss = await t.lab.exec(t.ns, ["ss", "-Hltn"], { check: true });
      assertEquals(ss.stdout.trim(), "");
    }),
});

Deno.test({
  ...opts,
  name: "without metrics-listen no TCP port is open",
  fn: () =>
    withTarget({}, async (t) => {
      const ss = await t.lab.exec(t.ns, ["ss", "-Hltn"], { check: true });
      assertEquals(ss.stdout.trim(), "", "a TCP listener without metrics-listen");
      const r = await get(t, METRICS_URL);
      assert("error" in r, JSON.stringify(r));
      assert(!/metrics:/.test(t.log), t.log);
    }),
});

Deno.test({
  ...opts,
  name: "a reload's new device shows up in the next scrape with its shelf and slot",
  fn: () =>
    withTarget({
      devices: [{ name: "disk1", sizeMiB: 4 }],
      defaults: `metrics-listen = "${LISTEN}"`,
    }, async (t) => {
      await t.waitForLog(/metrics: serving/);
      const before = await scrape(t, "openmetrics");
      assertEquals(before.samples.filter((s) => s.name === "ggaoed_device_reads_total").length, 1);
      const second = `${t.dir}/disk2.img`;
      Deno.writeFileSync(second, new Uint8Array(1024 * 1024));
      t.images.set("disk2", second);
      t.writeConfig(targetConfig(t, {
        devices: [{ name: "disk1", sizeMiB: 4 }, { name: "disk2", shelf: 7, slot: 9 }],
        defaults: `metrics-listen = "${LISTEN}"`,
      }));
      assertEquals((await t.ctl("reload")).code, 0);
      const after = await scrape(t, "prometheus");
      const labels = { device: "disk2", shelf: "7", slot: "9" };
      assertEquals(valueOf(after, "ggaoed_device_reads_total", labels), 0);
      assertEquals(valueOf(after, `${DURATION}_count`, { ...labels, op: "write" }), 0);
    }),
});

Deno.test({
  ...opts,
  name: "metrics-listen on an address the host does not have stops the daemon at start, saying why",
  fn: () =>
    withTarget({ waitReady: false, defaults: `metrics-listen = "192.0.2.1:9642"` }, async (t) => {
      const status = await t.process!.status;
      await t.stop().catch(() => {});
      assertEquals(status.code, 1, t.log);
      assert(
        /cannot serve metrics at metrics-listen = "192\.0\.2\.1:9642": 192\.0\.2\.1 is not an address of this host/
          .test(t.log),
        t.log,
      );
      for (const p of [t.pidPath, t.socketPath]) {
        let left = true;
        try {
          Deno.statSync(p);
        } catch {
          left = false;
        }
        assert(!left, `${p} was left behind`);
      }
    }),
});

/** The daemon's open file descriptors. */
function openFds(t: TestTarget): number {
  return [...Deno.readDirSync(`/proc/${t.process!.pid}/fd`)].length;
}

function assertAlive(t: TestTarget): void {
  for (const p of [t.pidPath, t.socketPath]) Deno.statSync(p);
  assert(!/Uncaught/.test(t.log), t.log);
}

/** Scrapes until `check` holds on a 200 answer (bounded); returns the exposition. */
async function scrapeUntil(
  t: TestTarget,
  check: (e: Exposition) => boolean,
  what: string,
  timeoutMs = 60_000,
): Promise<Exposition> {
  const deadline = Date.now() + timeoutMs;
  let last = "";
  while (Date.now() < deadline) {
    const r = await get(t, METRICS_URL, "text/plain");
    if (!("error" in r) && r.status === 200) {
      const e = parseExposition(r.body, "prometheus");
      if (check(e)) return e;
      last = r.body.split("\n").filter((l) => l.startsWith("ggaoed_m")).join("; ");
    } else last = JSON.stringify(r);
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`never saw ${what}; last: ${last}`);
}

/**
 * Floods the metrics port with `count` idle connections from inside the daemon's namespace;
 * `most` is the most descriptors the daemon held while they were being opened.
 */
async function flood(t: TestTarget, count: number) {
  const child = t.lab.spawn(t.ns, [
    DENO,
    "run",
    "--allow-net",
    SCRAPE,
    "flood",
    "127.0.0.1",
    "9642",
    String(count),
  ]);
  const out = watch(child);
  let most = 0;
  let opening = true;
  const sampling = (async () => {
    while (opening) {
      most = Math.max(most, openFds(t));
      await new Promise((r) => setTimeout(r, 5));
    }
  })();
  try {
    await out.waitFor(/opened \d+/, 90_000);
  } finally {
    opening = false;
    await sampling;
  }
  return {
    most,
    async release() {
      await child.stdin.close();
      await child.status;
      await out.done;
    },
  };
}

const LIMITED = ["prlimit", "--nofile=256:256", "--"];

Deno.test({
  ...opts,
  name:
    "under an open-file limit of 256, 600 idle metrics connections are refused past the cap and time out; AoE I/O, scrapes, pid file and socket carry on",
  fn: () =>
    withTarget({
      devices: [{ name: "disk1", sizeMiB: 16 }],
      defaults: `metrics-listen = "${LISTEN}"`,
      wrapper: LIMITED,
    }, async (t) => {
      await t.waitForLog(/metrics: serving/);
      const ini = t.initiator();
      const disk = ini.find(0, 1, { waitMs: 5000 });
      const attack = await flood(t, 600);
      try {
        const fds = openFds(t);
        assert(attack.most < 200 && fds < 200, `${attack.most}, then ${fds} descriptors open`);
        // A scrape during the flood is answered, or refused at once (503 or reset), never hangs.
        const r = await get(t, METRICS_URL);
        console.log(
          `flood of 600: at most ${attack.most}, then ${fds} descriptors open; a scrape: ${
            "error" in r ? r.error : r.status
          } in ${r.ms} ms`,
        );
        assert(r.ms < 3000, `the scrape took ${r.ms} ms: ${JSON.stringify(r)}`);
        assert("error" in r || r.status === 200 || r.status === 503, JSON.stringify(r));
        // The data path never noticed: every byte written comes back, and is in the file.
        assertRoundTrip(ini, disk, t.images.get("disk1")!);
        assertAlive(t);
        assertEquals((await t.ctl("stats")).code, 0);
        // The idle connections holding the cap are closed after the idle timeout (10 s); then
        // scrapes are answered again, and show what was refused.
        const e = await scrapeUntil(
          t,
          (e) => valueOf(e, "ggaoed_metrics_connections_timed_out_total") >= 16,
          "the 16 idle connections timed out",
        );
        assert(valueOf(e, "ggaoed_metrics_connections_refused_total") >= 500, "refusals counted");
        assertEquals(valueOf(e, "ggaoed_metrics_accept_errors_total"), 0);
        assert(/warning: metrics: refused \d+ connection\(s\): 16 were open/.test(t.log), t.log);
      } finally {
        await attack.release();
      }
      assertRoundTrip(ini, disk, t.images.get("disk1")!);
      assertAlive(t);
      assertEquals((await t.stop("SIGTERM")).code, 0, t.log);
    }),
});

Deno.test({
  ...opts,
  name:
    "out of descriptors (metrics-max-connections above the open-file limit) the accept errors are logged and survived; AoE I/O carries on",
  fn: () =>
    withTarget({
      devices: [{ name: "disk1", sizeMiB: 16 }],
      defaults: `metrics-listen = "${LISTEN}"\nmetrics-max-connections = 4096`,
      wrapper: LIMITED,
    }, async (t) => {
      await t.waitForLog(/metrics: serving/);
      const ini = t.initiator();
      const disk = ini.find(0, 1, { waitMs: 5000 });
      const attack = await flood(t, 600);
      try {
        await t.waitForLog(/accept\(s\) failed \(Too many open files[^]*LimitNOFILE/, 30_000);
        assertRoundTrip(ini, disk, t.images.get("disk1")!);
        assertAlive(t);
      } finally {
        await attack.release();
      }
      // The flood's connections closed, descriptors are free: scrapes are answered again.
      const e = await scrapeUntil(
        t,
        (e) => valueOf(e, "ggaoed_metrics_accept_errors_total") > 0,
        "accept errors counted",
      );
      assertEquals(valueOf(e, "ggaoed_main_thread_errors_total"), 0);
      assertRoundTrip(ini, disk, t.images.get("disk1")!);
      assertEquals((await t.ctl("stats")).code, 0);
      assertAlive(t);
      assertEquals((await t.stop("SIGTERM")).code, 0, t.log);
    }),
});

Deno.test({
  ...opts,
  name:
    "stray errors on the main thread are logged at error level, counted, and survived; AoE I/O carries on",
  fn: async () => {
    const dir = Deno.makeTempDirSync({ prefix: "ggaoed-stray-" });
    const trigger = `${dir}/now`;
    try {
      await withTarget({
        devices: [{ name: "disk1", sizeMiB: 16 }],
        defaults: `metrics-listen = "${LISTEN}"`,
        entry: `${REPO}tests/e2e/fixtures/stray.ts`,
        env: { STRAY_TRIGGER: trigger },
      }, async (t) => {
        await t.waitForLog(/metrics: serving/);
        const ini = t.initiator();
        const disk = ini.find(0, 1, { waitMs: 5000 });
        const before = await scrape(t, "prometheus");
        assertEquals(valueOf(before, "ggaoed_main_thread_errors_total"), 0);
        Deno.writeTextFileSync(trigger, "");
        for (
          const m of [
            /error: unhandled promise rejection on the main thread \(survived, \d so far\): Error: stray rejection from the test\n\s+at /,
            /error: unhandled promise rejection on the main thread \(survived, \d so far\): Error: stray async throw from the test/,
            /error: uncaught exception on the main thread \(survived, \d so far\): Error: stray timer exception from the test/,
          ]
        ) await t.waitForLog(m);
        const after = await scrape(t, "openmetrics");
        assertEquals(valueOf(after, "ggaoed_main_thread_errors_total"), 3);
        assertRoundTrip(ini, disk, t.images.get("disk1")!);
        assertAlive(t);
        assertEquals((await t.ctl("stats")).code, 0);
        assertEquals((await t.stop("SIGTERM")).code, 0, t.log);
      });
    } finally {
      Deno.removeSync(dir, { recursive: true });
    }
  },
});
