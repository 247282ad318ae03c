/**
 * The daemon's life cycle through real signals and processes: shutdown under load, reload,
 * a second instance, bad configurations.
 */

import { assert, assertEquals } from "../helpers/assert.ts";
import { exists } from "../../lab/files.ts";
import { discoverSet } from "../helpers/discovery.ts";
import {
  DAEMON_FLAGS,
  DENO,
  firstDifference,
  pattern,
  readFileRange,
  REPO,
  targetConfig,
  withTarget,
} from "../../lab/target.ts";

const opts = { sanitizeResources: false, sanitizeOps: false };

Deno.test({
  ...opts,
  name:
    "SIGTERM under write load exits 0 without waiting out a timer and keeps every acknowledged write",
  fn: () =>
    withTarget({ mtu: 9000 }, async (t) => {
      const seed = 77;
      const load = new Deno.Command(DENO, {
        args: ["run", "-A", `${REPO}tests/e2e/fixtures/writer.ts`, t.hostIf, String(seed)],
        stdout: "piped",
        stderr: "inherit",
      }).spawn();
      const acked: [number, number][] = [];
      let text = "";
      const reading = (async () => {
        const decoder = new TextDecoder();
        for await (const chunk of load.stdout) text += decoder.decode(chunk, { stream: true });
      })();
      // Let the load run for a while, then stop the daemon in the middle of it.
      const deadline = Date.now() + 15000;
      while ((text.match(/acked/g) ?? []).length < 200 && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 50));
      }
      assert((text.match(/acked/g) ?? []).length >= 200, `the load never got going: ${text}`);
      const t0 = performance.now();
      const status = await t.stop("SIGTERM");
      const took = performance.now() - t0;
      await load.status;
      await reading;
      assertEquals(status.code, 0, t.log);
      // What a slow shutdown would be: the data path not taking the stop at once (it then
      // misses it, and the daemon exits 2.8 s later without its answer) or in-flight requests
      // never finishing (it waits out the 800 ms grace period). The daemon says both; how long
      // the whole exit took on this machine is only reported.
      console.log(`shutdown under load took ${took.toFixed(0)} ms`);
      assert(/SIGTERM received, shutting down/.test(t.log));
      assert(!/did not confirm the stop|still in flight at exit/.test(t.log), t.log);
      for (const line of text.split("\n")) {
        const m = /^acked (\d+) (\d+)$/.exec(line);
        if (m) acked.push([Number(m[1]), Number(m[2])]);
      }
      // The chunks wrap around the device: for each LBA, the last acknowledged write wins, and
      // every acknowledged chunk carries the same content for the same LBA.
      const image = t.images.get("disk1")!;
      for (const [lba, sectors] of acked.slice(-300)) {
        const want = pattern(sectors * 512, seed, lba);
        const got = readFileRange(image, lba * 512, sectors * 512);
        assertEquals(firstDifference(got, want), -1, `acknowledged chunk at LBA ${lba}`);
      }
      // Nothing left behind.
      for (const p of [t.pidPath, t.socketPath]) {
        assert(!exists(p), `${p} was not removed`);
      }
    }),
});

Deno.test({
  ...opts,
  name:
    "SIGHUP reload adds and removes devices live; a broken file is refused and the old one keeps serving",
  fn: () =>
    withTarget({ devices: [{ name: "disk1", sizeMiB: 8 }] }, async (t) => {
      const ini = t.initiator();
      assertEquals(discoverSet(ini, ["0.1"]), ["0.1"]);
      // Add a second device.
      const second = `${t.dir}/disk2.img`;
      Deno.writeFileSync(second, new Uint8Array(1024 * 1024));
      t.images.set("disk2", second);
      t.writeConfig(targetConfig(t, {
        devices: [{ name: "disk1", sizeMiB: 8 }, { name: "disk2", slot: 2 }],
      }));
      t.process!.kill("SIGHUP");
      await t.waitForLog(/The configuration has been reloaded/);
      assertEquals(discoverSet(ini, ["0.1", "0.2"]), ["0.1", "0.2"]);
      const d2 = ini.find(0, 2);
      assertEquals(ini.identify(d2).sectors, 2048);
      // A broken file: refused, both devices still answer.
      t.writeConfig("[defaults]\nqueue-length = 0\n[devices.x]\nshelf = 70000\n");
      const r = await t.ctl("reload");
      assert(r.code !== 0, "reload of a broken file must fail");
      assert(/not reloaded|error/i.test(r.stdout + r.stderr), r.stdout + r.stderr);
      assert(/The config file contains errors, not reloading/.test(t.log));
      assertEquals(discoverSet(ini, ["0.1", "0.2"]), ["0.1", "0.2"]);
      // Remove disk1 through ggaoectl reload.
      t.writeConfig(targetConfig(t, { devices: [{ name: "disk2", slot: 2 }] }));
      const ok = await t.ctl("reload");
      assertEquals(ok.code, 0, ok.stderr);
      assertEquals(discoverSet(ini, ["0.2"]), ["0.2"]);
    }),
});

Deno.test({
  ...opts,
  name: "a second daemon with the same pid file exits 1 at once and the first keeps serving",
  fn: () =>
    withTarget({}, async (t) => {
      const out = await new Deno.Command("ip", {
        args: [
          "netns",
          "exec",
          t.ns,
          DENO,
          "run",
          ...DAEMON_FLAGS,
          `${REPO}ggaoed.ts`,
          "-c",
          t.configPath,
        ],
        stdout: "piped",
        stderr: "piped",
        signal: AbortSignal.timeout(20000),
      }).output();
      const err = new TextDecoder().decode(out.stderr);
      assertEquals(out.code, 1, err);
      assert(/already running/.test(err), err);
      assertEquals(discoverSet(t.initiator(), ["0.1"]), ["0.1"]);
    }),
});

Deno.test({
  ...opts,
  name: "a configuration with several errors is refused with every error, key and fix, exit 1",
  fn: async () => {
    const dir = Deno.makeTempDirSync();
    try {
      const conf = `${dir}/bad.conf`;
      Deno.writeTextFileSync(
        conf,
        `[defaults]\nqueue-lenght = 5\nstate-directory = "${dir}"\n[devices.a]\npath = "/nonexistent/disk"\nshelf = 70000\nslot = 1\n`,
      );
      const out = await new Deno.Command(DENO, {
        args: ["run", ...DAEMON_FLAGS, `${REPO}ggaoed.ts`, "-c", conf],
        stdout: "piped",
        stderr: "piped",
      }).output();
      const err = new TextDecoder().decode(out.stderr);
      assertEquals(out.code, 1, err);
      assert(/queue-lenght/.test(err) && /queue-length/.test(err), `typo not reported: ${err}`);
      assert(/devices\.a\.shelf/.test(err), `shelf not reported: ${err}`);
      assert(/devices\.a\.path/.test(err), `path not reported: ${err}`);
      assert(/fix:/.test(err), err);
    } finally {
      Deno.removeSync(dir, { recursive: true });
    }
  },
});

Deno.test({
  ...opts,
  name: "when no device can be opened the daemon says why and exits 1",
  fn: () =>
    withTarget({ waitReady: false }, async (t) => {
      // Valid to the configuration check, but the device's state file cannot be created.
      await t.stop("SIGKILL").catch(() => {});
      Deno.mkdirSync(`${t.dir}/state/disk1.config`);
      t.start();
      const status = await t.process!.status;
      t.process = null;
      assertEquals(status.code, 1, t.log);
      assert(/disk\/disk1: .*device not exported/.test(t.log), t.log);
      assert(/no valid devices/.test(t.log), t.log);
    }),
});

Deno.test({
  ...opts,
  name:
    "a device that cannot be opened is not exported, the daemon says loudly it runs without it, and check-config exits 1",
  fn: async () => {
    // A file on a read-only mount: it exists and passes the configuration check, opening it for
    // writing fails (EROFS).
    const dir = Deno.makeTempDirSync({ dir: "/var/tmp", prefix: "ggaoed-rofs-" });
    const run = async (...args: string[]) => {
      const r = await new Deno.Command(args[0], { args: args.slice(1) }).output();
      assert(r.success, `${args.join(" ")}: ${new TextDecoder().decode(r.stderr)}`);
    };
    Deno.mkdirSync(`${dir}/src`);
    Deno.mkdirSync(`${dir}/ro`);
    Deno.writeFileSync(`${dir}/src/bad.img`, new Uint8Array(1 << 20));
    await run("mount", "--bind", `${dir}/src`, `${dir}/ro`);
    await run("mount", "-o", "remount,bind,ro", `${dir}/ro`);
    try {
      await withTarget({
        devices: [{ name: "good", sizeMiB: 1 }, { name: "bad", path: `${dir}/ro/bad.img` }],
      }, async (t) => {
        assert(/error: disk\/bad: .*EROFS.*device not exported/.test(t.log), t.log);
        assert(
          /error: ggaoed is running WITHOUT bad \(1 of 2 devices not exported\)/.test(t.log),
          t.log,
        );
        assertEquals(discoverSet(t.initiator(), ["0.1"]), ["0.1"]);
        const check = await new Deno.Command(DENO, {
          args: ["run", ...DAEMON_FLAGS, `${REPO}ggaoed.ts`, "check-config", "-c", t.configPath],
          stdout: "piped",
          stderr: "piped",
        }).output();
        const err = new TextDecoder().decode(check.stderr);
        assertEquals(check.code, 1, err);
        assert(/devices\.bad: open\(.*bad\.img\): EROFS.*read-only = true/.test(err), err);
      });
    } finally {
      await new Deno.Command("umount", { args: ["-l", `${dir}/ro`] }).output();
      Deno.removeSync(dir, { recursive: true });
    }
  },
});

Deno.test({
  ...opts,
  name: "without CAP_NET_RAW the daemon does not claim to run: it names the capability and exits 1",
  fn: () =>
    withTarget({
      waitReady: false,
      wrapper: ["setpriv", "--bounding-set=-net_raw", "--inh-caps=-net_raw", "--"],
    }, async (t) => {
      const status = await t.process!.status;
      t.process = null;
      assertEquals(status.code, 1, t.log);
      assert(/no packet socket could be opened: .*EPERM.*CAP_NET_RAW/.test(t.log), t.log);
      assert(!/ggaoed is running/.test(t.log), t.log);
    }),
});

Deno.test({
  ...opts,
  name: "a reload re-reads the size of a grown export and IDENTIFY reports it",
  fn: () =>
    withTarget({ devices: [{ name: "disk1", sizeMiB: 8 }] }, async (t) => {
      const ini = t.initiator();
      const disk = ini.find(0, 1, { waitMs: 5000 });
      assertEquals(ini.identify(disk).sectors, 16384);
      Deno.truncateSync(t.images.get("disk1")!, 16 * 1024 * 1024);
      const r = await t.ctl("reload");
      assertEquals(r.code, 0, r.stderr);
      assert(/disk\/disk1: New size 16 MiB \(sectors 32768\)/.test(t.log), t.log);
      assertEquals(ini.identify(disk).sectors, 32768);
      const last = pattern(512, 3, 32767);
      ini.write(disk, 32767, last);
      assertEquals(firstDifference(ini.read(disk, 32767, 1), last), -1);
    }),
});
