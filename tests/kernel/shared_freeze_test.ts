/**
 * Several hosts, one device, and a host that hangs and comes back: two ggaoed daemons serve
 * the same device (a Ceph RBD image, or one file) as e1.1 to the Linux aoe driver in a guest
 * with one NIC per daemon (tests/kernel/README.md, "A host that hangs").
 *
 * The guest writes pattern B over the whole device. Daemon b is stopped with SIGSTOP in the
 * middle of it (or of the read-back that follows): the driver resends b's frames to it for 10 s
 * (HARD_SCORN_SECS in rexmit_timer, drivers/block/aoe/aoecmd.c; aoe_deadsecs is left at its
 * default, 300 s, so that this is the bound), then moves them to daemon a, which completes the
 * write. The guest then writes pattern C over MiB 0 to 15, and only then is b resumed (SIGCONT)
 * with the guest's old requests still in its receive ring and in librbd. Nothing b does then
 * may land: every sector of MiB 0 to 15 must read C, in the guest and in `rbd export`.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { hostHas, kernelHarnessUnavailable, runGuest, withTapNamespace } from "./harness.ts";
import { Host, note, sleep, type Stats, type Timeline, waitForTraffic } from "./hosts.ts";
import {
  countWrongSectors,
  fileMd5,
  guestScripts,
  layeredPatternMd5,
  patternMd5,
} from "./scripts.ts";
import { type CephCluster, withCephCluster } from "../../lab/ceph.ts";

const skip = kernelHarnessUnavailable();
if (skip) console.warn(`SKIP tests/kernel/shared_freeze_test.ts: ${skip}`);
const cephSkip = skip ??
  (hostHas("ceph-mon") ? null : "needs the Ceph packages (scripts/install-deps.sh --test)");
if (!skip && cephSkip) console.warn(`SKIP tests/kernel/shared_freeze_test.ts (RBD): ${cephSkip}`);

const SIZE_MIB = 64;
const SIZE = SIZE_MIB * 1024 * 1024;
const OVERWRITE_MIB = 16;
const MTU = 9000;
const OLD = "patB";
const NEW = "patC";

interface Scenario {
  /** When b is frozen: after 3 MiB of the write, or after 1/8 of the read-back. */
  freezeDuring: "write" | "read";
  /** How long b stays frozen: until the guest has written C, or this many milliseconds. */
  freezeMs: "until-overwritten" | number;
  /** After the check, kill a and read MiB 0 to 15 again through b alone. */
  alone?: boolean;
}

interface Outcome {
  /** b's counters just before the freeze and once it has settled after the thaw. */
  bBefore: Stats | null;
  bAfter: Stats | null;
  aAfter: Stats | null;
  /** Bytes each daemon served during the guest's check read. */
  checkReadBytes: [number, number];
  /** Bytes b served during the read through it alone (scenario.alone). */
  aloneReadBytes: number;
  /** Longest time a's counters stood still while b was frozen. */
  survivorStallMs: number;
  /** From the freeze to a's rbd_fencings counting it (null: a never fenced b). */
  fencedAfterMs: number | null;
  results: Map<string, string>;
  exported: string | null;
  context: string;
  logs: [string, string];
}

/**
 * Runs the scenario against `a` and `b` (already configured, not started); `exportImage`
 * copies the device's bytes as the storage sees them to a host file.
 */
async function runScenario(
  ns: { netns: string; tap: string; taps: string[]; mtu: number },
  a: Host,
  b: Host,
  scenario: Scenario,
  exportTo: (path: string) => Promise<void>,
  dir: string,
): Promise<Outcome> {
  const timeline: Timeline = { started: performance.now(), events: [] };
  const phases = new Set<string>();
  let serial = "";
  let guestDone = false;
  let send: ((line: string) => Promise<void>) | null = null;
  try {
    await a.start();
    await b.start();
    note(timeline, "both daemons serve the device as e1.1");
    const guest = runGuest({
      ...ns,
      extraTaps: [ns.taps[1]],
      guestScript: guestScripts.layeredOverwrite("e1.1", SIZE_MIB, {
        paths: 2,
        oldSeed: OLD,
        newSeed: NEW,
        overwriteMiB: OVERWRITE_MIB,
        readBack: scenario.freezeDuring === "read",
        alone: scenario.alone,
      }),
      timeoutMs: 400_000,
      onStart: (s) => (send = s),
      onOutput: (text) => {
        serial += text;
        for (const m of serial.matchAll(/^@@RESULT phase (\w+)\r?\n/gm)) {
          if (phases.has(m[1])) continue;
          phases.add(m[1]);
          note(timeline, `guest: phase ${m[1]}`);
        }
      },
    }).finally(() => (guestDone = true));
    const phase = async (name: string) => {
      while (!phases.has(name) && !guestDone) await sleep(50);
      if (phases.has(name)) return;
      const out = (await guest).output.split("\n").slice(-40).join("\n");
      throw new Error(`the guest never reached phase ${name}:\n${out}`);
    };

    // Freeze b in the middle of the write (3 MiB in) or of the read-back (1/8 in).
    await phase(scenario.freezeDuring);
    const field = scenario.freezeDuring === "write" ? "write_bytes" : "read_bytes";
    const threshold = scenario.freezeDuring === "write" ? 3 << 20 : SIZE / 8;
    const before = await waitForTraffic([a, b], field, threshold, () => guestDone);
    const bBefore = before[1];
    const aField0 = before[0]?.[field] ?? 0;
    b.freeze();
    note(timeline, `b frozen (SIGSTOP): a had ${aField0} ${field}, b ${bBefore?.[field]}`);

    // While b is frozen: a's longest stall (b's frames waiting for the driver to give up).
    let survivorStallMs = 0;
    let fencedAfterMs: number | null = null;
    const frozenAt = performance.now();
    {
      let last = aField0;
      let since = performance.now();
      const thawAt = typeof scenario.freezeMs === "number"
        ? performance.now() + scenario.freezeMs
        : Infinity;
      while (!guestDone && !phases.has("settle") && performance.now() < thawAt) {
        await sleep(20);
        const sample = await a.stats();
        if (fencedAfterMs === null && (sample?.rbd_fencings ?? 0) > 0) {
          fencedAfterMs = performance.now() - frozenAt;
          note(timeline, "a fenced b");
        }
        const now = sample?.[field] ?? last;
        if (now > last) {
          survivorStallMs = Math.max(survivorStallMs, performance.now() - since);
          since = performance.now();
          last = now;
        }
      }
    }
    if (typeof scenario.freezeMs !== "number") await phase("settle");
    b.thaw();
    note(timeline, "b resumed (SIGCONT)");

    // b runs again: wait until its control socket answers and its counters stand still for
    // 2 s while the guest is idle (whatever it does now comes from before the freeze).
    await phase("settle");
    let bAfter: Stats | null = null;
    {
      const deadline = performance.now() + 90_000;
      let stillSince = performance.now();
      let last = "";
      while (performance.now() < deadline) {
        const s = await b.stats();
        const key = s ? `${s.read_cnt} ${s.write_cnt} ${s.ata_err}` : "";
        // A fenced host must have reconnected (a new Ceph client) before it can serve again.
        const log = b.log();
        const back = !/was fenced by another host/.test(log) ||
          /reconnected after being fenced/.test(log);
        if (s && key === last && back) {
          if (performance.now() - stillSince >= 2000) {
            bAfter = s;
            break;
          }
        } else {
          last = key;
          stillSince = performance.now();
        }
        await sleep(100);
      }
      assert.ok(bAfter, `b never settled after the thaw:\n${b.log().slice(-3000)}`);
    }
    note(timeline, `b settled: ${JSON.stringify(bAfter)}`);
    const aCheck0 = (await a.stats())?.read_bytes ?? 0;
    const bCheck0 = bAfter.read_bytes;
    await send!("go");
    let aAfter: Stats | null;
    let bEnd: Stats | null;
    let aloneReadBytes = 0;
    if (scenario.alone) {
      // b alone: a dies, and the guest reads the newer data again, all of it through b.
      await phase("alone");
      aAfter = await a.stats();
      bEnd = await b.stats();
      await a.crash();
      note(timeline, "a killed (SIGKILL): b alone");
      await send!("go");
      await phase("done");
      aloneReadBytes = ((await b.stats())?.read_bytes ?? 0) - (bEnd?.read_bytes ?? 0);
      note(timeline, `b read ${aloneReadBytes} bytes alone`);
    } else {
      await phase("done");
      aAfter = await a.stats();
      bEnd = await b.stats();
    }
    const run = await guest;
    const context = `\n--- timeline ---\n${timeline.events.join("\n")}\n` +
      `--- guest console (tail) ---\n${run.output.split("\n").slice(-60).join("\n")}` +
      `\n--- a ---\n${a.log().slice(-3000)}\n--- b ---\n${b.log().slice(-3000)}`;
    assert.equal(run.timedOut, false, `guest timed out${context}`);
    assert.deepEqual(run.guestErrors, [], context);
    assert.equal(run.exitCode, 0, `guest I/O failed${context}`);
    await a.stop();
    await b.stop();
    const exported = join(dir, "export.raw");
    await exportTo(exported);
    console.log(
      [
        `freeze during ${scenario.freezeDuring}, ${scenario.freezeMs} ms: ` +
        `wrong ${run.results.get("wrong_sectors")} (stale ${run.results.get("stale_sectors")})` +
        `, unexpected rsp ${run.results.get("unexpected_rsp")}, a's longest stall while b ` +
        `was frozen ${(survivorStallMs / 1000).toFixed(1)} s`,
        ...timeline.events.map((e) => `  ${e}`),
      ].join("\n"),
    );
    return {
      bBefore,
      bAfter,
      aAfter,
      checkReadBytes: [
        (aAfter?.read_bytes ?? 0) - aCheck0,
        (bEnd?.read_bytes ?? 0) - bCheck0,
      ],
      aloneReadBytes,
      survivorStallMs,
      fencedAfterMs,
      results: run.results,
      exported,
      context,
      logs: [a.log(), b.log()],
    };
  } finally {
    await a.stop();
    await b.stop();
  }
}

/** What every scenario must end with: C over MiB 0 to 15 and B after it, everywhere. */
async function assertNoStaleData(o: Outcome): Promise<void> {
  const r = o.results;
  assert.equal(r.get("checked_sectors"), String(OVERWRITE_MIB * 2048), o.context);
  assert.equal(r.get("wrong_sectors"), "0", `the guest read old data${o.context}`);
  const expected = layeredPatternMd5(SIZE_MIB, [
    { seed: OLD, from: 0, to: SIZE_MIB },
    { seed: NEW, from: 0, to: OVERWRITE_MIB },
  ]);
  assert.equal(r.get("md5"), expected, `the guest read other bytes${o.context}`);
  const onStorage = await countWrongSectors(o.exported!, OVERWRITE_MIB, NEW, OLD);
  assert.deepEqual(onStorage, { wrong: 0, stale: 0, first: [] }, o.context);
  assert.equal(await fileMd5(o.exported!), expected, `the storage holds other bytes${o.context}`);
}

/**
 * How the data path says it was stopped, by where the stop caught it: between turns (the gap
 * between clock readings), within a turn (draining a ring or submitting I/O), or only through
 * a frame's age (a stop between the last clock reading and the wait). A SIGSTOP lands at any
 * of these points, so each is a correct way for b to notice its freeze.
 */
const STALL_LOGS = [
  /the data path did not run for ([\d.]+) s \(longer than max-stall\)/,
  /the data path was held up for ([\d.]+) s within a turn \(longer than max-stall\)/,
  /a frame waited ([\d.]+) s in the receive queue \(longer than max-stall\)/,
];

/**
 * The frozen host noticed it: its log says how long its loop did not run and that it dropped
 * requests for that, its counters agree, and the host that ran throughout dropped nothing.
 * Returns the figures for the summary.
 */
function assertFreezeNoticed(o: Outcome): { gapS: number; dropped: number } {
  const gaps = STALL_LOGS.flatMap((re) =>
    [...o.logs[1].matchAll(new RegExp(re.source, "g"))].map((m) => Number(m[1]))
  );
  assert.ok(gaps.length > 0, `b did not log its stall${o.context}`);
  const gapS = Math.max(...gaps);
  assert.ok(gapS >= 10, `b's stall of ${gapS} s is shorter than the freeze${o.context}`);
  // The drops are logged with the stall ("dropped N request(s) received before it ran
  // again") or, where the stop caught a turn, per device ("N by stall in all").
  const logged = [
    ...o.logs[1].matchAll(/dropped (\d+) request\(s\) received before it ran again/g),
    ...o.logs[1].matchAll(/ (\d+) by stall in all/g),
  ].map((m) => Number(m[1]));
  assert.ok(logged.some((n) => n > 0), `b logged no drop${o.context}`);
  const dropped = o.bAfter?.stall_drop ?? 0;
  assert.ok(dropped > 0, `b dropped nothing when it woke up${o.context}`);
  assert.ok(dropped >= Math.max(...logged), o.context);
  assert.equal(o.aAfter?.stall_drop, 0, o.context);
  assert.equal(o.aAfter?.stale_drop, 0, o.context);
  // No error answers: what failed of b's work from before the freeze (librados times out
  // operations on its own clock when the process resumes) is not answered either.
  assert.equal(o.aAfter?.ata_err, 0, o.context);
  assert.equal(o.bAfter?.ata_err, 0, `b answered stale requests with ATA errors${o.context}`);
  console.log(
    `  b's loop did not run for ${gapS} s; it dropped ${dropped} request(s) for that, ` +
      `stale_drop ${o.bAfter?.stale_drop}, ata_err ${o.bAfter?.ata_err}, ` +
      `io_retries ${o.bAfter?.io_retries}`,
  );
  return { gapS, dropped };
}

/**
 * For RBD: a fenced b while it was frozen (its log and counters say so, and when), and b found
 * itself fenced when it ran again, dropped what librbd still held, and reconnected.
 */
function assertFenced(o: Outcome): void {
  const [aLog, bLog] = o.logs;
  const m = /has not refreshed its record for ([\d.]+) s .*fencing it/.exec(aLog);
  assert.ok(m, `a never fenced b${o.context}`);
  const took = /: fenced host .* in (\d+) ms/.exec(aLog);
  assert.ok(took, `a did not log the fencing${o.context}`);
  assert.equal(o.aAfter?.rbd_fencings, 1, o.context);
  assert.ok(o.fencedAfterMs !== null, `a's counters never showed the fencing${o.context}`);
  // The fence must be in force before the driver moves b's frames to a (10 s here).
  assert.ok(o.fencedAfterMs < 10_000, `a fenced b only after ${o.fencedAfterMs} ms${o.context}`);
  assert.match(bLog, /was fenced by another host/, o.context);
  assert.match(bLog, /reconnected after being fenced/, o.context);
  assert.equal(o.bAfter?.rbd_fenced, 1, o.context);
  assert.equal(o.bAfter?.rbd_fencings, 0, o.context);
  console.log(
    `  a fenced b ${(o.fencedAfterMs! / 1000).toFixed(1)} s after the freeze (b silent ` +
      `${m[1]} s; the blocklist took ${took[1]} ms); b then dropped ` +
      `${o.bAfter?.rbd_fenced_drops} request(s) refused as fenced, and reconnected`,
  );
}

function rbdHosts(dir: string, ns: { netns: string; taps: string[] }, cluster: CephCluster) {
  const device = ['path = "rbd:rbd/shared"', "shelf = 1", "slot = 1"];
  const defaults = [`ceph-conf = "${cluster.conf}"`];
  return [
    new Host("a", dir, ns.netns, ns.taps[0], device, defaults),
    new Host("b", dir, ns.netns, ns.taps[1], device, defaults),
  ] as const;
}

async function withRbd(
  scenario: Scenario,
  check: (o: Outcome) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ dir: "/var/tmp", prefix: "ggaoed-freeze-" });
  try {
    await withTapNamespace(MTU, async (ns) => {
      await withCephCluster({ netns: ns.netns }, async (cluster) => {
        await cluster.createImage("shared", { sizeBytes: SIZE });
        const [a, b] = rbdHosts(dir, ns, cluster);
        const o = await runScenario(
          ns,
          a,
          b,
          scenario,
          (path) => cluster.exportImage("shared", path),
          dir,
        );
        await check(o);
      });
    }, { taps: 2 });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const common = { sanitizeOps: false, sanitizeResources: false };

Deno.test({
  name: "RBD, two hosts: a host frozen mid-write past the driver's failover and resumed after " +
    "the guest wrote newer data over the same sectors writes nothing late",
  ignore: cephSkip !== null,
  ...common,
  fn: () =>
    withRbd({ freezeDuring: "write", freezeMs: "until-overwritten", alone: true }, async (o) => {
      await assertNoStaleData(o);
      assertFreezeNoticed(o);
      assertFenced(o);
      // Both hosts serve again: the check read went through both, and then b alone read all
      // of the newer data right.
      assert.ok(o.checkReadBytes[0] > 0 && o.checkReadBytes[1] > 0, o.context);
      assert.equal(o.results.get("alone_checked_sectors"), String(OVERWRITE_MIB * 2048));
      assert.equal(o.results.get("alone_wrong_sectors"), "0", o.context);
      assert.ok(o.aloneReadBytes >= OVERWRITE_MIB << 20, o.context);
    }),
});

Deno.test({
  name: "RBD, two hosts: a host frozen mid-read past the driver's failover returns no wrong " +
    "data, then writes nothing late over the newer data once resumed",
  ignore: cephSkip !== null,
  ...common,
  fn: () =>
    withRbd({ freezeDuring: "read", freezeMs: "until-overwritten" }, async (o) => {
      assert.equal(o.results.get("old_md5"), patternMd5(SIZE_MIB, OLD), o.context);
      await assertNoStaleData(o);
      assertFreezeNoticed(o);
      assertFenced(o);
      assert.ok(o.checkReadBytes[0] > 0 && o.checkReadBytes[1] > 0, o.context);
    }),
});

Deno.test({
  name: "RBD, two hosts: a host frozen for 1 s mid-write (well within the bound) loses " +
    "nothing and reports no error",
  ignore: cephSkip !== null,
  ...common,
  fn: () =>
    withRbd({ freezeDuring: "write", freezeMs: 1000 }, async (o) => {
      await assertNoStaleData(o);
      for (const s of [o.aAfter, o.bAfter]) {
        assert.equal(s?.ata_err, 0, o.context);
        assert.equal(s?.stale_drop, 0, o.context);
        assert.equal(s?.stall_drop, 0, o.context);
        assert.equal(s?.rbd_fencings, 0, o.context);
        assert.equal(s?.rbd_fenced, 0, o.context);
      }
      for (const log of o.logs) {
        for (const re of STALL_LOGS) assert.doesNotMatch(log, re);
        assert.doesNotMatch(log, /dropped unanswered/);
      }
      assert.ok(o.checkReadBytes[0] > 0 && o.checkReadBytes[1] > 0, o.context);
    }),
});

Deno.test({
  name: "one file, two hosts: a host frozen mid-write past the driver's failover and resumed " +
    "after the guest wrote newer data writes nothing late",
  ignore: skip !== null,
  ...common,
  fn: async () => {
    const dir = await Deno.makeTempDir({ dir: "/var/tmp", prefix: "ggaoed-freeze-" });
    try {
      const disk = join(dir, "disk.img");
      using f = await Deno.create(disk);
      await f.truncate(SIZE);
      await withTapNamespace(MTU, async (ns) => {
        const device = [`path = "${disk}"`, "shelf = 1", "slot = 1"];
        const a = new Host("a", dir, ns.netns, ns.taps[0], device);
        const b = new Host("b", dir, ns.netns, ns.taps[1], device);
        const o = await runScenario(
          ns,
          a,
          b,
          { freezeDuring: "write", freezeMs: "until-overwritten" },
          (path) => Deno.copyFile(disk, path),
          dir,
        );
        await assertNoStaleData(o);
        assertFreezeNoticed(o);
        assert.ok(o.checkReadBytes[0] > 0 && o.checkReadBytes[1] > 0, o.context);
      }, { taps: 2 });
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
