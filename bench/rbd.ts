/**
 * `deno task bench-rbd`: ggaoed serving a Ceph RBD image, next to `rbd bench` on the same image
 * (the ceiling librbd gives on this machine), and what the exclusive-lock feature costs when
 * several hosts serve one image.
 *
 * A throw-away network namespace holds a one-node Ceph cluster (lab/ceph.ts: one
 * monitor, one memstore OSD, at the namespace's own 127.0.0.1) and the daemons; veth pairs join
 * it to this process, which runs the project's initiator (window 32, no congestion control, as
 * `deno task bench`). Rows:
 *
 * - the file rows' workloads (sequential read and write with the largest request for the MTU,
 *   4 KiB random read, 4 KiB mixed 70/30) through ggaoed, and the same through `rbd bench`
 *   (32 threads, rbd_cache off like ggaoed, same I/O size and pattern);
 * - 4 KiB random writes to an image with layering only and to one with exclusive-lock, through
 *   one host, then through two hosts at once (two initiators, one per host);
 * - with `--lock`: how long the other host's writes wait when the lock holder dies (SIGKILL).
 *
 * Everything is removed at the end (processes by PID, cluster, namespace). Prints a table;
 * `--out FILE` also writes the rows as JSON. This is a separate entry point while `bench.ts` is
 * reworked; it reuses the initiator, the namespace and cluster helpers of the tests.
 *
 * @module
 */

import {
  Initiator,
  type TargetInfo,
  type WorkloadKind,
  type WorkloadResult,
} from "../src/initiator/mod.ts";
import { NetLab } from "../lab/netns.ts";
import { type CephCluster, withCephCluster } from "../lab/ceph.ts";
import { DAEMON_FLAGS } from "../src/permissions.ts";
import { MAX_MERGE } from "../src/engine/device.ts";

const REPO = new URL("../", import.meta.url).pathname;
const MiB = 1024 * 1024;
const IMAGE_BYTES = 64 * MiB;
const WINDOW = 32;

const HELP =
  `deno task bench-rbd [options]   (as root; needs the Ceph packages: install-deps --bench)

ggaoed serving a Ceph RBD image (one-node memstore cluster in a network namespace) against
rbd bench on the same image, and exclusive-lock with one and two hosts writing.

  --quick          1 s per measurement
  --seconds N      seconds per measurement (default 3)
  --mtu N          MTU of the links (default 9000)
  --repeat N       rounds of the exclusive-lock rows, the median is shown (default 3)
  --lock           also measure how long a dead exclusive-lock holder blocks the other host
  --out FILE       also write the rows as JSON
  -h, --help       this text
`;

interface Options {
  seconds: number;
  repeat: number;
  warmup: number;
  mtu: number;
  lock: boolean;
  out: string | null;
}

function parseOptions(args: string[]): Options | null {
  const o: Options = { seconds: 3, repeat: 3, warmup: 0.5, mtu: 9000, lock: false, out: null };
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    const next = () => {
      const v = args[++i];
      if (v === undefined) throw new Error(`${a} needs a value`);
      return v;
    };
    if (a === "-h" || a === "--help") return null;
    else if (a === "--quick") [o.seconds, o.warmup, o.repeat] = [1, 0.3, 1];
    else if (a === "--repeat") o.repeat = Number(next());
    else if (a === "--seconds") o.seconds = Number(next());
    else if (a === "--mtu") o.mtu = Number(next());
    else if (a === "--lock") o.lock = true;
    else if (a === "--out") o.out = next();
    else throw new Error(`unknown option ${a} (--help lists them)`);
  }
  if (!(o.seconds > 0) || !(o.mtu >= 1500 && o.mtu <= 9000) || !(o.repeat >= 1)) {
    throw new Error("bad --seconds, --mtu or --repeat");
  }
  return o;
}

/** One line of the table. */
interface Row {
  workload: string;
  target: string;
  /** MB/s or IOPS. */
  value: number | null;
  unit: "MB/s" | "IOPS";
  p50Ms: number | null;
  p99Ms: number | null;
  /** Target CPU seconds per GB moved (ggaoed only). */
  cpuSecPerGB: number | null;
  note: string;
}

const WORKLOADS: { name: string; kind: WorkloadKind; ioBytes: number; unit: Row["unit"] }[] = [
  { name: "seq read", kind: "seq-read", ioBytes: 0, unit: "MB/s" },
  { name: "seq write", kind: "seq-write", ioBytes: 0, unit: "MB/s" },
  { name: "4K rand read", kind: "rand-read", ioBytes: 4096, unit: "IOPS" },
  { name: "4K mixed 70/30", kind: "mixed", ioBytes: 4096, unit: "IOPS" },
];

const CLK_TCK = 100;

/** utime + stime of every thread of `pid`, seconds. */
function cpuSeconds(pid: number): number {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(f[11]) + Number(f[12])) / CLK_TCK;
  } catch {
    return 0;
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A ggaoed daemon in the lab's namespace. */
class Daemon {
  readonly child: Deno.ChildProcess;
  #log = "";
  readonly #done: Promise<void>;

  constructor(ns: string, conf: string) {
    this.child = new Deno.Command("ip", {
      args: ["netns", "exec", ns, Deno.execPath(), "run", ...DAEMON_FLAGS, `${REPO}ggaoed.ts`]
        .concat(["-c", conf]),
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const collect = async (s: ReadableStream<Uint8Array>) => {
      const d = new TextDecoder();
      for await (const chunk of s) this.#log += d.decode(chunk, { stream: true });
    };
    this.#done = Promise.all([collect(this.child.stdout), collect(this.child.stderr)]).then(
      () => {},
    );
  }

  get pid(): number {
    return this.child.pid;
  }

  async ready(): Promise<void> {
    const deadline = Date.now() + 30_000;
    while (!/ggaoed is running/.test(this.#log)) {
      if (Date.now() > deadline) throw new Error(`ggaoed did not start:\n${this.#log}`);
      await sleep(50);
    }
  }

  async kill(signal: Deno.Signal = "SIGTERM"): Promise<void> {
    try {
      this.child.kill(signal);
    } catch { /* gone */ }
    await this.child.status;
    await this.#done;
  }
}

/** The namespace with the cluster, and the daemons and links made in it. */
class Lab {
  readonly net = new NetLab();
  ns = "";
  cluster!: CephCluster;
  dir = "";
  readonly daemons: Daemon[] = [];
  readonly #opts: Options;

  constructor(opts: Options) {
    this.#opts = opts;
  }

  /** A daemon on a link of its own serving `devices` (name → image); its host interface. */
  async daemon(name: string, devices: Record<string, string>): Promise<[Daemon, string]> {
    const [hostIf, targetIf] = await this.net.hostVethPair(this.ns, { mtu: this.#opts.mtu });
    const dir = `${this.dir}/${name}`;
    Deno.mkdirSync(`${dir}/state`, { recursive: true });
    const lines = [
      "[defaults]",
      `interfaces = ["${targetIf}"]`,
      `pid-file = "${dir}/ggaoed.pid"`,
      `control-socket = "${dir}/ggaoed.sock"`,
      `state-directory = "${dir}/state"`,
      `ceph-conf = "${this.cluster.conf}"`,
    ];
    let slot = 1;
    for (const [device, image] of Object.entries(devices)) {
      lines.push("", `[devices.${device}]`, `path = "rbd:rbd/${image}"`, "shelf = 1");
      lines.push(`slot = ${slot++}`, "admin = []");
    }
    Deno.writeTextFileSync(`${dir}/ggaoed.conf`, lines.join("\n") + "\n");
    const d = new Daemon(this.ns, `${dir}/ggaoed.conf`);
    this.daemons.push(d);
    await d.ready();
    return [d, hostIf];
  }
}

function initiator(hostIf: string): Initiator {
  return Initiator.open(hostIf, {
    window: WINDOW,
    congestionControl: false,
    retries: 5,
    ringBytes: 8 * MiB,
  });
}

function find(ini: Initiator, slot: number): TargetInfo {
  return ini.find(1, slot, { waitMs: 5000 });
}

/** One workload through ggaoed, with the daemon's CPU time. */
function measure(
  ini: Initiator,
  t: TargetInfo,
  pid: number,
  w: typeof WORKLOADS[number],
  opts: Options,
): Row {
  const ioBytes = w.ioBytes || ini.maxSectors(t) * 512;
  const base = { target: t, kind: w.kind, ioBytes, window: WINDOW, readPercent: 70 };
  ini.runWorkload({ ...base, durationMs: opts.warmup * 1000, seed: 1 });
  const cpu0 = cpuSeconds(pid);
  const r = ini.runWorkload({ ...base, durationMs: opts.seconds * 1000, seed: 2 });
  const cpu = cpuSeconds(pid) - cpu0;
  return {
    workload: w.name,
    target: "ggaoed",
    value: w.unit === "IOPS" ? r.iops : r.mbPerSec,
    unit: w.unit,
    p50Ms: r.latency.p50,
    p99Ms: r.latency.p99,
    cpuSecPerGB: r.bytes > 0 ? cpu / (r.bytes / 1e9) : null,
    note: r.errors > 0 ? `${r.errors} errors: ${r.firstError}` : `${ioBytes} B per I/O`,
  };
}

/** One `rbd bench` run in the lab's namespace: its summary and its CPU seconds (user + sys). */
async function runRbdBench(
  lab: Lab,
  args: string[],
): Promise<{ seconds: number; ops: number; opsPerSec: number; cpu: number }> {
  const rbd = ["rbd", ...lab.cluster.clientArgs(), ...args, "rbd/bench"];
  const quoted = rbd.map((a) => `'${a.replaceAll("'", "'\\''")}'`).join(" ");
  const out = await lab.net.exec(
    lab.ns,
    ["bash", "-c", `TIMEFORMAT='cpu %U %S'; time ${quoted}`],
    { check: true, timeoutMs: 180_000 },
  );
  // Last summary line: "elapsed: 2   ops: 16384   ops/sec: 7012.36   bytes/sec: 28 MiB/s"
  const m = /elapsed:\s*([\d.]+)\s+ops:\s*(\d+)\s+ops\/sec:\s*([\d.]+)/.exec(out.stdout);
  const t = /cpu ([\d.]+) ([\d.]+)/.exec(out.stderr);
  if (!m || !t) throw new Error(`cannot read rbd bench's summary:\n${out.stdout}${out.stderr}`);
  return {
    seconds: Number(m[1]),
    ops: Number(m[2]),
    opsPerSec: Number(m[3]),
    cpu: Number(t[1]) + Number(t[2]),
  };
}

/**
 * `rbd bench` with the same I/O size, pattern and depth, about `seconds` long (a short run
 * first tells how much that is), with its CPU time.
 */
async function rbdBench(
  lab: Lab,
  w: typeof WORKLOADS[number],
  ioBytes: number,
  opts: Options,
): Promise<Row> {
  const type = w.kind === "seq-read" || w.kind === "rand-read"
    ? "read"
    : w.kind === "seq-write"
    ? "write"
    : "readwrite";
  const args = (total: number) => {
    const a = ["bench", "--rbd_cache=false", "--io-type", type, "--io-size", String(ioBytes)]
      .concat(["--io-threads", String(WINDOW), "--io-total", String(total), "--io-pattern"])
      .concat([w.kind.startsWith("seq") ? "seq" : "rand"]);
    if (type === "readwrite") a.push("--rw-mix-read", "70");
    return a;
  };
  const probe = await runRbdBench(lab, args(Math.max(16 * MiB, 512 * ioBytes)));
  const total = Math.max(16 * MiB, Math.round(probe.opsPerSec * opts.seconds) * ioBytes);
  const r = await runRbdBench(lab, args(total));
  const bytes = r.ops * ioBytes;
  return {
    workload: w.name,
    target: "rbd bench",
    value: w.unit === "IOPS" ? r.opsPerSec : r.opsPerSec * ioBytes / 1e6,
    unit: w.unit,
    p50Ms: null,
    p99Ms: null,
    cpuSecPerGB: r.cpu / (bytes / 1e9),
    note: `${ioBytes} B per I/O`,
  };
}

/** `aoe.ts bench` as a process (several run at once, one per host). */
function aoeBench(hostIf: string, slot: number, seconds: number): Promise<WorkloadResult> {
  return new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-ffi", "--allow-read", `${REPO}aoe.ts`, "bench", hostIf, "1"]
      .concat([String(slot), "--kind", "mixed", "--read-percent", "0", "--io-bytes", "4096"])
      .concat(["--window", String(WINDOW), "--seconds", String(seconds), "--json"]),
    stdout: "piped",
    stderr: "piped",
  }).output().then((o) => {
    const text = new TextDecoder().decode(o.stdout);
    if (o.code !== 0) throw new Error(`aoe.ts bench: ${new TextDecoder().decode(o.stderr)}`);
    return JSON.parse(text.trim().split("\n").pop()!);
  });
}

/** 4 KiB random writes through `hosts` at once (one initiator each) on `slot` (an image). */
async function writers(hosts: string[], slot: number, opts: Options) {
  const results = await Promise.all(hosts.map((h) => aoeBench(h, slot, opts.seconds)));
  return {
    iops: results.reduce((s, r) => s + r.iops, 0),
    each: results.map((r) => r.iops),
    errors: results.reduce((s, r) => s + r.errors, 0),
    p50: Math.max(...results.map((r) => r.latency.p50)),
    p99: Math.max(...results.map((r) => r.latency.p99)),
  };
}

/**
 * The writer rows: for images with layering only and with exclusive-lock, through one host and
 * through two at once, `opts.repeat` interleaved rounds, the median round of each.
 */
async function lockRows(hostA: string, hostB: string, opts: Options): Promise<Row[]> {
  const cases = [
    { slot: 1, label: "layering", hosts: [hostA] },
    { slot: 1, label: "layering", hosts: [hostA, hostB] },
    { slot: 2, label: "exclusive-lock", hosts: [hostA] },
    { slot: 2, label: "exclusive-lock", hosts: [hostA, hostB] },
  ];
  const runs: Awaited<ReturnType<typeof writers>>[][] = cases.map(() => []);
  for (let round = 0; round < opts.repeat; round++) {
    for (const [i, c] of cases.entries()) {
      const r = await writers(c.hosts, c.slot, opts);
      console.log(
        `  round ${round + 1}: 4K rand write, ${c.hosts.length} host(s), ${c.label}: ${
          Math.round(r.iops)
        } IOPS`,
      );
      runs[i].push(r);
    }
  }
  // Rounds differ a lot on a shared machine: the ratio within each round is the steadier figure.
  const ratios = runs[3].map((r, round) => (r.iops / runs[1][round].iops).toFixed(2));
  console.log(`  exclusive-lock ÷ layering, two hosts writing, per round: ${ratios.join(", ")}`);
  return cases.map((c, i) => {
    const sorted = [...runs[i]].sort((a, b) => a.iops - b.iops);
    const median = sorted[Math.floor(sorted.length / 2)];
    const range = sorted.length > 1
      ? `rounds ${Math.round(sorted[0].iops)}-${Math.round(sorted[sorted.length - 1].iops)}`
      : "";
    const split = c.hosts.length > 1 ? `${median.each.map(Math.round).join(" + ")} IOPS` : "";
    const errors = median.errors ? `${median.errors} errors` : "";
    const ratio = i === 3 ? `× layering per round: ${ratios.join(", ")}` : "";
    return {
      workload: `4K rand write, ${c.hosts.length} host${c.hosts.length > 1 ? "s" : ""}`,
      target: c.label,
      value: median.iops,
      unit: "IOPS" as const,
      p50Ms: median.p50,
      p99Ms: median.p99,
      cpuSecPerGB: null,
      note: [split, range, ratio, errors].filter(Boolean).join("; "),
    };
  });
}

/** The other host's first write after the exclusive-lock holder died: how long it waits. */
async function deadHolder(lab: Lab, a: Daemon, hostA: string, hostB: string): Promise<Row> {
  // a takes the lock (it writes), then dies without releasing it.
  const ia = initiator(hostA);
  const ta = find(ia, 2);
  ia.write(ta, 0, new Uint8Array(4096));
  ia.close();
  await a.kill("SIGKILL");
  const ib = Initiator.open(hostB, { window: 1, timeoutMs: 1000, retries: 120 });
  const tb = find(ib, 2);
  const started = performance.now();
  let note = "";
  try {
    ib.write(tb, 8, new Uint8Array(4096));
  } catch (e) {
    note = `failed: ${(e as Error).message}`;
  }
  const ms = performance.now() - started;
  ib.close();
  void lab;
  return {
    workload: "first write after the holder died",
    target: "exclusive-lock",
    value: null,
    unit: "IOPS",
    p50Ms: ms,
    p99Ms: null,
    cpuSecPerGB: null,
    note: note || `waited ${(ms / 1000).toFixed(1)} s`,
  };
}

function table(rows: Row[]): string {
  const cell = (r: Row) =>
    r.value === null
      ? "-"
      : r.unit === "IOPS"
      ? `${Math.round(r.value)} IOPS`
      : `${r.value.toFixed(1)} MB/s`;
  const head = ["workload", "target", "result", "p50 ms", "p99 ms", "CPU s/GB", "note"];
  const body = rows.map((r) => [
    r.workload,
    r.target,
    cell(r),
    r.p50Ms === null ? "-" : r.p50Ms.toFixed(3),
    r.p99Ms === null ? "-" : r.p99Ms.toFixed(3),
    r.cpuSecPerGB === null ? "-" : r.cpuSecPerGB.toFixed(2),
    r.note,
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i].length)));
  const line = (cells: string[]) =>
    `| ${
      cells.map((c, i) => (i >= 2 && i <= 5 ? c.padStart(widths[i]) : c.padEnd(widths[i])))
        .join(" | ")
    } |`;
  return [
    line(head),
    `| ${
      widths.map((w, i) => (i >= 2 && i <= 5 ? "-".repeat(w - 1) + ":" : "-".repeat(w))).join(" | ")
    } |`,
    ...body.map(line),
  ].join("\n");
}

async function main(args: string[]): Promise<number> {
  let opts: Options | null;
  try {
    opts = parseOptions(args);
  } catch (e) {
    console.error(`bench-rbd: ${(e as Error).message}`);
    return 2;
  }
  if (opts === null) {
    console.log(HELP);
    return 0;
  }
  const o = opts;
  const lab = new Lab(o);
  lab.dir = Deno.makeTempDirSync({ dir: "/var/tmp", prefix: "ggaoed-bench-rbd-" });
  const rows: Row[] = [];
  try {
    lab.ns = await lab.net.namespace();
    await withCephCluster({ netns: lab.ns }, async (cluster) => {
      lab.cluster = cluster;
      console.log(`cluster up in ${cluster.bringUpMs} ms; MTU ${o.mtu}, ${o.seconds} s each`);
      await cluster.createImage("bench", { sizeBytes: IMAGE_BYTES });
      await cluster.createImage("shared", { sizeBytes: IMAGE_BYTES });
      await cluster.createImage("locked", {
        sizeBytes: IMAGE_BYTES,
        features: ["layering", "exclusive-lock"],
      });
      // Written once, so that reads reach data in the OSD rather than absent objects.
      for (const image of ["bench", "shared", "locked"]) {
        await cluster.rbd(
          ["bench", "--io-type", "write", "--io-size", "4M", "--io-total"]
            .concat([String(IMAGE_BYTES), "--io-pattern", "seq", `rbd/${image}`]),
          120_000,
        );
      }

      // ggaoed, then rbd bench, on the same image.
      const [daemon, hostIf] = await lab.daemon("single", { bench: "bench" });
      const ini = initiator(hostIf);
      const t = find(ini, 1);
      const ggaoed: Row[] = [];
      for (const w of WORKLOADS) {
        const row = measure(ini, t, daemon.pid, w, o);
        console.log(`  ${row.workload.padEnd(15)} ggaoed     ${row.value?.toFixed(1)} ${row.unit}`);
        ggaoed.push(row);
      }
      const perRequest = ini.maxSectors(t) * 512;
      ini.close();
      await daemon.kill();
      for (const [i, w] of WORKLOADS.entries()) {
        const ioBytes = w.ioBytes || perRequest;
        rows.push(ggaoed[i]);
        // The same I/O size; for sequential rows also the size ggaoed's merging reaches
        // (MAX_MERGE contiguous requests in one librbd call), the ceiling for that pattern.
        const sizes = w.ioBytes ? [ioBytes] : [ioBytes, ioBytes * MAX_MERGE];
        for (const size of sizes) {
          const row = await rbdBench(lab, w, size, o);
          console.log(
            `  ${row.workload.padEnd(15)} rbd bench  ${row.value?.toFixed(1)} ${row.unit}`,
          );
          rows.push(row);
        }
      }

      // exclusive-lock: one host writing, then two.
      const [a, hostA] = await lab.daemon("a", { shared: "shared", locked: "locked" });
      const [, hostB] = await lab.daemon("b", { shared: "shared", locked: "locked" });
      rows.push(...await lockRows(hostA, hostB, o));
      if (o.lock) {
        const row = await deadHolder(lab, a, hostA, hostB);
        console.log(`  ${row.workload}: ${row.note}`);
        rows.push(row);
      }
      for (const d of lab.daemons) await d.kill();
    });
  } finally {
    for (const d of lab.daemons) await d.kill("SIGKILL");
    await lab.net.cleanup();
    Deno.removeSync(lab.dir, { recursive: true });
  }
  console.log(`\n${table(rows)}`);
  if (o.out) {
    Deno.writeTextFileSync(
      o.out,
      JSON.stringify({ mtu: o.mtu, seconds: o.seconds, rows }, null, 2),
    );
    console.log(`wrote ${o.out}`);
  }
  return 0;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
