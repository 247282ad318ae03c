/**
 * Soak: random faults from the fault suite's list against verifying loads, for N minutes.
 *
 *     sudo npx deno task soak [--minutes N] [--mtu 1500|9000] [--no-rings] [--seed S] [--json FILE]
 *
 * The daemon serves three devices in a throw-away lab (lab/fault_lab.ts: a target namespace,
 * a switch namespace with a bridge per link, an initiator namespace per link): disk1 (a file),
 * disk2 (a file on a FUSE file system that can fail sectors with EIO) and disk3 (a file), on two
 * links. Three loads write, read back and compare patterns all the time: on disk1 and disk3 over
 * link 1 and on disk1 over link 2. Every few seconds one fault, picked at random:
 *
 *   link-bounce     the target interface down, then up
 *   link-recreate   the target interface deleted and created again
 *   rename          the target interface renamed and back
 *   mtu             the target interface's MTU changed and back
 *   mac             the target interface's MAC changed
 *   reload-storm    SIGHUP every 100 ms for 2 s while disk3's settings change
 *   kill            SIGKILL, then a restart
 *   bad-sectors     bad sectors on disk2, read from link 2 (must answer UNC), then healed
 *   state-full      the state file system full while a reservation is set and released
 *   reserve-flood   2,000 identical Reserve/Release frames from link 2
 *
 * After each fault the loads must make progress again, and the daemon must answer ggaoectl. At
 * the end every chunk each load acknowledged is compared with the backing files. The summary
 * (and --json) gives the faults injected, the chunks verified, the retried requests and the
 * daemon's counters. Exit status 0 only if nothing was lost or corrupted. Needs root.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { type FaultLab, type Load, withFaultLab } from "../lab/fault_lab.ts";
import { withFaultyFile } from "../lab/storage_faults.ts";

const USAGE =
  `Usage: deno task soak [--minutes N] [--mtu 1500|9000] [--no-rings] [--seed S] [--json FILE]

Random faults (link down/up, interface deleted and re-created, renamed, MTU and MAC changes,
SIGHUP storms while a device changes, SIGKILL and restart, bad sectors, a full state file
system, Reserve/Release floods) against verifying loads, for N minutes (default 10). Exit 0 only
if every acknowledged byte is intact. Needs root.`;

const { values } = parseArgs({
  args: Deno.args,
  options: {
    minutes: { type: "string", default: "10" },
    mtu: { type: "string", default: "9000" },
    "no-rings": { type: "boolean", default: false },
    seed: { type: "string" },
    json: { type: "string" },
    help: { type: "boolean", short: "h" },
  },
});
if (values.help) {
  console.log(USAGE);
  Deno.exit(0);
}
const minutes = Number(values.minutes);
const mtu = Number(values.mtu);
if (!(minutes > 0) || !(mtu === 1500 || mtu === 9000)) {
  console.error(`soak: --minutes must be positive and --mtu 1500 or 9000\n\n${USAGE}`);
  Deno.exit(2);
}
let seed = Number(values.seed ?? Date.now() % 100000);
const random = () => {
  // xorshift32: a soak run can be repeated with --seed.
  seed ^= seed << 13;
  seed ^= seed >>> 17;
  seed ^= seed << 5;
  return (seed >>> 0) / 0x1_0000_0000;
};
const startSeed = seed;

const FAULTS = [
  "link-bounce",
  "link-recreate",
  "rename",
  "mtu",
  "mac",
  "reload-storm",
  "kill",
  "bad-sectors",
  "state-full",
  "reserve-flood",
] as const;
type Fault = typeof FAULTS[number];

const counts: Record<string, number> = Object.fromEntries(FAULTS.map((f) => [f, 0]));
const log = (m: string) => console.log(`[soak ${new Date().toISOString().slice(11, 19)}] ${m}`);

async function run(...args: string[]): Promise<void> {
  const r = await new Deno.Command(args[0], { args: args.slice(1) }).output();
  if (!r.success) throw new Error(`${args.join(" ")}: ${new TextDecoder().decode(r.stderr)}`);
}

/** Waits until every load verified `more` further chunks. */
async function progress(loads: Load[], more = 8): Promise<void> {
  await Promise.all(loads.map((l) => l.progress(more, 60000)));
}

async function inject(
  fault: Fault,
  lab: FaultLab,
  loads: Load[],
  f: { setBad(r: { sector: number; count: number }[]): void },
  stateDir: string,
): Promise<void> {
  const t0 = lab.links[0].target;
  switch (fault) {
    case "link-bounce":
      await lab.inTarget("ip", "link", "set", t0, "down");
      await new Promise((r) => setTimeout(r, 200 + random() * 800));
      await lab.inTarget("ip", "link", "set", t0, "up");
      break;
    case "link-recreate":
      await lab.recreateTargetLink(0);
      break;
    case "rename":
      for (const [a, b] of [[t0, `${t0}x`], [`${t0}x`, t0]]) {
        await lab.inTarget("ip", "link", "set", a, "down");
        await lab.inTarget("ip", "link", "set", a, "name", b);
        await lab.inTarget("ip", "link", "set", b, "up");
        await progress(loads, 2);
      }
      break;
    case "mtu": {
      const other = mtu === 1500 ? 9000 : 1500;
      await lab.inTarget("ip", "link", "set", t0, "mtu", String(other));
      await progress(loads, 2);
      await lab.inTarget("ip", "link", "set", t0, "mtu", String(mtu));
      break;
    }
    case "mac": {
      const b = () => Math.floor(random() * 256).toString(16).padStart(2, "0");
      await lab.inTarget(
        "ip",
        "link",
        "set",
        t0,
        "address",
        `02:${b()}:${b()}:${b()}:${b()}:${b()}`,
      );
      break;
    }
    case "reload-storm": {
      const pid = lab.target.process!.pid;
      for (let i = 0; i < 20; i++) {
        const delay = `max-delay = 0.00${1 + (i % 3)}`;
        lab.writeConfig([
          { name: "disk1" },
          { name: "disk2", slot: 2 },
          { name: "disk3", slot: 3, extra: i % 2 ? delay : "queue-length = 32" },
        ]);
        Deno.kill(pid, "SIGHUP");
        await new Promise((r) => setTimeout(r, 100));
      }
      break;
    }
    case "kill": {
      const running = () => (lab.log.match(/ggaoed is running/g) ?? []).length;
      const before = running();
      await lab.target.stop("SIGKILL");
      lab.target.start();
      const deadline = Date.now() + 30000;
      while (running() === before) {
        if (Date.now() > deadline) throw new Error(`the daemon did not restart:\n${lab.log}`);
        await new Promise((r) => setTimeout(r, 50));
      }
      break;
    }
    case "bad-sectors": {
      const sector = 20000 + Math.floor(random() * 10000);
      f.setBad([{ sector, count: 4 }]);
      const r = await lab.ops(1, 0, 2, "read-sectors", String(sector), "8", "1000", "8");
      if (JSON.stringify(r.results) !== JSON.stringify(["UNC", "ok"])) {
        throw new Error(`bad sectors answered ${JSON.stringify(r)}`);
      }
      f.setBad([]);
      break;
    }
    case "state-full": {
      const filler = `${stateDir}/filler`;
      const file = Deno.openSync(filler, { create: true, write: true });
      try {
        for (;;) file.writeSync(new Uint8Array(4096));
      } catch { /* full */ }
      file.close();
      const set = await lab.ops(1, 0, 3, "reserve-force", "self");
      if (set.error !== 3) {
        throw new Error(`a reservation on a full disk answered ${JSON.stringify(set)}`);
      }
      Deno.removeSync(filler);
      const clear = await lab.target.ctl("clear-reserve", "disk3");
      if (clear.code !== 0) {
        // A retry may still be pending; one more try once it ran.
        await new Promise((r) => setTimeout(r, 1500));
        const again = await lab.target.ctl("clear-reserve", "disk3");
        if (again.code !== 0) throw new Error(`clear-reserve: ${again.stderr}`);
      }
      break;
    }
    case "reserve-flood":
      await lab.ops(1, 0, 1, "flood-reserve", "2000");
      break;
  }
}

async function mountTmpfs(bytes: number): Promise<string> {
  const dir = Deno.makeTempDirSync({ dir: "/var/tmp", prefix: "ggaoed-soak-state-" });
  await run("mount", "-t", "tmpfs", "-o", `size=${bytes},mode=0700`, "tmpfs", dir);
  return dir;
}

const stateDir = await mountTmpfs(256 * 1024);
let failed = false;
const summary: Record<string, unknown> = {};
try {
  await withFaultyFile({ sizeBytes: 64 * 1024 * 1024 }, async (f) => {
    await withFaultLab({
      mtu,
      ringKiB: values["no-rings"] ? 0 : 4096,
      links: 2,
      stateDirectory: stateDir,
      devices: [{ name: "disk1" }, { name: "disk2", path: f.path, slot: 2 }, {
        name: "disk3",
        slot: 3,
      }],
    }, async (lab) => {
      const loads = [
        lab.startLoad({ link: 0, slot: 1, sectors: 16384, seed: 1 }),
        lab.startLoad({ link: 0, slot: 3, sectors: 8192, seed: 3 }),
        lab.startLoad({ link: 1, slot: 1, firstLba: 16384, sectors: 8192, seed: 2 }),
      ];
      await progress(loads);
      const end = Date.now() + minutes * 60_000;
      log(
        `seed ${startSeed}, ${minutes} min, MTU ${mtu}, ${
          values["no-rings"] ? "no rings" : "rings"
        }`,
      );
      while (Date.now() < end) {
        const fault = FAULTS[Math.floor(random() * FAULTS.length)];
        log(`fault: ${fault}`);
        await inject(fault, lab, loads, f, stateDir);
        counts[fault]++;
        await progress(loads);
        await lab.assertAlive();
        await new Promise((r) => setTimeout(r, 500 + random() * 2500));
      }
      const results = [];
      for (
        const [load, device] of [[loads[0], "disk1"], [loads[1], "disk3"], [
          loads[2],
          "disk1",
        ]] as const
      ) {
        results.push(await lab.finishLoad(load, device));
      }
      const stats = await lab.stats();
      Object.assign(summary, {
        seed: startSeed,
        minutes,
        mtu,
        rings: !values["no-rings"],
        faults: counts,
        faultsTotal: Object.values(counts).reduce((a, b) => a + b, 0),
        chunksVerified: results.reduce((a, r) => a + r.verified, 0),
        bytesVerified: results.reduce((a, r) => a + r.verified, 0) * 64 * 512,
        requestsRetried: results.reduce((a, r) => a + r.errors, 0),
        counters: stats,
      });
    });
  });
} catch (e) {
  failed = true;
  console.error(`soak: FAILED: ${(e as Error).stack ?? e}`);
} finally {
  await new Deno.Command("umount", { args: ["-l", stateDir] }).output();
  Deno.removeSync(stateDir, { recursive: true });
}
if (!failed) {
  const s = summary as {
    faultsTotal: number;
    chunksVerified: number;
    bytesVerified: number;
    requestsRetried: number;
  };
  log(
    `done: ${s.faultsTotal} faults (${
      Object.entries(counts).map(([k, v]) => `${k} ${v}`).join(", ")
    }), ${s.chunksVerified} chunks (${
      (s.bytesVerified / 2 ** 30).toFixed(2)
    } GiB written and read back) verified, ${s.requestsRetried} requests retried, nothing lost`,
  );
  if (values.json) Deno.writeTextFileSync(values.json, JSON.stringify(summary, null, 2) + "\n");
}
Deno.exit(failed ? 1 : 0);
