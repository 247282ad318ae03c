/**
 * Several data-path workers (`workers = N`, docs/workers.md), end to end: the real daemon in a
 * network namespace, verifying loads and raw AoE frames from another namespace.
 *
 * - with two workers and four devices: two worker threads; one broadcast Query Config answered
 *   exactly once per device; I/O to all four at once, every byte verified; each device counts its
 *   own traffic; the interface counters are the sum over the workers, and no worker saw a frame
 *   for another's device (the socket filters);
 * - a reload under load that adds, removes and re-addresses devices: every device answers exactly
 *   once at its new address, the load goes on verified;
 * - the interface counters count each frame once, as one worker does: the same traffic (broadcasts,
 *   wildcards, runts, requests to addresses no device has on that link) gives the same counters
 *   with one worker and with two;
 * - the default count: one worker for one device, two (this machine's CPUs, or fewer) for three;
 * - a bad `workers` names the file, the key and the fix.
 */

import { assert, assertEquals } from "../helpers/assert.ts";
import { type FaultLab, type LabDevice, until, withFaultLab } from "../../lab/fault_lab.ts";
import { DAEMON_FLAGS, DENO, REPO, type TestTarget, withTarget } from "../../lab/target.ts";
import { header, RuntSender } from "../helpers/raw.ts";
import { AOE_CMD_ATA, AOE_CMD_CFG, ATA_CMD_ID_ATA } from "../../src/protocol/constants.ts";
import type { TargetInfo } from "../../src/initiator/mod.ts";

const OPTS = { sanitizeResources: false, sanitizeOps: false };
const FOUR: LabDevice[] = [1, 2, 3, 4].map((slot) => ({ name: `disk${slot}`, slot }));

/**
 * The names of the daemon's data-path worker threads, sorted: Deno names a Worker's thread
 * `worker-N` (N from 1, in creation order), and the daemon has no other Worker.
 */
function workerThreads(lab: FaultLab): string[] {
  const pid = Number(Deno.readTextFileSync(lab.target.pidPath).trim());
  const names: string[] = [];
  for (const e of Deno.readDirSync(`/proc/${pid}/task`)) {
    try {
      const comm = Deno.readTextFileSync(`/proc/${pid}/task/${e.name}/comm`).trim();
      if (/^worker-\d+$/.test(comm)) names.push(comm);
    } catch { /* the thread ended meanwhile */ }
  }
  return names.sort();
}

/** Answers to one broadcast (or addressed) Query Config, by "shelf.slot". */
async function answers(lab: FaultLab, link = 0): Promise<Record<string, number>> {
  const r = await lab.ops(link, 0xffff, 0xff, "count-answers", "1500");
  return (r as unknown as { answers: Record<string, number> }).answers;
}

Deno.test({
  ...OPTS,
  name:
    "workers = 2, four devices: two worker threads, one answer per device to a broadcast, I/O to all four at once verified, counters per device and summed per interface",
  fn: () =>
    withFaultLab(
      { mtu: 1500, ringKiB: 4096, defaults: "workers = 2", devices: FOUR },
      async (lab) => {
        assertEquals(workerThreads(lab), ["worker-1", "worker-2"]);
        assert(
          /2 data-path workers: worker 0 serves disk1, disk3; worker 1 serves disk2, disk4/.test(
            lab.log,
          ),
          lab.log,
        );
        assertEquals(await answers(lab), { "0.1": 1, "0.2": 1, "0.3": 1, "0.4": 1 });

        const loads = FOUR.map((d, i) => lab.startLoad({ slot: d.slot, seed: 11 + i }));
        for (const load of loads) await load.progress(10, 60_000);
        for (const [i, load] of loads.entries()) await lab.finishLoad(load, FOUR[i].name);
        const busy = await lab.stats();
        for (const d of FOUR) {
          const s = busy.dev[d.name];
          assert(s.write_cnt > 0 && s.read_cnt > 0, `${d.name}: ${JSON.stringify(s)}`);
        }

        // A known number of frames: the interface counters are the workers' sum, and each
        // frame reached only the worker of its device (none ignored).
        assertEquals((await lab.target.ctl("clear-stats")).code, 0);
        let sent = 0;
        for (const d of FOUR) {
          const r = await lab.ops(0, 0, d.slot!, "read-sectors", "0", "2", "64", "2", "128", "2");
          assertEquals(r.results, ["ok", "ok", "ok"], d.name);
          // The Query Config of find(), three one-frame reads (two sectors fit at MTU 1500).
          sent += 1 + 3 + (r.retransmits ?? 0);
        }
        assertEquals(await answers(lab), { "0.1": 1, "0.2": 1, "0.3": 1, "0.4": 1 });
        const after = await lab.stats();
        const ifaces = Object.values(after.iface);
        assertEquals(ifaces.length, 1, JSON.stringify(after.iface));
        const [i] = ifaces;
        // The broadcast reached both workers, counted once (by the catch-all); four answers.
        assertEquals(i.rx_cnt, sent + 1, JSON.stringify(i));
        assertEquals(i.ignored, 0, JSON.stringify(i));
        assertEquals(i.broadcast, 1, JSON.stringify(i));
        assertEquals(i.tx_cnt, sent + 4, JSON.stringify(i));
        for (const d of FOUR) {
          assertEquals(after.dev[d.name].read_cnt, 3, `${d.name}: ${JSON.stringify(after.dev)}`);
        }
        await lab.assertAlive();
      },
    ),
});

/** The interface counters that count frames (not receive passes or kicks), by interface. */
const FRAME_COUNTERS = [
  "rx_cnt",
  "rx_bytes",
  "tx_cnt",
  "tx_bytes",
  "dropped",
  "ignored",
  "broadcast",
  "tx_dropped",
  "link_errors",
  "wildcard_dropped",
];

/**
 * Known traffic against four devices (0.1 and 0.3 go to worker 0, 0.2 and 0.4 to worker 1 when
 * there are two), 0.4 visible on the second link only; returns the frame counters of each link
 * from zero, and the "shelf.slot"s that answered each frame.
 */
async function countTraffic(
  workers: number,
): Promise<{ links: Record<string, number>[]; answers: string[][] }> {
  const devices = [1, 2, 3, 4].map((slot) => ({
    name: `disk${slot}`,
    sizeMiB: 1,
    slot,
    extra: slot === 4 ? 'interfaces = ["SECOND_LINK"]' : undefined,
  }));
  return await withTarget({
    devices,
    defaults: `workers = ${workers}`,
    links: 2,
    beforeStart: (t) =>
      t.writeConfig(
        Deno.readTextFileSync(t.configPath).replace("SECOND_LINK", t.links[1].targetIf),
      ),
  }, async (t) => {
    // A fixed timeout: no retransmit may add a frame.
    const ini = t.initiator({ adaptive: false, timeoutMs: 500 });
    const disk = ini.find(0, 1, { waitMs: 3000 });
    while (ini.receiveRaw(300) !== null) { /* advertisements and late answers */ }
    assertEquals((await t.ctl("clear-stats")).code, 0);
    const runt = new RuntSender(t.hostIf);
    const answers: string[][] = [];
    let tag = 0x51000000;
    try {
      const send = (
        to: Partial<TargetInfo>,
        command: number,
        fields: { version?: number; length?: number } = {},
      ) => {
        const f = header(ini, { ...disk, ...to }, fields.length ?? 60, {
          command,
          tag: ++tag,
          version: fields.version,
        });
        if (command === AOE_CMD_ATA && f.length >= 28) [f[26], f[27]] = [1, ATA_CMD_ID_ATA];
        if (f.length < 60) runt.send(f);
        else ini.sendRaw(f);
        const got: string[] = [];
        for (let r = ini.receiveRaw(600); r !== null; r = ini.receiveRaw(300)) {
          assertEquals(new DataView(r.buffer).getUint32(20), tag, "an answer to another frame");
          got.push(`${(r[16] << 8) | r[17]}.${r[18]}`);
        }
        answers.push(got.sort());
      };
      const all = { mac: 0xffffffffffff };
      send({ ...all, shelf: 0xffff, slot: 0xff }, AOE_CMD_CFG); // 0.1 0.2 0.3: broadcast
      send({ ...all, shelf: 0, slot: 0xff }, AOE_CMD_CFG); // the same
      send({ ...all, shelf: 0xffff, slot: 2 }, AOE_CMD_CFG); // 0.2 (worker 1's): broadcast
      send({ ...all, shelf: 5, slot: 0xff }, AOE_CMD_CFG); // nobody: ignored
      send({ ...all, shelf: 0xffff, slot: 4 }, AOE_CMD_CFG); // 0.4 is not on this link: ignored
      send({ ...all, shelf: 0xffff, slot: 0xff }, AOE_CMD_ATA); // wildcard_dropped
      send({ ...all, shelf: 0xffff, slot: 0xff }, AOE_CMD_CFG, { version: 2 }); // ignored
      send({ ...all, shelf: 0xffff, slot: 0xff }, AOE_CMD_CFG, { length: 20 }); // runt: dropped
      for (const slot of [1, 2, 3]) send({ slot }, AOE_CMD_ATA); // each answers
      send({ slot: 9 }, AOE_CMD_CFG); // no device: ignored
      send({ slot: 9 }, AOE_CMD_ATA); // likewise
      send({ slot: 4 }, AOE_CMD_ATA); // 0.4 is on the second link only: ignored here
    } finally {
      runt.close();
    }
    return { links: await linkCounters(t), answers };
  });
}

/** The frame counters of each of `t`'s links, in link order. */
async function linkCounters(t: TestTarget): Promise<Record<string, number>[]> {
  const r = await t.ctl("--json", "stats");
  assertEquals(r.code, 0, r.stderr);
  const byName = new Map<string, Record<string, number>>();
  for (const i of JSON.parse(r.stdout).interfaces) byName.set(i.name, i.stats);
  return t.links.map((l) => {
    const all = byName.get(l.targetIf) ?? {};
    return Object.fromEntries(FRAME_COUNTERS.map((k) => [k, all[k]]));
  });
}

Deno.test({
  ...OPTS,
  name:
    "workers = 2: each frame counts once on its interface, as with one worker: a broadcast once in rx_cnt and broadcast, a request to an address no device has on that link once in ignored",
  fn: async () => {
    const two = await countTraffic(2);
    const [first, second] = two.links;
    assertEquals(two.answers, [
      ["0.1", "0.2", "0.3"],
      ["0.1", "0.2", "0.3"],
      ["0.2"],
      [],
      [],
      [],
      [],
      [],
      ["0.1"],
      ["0.2"],
      ["0.3"],
      [],
      [],
      [],
    ]);
    assertEquals(first.rx_cnt, 13, JSON.stringify(first));
    assertEquals(first.broadcast, 3, JSON.stringify(first));
    assertEquals(first.ignored, 6, JSON.stringify(first));
    assertEquals(first.wildcard_dropped, 1, JSON.stringify(first));
    assertEquals(first.dropped, 1, JSON.stringify(first));
    assertEquals(first.tx_cnt, 10, JSON.stringify(first));
    assertEquals(second.rx_cnt, 0, JSON.stringify(second));
    // One worker, the same traffic: the same counters on both links.
    const one = await countTraffic(1);
    assertEquals(two.answers, one.answers);
    assertEquals(two.links, one.links);
  },
});

Deno.test({
  ...OPTS,
  name:
    "workers = 2: a reload under load adds, removes and re-addresses devices; every device answers once, at its new address; the load stays verified",
  fn: () =>
    withFaultLab(
      { mtu: 1500, ringKiB: 4096, defaults: "workers = 2", devices: FOUR, links: 2 },
      async (lab) => {
        const load = lab.startLoad({ slot: 1 });
        await load.progress(10, 60_000);
        // disk2 (worker 1) and disk3 (worker 0) swap addresses, disk4 goes, disk5 comes (to the
        // worker with fewer devices: 1).
        const disk5 = `${lab.target.dir}/disk5.img`;
        Deno.writeFileSync(disk5, new Uint8Array(0));
        Deno.truncateSync(disk5, 4 * 1024 * 1024);
        const next: LabDevice[] = [
          { name: "disk1", slot: 1 },
          { name: "disk2", slot: 3 },
          { name: "disk3", slot: 2 },
          { name: "disk5", slot: 5, path: disk5 },
        ];
        for (let round = 0; round < 3; round++) {
          lab.writeConfig(round % 2 === 0 ? next : FOUR);
          const r = await lab.target.ctl("reload");
          assertEquals(r.code, 0, r.stdout + r.stderr);
          const want = round % 2 === 0
            ? { "0.1": 1, "0.2": 1, "0.3": 1, "0.5": 1 }
            : { "0.1": 1, "0.2": 1, "0.3": 1, "0.4": 1 };
          // From the second link: the load's replies on the first would crowd out the answers.
          // disk1, under the load, may drop a query while it holds its Buffer Count of
          // requests (queue_drop, as with one worker): asked again. No device ever answers
          // twice.
          let got: Record<string, number> = {};
          for (let ask = 0; ask < 5; ask++) {
            got = await answers(lab, 1);
            for (const [at, n] of Object.entries(got)) assertEquals(n, 1, `round ${round}: ${at}`);
            if (Object.keys(got).length === Object.keys(want).length) break;
          }
          assertEquals(got, want, `round ${round}`);
          await load.progress(5, 60_000);
        }
        // After the last round (`next`): disk2 is at 0.3, disk3 at 0.2, each answering once.
        const served = await lab.stats();
        assertEquals(Object.keys(served.dev).sort(), ["disk1", "disk2", "disk3", "disk5"]);
        const r2 = await lab.ops(1, 0, 3, "write-sectors", "0", "8");
        assertEquals(r2.results, ["ok"]);
        await until("disk2 holds the write at 0.3", () => {
          const f = Deno.openSync(lab.images.get("disk2")!);
          try {
            const b = new Uint8Array(512);
            f.readSync(b);
            return b.every((x) => x === 0x5a);
          } finally {
            f.close();
          }
        });
        await lab.finishLoad(load);
        await lab.assertAlive();
        assert(!/reloaded with errors|data path/.test(lab.log), lab.log);
        // The swap across workers went in two steps: neither address was served twice meanwhile.
        assert(
          /disk\/disk2: takes e0\.3 from another worker's device while disk3 takes its e0\.2: closed first/
            .test(lab.log),
          lab.log,
        );
      },
    ),
});

Deno.test({
  ...OPTS,
  name:
    "workers = 2: a worker whose every device failed to open idles; the daemon serves the other's",
  fn: async () => {
    // A file the daemon cannot open for writing although it passes the configuration check.
    const dir = Deno.makeTempDirSync({ dir: "/var/tmp", prefix: "ggaoed-idle-" });
    const immutable = `${dir}/immutable.img`;
    Deno.writeFileSync(immutable, new Uint8Array(0));
    Deno.truncateSync(immutable, 4 * 1024 * 1024);
    const chattr = (flag: string) =>
      new Deno.Command("chattr", { args: [flag, immutable] }).output();
    assert((await chattr("+i")).success, "chattr +i");
    try {
      await withFaultLab({
        mtu: 1500,
        ringKiB: 4096,
        defaults: "workers = 2",
        devices: [{ name: "disk1", slot: 1 }, { name: "stuck", slot: 2, path: immutable }],
      }, async (lab) => {
        assertEquals(workerThreads(lab), ["worker-1", "worker-2"]);
        assert(
          /ggaoed is running WITHOUT stuck \(1 of 2 devices not exported\)/.test(lab.log),
          lab.log,
        );
        assert(/worker 0 serves disk1; worker 1 serves nothing \(idle\)/.test(lab.log), lab.log);
        assertEquals(await answers(lab), { "0.1": 1 });
        const load = lab.startLoad({ slot: 1 });
        await load.progress(10, 60_000);
        await lab.finishLoad(load);
        // The count is fixed at start: a reload that changes it says so and keeps two.
        lab.target.writeConfig(lab.config().replace("workers = 2", "workers = 3"));
        await lab.target.ctl("reload");
        await lab.target.waitForLog(
          /workers changed from 2 to 3, but the number of workers is fixed at start: still 2; restart the daemon to apply it/,
        );
        assertEquals(workerThreads(lab), ["worker-1", "worker-2"]);
        await lab.assertAlive();
      });
    } finally {
      await chattr("-i");
      Deno.removeSync(dir, { recursive: true });
    }
  },
});

Deno.test({
  ...OPTS,
  name: "workers unset: one worker for one device; two for three devices on this machine",
  fn: async () => {
    const cpus = navigator.hardwareConcurrency;
    for (const [count, want] of [[1, 1], [3, Math.min(3, cpus)]]) {
      const devices = FOUR.slice(0, count);
      await withFaultLab({ mtu: 1500, ringKiB: 4096, devices }, async (lab) => {
        const threads = workerThreads(lab);
        // The test switch (GGAOED_TEST_WORKERS) sets workers: then the count is that.
        const forced = Number(Deno.env.get("GGAOED_TEST_WORKERS") ?? 0);
        assertEquals(threads.length, forced || want, `${count} device(s): ${threads}`);
        const expected: Record<string, number> = {};
        for (const d of devices) expected[`0.${d.slot}`] = 1;
        assertEquals(await answers(lab), expected);
      });
    }
  },
});

Deno.test({
  ...OPTS,
  name: "a bad workers value is refused at start, naming the file, the key and the fix",
  fn: async () => {
    const dir = Deno.makeTempDirSync({ dir: "/var/tmp", prefix: "ggaoed-workers-" });
    try {
      Deno.writeFileSync(`${dir}/d.img`, new Uint8Array(4096));
      const cases: [string, RegExp][] = [
        ["0", /0 is out of range 1-1024/],
        ['"x"', /expected a whole number, got the string "x"/],
      ];
      for (const [value, message] of cases) {
        const conf = `${dir}/ggaoed.conf`;
        Deno.writeTextFileSync(
          conf,
          `[defaults]\nworkers = ${value}\nstate-directory = "${dir}"\npid-file = "${dir}/p"\ncontrol-socket = "${dir}/s"\n\n[devices.d]\npath = "${dir}/d.img"\nshelf = 0\nslot = 1\n`,
        );
        const r = await new Deno.Command(DENO, {
          args: ["run", ...DAEMON_FLAGS, `${REPO}ggaoed.ts`, "-c", conf],
          stdout: "piped",
          stderr: "piped",
        }).output();
        const err = new TextDecoder().decode(r.stderr);
        assertEquals(r.code, 1, err);
        assert(err.includes(`${conf}: defaults.workers: `), err);
        assert(message.test(err), err);
        assert(err.includes("the configuration has 1 error(s)"), err);
        assert(/fix: .*workers/.test(err), err);
        assert(!Deno.readDirSync(dir).some((e) => e.name === "p"), "a pid file was written");
      }
    } finally {
      Deno.removeSync(dir, { recursive: true });
    }
  },
});
