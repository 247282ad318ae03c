/**
 * Ceph RBD images served by ggaoed, end to end: a one-node cluster in a network namespace, two
 * daemons ("hosts") serving the same image as the same shelf.slot, each on its own veth pair;
 * the project's initiator and aoetools on the host ends; `rbd` (the cluster's own client) to
 * check what landed. One cluster for the whole file.
 */

import assert from "node:assert/strict";
import { pattern } from "../e2e/target.ts";
import { type Output, run } from "../helpers/command.ts";
import { firstDifference } from "../helpers/files.ts";
import type { TestTarget } from "../e2e/target.ts";
import { type RbdLab, withRbdLab } from "./lab.ts";
import { AoeError, AoeTimeoutError, AtaError, type Initiator } from "../../src/initiator/mod.ts";
import type { TargetInfo } from "../../src/initiator/mod.ts";
import { AOE_CFG_FORCE_SET, AOE_CFG_READ, AOE_DCMD_ADD } from "../../src/protocol/constants.ts";
import { formatMac } from "../../src/mac.ts";
import type { RbdDeviceInfo } from "../../src/control/types.ts";
import { POLL_MS } from "../../src/rbd/images.ts";

const MiB = 1024 * 1024;
const SHARED = { name: "shared", image: "shared", shelf: 1, slot: 1 };
/** A change made through one host must be seen by the others within this (measured below). */
const WINDOW_BOUND_MS = POLL_MS + 1000;

function stats(t: TestTarget, device: string) {
  return t.ctl("--json", "stats", device).then((r) => {
    assert.equal(r.code, 0, r.stderr);
    return JSON.parse(r.stdout).devices[0].stats as Record<string, number>;
  });
}

async function showRbd(t: TestTarget): Promise<RbdDeviceInfo[]> {
  const r = await t.ctl("--json", "show-rbd");
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout).devices;
}

/** Polls `check` (every 5 ms) until it holds; returns the milliseconds it took. */
async function until(what: string, boundMs: number, check: () => boolean | Promise<boolean>) {
  const started = performance.now();
  while (!(await check())) {
    const elapsed = performance.now() - started;
    if (elapsed > boundMs) throw new Error(`${what}: not within ${boundMs} ms`);
    await new Promise((r) => setTimeout(r, 5));
  }
  return performance.now() - started;
}

/** Whether an ATA read of sector 0 is answered (false: silence, the request was dropped). */
function answers(ini: Initiator, t: TargetInfo): boolean {
  try {
    ini.read(t, 0, 1);
    return true;
  } catch (e) {
    if (e instanceof AoeTimeoutError) return false;
    throw e;
  }
}

/** Runs a peer tool to completion, bounded; the test judges its exit status. */
function tool(args: string[]): Promise<Output> {
  return run(args, { check: false, timeoutMs: 20_000 });
}

/** Measured windows, printed at the end (README figures). */
const measured: string[] = [];

Deno.test({
  name: "Ceph RBD images served from two hosts at once",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async (t) => {
    await withRbdLab(async (lab) => {
      console.log(`  cluster up in ${lab.cluster.bringUpMs} ms`);
      await lab.cluster.createImage("shared", { sizeBytes: 16 * MiB });
      const a = await lab.daemon("a", [SHARED]);
      const b = await lab.daemon("b", [SHARED]);
      await servingSteps(t, lab, a, b);
      await stateSteps(t, lab, a, b);
      await imageSteps(t, lab, a, b);
      await t.step("two hosts alive and connected never fence each other", async () => {
        // Both served the image under load for every step above (tens of seconds).
        for (const d of [a, b]) {
          const s = await stats(d, "shared");
          assert.equal(s.rbd_fencings, 0, d.log);
          assert.equal(s.rbd_fenced, 0, d.log);
          assert.doesNotMatch(d.log, /fencing it|was fenced/);
        }
      });
      await reloadSteps(t, lab, a, b);
      await failureSteps(t, lab);
      if (measured.length) console.log(measured.map((m) => `  ${m}`).join("\n"));
    });
  },
});

async function servingSteps(t: Deno.TestContext, lab: RbdLab, a: TestTarget, b: TestTarget) {
  await t.step(
    "what one host writes, the other reads back at once, and rbd export has it; aoeping finds both",
    async () => {
      const ia = a.initiator();
      const ib = b.initiator();
      const ta = ia.find(1, 1);
      const tb = ib.find(1, 1);
      assert.equal(ia.identify(ta).sectors, 16 * MiB / 512);
      assert.equal(ib.identify(tb).sectors, 16 * MiB / 512);
      const data = pattern(4 * MiB, 7);
      ia.writeRange(ta, 2048, data);
      const back = ib.readRange(tb, 2048, data.length / 512);
      assert.equal(firstDifference(back, data), -1, "read through b after the write through a");
      const file = `${lab.dir}/shared.raw`;
      await lab.cluster.exportImage("shared", file);
      const exported = await Deno.readFile(file);
      assert.equal(
        firstDifference(exported.subarray(2048 * 512, 2048 * 512 + data.length), data),
        -1,
        "rbd export",
      );
      for (const t of [a, b]) {
        const ping = await tool(["aoeping", "-s", "5", "1", "1", t.hostIf]);
        assert.equal(ping.code, 0, ping.stderr + ping.stdout);
      }
      const sa = await stats(a, "shared");
      const sb = await stats(b, "shared");
      assert.ok(sa.write_bytes >= data.length, JSON.stringify(sa));
      assert.ok(sb.read_bytes >= data.length, JSON.stringify(sb));
      assert.equal(sa.ata_err + sb.ata_err, 0);
    },
  );
}

/** The AoE state lives in the image's metadata: a change through one host reaches the other. */
async function stateSteps(t: Deno.TestContext, lab: RbdLab, a: TestTarget, b: TestTarget) {
  const spec = `${lab.cluster.pool}/shared`;
  const meta = async (key: string) =>
    (await lab.cluster.rbd(["image-meta", "list", "--format", "json", spec]) &&
      JSON.parse(await lab.cluster.rbd(["image-meta", "list", "--format", "json", spec]))[
        key
      ]) as string | undefined;

  await t.step(
    "aoecfg sets the config string through one host; the other answers with it within the poll interval; it is in the image's metadata",
    async () => {
      const ib = b.initiator({ timeoutMs: 100, retries: 2 });
      const tb = ib.find(1, 1);
      const STRING = "cluster=ceph%1 node=7";
      const set = await tool(["aoecfg", "-t", "2", "-c", "fset", "-s", STRING, "1", "1", a.hostIf]);
      assert.equal(set.code, 0, set.stderr + set.stdout);
      assert.equal(set.stdout.trim(), STRING);
      const ms = await until(
        "b answers with the new config string",
        WINDOW_BOUND_MS,
        () => ib.queryConfig(tb, AOE_CFG_READ)?.config === STRING,
      );
      measured.push(`config string set through a, answered by b after ${ms.toFixed(0)} ms`);
      assert.equal(await meta("ggaoed.config"), "cluster=ceph%251 node=7");
      const read = await tool(["aoecfg", "-t", "2", "1", "1", b.hostIf]);
      assert.equal(read.stdout.trim(), STRING, read.stderr);
      const shown = await b.ctl("show-config", "shared");
      assert.match(shown.stdout, /cluster=ceph%1 n/);
      // A config string set through b with force set is what a answers next.
      ib.queryConfig(tb, AOE_CFG_FORCE_SET, "moved");
      const ia = a.initiator();
      const ta = ia.find(1, 1);
      await until(
        "a answers with b's string",
        WINDOW_BOUND_MS,
        () => ia.queryConfig(ta, AOE_CFG_READ)?.config === "moved",
      );
    },
  );

  await t.step(
    "a MAC Mask List edit through one host makes the other drop the hosts it leaves out; ggaoectl clear-macmask on the other lifts it everywhere",
    async () => {
      const ia = a.initiator();
      const ib = b.initiator({ timeoutMs: 50, retries: 1 });
      const ta = ia.find(1, 1);
      const tb = ib.find(1, 1);
      assert.ok(answers(ib, tb));
      const edit = ia.macMaskEdit(ta, [{ dcmd: AOE_DCMD_ADD, mac: ia.mac }]);
      assert.equal(edit.merror, 0);
      const ms = await until("b drops ib's requests", WINDOW_BOUND_MS, () => !answers(ib, tb));
      measured.push(`MAC Mask List edited through a, enforced by b after ${ms.toFixed(0)} ms`);
      assert.equal(await meta("ggaoed.mac_mask"), formatMac(ia.mac));
      const shown = await b.ctl("--json", "show-macmask", "shared");
      assert.deepEqual(JSON.parse(shown.stdout).devices[0].macs, [formatMac(ia.mac)]);
      const cleared = await b.ctl("clear-macmask", "shared");
      assert.equal(cleared.code, 0, cleared.stderr);
      assert.ok(answers(ib, tb), "b serves ib again at once");
      assert.equal(await meta("ggaoed.mac_mask"), "");
      await until(
        "a's list is empty",
        WINDOW_BOUND_MS,
        () => ia.macMaskRead(ta).directives.length === 0,
      );
    },
  );

  await t.step(
    "a reservation taken through one host refuses the others' writes through the other host; released, they go through",
    async () => {
      const ia = a.initiator();
      const ib = b.initiator();
      const ta = ia.find(1, 1);
      const tb = ib.find(1, 1);
      assert.deepEqual(ia.reserveSet(ta, [ia.mac]), [ia.mac]);
      const ms = await until("b refuses ib's write", WINDOW_BOUND_MS, () => {
        try {
          ib.write(tb, 0, new Uint8Array(512));
          return false;
        } catch (e) {
          if (e instanceof AoeError && e.code === 6) return true;
          throw e;
        }
      });
      measured.push(`reservation taken through a, enforced by b after ${ms.toFixed(0)} ms`);
      assert.equal(await meta("ggaoed.reserve"), formatMac(ia.mac));
      assert.deepEqual(ib.reserveRead(tb), [ia.mac]);
      assert.deepEqual(ia.reserveSet(ta, []), []);
      await until("b takes ib's write again", WINDOW_BOUND_MS, () => {
        try {
          ib.write(tb, 0, new Uint8Array(512));
          return true;
        } catch (e) {
          if (e instanceof AoeError && e.code === 6) return false;
          throw e;
        }
      });
    },
  );

  await t.step(
    "a damaged value left in the metadata by another writer is ignored with a warning",
    async () => {
      await lab.cluster.rbd(["image-meta", "set", spec, "ggaoed.reserve", "not-a-mac"]);
      await b.waitForLog(
        /disk\/shared: ignoring ggaoed\.reserve of rbd:rbd\/shared: 'not-a-mac' is not a MAC address/,
        5000,
      );
      const ib = b.initiator();
      assert.deepEqual(ib.reserveRead(ib.find(1, 1)), []);
      await lab.cluster.rbd(["image-meta", "remove", spec, "ggaoed.reserve"]);
    },
  );

  await t.step(
    "ggaoectl show-rbd: the image, its cluster and features, and both hosts from the metadata",
    async () => {
      const [d] = await showRbd(a);
      assert.equal(d.name, "shared");
      assert.equal(d.image, `rbd:${spec}`);
      assert.deepEqual(d.features, ["layering"]);
      assert.equal(d.size, 16 * MiB);
      assert.equal(d.cluster.conf, lab.cluster.conf);
      assert.equal(d.cluster.user, "admin");
      assert.match(d.cluster.fsid, /^[0-9a-f-]{36}$/);
      assert.equal(d.prefix, "ggaoed.");
      assert.equal(d.pollError, null);
      assert.equal(d.hosts.length, 2, JSON.stringify(d.hosts));
      const self = d.hosts.find((h) => h.self)!;
      const other = d.hosts.find((h) => !h.self)!;
      assert.equal(self.id, `${Deno.hostname()}:${a.socketPath}`);
      assert.equal(other.id, `${Deno.hostname()}:${b.socketPath}`);
      for (const [h, tgt] of [[self, a], [other, b]] as const) {
        assert.equal(h.target, "e1.1");
        assert.equal(h.device, "shared");
        assert.equal(h.stale, false);
        assert.equal(h.interfaces.length, 1);
        assert.equal(h.interfaces[0].name, tgt.targetIf);
        assert.match(h.interfaces[0].mac, /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/);
      }
      const text = await a.ctl("show-rbd");
      assert.match(text.stdout, /^Device shared: rbd:rbd\/shared, 16 MiB$/m);
      assert.match(text.stdout, /features {2}layering$/m);
      assert.match(text.stdout, /hosts {5}2$/m);
    },
  );
}

/** Sizes, snapshots, features, reload, FLUSH. */
async function imageSteps(t: Deno.TestContext, lab: RbdLab, a: TestTarget, b: TestTarget) {
  await t.step("rbd resize is seen by both hosts within the poll interval", async () => {
    const ia = a.initiator();
    const ib = b.initiator();
    const ta = ia.find(1, 1);
    const tb = ib.find(1, 1);
    await lab.cluster.resizeImage("shared", 24 * MiB);
    const ms = await until(
      "both report 24 MiB",
      WINDOW_BOUND_MS + 1000,
      () =>
        ia.identify(ta).sectors === 24 * MiB / 512 && ib.identify(tb).sectors === 24 * MiB / 512,
    );
    measured.push(`rbd resize seen by both hosts after ${ms.toFixed(0)} ms`);
    // The new sectors are readable and writable.
    const data = pattern(MiB, 9, 20 * MiB / 512);
    ia.writeRange(ta, 20 * MiB / 512, data);
    assert.equal(firstDifference(ib.readRange(tb, 20 * MiB / 512, MiB / 512), data), -1);
    await a.waitForLog(/disk\/shared: New size 24 MiB/);
  });
}

/** A device that holds one file, for daemons that must keep serving without their RBD device. */
function fileDevice(lab: RbdLab, name: string, shelf: number, slot: number) {
  const path = `${lab.dir}/${name}.img`;
  Deno.writeFileSync(path, new Uint8Array(MiB));
  return { name, path, shelf, slot };
}

async function moreImageSteps(t: Deno.TestContext, lab: RbdLab, a: TestTarget) {
  const c = lab.cluster;
  await c.createImage("cached", { sizeBytes: 4 * MiB });
  await c.createImage("locked", { sizeBytes: 4 * MiB, features: ["layering", "exclusive-lock"] });
  const ia = a.initiator();
  const ta = ia.find(1, 1);
  const before = pattern(64 * 1024, 21);
  ia.writeRange(ta, 0, before);
  await c.createSnapshot("shared", "s1");
  ia.writeRange(ta, 0, pattern(64 * 1024, 22));
  const d = await lab.daemon("c", [
    {
      name: "cached",
      image: "cached",
      shelf: 2,
      slot: 1,
      // librbd's cache in write-back mode, dirty data kept 30 s: only FLUSH makes it durable.
      extra: 'ceph-options = { rbd_cache = "true", rbd_cache_policy = "writeback", ' +
        'rbd_cache_writethrough_until_flush = "false", rbd_cache_max_dirty_age = "30" }',
    },
    { name: "snap", image: "shared@s1", shelf: 1, slot: 2 },
    { name: "locked", image: "locked", shelf: 2, slot: 2 },
    { name: "locked-ro", image: "locked", shelf: 2, slot: 3, extra: "read-only = true" },
  ]);
  const ini = d.initiator();

  await t.step(
    "FLUSH CACHE is rbd_aio_flush: with librbd's write-back cache (ceph-options) a write reaches the cluster only with it",
    async () => {
      const tc = ini.find(2, 1);
      const data = pattern(64 * 1024, 31);
      ini.writeRange(tc, 0, data);
      const file = `${lab.dir}/cached.raw`;
      await c.exportImage("cached", file);
      assert.ok((await Deno.readFile(file)).subarray(0, data.length).every((x) => x === 0));
      assert.equal(ini.flush(tc) & 0x01, 0, "FLUSH CACHE succeeds");
      await Deno.remove(file);
      await c.exportImage("cached", file);
      assert.equal(firstDifference((await Deno.readFile(file)).subarray(0, data.length), data), -1);
    },
  );

  await t.step(
    "a snapshot is served read-only with its own bytes; its state and host record are kept apart",
    async () => {
      const ts = ini.find(1, 2);
      assert.equal(firstDifference(ini.readRange(ts, 0, before.length / 512), before), -1);
      assert.throws(() => ini.write(ts, 0, new Uint8Array(512)), AtaError);
      await d.waitForLog(/disk\/snap: .*path 'rbd:rbd\/shared@s1' .* opened R\/O, through librbd/);
      const info = (await showRbd(d)).find((x) => x.name === "snap")!;
      assert.equal(info.prefix, "ggaoed@s1.");
      assert.equal(info.readOnly, true);
      const keys = Object.keys(
        JSON.parse(await c.rbd(["image-meta", "list", "--format", "json", "rbd/shared"])),
      );
      assert.ok(keys.includes(`ggaoed@s1.host.${Deno.hostname()}:${d.socketPath}`), `${keys}`);
    },
  );

  await t.step(
    "an image with exclusive-lock served read-write is warned about; read-only it is not",
    () => {
      assert.match(d.log, /disk\/locked: rbd:rbd\/locked has the exclusive-lock feature/);
      assert.doesNotMatch(d.log, /disk\/locked-ro: .*exclusive-lock feature/);
      const tl = ini.find(2, 2);
      ini.write(tl, 0, new Uint8Array(512).fill(1));
      assert.equal(ini.read(ini.find(2, 3), 0, 1)[0], 1);
    },
  );

  await t.step(
    "a read-only export opens the image read-only: no header watch of its own; writes refused",
    async () => {
      // "locked" (read-write) and "locked-ro" share d's connection and metadata handle: the
      // handle and the read-write open each watch the header; a read-only open does not.
      const status = JSON.parse(
        await c.rbd(["status", "--format", "json", `${c.pool}/locked`]),
      ) as { watchers: { address: string }[] };
      assert.equal(status.watchers.length, 2, JSON.stringify(status));
      const info = await d.ctl("--json", "show-rbd", "locked-ro");
      const client = JSON.parse(info.stdout).devices[0].client as string;
      for (const w of status.watchers) assert.equal(w.address, client, JSON.stringify(status));
      const tro = ini.find(2, 3);
      assert.throws(() => ini.write(tro, 0, new Uint8Array(512)), AtaError);
    },
  );

  await t.step(
    "devices with the same ceph-conf, ceph-user and ceph-options share one cluster connection",
    () => {
      // Four devices, two sets of settings ("cached" has its own options): two librados
      // connections, each with its messenger threads (msgr-worker-0, -1, -2).
      const pid = d.process!.pid;
      const names = [...Deno.readDirSync(`/proc/${pid}/task`)].map((task) => {
        try {
          return Deno.readTextFileSync(`/proc/${pid}/task/${task.name}/comm`).trim();
        } catch {
          return ""; // exited meanwhile
        }
      });
      assert.equal(names.filter((n) => n === "msgr-worker-0").length, 2, names.join(" "));
    },
  );

  await t.step("check-config opens RBD images and prints their features", async () => {
    const out = await lab.net.exec(lab.ns, [
      Deno.execPath(),
      "run",
      "--allow-all",
      new URL("../../ggaoed.ts", import.meta.url).pathname,
      "check-config",
      "-c",
      d.configPath,
    ], { timeoutMs: 30_000 });
    assert.equal(out.code, 0, out.stderr + out.stdout);
    assert.match(
      out.stdout,
      /e2\.2 {2}locked {2}rbd:rbd\/locked \(4194304 bytes, features layering, exclusive-lock\)\n {4}warning: exclusive-lock and read-write/,
    );
    assert.match(out.stdout, /e1\.2 {2}snap {2}rbd:rbd\/shared@s1 \(read-only\) \(25165824 bytes/);
  });

  await t.step("a daemon that stops takes its host records out of the images", async () => {
    const key = `ggaoed@s1.host.${Deno.hostname()}:${d.socketPath}`;
    const keys = async () =>
      Object.keys(
        JSON.parse(await c.rbd(["image-meta", "list", "--format", "json", "rbd/shared"])),
      );
    assert.ok((await keys()).includes(key));
    const status = await d.stop();
    assert.equal(status.code, 0);
    assert.ok(!(await keys()).includes(key), "the record is gone");
  });
}

/** Reload: a changed RBD device is reopened while it serves; a removed one leaves the image. */
async function reloadSteps(t: Deno.TestContext, lab: RbdLab, a: TestTarget, b: TestTarget) {
  await moreImageSteps(t, lab, a);
  const hostKeys = async () =>
    Object.keys(
      JSON.parse(await lab.cluster.rbd(["image-meta", "list", "--format", "json", "rbd/shared"])),
    ).filter((k) => k.startsWith("ggaoed.host."));

  await t.step("a reload with new settings reopens the image; I/O goes on", async () => {
    lab.reconfigure(a, [{ ...SHARED, extra: "queue-length = 32" }]);
    const reload = await a.ctl("reload");
    assert.equal(reload.code, 0, reload.stderr);
    await a.waitForLog(/disk\/shared: reopened with the new settings/);
    const ia = a.initiator();
    const ta = ia.find(1, 1);
    assert.equal(ta.bufferCount, 32);
    const data = pattern(MiB, 41);
    ia.writeRange(ta, 4096, data);
    assert.equal(firstDifference(ia.readRange(ta, 4096, MiB / 512), data), -1);
    assert.equal((await hostKeys()).length, 2);
  });

  await t.step("a device removed by a reload takes its host record out of the image", async () => {
    lab.reconfigure(a, [fileDevice(lab, "plain", 3, 9)]);
    const reload = await a.ctl("reload");
    assert.equal(reload.code, 0, reload.stderr);
    await until("a's record is gone", 5000, async () => (await hostKeys()).length === 1);
    assert.deepEqual(await hostKeys(), [`ggaoed.host.${Deno.hostname()}:${b.socketPath}`]);
    await until("b shows one host", 5000, async () => (await showRbd(b))[0].hosts.length === 1);
  });
}

/** An unreachable cluster or a missing librbd: said clearly, and the other devices serve on. */
async function failureSteps(t: Deno.TestContext, lab: RbdLab) {
  await t.step(
    "an unreachable cluster fails the RBD device within client_mount_timeout, saying what to check, while the file device serves on unhindered",
    async () => {
      // A monitor address nothing listens on, inside the lab's namespace.
      const conf = `${lab.dir}/unreachable.conf`;
      Deno.writeTextFileSync(conf, "[global]\nmon host = 127.0.0.1:3\n");
      const d = await lab.daemon("unreachable", [
        fileDevice(lab, "local", 4, 1),
        { name: "far", image: "shared", shelf: 4, slot: 2, extra: `ceph-conf = "${conf}"` },
      ], { waitReady: false });
      await d.waitForLog(/disk\/local: .* opened/);
      const ini = d.initiator({ timeoutMs: 200, retries: 3 });
      const tl = ini.find(4, 1, { waitMs: 3000 });
      // The worker keeps serving while the main thread waits for the monitor.
      let worst = 0;
      let reads = 0;
      while (!/ggaoed is running/.test(d.log)) {
        const started = performance.now();
        ini.read(tl, 0, 1);
        worst = Math.max(worst, performance.now() - started);
        reads++;
        await new Promise((r) => setTimeout(r, 20));
        assert.ok(reads < 2000, "the daemon never finished starting");
      }
      measured.push(
        `while an RBD connect waited 5 s: ${reads} reads, the slowest ${worst.toFixed(1)} ms`,
      );
      assert.ok(reads > 50, `${reads} reads`);
      assert.ok(worst < 200, `a read took ${worst.toFixed(0)} ms`);
      assert.match(
        d.log,
        /disk\/far: rbd:rbd\/shared: rados_connect\(client\.admin, .*unreachable\.conf\): ETIMEDOUT .*no monitor answered within client_mount_timeout \(5 s\): check that 'mon host'/,
      );
      assert.match(d.log, /ggaoed is running WITHOUT far/);
      await d.stop();
    },
  );

  await t.step(
    "without librbd the RBD device fails saying what to install; the file device serves",
    async () => {
      const lib = (await new Deno.Command("sh", {
        args: ["-c", "ldconfig -p | sed -n 's/.*librbd.so.1 .*=> //p' | head -1"],
        stdout: "piped",
      }).output()).stdout;
      const path = new TextDecoder().decode(lib).trim();
      assert.ok(path.endsWith("librbd.so.1"), path);
      const d = await lab.daemon("nolib", [
        fileDevice(lab, "alone", 5, 1),
        { name: "needslib", image: "shared", shelf: 5, slot: 2 },
      ], {
        // The daemon in a mount namespace where librbd.so.1 is an empty file.
        wrapper: [
          "unshare",
          "--mount",
          "sh",
          "-c",
          `mount --bind /dev/null ${path} && exec "$@"`,
          "sh",
        ],
      });
      assert.match(
        d.log,
        /disk\/needslib: rbd:rbd\/shared: librbd\.so\.1 could not be opened .* install Debian's librbd1 \(apt-get install librbd1/,
      );
      assert.match(d.log, /ggaoed is running WITHOUT needslib/);
      const ini = d.initiator();
      assert.equal(ini.read(ini.find(5, 1), 0, 1).length, 512);
      await d.stop();
    },
  );
}
