/**
 * The benchmark's kernel-like initiator (bench/kinit.c) and its echo (bench/kecho.c), built by
 * `buildTools` with gcc, against each other, the real daemon and vblade over veth pairs; its
 * verifying workload must pass on targets that store data and fail on one that does not; its
 * retransmission must recover a target that stops for a while; perf's control FIFO must bound
 * the counts to kinit's window; and `deno task bench` must produce both series, the
 * many-initiator rows and the JSON that bench/report.ts turns into tables.
 */

import { assert, assertEquals } from "../helpers/assert.ts";
import { NetLab } from "../helpers/netns.ts";
import { withTarget } from "../e2e/target.ts";
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
  echoes: { slot: number; store: boolean }[],
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

async function kinit(args: string[], timeoutMs = 30_000): Promise<KinitResult> {
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
        "--seconds",
        "0.5",
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
      assert(r.requests > 1000, `only ${r.requests} requests`);
      assertEquals(r.errors, 0);
      assertEquals(r.requests, r.reads);
      assert(r.latencyMs.p50 > 0 && r.latencyMs.p99 >= r.latencyMs.p50);
      // Two system calls per turn, at least one reply per turn.
      assert(r.syscalls.perRequest > 0 && r.syscalls.perRequest <= 2, `${r.syscalls.perRequest}`);
      assert(r.cpu.seconds > 0);
      const echo = r.watched!.find((w) => w.tid === pid);
      assertEquals(echo?.comm, "kecho");
      assert(echo!.cpuSeconds > 0, "the watched echo used CPU during the window");
      const ring = await kinit(["-i", ifname, "--rx-ring", "--seconds", "0.3"]);
      assert(ring.rxRing && ring.requests > 100, `--rx-ring: ${ring.requests} requests`);
      assertEquals(ring.errors, 0, ring.firstError ?? "");
      for (const workload of ["seq-read", "seq-write", "mixed"]) {
        const w = await kinit(["-i", ifname, "--workload", workload, "--seconds", "0.3"]);
        assertEquals(w.errors, 0, `${workload}: ${w.firstError}`);
        assert(w.requests > 100, `${workload}: ${w.requests} requests`);
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
          "--seconds",
          "0.5",
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
          "--seconds",
          "0.5",
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
      const run = new KinitRun(t.kinit, [
        "-i",
        ifname,
        "--seconds",
        "1.5",
        "--warmup",
        "0",
        "--rto-ms",
        "100",
      ], 30_000);
      await new Promise((r) => setTimeout(r, 400));
      Deno.kill(pid, "SIGSTOP");
      await new Promise((r) => setTimeout(r, 400));
      Deno.kill(pid, "SIGCONT");
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
      const v = await kinit(["-i", target.hostIf, "--workload", "verify", "--seconds", "0.5"]);
      assertEquals(v.errors, 0, v.firstError ?? "");
      assert(v.verify!.checkedReads > 100, `${v.verify!.checkedReads} reads checked`);
      assertEquals(v.verify!.mismatches, 0, v.firstError ?? "");
      const r = await kinit([
        "-i",
        target.hostIf,
        "--workload",
        "seq-read",
        "--seconds",
        "0.5",
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
        "--seconds",
        "0.5",
        "--discover-ms",
        "5000",
      ]);
      assertEquals(v.target.capacitySectors, 32768);
      assertEquals(v.errors, 0, v.firstError ?? "");
      assert(v.verify!.checkedReads > 100, `${v.verify!.checkedReads} reads checked`);
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
        "--seconds",
        "0.5",
        "--warmup",
        "0.3",
        "--perf-fifo",
        perf.fifos,
      ], 30_000);
      await perf.attach([pid, run.pid]);
      const r = await run.result;
      const counts = await perf.stop();
      const echo = perRequest(counts, threadIds([pid]), r.requests);
      assert(echo, "perf counted the echo's thread");
      // kecho: one recvmmsg and one sendmmsg per turn, at least one request per turn.
      assert(echo.syscallsPerRequest > 0 && echo.syscallsPerRequest <= 2.2, JSON.stringify(echo));
      assert((echo.byName.recvmmsg ?? 0) > 0 && (echo.byName.sendmmsg ?? 0) > 0);
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
          "ggaoed,echo",
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
        for (const target of ["ggaoed", "echo"]) {
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
      assertEquals(json.many.length, 2);
      for (const m of json.many) {
        assertEquals(m.perInitiator.length, 2);
        assert(m.value > 0 && m.fairness > 0 && m.fairness <= 1, JSON.stringify(m));
      }
      const report = await new Deno.Command(Deno.execPath(), {
        args: ["run", "--allow-read", `${REPO}bench/report.ts`, `${out}/quick.json`],
        stdout: "piped",
      }).output();
      const tables = new TextDecoder().decode(report.stdout);
      assert(tables.includes("× echo") && tables.includes("min/max"), tables);
      assert(Deno.readTextFileSync(`${out}/quick.svg`).includes("ggaoed ÷ echo"));
    } finally {
      Deno.removeSync(out, { recursive: true });
    }
  },
});
