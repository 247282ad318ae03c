/**
 * The fault suite's laboratory: the real daemon in a target namespace with one or more links,
 * each link a veth pair whose other end sits in a switch namespace on a bridge of its own, and
 * one initiator namespace per link on the same bridge. Faults can then be done to the target's
 * interfaces (down, deleted and re-created, renamed, MTU, MAC) without taking the initiator's
 * interface with them (deleting one end of a veth pair deletes both).
 *
 * ```
 *   initiator ns k          switch ns                    target ns
 *   [ i<k> ] ---- veth ---- [ bridge k ] ---- veth ---- [ t<k> ]  ggaoed
 * ```
 *
 * The verifying load (`fixtures/load.ts`) runs in an initiator namespace as its own process;
 * {@link FaultLab.startLoad} gives a handle on it. Everything is removed afterwards: processes
 * killed by PID, namespaces (and with them every interface) deleted, files removed.
 *
 * @module
 */

import assert, { deepStrictEqual as assertEquals } from "node:assert/strict";
import { stopProcess } from "./command.ts";
import { NetLab } from "./netns.ts";
import { DAEMON_FLAGS, DENO, pattern, readFileRange, REPO, TestTarget } from "./target.ts";

/** A device of the lab's daemon. */
export interface LabDevice {
  name: string;
  shelf?: number;
  slot?: number;
  /** Size of a fresh sparse image in MiB (default 16), unless `path` is given. */
  sizeMiB?: number;
  path?: string;
  /** Extra TOML lines for its table. */
  extra?: string;
}

export interface LabOptions {
  mtu: number;
  /** `ring-buffer-size` in KiB; 0 = recvfrom/sendto. */
  ringKiB: number;
  devices?: LabDevice[];
  /** Target links (default 1). */
  links?: number;
  /** Extra TOML for [defaults]. */
  defaults?: string;
  /** The state directory (default: a directory in the lab's temporary directory). */
  stateDirectory?: string;
  /** `direct-io` of every device (default false: the page cache). */
  directIo?: boolean;
}

/** The lab's matrix: every fault runs at both MTUs, with and without packet rings. */
export const MATRIX: { mtu: number; ringKiB: number; label: string }[] = [
  { mtu: 1500, ringKiB: 4096, label: "MTU 1500, rings" },
  { mtu: 1500, ringKiB: 0, label: "MTU 1500, no rings" },
  { mtu: 9000, ringKiB: 4096, label: "MTU 9000, rings" },
  { mtu: 9000, ringKiB: 0, label: "MTU 9000, no rings" },
];

/** A running verifying load. */
export class Load {
  readonly child: Deno.ChildProcess;
  readonly seed: number;
  #text = "";
  readonly #reading: Promise<void>;

  constructor(child: Deno.ChildProcess, seed: number) {
    this.child = child;
    this.seed = seed;
    this.#reading = (async () => {
      const decoder = new TextDecoder();
      for await (const chunk of child.stdout) this.#text += decoder.decode(chunk, { stream: true });
    })();
  }

  /** Everything the load printed. */
  get output(): string {
    return this.#text;
  }

  /** Chunks verified so far. */
  get verified(): number {
    const all = [...this.#text.matchAll(/^ok (\d+)$/gm)];
    return all.length ? Number(all[all.length - 1][1]) : 0;
  }

  /** Requests that failed (and were retried). */
  get errors(): number {
    return (this.#text.match(/^error /gm) ?? []).length;
  }

  /** Waits until `more` further chunks are verified (throws after `timeoutMs`, or on corruption). */
  async progress(more: number, timeoutMs = 20000): Promise<void> {
    const goal = this.verified + more;
    const deadline = Date.now() + timeoutMs;
    while (this.verified < goal) {
      if (/^CORRUPT/m.test(this.#text)) throw new Error(`the load saw corruption:\n${this.#text}`);
      if (Date.now() > deadline) {
        throw new Error(
          `the load verified ${this.verified} chunks, waited for ${goal}; its output:\n${
            this.#text.split("\n").slice(-30).join("\n")
          }`,
        );
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /**
   * Stops the load (closes its stdin), checks that it never saw corruption and exited 0, and
   * returns the pass each chunk holds: `[lba, sectors, pass]` (pass -1: a write was cut short).
   */
  async stop(): Promise<{ verified: number; errors: number; chunks: [number, number, number][] }> {
    await this.child.stdin.close().catch(() => {});
    const status = await stopProcess(this.child, null, 30_000);
    await this.#reading;
    assert(!/^CORRUPT/m.test(this.#text), `the load saw corruption:\n${this.#text}`);
    assertEquals(status.code, 0, `the load failed:\n${this.#text}`);
    const done = /^done (\d+) (\d+)$/m.exec(this.#text);
    assert(done, `the load did not finish:\n${this.#text}`);
    const chunks = [...this.#text.matchAll(/^final (\d+) (\d+) (-?\d+)$/gm)].map((m) =>
      [Number(m[1]), Number(m[2]), Number(m[3])] as [number, number, number]
    );
    return { verified: Number(done[1]), errors: Number(done[2]), chunks };
  }
}

/** A daemon, its links and its initiators' namespaces. */
export class FaultLab {
  readonly net: NetLab;
  readonly options: LabOptions;
  readonly dir: string;
  /** Target namespace, and per link: its target interface name, initiator ns and interface. */
  targetNs = "";
  switchNs = "";
  readonly links: { target: string; initiatorNs: string; initiator: string; bridge: string }[] = [];
  target!: TestTarget;
  readonly images = new Map<string, string>();
  readonly #loads: Load[] = [];

  constructor(net: NetLab, options: LabOptions, dir: string) {
    this.net = net;
    this.options = options;
    this.dir = dir;
  }

  /** The daemon's log so far. */
  get log(): string {
    return this.target.log;
  }

  async setUp(): Promise<void> {
    const net = this.net;
    this.targetNs = await net.namespace();
    this.switchNs = await net.namespace();
    for (let k = 0; k < (this.options.links ?? 1); k++) {
      const initiatorNs = await net.namespace();
      const bridge = `br${k}`;
      await net.exec(this.switchNs, ["ip", "link", "add", bridge, "type", "bridge"], {
        check: true,
      });
      // Forward at once: no STP listening/learning delay on a fresh port.
      await net.exec(this.switchNs, [
        "ip",
        "link",
        "set",
        bridge,
        "type",
        "bridge",
        "stp_state",
        "0",
        "forward_delay",
        "0",
      ], {
        check: true,
      });
      await net.exec(this.switchNs, ["ip", "link", "set", bridge, "up"], { check: true });
      const [target] = await this.#plug(this.targetNs, k);
      const [initiator] = await this.#plug(initiatorNs, k);
      this.links.push({ target, initiatorNs, initiator, bridge });
    }
    for (const d of this.options.devices ?? [{ name: "disk1" }]) {
      if (d.path) {
        this.images.set(d.name, d.path);
        continue;
      }
      const path = `${this.dir}/${d.name}.img`;
      const f = Deno.openSync(path, { create: true, write: true });
      f.truncateSync((d.sizeMiB ?? 16) * 1024 * 1024);
      f.close();
      this.images.set(d.name, path);
    }
    Deno.mkdirSync(`${this.dir}/state`, { recursive: true });
    this.target = new TestTarget(
      this.net,
      this.targetNs,
      this.links[0].initiator,
      this.links[0].target,
      this.dir,
      this.images,
    );
    this.writeConfig();
    this.target.start();
    await this.target.waitForLog(/ggaoed is running/);
  }

  /**
   * Connects namespace `ns` to bridge `k` of the switch with a fresh veth pair (MTU of the lab);
   * returns [the end in `ns`, the end on the bridge].
   */
  async #plug(ns: string, k: number, name?: string): Promise<[string, string]> {
    const [inner, outer] = await this.net.vethPair(ns, this.switchNs, { mtu: this.options.mtu });
    await this.net.exec(this.switchNs, ["ip", "link", "set", outer, "master", `br${k}`], {
      check: true,
    });
    if (name && name !== inner) {
      await this.net.exec(ns, ["ip", "link", "set", inner, "down"], { check: true });
      await this.net.exec(ns, ["ip", "link", "set", inner, "name", name], { check: true });
      await this.net.exec(ns, ["ip", "link", "set", name, "up"], { check: true });
      return [name, outer];
    }
    return [inner, outer];
  }

  /** The daemon's configuration for `devices` (default: the lab's). */
  config(devices: LabDevice[] = this.options.devices ?? [{ name: "disk1" }]): string {
    const patterns = this.links.flatMap((l) => [l.target, `${l.target}x`]);
    const lines = [
      "[defaults]",
      `interfaces = [${patterns.map((p) => `"${p}"`).join(", ")}]`,
      `pid-file = "${this.dir}/ggaoed.pid"`,
      `control-socket = "${this.dir}/ggaoed.sock"`,
      `state-directory = "${this.options.stateDirectory ?? `${this.dir}/state`}"`,
      `direct-io = ${this.options.directIo ?? false}`,
      `ring-buffer-size = ${this.options.ringKiB}`,
    ];
    if (this.options.defaults) lines.push(this.options.defaults);
    devices.forEach((d, i) => {
      lines.push(
        "",
        `[devices.${d.name}]`,
        `path = "${this.images.get(d.name) ?? d.path}"`,
        `shelf = ${d.shelf ?? 0}`,
        `slot = ${d.slot ?? i + 1}`,
      );
      if (d.extra) lines.push(d.extra);
    });
    return lines.join("\n") + "\n";
  }

  writeConfig(devices?: LabDevice[]): void {
    this.target.writeConfig(this.config(devices));
  }

  /**
   * Starts a verifying load on link `link` against e`shelf`.`slot`, over `sectors` sectors from
   * `firstLba` (default: the first 8 MiB).
   */
  startLoad(
    options: {
      link?: number;
      shelf?: number;
      slot?: number;
      firstLba?: number;
      sectors?: number;
      seed?: number;
    } = {},
  ): Load {
    const link = this.links[options.link ?? 0];
    const seed = options.seed ?? 1 + this.#loads.length;
    const child = this.net.spawn(link.initiatorNs, [
      DENO,
      "run",
      ...DAEMON_FLAGS,
      `${REPO}lab/fixtures/load.ts`,
      link.initiator,
      String(options.shelf ?? 0),
      String(options.slot ?? 1),
      String(options.firstLba ?? 0),
      String(options.sectors ?? 16384),
      String(seed),
    ]);
    const load = new Load(child, seed);
    this.#loads.push(load);
    return load;
  }

  /**
   * Stops `load` and checks every chunk it acknowledged against the backing file of `device`
   * (or `image`: the file its writes went to, a view of a device with views).
   */
  async finishLoad(
    load: Load,
    device = "disk1",
    image = this.images.get(device)!,
  ): Promise<{ verified: number; errors: number }> {
    const r = await load.stop();
    let checked = 0;
    for (const [lba, sectors, pass] of r.chunks) {
      if (pass < 0) continue; // its last write was cut short
      const want = pass === 0
        ? new Uint8Array(sectors * 512)
        : pattern(sectors * 512, load.seed * 1000 + pass, lba);
      const got = readFileRange(image, lba * 512, sectors * 512);
      for (let i = 0; i < got.length; i++) {
        if (got[i] !== want[i]) {
          throw new Error(
            `${device}: sector ${
              lba + (i >> 9)
            } does not hold what the load last wrote there (pass ${pass})`,
          );
        }
      }
      checked++;
    }
    assert(checked > 0, "no chunk of the load could be checked");
    return { verified: r.verified, errors: r.errors };
  }

  /**
   * Runs `fixtures/ops.ts` (AoE state operations) from the initiator of `link` against
   * e`shelf`.`slot`; returns its JSON answer.
   */
  async ops(link: number, shelf: number, slot: number, ...args: string[]): Promise<
    {
      ok?: boolean;
      list?: string[];
      error?: number;
      sent?: number;
      replies?: number;
      errors?: number;
      results?: string[];
      retransmits?: number;
      bufferCount?: number;
      maxSectors?: number;
    }
  > {
    const l = this.links[link];
    const r = await this.net.exec(l.initiatorNs, [
      DENO,
      "run",
      ...DAEMON_FLAGS,
      `${REPO}lab/fixtures/ops.ts`,
      l.initiator,
      String(shelf),
      String(slot),
      ...args,
    ], { timeoutMs: 60000 });
    assertEquals(r.code, 0, `ops ${args.join(" ")}: ${r.stderr.slice(-2000)}`);
    return JSON.parse(r.stdout.trim().split("\n").pop()!);
  }

  /** The MAC address of the initiator's interface of link `link` (12 lower-case hex digits). */
  async initiatorMac(link: number): Promise<string> {
    const l = this.links[link];
    const r = await this.net.exec(l.initiatorNs, ["cat", `/sys/class/net/${l.initiator}/address`], {
      check: true,
    });
    return r.stdout.trim().replaceAll(":", "");
  }

  /** Runs a command in the target namespace (checked). */
  async inTarget(...command: string[]): Promise<void> {
    await this.net.exec(this.targetNs, command, { check: true });
  }

  /** `ggaoectl --json stats`: counters by device and interface name. */
  async stats(): Promise<
    { dev: Record<string, Record<string, number>>; iface: Record<string, Record<string, number>> }
  > {
    const r = await this.target.ctl("--json", "stats");
    assertEquals(r.code, 0, `ggaoectl stats: ${r.stderr}`);
    const j = JSON.parse(r.stdout);
    const dev: Record<string, Record<string, number>> = {};
    for (const d of j.devices) dev[d.name] = d.stats;
    const iface: Record<string, Record<string, number>> = {};
    for (const i of j.interfaces) iface[i.name] = i.stats;
    return { dev, iface };
  }

  /** The daemon process is alive and answers on its control socket. */
  async assertAlive(): Promise<void> {
    const child = this.target.process;
    assert(child !== null, "the daemon was stopped");
    const r = await this.target.ctl("stats");
    assertEquals(r.code, 0, `the daemon does not answer: ${r.stderr}\n${this.log}`);
  }

  /** Deletes target link `k`'s interface (and its switch end) and creates it again, same name. */
  async recreateTargetLink(k = 0): Promise<void> {
    const name = this.links[k].target;
    await this.inTarget("ip", "link", "delete", name);
    await this.#plug(this.targetNs, k, name);
  }

  async close(): Promise<void> {
    for (const l of this.#loads) {
      try {
        l.child.kill("SIGKILL");
      } catch { /* gone */ }
      await l.child.status.catch(() => {});
    }
    await this.target?.close();
  }
}

/** Runs `body` in a fresh lab; prints the daemon's log when it fails; removes everything. */
export async function withFaultLab<T>(
  options: LabOptions,
  body: (lab: FaultLab) => Promise<T>,
): Promise<T> {
  const net = new NetLab();
  const dir = Deno.makeTempDirSync({ dir: "/var/tmp", prefix: "ggaoed-fault-" });
  const lab = new FaultLab(net, options, dir);
  try {
    await lab.setUp();
    return await body(lab);
  } catch (e) {
    if (lab.target) console.error(`--- daemon log ---\n${lab.log}--- end of daemon log ---`);
    throw e;
  } finally {
    await lab.close();
    await net.cleanup();
    Deno.removeSync(dir, { recursive: true });
  }
}

/** Waits until `check()` holds, polling (throws after `timeoutMs`). */
export async function until(what: string, check: () => boolean, timeoutMs = 10000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
