/**
 * The RBD test lab: one network namespace holding a one-node Ceph cluster (its monitor and OSD
 * at the namespace's own 127.0.0.1) and any number of ggaoed daemons, each on its own veth pair
 * to the test process: several "hosts" serving the same images, as the multi-host deployments
 * in the README. The test process runs the project's initiator and aoetools on the host ends.
 *
 * ```ts
 * await withRbdLab(async (lab) => {
 *   await lab.cluster.createImage("shared", { sizeBytes: 16 << 20 });
 *   const a = await lab.daemon("a", [{ name: "shared", image: "shared", shelf: 1, slot: 1 }]);
 *   const ini = a.initiator();
 * });
 * ```
 *
 * Everything is removed afterwards (daemons and cluster daemons by PID, namespace, temporary
 * directories). One cluster per test file: bring-up costs ~3 s.
 *
 * @module
 */

import { NetLab } from "../../lab/netns.ts";
import { type CephCluster, withCephCluster } from "../../lab/ceph.ts";
import { TestTarget } from "../../lab/target.ts";
import assert from "node:assert/strict";
import type { RbdDeviceInfo } from "../../src/control/types.ts";
import { IOCB_CMD_PREADV, IOCB_CMD_PWRITEV } from "../../ffi/constants.ts";
import { Epoll, EPOLLIN, EventFd } from "../../ffi/events.ts";
import { Memory } from "../../ffi/memory.ts";
import type { ImageSpec, RadosCluster } from "../../ffi/rbd.ts";

/** One device of a lab daemon. */
export interface RbdDeviceSpec {
  name: string;
  /** `POOL/IMAGE[@SNAP]` or `IMAGE[@SNAP]` in the cluster's pool; or `path` for a file. */
  image?: string;
  path?: string;
  shelf: number;
  slot: number;
  /** Extra TOML lines of the device table. */
  extra?: string;
}

/** Options of {@link RbdLab.daemon}. */
export interface DaemonOptions {
  /** Extra TOML lines of [defaults]. */
  defaults?: string;
  /** Wait for "ggaoed is running" (default true). */
  waitReady?: boolean;
  /** A command the daemon runs under (TestTarget.wrapper). */
  wrapper?: string[];
  mtu?: number;
}

/** The lab: a namespace with the cluster, and the daemons started in it. */
export class RbdLab {
  readonly net: NetLab;
  readonly ns: string;
  readonly cluster: CephCluster;
  readonly dir: string;
  readonly daemons: TestTarget[] = [];

  constructor(net: NetLab, ns: string, cluster: CephCluster, dir: string) {
    this.net = net;
    this.ns = ns;
    this.cluster = cluster;
    this.dir = dir;
  }

  /** `rbd:POOL/IMAGE[@SNAP]` for an image of the cluster's pool (or a POOL/IMAGE as is). */
  path(image: string): string {
    return `rbd:${image.includes("/") ? image : `${this.cluster.pool}/${image}`}`;
  }

  /** The TOML of a daemon serving `devices` on `targetIf`, its files under `dir`. */
  config(dir: string, targetIf: string, devices: RbdDeviceSpec[], options: DaemonOptions): string {
    const lines = [
      "[defaults]",
      `interfaces = ["${targetIf}"]`,
      `pid-file = "${dir}/ggaoed.pid"`,
      `control-socket = "${dir}/ggaoed.sock"`,
      `state-directory = "${dir}/state"`,
      "direct-io = false",
      `ceph-conf = "${this.cluster.conf}"`,
    ];
    if (options.defaults) lines.push(options.defaults);
    for (const d of devices) {
      lines.push(
        "",
        `[devices.${d.name}]`,
        `path = "${d.path ?? this.path(d.image ?? d.name)}"`,
        `shelf = ${d.shelf}`,
        `slot = ${d.slot}`,
      );
      if (d.extra) lines.push(d.extra);
    }
    return lines.join("\n") + "\n";
  }

  /**
   * Starts a daemon called `name` (its directory, its own veth pair) serving `devices`; waits
   * until it runs unless told not to.
   */
  async daemon(
    name: string,
    devices: RbdDeviceSpec[],
    options: DaemonOptions = {},
  ): Promise<TestTarget> {
    const dir = `${this.dir}/${name}`;
    Deno.mkdirSync(`${dir}/state`, { recursive: true });
    const [hostIf, targetIf] = await this.net.hostVethPair(this.ns, { mtu: options.mtu ?? 1500 });
    const t = new TestTarget(this.net, this.ns, hostIf, targetIf, dir, new Map());
    t.wrapper = options.wrapper ?? [];
    t.writeConfig(this.config(dir, targetIf, devices, options));
    this.daemons.push(t);
    t.start();
    if (options.waitReady ?? true) await t.waitForLog(/ggaoed is running/, 30_000);
    return t;
  }

  /** Rewrites a daemon's configuration (then SIGHUP it). */
  reconfigure(t: TestTarget, devices: RbdDeviceSpec[], options: DaemonOptions = {}): void {
    t.writeConfig(this.config(t.dir, t.targetIf, devices, options));
  }
}

/** Runs `body` with a fresh lab; prints the daemons' logs when it fails. */
export async function withRbdLab<T>(body: (lab: RbdLab) => Promise<T>): Promise<T> {
  const net = new NetLab();
  const dir = Deno.makeTempDirSync({ dir: "/var/tmp", prefix: "ggaoed-rbd-" });
  let lab: RbdLab | null = null;
  try {
    const ns = await net.namespace();
    return await withCephCluster({ netns: ns }, async (cluster) => {
      lab = new RbdLab(net, ns, cluster, dir);
      try {
        return await body(lab);
      } catch (e) {
        for (const t of lab.daemons) {
          console.error(`--- daemon ${t.dir} log ---\n${t.log}--- end ---`);
        }
        throw e;
      } finally {
        for (const t of lab.daemons) await t.close();
      }
    });
  } finally {
    await net.cleanup();
    Deno.removeSync(dir, { recursive: true });
  }
}

/** The counters of device `shared` on daemon `t` (`ggaoectl --json stats`). */
export function stats(t: TestTarget): Promise<Record<string, number>> {
  return t.ctl("--json", "stats", "shared").then((r) => {
    assert.equal(r.code, 0, r.stderr);
    return JSON.parse(r.stdout).devices[0].stats as Record<string, number>;
  });
}

/** What `ggaoectl --json show-rbd shared` says on daemon `t`. */
export async function showRbd(t: TestTarget): Promise<RbdDeviceInfo> {
  const r = await t.ctl("--json", "show-rbd", "shared");
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout).devices[0];
}

/** Polls `check` (every 20 ms) until it holds; returns the milliseconds it took. */
export async function until(
  what: string,
  boundMs: number,
  check: () => boolean | Promise<boolean>,
) {
  const started = performance.now();
  while (!(await check())) {
    if (performance.now() - started > boundMs) throw new Error(`${what}: not within ${boundMs} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
  return performance.now() - started;
}

/** One sector whose every byte is `fill`, tagged with its LBA in the first 4 bytes. */
export function sector(lba: number, fill: number): Uint8Array {
  const data = new Uint8Array(512).fill(fill);
  new DataView(data.buffer).setUint32(0, lba, true);
  return data;
}

/**
 * Reads `length` bytes at `offset` of an image (`write` undefined), or writes `write` there,
 * through librbd (one request, waited for with epoll on its eventfd); returns what was read.
 */
export async function rbdIo(
  client: RadosCluster,
  spec: ImageSpec,
  offset: number,
  length: number,
  write?: Uint8Array,
): Promise<Uint8Array> {
  const image = await client.openImage(spec);
  const efd = EventFd.open();
  const epoll = Epoll.open();
  const memory = Memory.allocate(length);
  try {
    epoll.add(efd.fd, EPOLLIN, 1);
    const aio = image.openAio(1, efd);
    if (write) memory.bytes.set(write.subarray(0, length));
    aio.prepareVector(0, write ? IOCB_CMD_PWRITEV : IOCB_CMD_PREADV, offset, 1);
    aio.setIovec(0, 0, memory, 0, length);
    aio.submit(new Int32Array([0]), 1);
    const deadline = performance.now() + 15_000;
    while (aio.reap(1) === 0) {
      if (performance.now() > deadline) throw new Error(`${image.label}: no completion in 15 s`);
      if (epoll.wait(0) > 0) efd.drain();
      else await new Promise((r) => setTimeout(r, 2));
    }
    assert.equal(aio.eventResult(0), length, `${image.label}: I/O at ${offset}`);
    return memory.bytes.slice();
  } finally {
    await image.closeAsync();
    memory.close();
    epoll.close();
    efd.close();
  }
}
