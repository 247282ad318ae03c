/**
 * The benchmark's kernel-like initiator (bench/kinit.c) and its echo (bench/kecho.c), built by
 * `buildTools` with gcc, against each other, the real daemon and vblade over veth pairs; its
 * verifying workload must pass on targets that store data and fail on one that does not; its
 * retransmission must recover a target that stops for a while; perf's control FIFO must bound
 * the counts to kinit's window; kecho --per-frame must answer with one recvfrom and one sendto
 * per request; and `deno task bench` must produce both series, the many-initiator rows in both
 * layouts, the CPU in the JSON and the headings, and the JSON that bench/report.ts turns into
 * tables.
 */

import { assert, assertEquals } from "../helpers/assert.ts";
import { NetLab } from "../../lab/netns.ts";
import { withTarget } from "../../lab/target.ts";
import {
  buildTools,
  type KinitResult,
  KinitRun,
  PerfSession,
  perRequest,
  threadIds,
  type Tools,
} from "../../bench/kernel.ts";

const OPTS = { sanitizeResources: false, sanitizeOps: false };
const REPO = new URL("../../", import.meta.url).pathname;
const SECTORS = 131072; // 64 MiB

function unavailable(): string | null {
  if (Deno.uid() !== 0) return "needs root (network namespaces, packet sockets)";
  try {
    new Deno.Command("gcc", { args: ["--version"], stdout: "null", stderr: "null" }).outputSync();
  } catch {
    return "gcc is not installed (scripts/install-deps.sh --bench)";
  }
  return null;
}

const skip = unavailable();
let tools: Tools | null = null;
async function built(): Promise<Tools> {
  tools ??= await buildTools();
  return tools;
}

/** A namespace with kecho processes on one end of a veth pair, the other end here. */
async function withEcho<T>(
  mtu: number,
  echoes: { slot: number; store: boolean; perFrame?: boolean }[],
  body: (hostIf: string, pids: number[]) => Promise<T>,
): Promise<T> {
  const t = await built();
  const lab = new NetLab();
  try {
    const ns = await lab.namespace();
    const [hostIf, targetIf] = await lab.hostVethPair(ns, { mtu });
    const pids: number[] = [];
    for (const e of echoes) {
      const child = lab.spawn(ns, [
        t.kecho,
        targetIf,
        "0",
        String(e.slot),
        String(SECTORS),
        ...(e.store ? ["--store"] : []),
        ...(e.perFrame ? ["--per-frame"] : []),
      ]);
      const reader = child.stdout.getReader();
      const { value } = await reader.read();
      reader.releaseLock();
      assert(
        new TextDecoder().decode(value).includes("kecho is running"),
        "kecho did not start",
      );
      pids.push(child.pid);
    }
    return await body(hostIf, pids);
  } finally {
    await lab.cleanup();
  }
}

/**
 * kinit's measured window as an amount of work: it ends once `requests` are answered, however
 * long a busy machine makes that take (up to a minute), so every count a test asserts is taken
 * over the same work. A long retransmission timeout keeps a descheduled echo from being counted
 * as a loss.
 */
function window(requests: number): string[] {
  return ["--requests", String(requests), "--seconds", "60", "--rto-ms", "5000"];
}

/**
 * Verify over 4,096 sectors (512 units of 4 KiB): after the first few hundred writes nearly
 * every read checks a sector written in this run.
 */
const VERIFY_WINDOW = [...window(4000), "--region", "4096"];

/** Polls `ok` every 20 ms until it holds; fails after `ms`. */
async function until(ok: () => boolean, what: string, ms = 30_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > deadline) throw new Error(`not within ${ms / 1000} s: ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function kinit(args: string[], timeoutMs = 90_000): Promise<KinitResult> {
  const t = await built();
  return await new KinitRun(t.kinit, args, timeoutMs).result;
}

Deno.test({
  name: "kinit and kecho: discovery, IDENTIFY, every workload, the MTU 1500 request size",
  ignore: skip !== null,
  ...OPTS,
  fn: async () => {
    await withEcho(1500, [{ slot: 3, store: false }], async (ifname, [pid]) => {
      const r = await kinit([
        "-i",
        ifname,
        "--workload",
        "rand-read",
        ...window(2000),
        "--warmup",
        "0.1",
        "--watch",
        String(pid),
      ]);
      assertEquals(r.target.slot, 3);
      assertEquals(r.target.maxSectors, 2, "(1500 - 36) / 512 sectors per request");
      assertEquals(r.target.capacitySectors, SECTORS);
      assertEquals(r.requestBytes, 1024);
      assert(r.note?.includes("1024 bytes"), `the note says the 4K requests are 1 KiB: ${r.note}`);
      assert(r.requests >= 2000, `only ${r.requests} requests`);
      assertEquals(r.errors, 0);
      assertEquals(r.requests, r.reads);
      assert(r.latencyMs.p50 > 0 && r.latencyMs.p99 >= r.latencyMs.p50);
      // Two system calls per turn, at least one reply per turn (a wait that timed out on a busy
      // machine takes none, and sends nothing either).
      const calls = r.syscalls.sendmmsg + r.syscalls.recvmmsg - r.syscalls.recvmmsgEmpty;
      assert(calls > 0 && calls <= 2 * r.requests + 1, JSON.stringify(r.syscalls));
      assert(r.cpu.seconds > 0);
      const echo = r.watched!.find((w) => w.tid === pid);
      assertEquals(echo?.comm, "kecho");
      assert(echo!.cpuSeconds > 0, "the watched echo used CPU during the window");
      const ring = await kinit(["-i", ifname, "--rx-ring", ...window(500)]);
      assert(ring.rxRing && ring.requests >= 500, `--rx-ring: ${ring.requests} requests`);
      assertEquals(ring.errors, 0, ring.firstError ?? "");
      for (const workload of ["seq-read", "seq-write", "mixed"]) {
        const w = await kinit(["-i", ifname, "--workload", workload, ...window(500)]);
        assertEquals(w.errors, 0, `${workload}: ${w.firstError}`);
        assert(w.requests >= 500, `${workload}: ${w.requests} requests`);
        assertEquals(w.requestBytes, 1024);
        if (workload === "seq-write") assertEquals(w.writes, w.requests);
        if (workload === "mixed") assert(w.writes > 0 && w.reads > w.writes, "70/30");
      }
    });
  },
});

Deno.test({
  name: "kinit verify: passes on an echo that stores writes, fails on one that drops them",
  ignore: skip !== null,
  ...OPTS,
  fn: async () => {
    await withEcho(
      9000,
      [{ slot: 3, store: true }, { slot: 4, store: false }],
      async (ifname) => {
        const good = await kinit([
          "-i",
          ifname,
          "--slot",
          "3",
          "--workload",
          "verify",
          ...VERIFY_WINDOW,
        ]);
        assertEquals(good.requestBytes, 4096);
        assert(good.verify!.checkedReads > 1000, `${good.verify!.checkedReads} reads checked`);
        assertEquals(good.verify!.mismatches, 0, good.firstError ?? "");
        const bad = await kinit([
          "-i",
          ifname,
          "--slot",
          "4",
          "--workload",
          "verify",
          ...VERIFY_WINDOW,
        ]);
        assert(bad.verify!.mismatches > 0, "an echo that drops writes must fail verification");
        assert(bad.firstError?.startsWith("verify: sector"), `${bad.firstError}`);
      },
    );
  },
});

Deno.test({
  name: "kinit retransmits what a stopped target did not answer, and counts the late replies",
  ignore: skip !== null,
  ...OPTS,
  fn: async () => {
    await withEcho(9000, [{ slot: 3, store: false }], async (ifname, [pid]) => {
      const t = await built();
      // The window lasts until this test ends it (SIGINT), so the stop falls inside it however
      // slowly a busy machine runs either side.
      const run = new KinitRun(t.kinit, [
        "-i",
        ifname,
        "--seconds",
        "120",
        "--warmup",
        "0",
        "--rto-ms",
        "100",
      ], 150_000);
      await until(() => run.stderr.includes("kinit: measuring"), "kinit's window began");
      const replies = () =>
        Number(Deno.readTextFileSync(`/sys/class/net/${ifname}/statistics/rx_packets`));
      const before = replies();
      await until(() => replies() > before + 1000, "kinit was served before the stop");
      Deno.kill(pid, "SIGSTOP");
      // Stopped for four retransmission timeouts: every outstanding request is sent again.
      await new Promise((r) => setTimeout(r, 400));
      Deno.kill(pid, "SIGCONT");
      // The echo answers its queue in order: 1,000 replies after the restart include those to
      // the requests it held while stopped, and kinit took them (it sends a new request only
      // for a reply it took).
      const resumed = replies();
      await until(() => replies() > resumed + 1000, "the echo answered again after SIGCONT");
      run.child.kill("SIGINT");
      const r = await run.result;
      assert(r.retransmits >= 32, `${r.retransmits} retransmits: the whole window timed out`);
      assert(r.stale > 0, "the replies to the first sends arrive late and are stale");
      assertEquals(r.errors, 0, r.firstError ?? "");
      assert(r.latencyMs.max > 100, `max latency ${r.latencyMs.max} ms covers the stop`);
    });
  },
});

Deno.test({
  name: "kinit against ggaoed and vblade: verify, and ggaoed's data-path worker thread watched",
  ignore: skip !== null,
  ...OPTS,
  fn: async () => {
    await withTarget({ mtu: 9000 }, async (target) => {
      const v = await kinit(["-i", target.hostIf, "--workload", "verify", ...VERIFY_WINDOW]);
      assertEquals(v.errors, 0, v.firstError ?? "");
      assert(v.verify!.checkedReads > 1000, `${v.verify!.checkedReads} reads checked`);
      assertEquals(v.verify!.mismatches, 0, v.firstError ?? "");
      const r = await kinit([
        "-i",
        target.hostIf,
        "--workload",
        "seq-read",
        ...window(1000),
        "--watch",
        String(target.process!.pid),
      ]);
      assertEquals(r.requestBytes, 17 * 512);
      const worker = r.watched!.find((w) => /^worker-\d+$/.test(w.comm));
      assert(worker && worker.cpuSeconds > 0, "the data-path worker thread is seen by its name");
    });
    const lab = new NetLab();
    const dir = Deno.makeTempDirSync({ dir: "/var/tmp", prefix: "ggaoed-kinit-" });
    try {
      const image = `${dir}/disk.img`;
      Deno.writeFileSync(image, new Uint8Array(16 << 20));
      const ns = await lab.namespace();
      const [hostIf, targetIf] = await lab.hostVethPair(ns, { mtu: 1500 });
      lab.spawn(ns, ["vblade", "-b", "64", "0", "2", targetIf, image]);
      const v = await kinit([
        "-i",
        hostIf,
        "--slot",
        "2",
        "--workload",
        "verify",
        ...VERIFY_WINDOW,
        "--discover-ms",
        "5000",
      ]);
      assertEquals(v.target.capacitySectors, 32768);
      assertEquals(v.errors, 0, v.firstError ?? "");
      assert(v.verify!.checkedReads > 1000, `${v.verify!.checkedReads} reads checked`);
      assertEquals(v.verify!.mismatches, 0, v.firstError ?? "");
    } finally {
      await lab.cleanup();
      Deno.removeSync(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "perf stat through its control FIFO counts the system calls of kinit's window only",
  ignore: skip !== null ||
    !new Deno.Command("sh", { args: ["-c", "command -v perf"], stdout: "null" }).outputSync()
      .success,
  ...OPTS,
  fn: async () => {
    await withEcho(9000, [{ slot: 3, store: false }], async (ifname, [pid]) => {
      const t = await built();
      const perf = await PerfSession.create("stat");
      const run = new KinitRun(t.kinit, [
        "-i",
        ifname,
        ...window(5000),
        "--warmup",
        "0.3",
        "--perf-fifo",
        perf.fifos,
      ], 90_000);
      await perf.attach([pid, run.pid]);
      const r = await run.result;
      const counts = await perf.stop();
      const echo = perRequest(counts, threadIds([pid]), r.requests);
      assert(echo, "perf counted the echo's thread");
      // kecho: one recvmmsg and one sendmmsg per turn, at least one request per turn.
      assert(echo.syscallsPerRequest > 0 && echo.syscallsPerRequest <= 2.2, JSON.stringify(echo));
      assert(
        (echo.byName.recvmmsg ?? 0) > 0 && (echo.byName.sendmmsg ?? 0) > 0,
        `per-syscall counts of the echo: ${JSON.stringify(echo.byName)}`,
      );
      const ini = counts.find((c) => c.comm === "kinit");
      assert(ini, "perf counted kinit");
      // Within the window perf saw kinit's own sendmmsg/recvmmsg count (and a few reads of
      // /proc/stat and clocks at the edges).
      const own = r.syscalls.sendmmsg + r.syscalls.recvmmsg;
      const seen = (ini.byName.sendmmsg ?? 0) + (ini.byName.recvmmsg ?? 0);
      assert(Math.abs(seen - own) <= Math.max(5, own * 0.02), `perf ${seen}, kinit ${own}`);
    });
  },
});

Deno.test({
  name: "kecho --per-frame: one recvfrom and one sendto per request, data stored like the batched",
  ignore: skip !== null ||
    !new Deno.Command("sh", { args: ["-c", "command -v perf"], stdout: "null" }).outputSync()
      .success,
  ...OPTS,
  fn: async () => {
    await withEcho(9000, [{ slot: 3, store: true, perFrame: true }], async (ifname, [pid]) => {
      const good = await kinit(["-i", ifname, "--workload", "verify", ...VERIFY_WINDOW]);
      assert(good.verify!.checkedReads > 1000, `${good.verify!.checkedReads} reads checked`);
      assertEquals(good.verify!.mismatches, 0, good.firstError ?? "");
      assertEquals(good.errors, 0, good.firstError ?? "");
      const t = await built();
      const perf = await PerfSession.create("stat");
      const run = new KinitRun(t.kinit, [
        "-i",
        ifname,
        "--workload",
        "rand-read",
        "--io-bytes",
        "4096",
        ...window(3000),
        "--warmup",
        "0.2",
        "--perf-fifo",
        perf.fifos,
      ], 90_000);
      await perf.attach([pid]);
      const r = await run.result;
      const counts = await perf.stop();
      assertEquals(r.errors, 0, r.firstError ?? "");
      const echo = perRequest(counts, threadIds([pid]), r.requests);
      assert(echo, "perf counted the echo's thread");
      // Exactly one of each per request (retransmits and the window's edges aside), no batches.
      const by = echo.byName;
      assertEquals([by.recvmmsg ?? 0, by.sendmmsg ?? 0], [0, 0], JSON.stringify(by));
      for (const call of ["recvfrom", "sendto"]) {
        assert(Math.abs((by[call] ?? 0) - 1) < 0.05, `${call} per request: ${JSON.stringify(by)}`);
      }
    });
  },
});

Deno.test({
  name: "deno task bench: both series, the many-initiator rows, the JSON and report.ts tables",
  ignore: skip !== null,
  ...OPTS,
  fn: async () => {
    const out = Deno.makeTempDirSync({ prefix: "ggaoed-bench-test-" });
    try {
      const bench = await new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "--allow-all",
          `${REPO}bench/bench.ts`,
          "--quick",
          "--only",
          "ggaoed,echo,echo-frame",
          "--workloads",
          "rand_read_4k,seq_write_direct",
          "--seconds",
          "0.5",
          "--warmup",
          "0.2",
          "--initiators",
          "2",
          "--out",
          out,
        ],
        stdout: "piped",
        stderr: "piped",
        signal: AbortSignal.timeout(240_000),
      }).output();
      const text = new TextDecoder().decode(bench.stdout) +
        new TextDecoder().decode(bench.stderr);
      assertEquals(bench.code, 0, text);
      const json = JSON.parse(Deno.readTextFileSync(`${out}/quick.json`));
      assertEquals(json.primarySeries, "kinit");
      const rows = json.details as {
        series: string;
        target: string;
        workload: string;
        value: number | null;
        targetUsPerRequest: number | null;
        workerUsPerRequest: number | null;
      }[];
      for (const series of ["kinit", "ring"]) {
        for (const target of ["ggaoed", "echo", "echo-frame"]) {
          const r = rows.find((x) =>
            x.series === series && x.target === target && x.workload === "rand_read_4k"
          );
          assert(r && r.value! > 0, `${series} ${target}: ${JSON.stringify(r)}`);
          assert(r.targetUsPerRequest! > 0);
          if (target === "ggaoed") assert(r.workerUsPerRequest! > 0);
        }
        assert(
          rows.some((x) => x.series === series && x.workload === "seq_write_direct"),
          "the direct row (ggaoed only)",
        );
      }
      assertEquals(json.mtu["9000"].rand_read_4k.ggaoed > 0, true);
      // Both layouts (each initiator its own device, and all on one) for each target.
      assertEquals(
        json.many.map((m: { layout: string; target: string }) => `${m.layout} ${m.target}`),
        [
          "devices ggaoed",
          "devices echo",
          "devices echo-frame",
          "shared ggaoed",
          "shared echo",
          "shared echo-frame",
        ],
      );
      for (const m of json.many) {
        assertEquals(m.perInitiator.length, 2);
        assert(m.value > 0 && m.fairness > 0 && m.fairness <= 1, JSON.stringify(m));
        assertEquals(m.errors, 0, JSON.stringify(m));
        assert(m.retransmits >= 0, JSON.stringify(m));
      }
      // The CPU: model, identification, every vulnerabilities file, the kernel.
      const cpu = json.machine.cpuInfo;
      assert(cpu.model && cpu.model !== "unknown", JSON.stringify(cpu));
      assertEquals(json.machine.cpu, cpu.model);
      const vulns = [...Deno.readDirSync("/sys/devices/system/cpu/vulnerabilities")].length;
      assertEquals(Object.keys(cpu.vulnerabilities).length, vulns);
      assertEquals(json.machine.kernel, Deno.osRelease());
      assert(text.includes(`CPU: ${cpu.model}`), "the printed tables name the CPU");
      const report = await new Deno.Command(Deno.execPath(), {
        args: ["run", "--allow-read", `${REPO}bench/report.ts`, `${out}/quick.json`],
        stdout: "piped",
      }).output();
      const tables = new TextDecoder().decode(report.stdout);
      for (
        const head of ["× ceiling", "p99 × vblade", "min/max", "2 × 2 devices", "2 on 1 device"]
      ) {
        assert(tables.includes(head), `${head} in:\n${tables}`);
      }
      // Both series' tables and the many-initiator table: each heading names the CPU.
      assertEquals(tables.split(`CPU: ${cpu.model}`).length - 1, 3, tables);
      assert(Deno.readTextFileSync(`${out}/quick.svg`).includes("ggaoed ÷ ceiling"));
    } finally {
      Deno.removeSync(out, { recursive: true });
    }
  },
});
