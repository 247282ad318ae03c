/**
 * A throw-away one-node Ceph cluster for tests: one monitor and one memstore OSD (no manager),
 * bound to 127.0.0.1 only, everything under a temporary directory (no /etc/ceph, no
 * /var/lib/ceph), pool `rbd` with size 1. Adapted from `ceph-one-node.sh` (Ceph 16, Debian 12;
 * the packages come from `scripts/install-deps.sh --test`).
 *
 * ```ts
 * await withCephCluster({}, async (cluster) => {
 *   await cluster.createImage("disk", { sizeBytes: 64 << 20 });
 *   // librbd clients: conf = cluster.conf, user = cluster.user (keyring named in the conf)
 *   await cluster.exportImage("disk", "/tmp/disk.raw");
 * });
 * ```
 *
 * With `netns`, the daemons and every CLI call run inside that network namespace
 * (`ip netns exec NS ceph-mon ...`), whose loopback is its own: processes in the namespace reach
 * the cluster at 127.0.0.1, processes outside it cannot.
 *
 * Never call a command that needs a manager (`ceph status` with pg stats, `rbd du`, `ceph osd
 * pool set ... pg_autoscale`, dashboards): without one it hangs. Teardown stops the OSD before
 * the monitor (an OSD whose monitor is gone waits for it on SIGTERM), kills each by its recorded
 * PID (SIGTERM, then SIGKILL after a bound), and removes the directory.
 *
 * @module
 */

import { freezeProcess, type Output, run, type RunOptions } from "./command.ts";

/** Options of {@link withCephCluster}. */
export interface CephClusterOptions {
  /** Run the daemons and the CLI inside this network namespace (it must have `lo` up). */
  netns?: string;
  /** `cephx` (default: clients need the keyring the conf names) or `none`. */
  auth?: "cephx" | "none";
  /** The pool created for images (default `rbd`). */
  pool?: string;
  /** Placement groups of the pool (default 8: fewer peer faster). */
  pgNum?: number;
  /** Bound on the whole bring-up (default 60 s). */
  timeoutMs?: number;
}

/** Options of {@link CephCluster.createImage}. */
export interface ImageOptions {
  /** Size in bytes (a multiple of 512). */
  sizeBytes: number;
  /** `--image-feature` values (default `["layering"]`). */
  features?: string[];
  /** Object size as a power of two (default 22: 4 MiB objects). */
  order?: number;
}

/** What `rbd info --format json` says about an image (the fields tests use). */
export interface ImageInfo {
  name: string;
  size: number;
  objects: number;
  order: number;
  features: string[];
}

const DEFAULT_TIMEOUT_MS = 60_000;
const CLI_TIMEOUT_MS = 30_000;
const STOP_TERM_MS = 10_000;
const STOP_KILL_MS = 5_000;
// Monitor ports are drawn below the ephemeral range (32768..60999) so that no outgoing
// connection holds them.
const PORT_MIN = 10_000;
const PORT_SPAN = 20_000;

/** A running one-node cluster; see the module documentation. */
export class CephCluster {
  /** The temporary directory holding everything (conf, keys, daemon data, logs). */
  readonly dir: string;
  /** The ceph.conf a client reads (`ceph-conf`). */
  readonly conf: string;
  /** The client user without `client.` (`ceph-user`): `admin`. */
  readonly user = "admin";
  /** The keyring of `client.admin` (also named in the conf). */
  readonly keyring: string;
  /** The pool images are created in. */
  readonly pool: string;
  /** The namespace the daemons run in, or undefined for the host's own. */
  readonly netns: string | undefined;
  /** The monitor's msgr2 address, `127.0.0.1:PORT` (msgr1 is PORT+1). */
  monAddress = "";
  /** Milliseconds from start to a usable pool (for reports). */
  bringUpMs = 0;
  readonly #auth: "cephx" | "none";
  readonly #pgNum: number;
  readonly #daemons = new Map<string, Deno.ChildProcess>();

  private constructor(dir: string, options: CephClusterOptions) {
    this.dir = dir;
    this.conf = `${dir}/ceph.conf`;
    this.keyring = `${dir}/client.admin.keyring`;
    this.pool = options.pool ?? "rbd";
    this.netns = options.netns;
    this.#auth = options.auth ?? "cephx";
    this.#pgNum = options.pgNum ?? 8;
  }

  /** Brings a cluster up; on failure everything started is torn down and the logs quoted. */
  static async start(options: CephClusterOptions = {}): Promise<CephCluster> {
    const dir = await Deno.makeTempDir({ prefix: "ggaoed-ceph-" });
    const cluster = new CephCluster(dir, options);
    const started = performance.now();
    const bound = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    try {
      await cluster.#bringUp(started + bound);
      cluster.bringUpMs = Math.round(performance.now() - started);
      return cluster;
    } catch (error) {
      const logs = await cluster.#logTails();
      await cluster.stop();
      throw new Error(
        `Ceph test cluster did not come up within ${bound} ms: ${(error as Error).message}` +
          (logs ? `\n${logs}` : ""),
        { cause: error },
      );
    }
  }

  /** PID of a running daemon (`mon.a`, `osd.0`), or undefined. */
  pid(daemon: "mon.a" | "osd.0"): number | undefined {
    return this.#daemons.get(daemon)?.pid;
  }

  /** The arguments every CLI call gets: conf, user, and keyring. */
  clientArgs(): string[] {
    return ["-c", this.conf, "--id", this.user, "--keyring", this.keyring];
  }

  /** Runs `rbd ARGS` (in the namespace); throws with its stderr on failure. Returns stdout. */
  async rbd(args: string[], timeoutMs = CLI_TIMEOUT_MS): Promise<string> {
    return (await this.#run(["rbd", ...this.clientArgs(), ...args], { timeoutMs })).stdout;
  }

  /** Runs `ceph ARGS` (monitor commands only: there is no manager). Returns stdout. */
  async ceph(args: string[], timeoutMs = CLI_TIMEOUT_MS): Promise<string> {
    const connect = ["--connect-timeout", String(Math.ceil(timeoutMs / 1000))];
    return (await this.#run(["ceph", ...this.clientArgs(), ...connect, ...args], { timeoutMs }))
      .stdout;
  }

  /** `rbd create --size BYTES --image-feature F ... POOL/NAME`. */
  async createImage(name: string, options: ImageOptions): Promise<void> {
    const features = options.features ?? ["layering"];
    const args = ["create", "--size", `${options.sizeBytes}B`];
    for (const f of features) args.push("--image-feature", f);
    if (options.order !== undefined) args.push("--order", String(options.order));
    await this.rbd([...args, `${this.pool}/${name}`]);
  }

  /** `rbd rm POOL/NAME` (its snapshots first). */
  async removeImage(name: string): Promise<void> {
    await this.rbd(["snap", "purge", `${this.pool}/${name}`]);
    await this.rbd(["rm", "--no-progress", `${this.pool}/${name}`]);
  }

  /** `rbd resize --size BYTES POOL/NAME` (shrinking only with `allowShrink`). */
  async resizeImage(name: string, sizeBytes: number, allowShrink = false): Promise<void> {
    const args = ["resize", "--no-progress", "--size", `${sizeBytes}B`];
    if (allowShrink) args.push("--allow-shrink");
    await this.rbd([...args, `${this.pool}/${name}`]);
  }

  /** `rbd snap create POOL/NAME@SNAP`. */
  async createSnapshot(name: string, snapshot: string): Promise<void> {
    await this.rbd(["snap", "create", "--no-progress", `${this.pool}/${name}@${snapshot}`]);
  }

  /** `rbd info --format json POOL/NAME[@SNAP]`. */
  async imageInfo(name: string): Promise<ImageInfo> {
    const info = JSON.parse(await this.rbd(["info", "--format", "json", `${this.pool}/${name}`]));
    return {
      name: info.name,
      size: info.size,
      objects: info.objects,
      order: info.order,
      features: info.features,
    };
  }

  /** `rbd export POOL/NAME[@SNAP] PATH`: the image's bytes, for comparing with what was served. */
  async exportImage(name: string, path: string): Promise<void> {
    await this.rbd(["export", "--no-progress", `${this.pool}/${name}`, path]);
  }

  /** `rbd ls POOL`. */
  async listImages(): Promise<string[]> {
    return JSON.parse(await this.rbd(["ls", "--format", "json", this.pool]));
  }

  /**
   * Creates `client.NAME` with the RBD profile on the pool and writes its keyring into the
   * cluster directory; returns the keyring's path (pass it as the librados `keyring` option).
   */
  async createUser(name: string): Promise<string> {
    const path = `${this.dir}/client.${name}.keyring`;
    const keyring = await this.ceph([
      "auth",
      "get-or-create",
      `client.${name}`,
      "mon",
      "profile rbd",
      "osd",
      `profile rbd pool=${this.pool}`,
    ]);
    await Deno.writeTextFile(path, keyring);
    return path;
  }

  /**
   * Kills the OSD at once (SIGKILL, by PID) and waits for it to be gone. The monitor still
   * lists it up (with no peer to report it, that takes `mon osd report timeout`, 900 s), so
   * clients keep sending to it: "an OSD that is gone".
   */
  async killOsd(): Promise<void> {
    const osd = this.#daemons.get("osd.0");
    if (!osd) return;
    try {
      osd.kill("SIGKILL");
    } catch {
      // Already exited.
    }
    await osd.status;
    this.#daemons.delete("osd.0");
  }

  /**
   * Freezes the OSD (SIGSTOP): its connections stay open and nothing is answered, as with a
   * hung host. {@link resumeOsd} (or {@link stop}) lets it run again.
   */
  async pauseOsd(): Promise<void> {
    const osd = this.#daemons.get("osd.0");
    if (!osd) return;
    await freezeProcess(osd.pid, `osd.0 (pid ${osd.pid})`, 5_000);
  }

  /** Lets a paused OSD run again (SIGCONT). */
  resumeOsd(): void {
    this.#daemons.get("osd.0")?.kill("SIGCONT");
  }

  /** Stops the OSD, then the monitor (by PID), and removes the directory. Idempotent. */
  async stop(): Promise<void> {
    for (const name of ["osd.0", "mon.a"]) {
      const child = this.#daemons.get(name);
      if (!child) continue;
      try {
        child.kill("SIGCONT"); // a paused daemon handles SIGTERM only once it runs
      } catch {
        // Already exited.
      }
      await stopChild(child);
      this.#daemons.delete(name);
    }
    await Deno.remove(this.dir, { recursive: true }).catch((e) => {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    });
  }

  // ------------------------------------------------------------------ bring-up

  async #bringUp(deadline: number): Promise<void> {
    const dir = this.dir;
    for (const sub of ["log", "run", "crash", "mon.a", "osd.0"]) await Deno.mkdir(`${dir}/${sub}`);
    const port = await this.#freePortPair();
    this.monAddress = `127.0.0.1:${port}`;
    const fsid = crypto.randomUUID();
    await Deno.writeTextFile(this.conf, this.#confText(fsid, port));

    // Keys (cephx needs them; with auth none they are harmless).
    const monKeyring = `${dir}/mon.keyring`;
    await this.#run(["ceph-authtool", "--create-keyring", monKeyring, "--gen-key", "-n", "mon."]
      .concat(["--cap", "mon", "allow *"]));
    await this.#run(
      ["ceph-authtool", "--create-keyring", this.keyring, "--gen-key", "-n", "client.admin"]
        .concat(["--cap", "mon", "allow *", "--cap", "osd", "allow *", "--cap", "mgr", "allow *"]),
    );
    await this.#run(["ceph-authtool", monKeyring, "--import-keyring", this.keyring]);

    // Monitor.
    const monAddr = `[v2:127.0.0.1:${port},v1:127.0.0.1:${port + 1}]`;
    await this.#run(
      ["monmaptool", "--create", "--fsid", fsid, "--addv", "a", monAddr, `${dir}/monmap`],
    );
    await this.#run(
      ["ceph-mon", "-c", this.conf, "--mkfs", "-i", "a", "--monmap", `${dir}/monmap`]
        .concat(["--keyring", monKeyring]),
    );
    this.#spawnDaemon("mon.a", ["ceph-mon", "-c", this.conf, "-f", "-i", "a"]);
    await this.#until(deadline, "mon.a", async () => {
      return (await this.#run(
        ["ceph", ...this.clientArgs(), "--connect-timeout", "2", "mon", "stat"],
        { check: false, timeoutMs: 5_000 },
      )).code === 0;
    });

    overdue(deadline, "the monitor");

    // OSD: register it, make its memstore, start it, wait until it is up and in.
    const osdUuid = crypto.randomUUID();
    const osdSecret = (await this.#run(["ceph-authtool", "--gen-print-key"])).stdout.trim();
    await Deno.writeTextFile(`${dir}/osd.0.new.json`, JSON.stringify({ cephx_secret: osdSecret }));
    const id = (await this.ceph(["osd", "new", osdUuid, "-i", `${dir}/osd.0.new.json`])).trim();
    if (id !== "0") throw new Error(`ceph osd new answered id '${id}', expected 0`);
    await this.#run(
      ["ceph-authtool", "--create-keyring", `${dir}/osd.0/keyring`, "--name", "osd.0"]
        .concat(["--add-key", osdSecret]),
    );
    await this.#run(
      ["ceph-osd", "-c", this.conf, "-i", "0", "--mkfs", "--osd-uuid", osdUuid],
    );
    this.#spawnDaemon("osd.0", ["ceph-osd", "-c", this.conf, "-f", "-i", "0"]);
    await this.#until(deadline, "osd.0", async () => {
      const r = await this.#run(
        ["ceph", ...this.clientArgs(), "--connect-timeout", "2", "osd", "dump", "-f", "json"],
        { check: false, timeoutMs: 5_000 },
      );
      if (r.code !== 0) return false;
      const osds: { up: number; in: number }[] = JSON.parse(r.stdout).osds ?? [];
      return osds.some((o) => o.up === 1 && o.in === 1);
    });

    overdue(deadline, "the OSD");

    // Pool (size 1 and min_size 1 come from the conf's defaults); `rbd pool init` waits for
    // its placement groups to be active.
    const pg = String(this.#pgNum);
    await this.ceph(["osd", "pool", "create", this.pool, pg, pg, "replicated"]);
    await this.rbd(["pool", "init", this.pool], Math.max(1000, deadline - performance.now()));
    overdue(deadline, `pool '${this.pool}'`);
  }

  #confText(fsid: string, port: number): string {
    const d = this.dir;
    const auth = this.#auth;
    const pg = this.#pgNum;
    return `[global]
fsid = ${fsid}
mon host = [v2:127.0.0.1:${port},v1:127.0.0.1:${port + 1}]
public addr = 127.0.0.1
cluster addr = 127.0.0.1
ms bind ipv4 = true
ms bind ipv6 = false
auth cluster required = ${auth}
auth service required = ${auth}
auth client required = ${auth}
keyring = ${this.keyring}
run dir = ${d}/run
crash dir = ${d}/crash
log file = ${d}/log/$name.log
mon data = ${d}/mon.$id
osd data = ${d}/osd.$id
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = ${pg}
osd pool default pgp num = ${pg}
osd pool default pg autoscale mode = off
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
osd crush chooseleaf type = 0
mon data avail warn = 2
mon data avail crit = 1
mon warn on insecure global id reclaim allowed = false
paxos propose interval = 0.1
[mon]
mon cluster log file = default=${d}/log/ceph.$channel.log cluster=${d}/log/ceph.log
admin socket = ${d}/run/$name.asok
pid file = ${d}/run/$name.pidfile
keyring = ${d}/mon.$id/keyring
[osd]
admin socket = ${d}/run/$name.asok
pid file = ${d}/run/$name.pidfile
keyring = ${d}/osd.$id/keyring
osd objectstore = memstore
memstore device bytes = 1G
[client]
admin socket =
log file =
`;
  }

  /** A port P with P and P+1 free on 127.0.0.1 in the cluster's namespace (per `ss`). */
  async #freePortPair(): Promise<number> {
    const listing = await this.#run(["ss", "-Htan"]);
    const used = new Set<number>();
    for (const line of listing.stdout.split("\n")) {
      const local = line.trim().split(/\s+/)[3];
      const port = Number(local?.slice(local.lastIndexOf(":") + 1));
      if (Number.isInteger(port)) used.add(port);
    }
    for (let tries = 0; tries < 100; tries++) {
      const p = PORT_MIN + Math.floor(Math.random() * PORT_SPAN);
      if (!used.has(p) && !used.has(p + 1)) return p;
    }
    throw new Error("no free pair of TCP ports for the monitor");
  }

  #spawnDaemon(name: string, command: string[]): void {
    const child = new Deno.Command(this.netns ? "ip" : command[0], {
      args: this.netns ? ["netns", "exec", this.netns, ...command] : command.slice(1),
      stdin: "null",
      stdout: "null",
      // The daemons log to their own files (log file = DIR/log/$name.log).
      stderr: "null",
    }).spawn();
    this.#daemons.set(name, child);
    Deno.writeTextFileSync(`${this.dir}/run/${name}.child-pid`, `${child.pid}\n`);
  }

  /** Polls `ready` every 200 ms until it holds; fails when the daemon exits or at `deadline`. */
  async #until(deadline: number, daemon: string, ready: () => Promise<boolean>): Promise<void> {
    const child = this.#daemons.get(daemon)!;
    const exit: { status?: Deno.CommandStatus } = {};
    child.status.then((s) => exit.status = s);
    while (!(await ready())) {
      if (exit.status) {
        throw new Error(`${daemon} exited (code ${exit.status.code}) during bring-up`);
      }
      if (performance.now() > deadline) throw new Error(`${daemon} not ready in time`);
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  /** Runs a command (inside the namespace, if any) to completion within its time bound. */
  #run(command: string[], options: RunOptions = {}): Promise<Output> {
    const args = this.netns ? ["ip", "netns", "exec", this.netns, ...command] : command;
    return run(args, { ...options, timeoutMs: options.timeoutMs ?? CLI_TIMEOUT_MS });
  }

  async #logTails(): Promise<string> {
    const parts: string[] = [];
    for (const name of ["mon.a", "osd.0"]) {
      try {
        const text = await Deno.readTextFile(`${this.dir}/log/${name}.log`);
        parts.push(`--- ${name}.log (tail) ---\n${text.split("\n").slice(-15).join("\n")}`);
      } catch {
        // No log yet.
      }
    }
    return parts.join("\n");
  }
}

function overdue(deadline: number, what: string): void {
  if (performance.now() > deadline) throw new Error(`${what} took past the time bound`);
}

/** SIGTERM, wait up to 10 s, then SIGKILL; always awaits the exit (no zombie, no leak). */
async function stopChild(child: Deno.ChildProcess): Promise<void> {
  const exited = async (ms: number) => {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<boolean>((r) => timer = setTimeout(() => r(false), ms));
    try {
      return await Promise.race([child.status.then(() => true), late]);
    } finally {
      clearTimeout(timer);
    }
  };
  for (const [signal, ms] of [["SIGTERM", STOP_TERM_MS], ["SIGKILL", STOP_KILL_MS]] as const) {
    try {
      child.kill(signal);
    } catch {
      // Already exited.
    }
    if (await exited(ms)) return;
  }
  throw new Error(`pid ${child.pid} survived SIGKILL for ${STOP_KILL_MS} ms`);
}

/**
 * Runs `body` with a fresh one-node cluster and always tears it down (OSD before monitor).
 */
export async function withCephCluster<T>(
  options: CephClusterOptions,
  body: (cluster: CephCluster) => Promise<T>,
): Promise<T> {
  const cluster = await CephCluster.start(options);
  try {
    return await body(cluster);
  } finally {
    await cluster.stop();
  }
}
