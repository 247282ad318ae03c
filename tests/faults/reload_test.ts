/**
 * Reload faults under load: SIGHUP every 100 ms while devices are added, changed and removed; a
 * changed device whose file cannot be reopened; a changed device that is slow to quiesce. Each
 * runs at MTU 1500 and 9000, with packet rings and with recvfrom/sendto.
 *
 * Pass: the daemon stays up, the load on the device being served never reads back anything but
 * what it wrote and every chunk it acknowledged is in its file, a device that cannot be reopened
 * keeps serving with its old settings while the reload reports the error (ggaoectl exits
 * non-zero, the log says why at error level), and the loop never stalls while an old device
 * drains.
 */

import { assert, assertEquals } from "../helpers/assert.ts";
import { type FaultyFile, withFaultyFile } from "../../lab/storage_faults.ts";
import { type LabDevice, MATRIX, until, withFaultLab } from "../../lab/fault_lab.ts";
import { readFileRange, targetConfig, type TestTarget, withTarget } from "../../lab/target.ts";
import type { Initiator, TargetInfo } from "../../src/initiator/mod.ts";
import { ataReadWriteFields, buildAtaRequest } from "../../src/protocol/ata.ts";

const OPTS = { sanitizeResources: false, sanitizeOps: false };
/** A delay that holds the slow device's requests until the test releases them. */
const HOLD_MS = 600_000;

for (const m of MATRIX) {
  Deno.test({
    ...OPTS,
    name:
      `${m.label}: SIGHUP every 100 ms while devices are added, changed and removed; the load on disk1 goes on`,
    fn: () =>
      withFaultLab({
        mtu: m.mtu,
        ringKiB: m.ringKiB,
        devices: [{ name: "disk1" }, { name: "disk2", sizeMiB: 4 }, { name: "disk3", sizeMiB: 4 }],
      }, async (lab) => {
        const variants: LabDevice[][] = [
          [{ name: "disk1" }],
          [{ name: "disk1" }, { name: "disk2", slot: 2 }],
          [{ name: "disk1" }, { name: "disk2", slot: 2, extra: "read-only = true" }],
          [{ name: "disk1" }, { name: "disk3", slot: 3 }, { name: "disk2", slot: 7 }],
          // disk1 itself changes: it is reopened under the load (requests in its queue are
          // dropped and retransmitted).
          [{ name: "disk1", extra: "max-delay = 0.002" }, { name: "disk3", slot: 3 }],
          [{ name: "disk1" }, { name: "disk2", slot: 2, extra: "queue-length = 8" }],
        ];
        const load = lab.startLoad();
        await load.progress(10);
        const pid = lab.target.process!.pid;
        for (let i = 0; i < 40; i++) {
          lab.writeConfig(variants[i % variants.length]);
          Deno.kill(pid, "SIGHUP");
          await new Promise((r) => setTimeout(r, 100));
        }
        // Signals that come while the daemon is busy may be taken as one (how many depends on
        // the machine's speed), but the last one comes after the last file was written: the
        // daemon must end up serving that file's devices, and finish every reload it began.
        const last = variants[39 % variants.length].map((d) => d.name).sort();
        const count = (re: RegExp) => (lab.log.match(re) ?? []).length;
        const deadline = Date.now() + 30_000;
        for (;;) {
          const served = Object.keys((await lab.stats()).dev).sort();
          const done = count(/Reload request received/g) === count(/has been reloaded/g);
          if (done && JSON.stringify(served) === JSON.stringify(last)) break;
          assert(
            Date.now() < deadline,
            `serving ${served.join(", ")} instead of ${last.join(", ")}:\n${lab.log}`,
          );
          await new Promise((r) => setTimeout(r, 100));
        }
        await load.progress(20);
        await lab.assertAlive();
        await lab.finishLoad(load);
        const reloads = count(/The configuration has been reloaded/g);
        assert(reloads >= 2, `${reloads} reloads applied:\n${lab.log}`);
        assert(!/reloaded with errors|data path/.test(lab.log), lab.log);
      }),
  });

  Deno.test({
    ...OPTS,
    name:
      `${m.label}: a changed device whose file cannot be reopened keeps serving with its old settings, and the reload says so`,
    fn: async () => {
      // Two files the daemon will fail to open for writing although they pass the configuration
      // check: an immutable one (EPERM) and one on a read-only mount (EROFS).
      const dir = Deno.makeTempDirSync({ dir: "/var/tmp", prefix: "ggaoed-reopen-" });
      const immutable = `${dir}/immutable.img`;
      Deno.writeFileSync(immutable, new Uint8Array(0));
      Deno.truncateSync(immutable, 16 * 1024 * 1024);
      Deno.mkdirSync(`${dir}/src`);
      Deno.mkdirSync(`${dir}/ro`);
      Deno.writeFileSync(`${dir}/src/disk.img`, new Uint8Array(1024 * 1024));
      const run = async (...args: string[]) => {
        const r = await new Deno.Command(args[0], { args: args.slice(1) }).output();
        assert(r.success, `${args.join(" ")}: ${new TextDecoder().decode(r.stderr)}`);
      };
      await run("chattr", "+i", immutable);
      await run("mount", "--bind", `${dir}/src`, `${dir}/ro`);
      await run("mount", "-o", "remount,bind,ro", `${dir}/ro`);
      try {
        await withFaultLab({ mtu: m.mtu, ringKiB: m.ringKiB }, async (lab) => {
          const load = lab.startLoad();
          await load.progress(10);
          for (const [path, code] of [[immutable, "EPERM"], [`${dir}/ro/disk.img`, "EROFS"]]) {
            lab.target.writeConfig(
              lab.config([{ name: "disk1" }]).replace(/^path = .*$/m, `path = "${path}"`),
            );
            const r = await lab.target.ctl("reload");
            assert(r.code !== 0, `ggaoectl reload exited 0:\n${r.stdout}${r.stderr}`);
            const said = r.stdout + r.stderr;
            assert(
              new RegExp(`disk1: cannot apply the new settings: .*${code}.*keeps serving`).test(
                said,
              ),
              said,
            );
            assert(
              new RegExp(`error: disk/disk1: cannot apply the new settings: .*${code}`).test(
                lab.log,
              ),
              lab.log,
            );
            await load.progress(10);
          }
          assert(!/removed from the configuration|reopened with the new settings/.test(lab.log));
          await lab.assertAlive();
          await lab.finishLoad(load);
        });
      } finally {
        await new Deno.Command("umount", { args: ["-l", `${dir}/ro`] }).output();
        await new Deno.Command("chattr", { args: ["-i", immutable] }).output();
        Deno.removeSync(dir, { recursive: true });
      }
    },
  });
}

Deno.test({
  ...OPTS,
  name:
    "reopening a slow device (its I/O held) answers at once and stalls no other device; the old one closes when its I/O is done",
  fn: () =>
    withFaultyFile({ sizeBytes: 16 * 1024 * 1024 }, async (f) => {
      await withFaultLab({
        mtu: 1500,
        ringKiB: 4096,
        devices: [{ name: "disk1" }, { name: "slow", path: f.path, slot: 2 }],
      }, async (lab) => {
        lab.writeConfig([
          { name: "disk1" },
          { name: "slow", slot: 2, extra: "direct-io = true" },
        ]);
        assertEquals((await lab.target.ctl("reload")).code, 0);
        const load = lab.startLoad();
        const slowLoad = lab.startLoad({ slot: 2, sectors: 2048, seed: 9 });
        await load.progress(10);
        await slowLoad.progress(2);
        // Descriptors the daemon holds on the slow file: the device's, and while it retires,
        // the old one's too.
        const pid = lab.target.process!.pid;
        const openOnSlow = () => {
          let n = 0;
          for (const e of Deno.readDirSync(`/proc/${pid}/fd`)) {
            try {
              if (Deno.readLinkSync(`/proc/${pid}/fd/${e.name}`) === f.path) n++;
            } catch { /* closed meanwhile */ }
          }
          return n;
        };
        const before = openOnSlow();
        assert(before > 0, `the daemon holds no descriptor on ${f.path}`);
        // Every read and write of the slow device is held until released below: a reload that
        // waited for them would never answer.
        f.setDelay(HOLD_MS);
        try {
          await until(
            "a request of the slow device is held",
            () => f.counters().delayed > 0,
            20_000,
          );
          lab.writeConfig([
            { name: "disk1" },
            { name: "slow", slot: 2, extra: "direct-io = true\nmax-delay = 0.002" },
          ]);
          const t0 = performance.now();
          const r = await lab.target.ctl("reload");
          const took = performance.now() - t0;
          assertEquals(r.code, 0, r.stderr);
          console.log(`the reload answered in ${took.toFixed(0)} ms`);
          // Answered while the old device's requests are still held: the reload did not wait for
          // them (the old code waited for the slow device's I/O inside the loop before answering).
          assert(f.counters().delayed > 0, "the held requests were released before the reload");
          // The old device stays open, retiring, until they finish; disk1 is served meanwhile.
          assert(openOnSlow() > before, `the old device was closed with requests in progress`);
          const served = load.verified;
          await load.progress(10, 30_000);
          assert(load.verified > served, "disk1 was served while the slow device's I/O was held");
          assert(
            f.counters().delayed > 0,
            "the held requests were released while disk1 was served",
          );
        } finally {
          f.setDelay(0); // released also when the test fails: else nothing could stop the daemon
        }
        await slowLoad.progress(2, 30_000);
        await lab.assertAlive();
        await lab.finishLoad(load);
        await lab.finishLoad(slowLoad, "slow");
        await until("the old device closed", () => openOnSlow() === before, 20_000);
      });
    }),
});

/**
 * A write the storage holds (0xbb) is in the kernel when `replace` reloads the device under a
 * new configuration of the same file; a newer write to the same sector (0xcc) then comes
 * through the new device. The new device must not start it while the old one's write is in
 * the kernel: the storage holds every request it starts, so a second held request would show
 * it. Once the storage lets the old write go, the newer data is what stays.
 */
/**
 * The newer write waits unstarted for as long as the test holds the older one: a slow machine
 * must not make it older than max-request-age, nor the held write older than max-stall (the
 * newer one, dropped unanswered, would never land).
 */
const AGE = "max-request-age = 30\nmax-stall = 30";

async function assertReplacedWriteOrdered(
  t: TestTarget,
  f: FaultyFile,
  replace: () => Promise<void>,
): Promise<void> {
  const ini = t.initiator({ adaptive: false, timeoutMs: 1000 });
  let disk = ini.find(0, 1, { waitMs: 3000 });
  const lba = 64;
  ini.write(disk, lba, sectorOf(0xaa));
  const before = f.counters().bytesWritten;
  // A write the storage holds until released below: the initiator gives up waiting for it.
  f.setDelay(HOLD_MS);
  try {
    sendWrite(ini, disk, lba, sectorOf(0xbb), 0x7e000001);
    await until("the write is held by the storage", () => f.counters().delayed > 0, 20_000);
    await replace();
    disk = ini.find(0, 1, { waitMs: 3000 });
    sendWrite(ini, disk, lba, sectorOf(0xcc), 0x7e000002);
    // The newer write waits in the new device's queue (within max-request-age), unstarted.
    await new Promise((r) => setTimeout(r, 700));
    assertEquals(
      f.counters().delayed,
      1,
      "the new device started a write while the old one's write to the file was in the kernel",
    );
  } finally {
    f.setDelay(0); // released also when the test fails: else nothing could stop the daemon
  }
  await until("both writes are done", () => f.counters().bytesWritten - before >= 1024, 20_000);
  assertEquals(readFileRange(f.path, lba * 512, 512), sectorOf(0xcc), "the file");
  assertEquals(ini.read(disk, lba, 1), sectorOf(0xcc), "read through the device");
}

Deno.test({
  ...OPTS,
  name:
    "a write still in the kernel for the device a reload replaced never lands over a newer write through its replacement",
  fn: () =>
    withFaultyFile({ sizeBytes: 4 * 1024 * 1024 }, async (f) => {
      const devices = (extra: string) => [{ name: "slow", path: f.path, extra }];
      await withTarget({ directIo: true, devices: devices("") }, async (t) => {
        await assertReplacedWriteOrdered(t, f, async () => {
          t.writeConfig(
            targetConfig(t, { directIo: true, devices: devices(`max-delay = 0.002\n${AGE}`) }),
          );
          assertEquals((await t.ctl("reload")).code, 0);
        });
      });
    }),
});

for (const workers of [1, 2]) {
  Deno.test({
    ...OPTS,
    name:
      `workers = ${workers}: a device a reload renames (same file, same address) waits for the old name's write still in the kernel, on the same worker, before it starts a newer one`,
    fn: () =>
      withFaultyFile({ sizeBytes: 4 * 1024 * 1024 }, async (f) => {
        // With two, slow goes to worker 0, a to worker 1, b to worker 0. After the reload,
        // worker 0 has b and worker 1 has a: by load alone, c would take worker 0 and slow2
        // worker 1, away from the old device still writing the same file.
        const devices = [
          { name: "slow", path: f.path, slot: 1 },
          { name: "a", sizeMiB: 8, slot: 2 },
          { name: "b", sizeMiB: 8, slot: 3 },
        ];
        const defaults = `workers = ${workers}`;
        await withTarget({ directIo: true, defaults, devices }, async (t) => {
          await assertReplacedWriteOrdered(t, f, async () => {
            const c = `${t.dir}/c.img`;
            Deno.writeFileSync(c, new Uint8Array(0));
            Deno.truncateSync(c, 8 << 20);
            t.images.set("c", c);
            t.images.set("slow2", f.path);
            t.writeConfig(targetConfig(t, {
              directIo: true,
              defaults,
              devices: [
                { name: "c", slot: 4 },
                { name: "slow2", slot: 1, extra: `max-delay = 0.002\n${AGE}` },
                { name: "a", slot: 2 },
                { name: "b", slot: 3 },
              ],
            }));
            assertEquals((await t.ctl("reload")).code, 0);
            // With several workers, the reload logs where each device is served now.
            if (workers > 1) await t.waitForLog(/worker 0 serves [^;]*slow2/);
          });
        });
      }),
  });
}

Deno.test({
  ...OPTS,
  name:
    "a write held by slow storage never lands over a newer write to the same sectors: the newer one waits for it",
  fn: () =>
    withFaultyFile({ sizeBytes: 4 * 1024 * 1024 }, async (f) => {
      const devices = [{ name: "slow", path: f.path, extra: AGE }];
      await withTarget({ directIo: true, devices }, (t) =>
        // Nothing replaced: the same device must hold the newer write back itself.
        assertReplacedWriteOrdered(t, f, () => Promise.resolve()));
    }),
});

/** One sector of `fill`. */
function sectorOf(fill: number): Uint8Array {
  return new Uint8Array(512).fill(fill);
}

/** Sends one WRITE of `data` at `lba` without waiting for its reply. */
function sendWrite(ini: Initiator, t: TargetInfo, lba: number, data: Uint8Array, tag: number) {
  const frame = new Uint8Array(36 + data.length + 60);
  const length = buildAtaRequest(
    frame,
    { dst: t.mac, src: ini.mac, shelf: t.shelf, slot: t.slot, tag },
    ataReadWriteFields(true, lba, data.length / 512, true),
    data,
  );
  ini.sendRaw(frame.subarray(0, length));
}
