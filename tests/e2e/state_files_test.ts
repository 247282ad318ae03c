/**
 * The daemon's own files against a real daemon: the pid file is never written through a
 * symlink, a hard link, a FIFO, another user's file, or another running program's pid file, and
 * a file locked by another daemon (flock, or lockf as the C daemon held it) is left alone; a
 * directory named like a state temp file does not stop the device from being exported; a state
 * change is fsynced (file, then rename, then directory) before its reply goes out, as strace
 * sees the daemon's system calls.
 *
 * @module
 */

import { assert, assertEquals, assertThrows } from "../helpers/assert.ts";
import {
  AOE_CFG_FORCE_SET,
  AOE_CFG_READ,
  AOE_CFG_SET,
  AOE_ERR_RESERVED,
} from "../../src/protocol/constants.ts";
import { AoeError } from "../../src/initiator/mod.ts";
import { formatMac } from "../../src/mac.ts";
import { decodeConfigFile } from "../../src/state/store.ts";
import { targetConfig, type TestTarget, withTarget } from "../../lab/target.ts";

const opts = { sanitizeResources: false, sanitizeOps: false };

/** Starts the daemon and waits for it to exit 1 on its own; returns what it logged. */
async function startRefused(t: TestTarget, why: RegExp): Promise<string> {
  const from = t.log.length;
  t.start();
  const status = await Promise.race([
    t.process!.status,
    new Promise<null>((r) => setTimeout(() => r(null), 60_000)),
  ]);
  await t.stop("SIGKILL");
  const log = t.log.slice(from);
  assert(status !== null, `the daemon did not exit within 60 s:\n${log}`);
  assertEquals(status!.code, 1, log);
  assert(why.test(log), `expected ${why}:\n${log}`);
  return log;
}

/** Starts the daemon and waits until it serves. */
async function startServing(t: TestTarget): Promise<void> {
  const from = t.log.length;
  t.start();
  const deadline = Date.now() + 60_000;
  while (!/ggaoed is running/.test(t.log.slice(from))) {
    if (Date.now() > deadline) throw new Error(`the daemon did not start:\n${t.log.slice(from)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** A process that runs until killed (by its PID, in `finally`). */
function spawnSleeper(): Deno.ChildProcess {
  return new Deno.Command("sleep", { args: ["600"], stdout: "null", stderr: "null" }).spawn();
}

Deno.test({
  ...opts,
  name:
    "the pid file is never written unless it is the daemon's own: symlink, hard link, FIFO, another user's file, another program's pid, a lock held by another daemon",
  fn: () =>
    withTarget({}, async (t) => {
      await t.stop();
      const pid = t.pidPath;
      const victim = `${t.dir}/victim`;
      const content = "precious\n";
      const victimIntact = () => assertEquals(Deno.readTextFileSync(victim), content);
      Deno.writeTextFileSync(victim, content);

      Deno.symlinkSync(victim, pid);
      await startRefused(t, /cannot take the pid file: .*symlink/);
      victimIntact();
      Deno.removeSync(pid);

      Deno.linkSync(victim, pid);
      await startRefused(t, /ggaoed\.pid has 2 hard links: it is not this daemon's pid file/);
      victimIntact();
      Deno.removeSync(pid);

      const mkfifo = await new Deno.Command("mkfifo", { args: [pid] }).output();
      assert(mkfifo.success);
      await startRefused(t, /is not a regular file: it is not this daemon's pid file/);
      Deno.removeSync(pid);

      Deno.writeTextFileSync(pid, "4242\n");
      Deno.chownSync(pid, 65534, 65534);
      await startRefused(t, /belongs to uid 65534, not to the daemon's uid 0/);
      assertEquals(Deno.readTextFileSync(pid), "4242\n");
      Deno.removeSync(pid);

      // Another program's pid file (a running process, not a daemon like this one, no lock).
      const sleeper = spawnSleeper();
      try {
        Deno.writeTextFileSync(pid, `${sleeper.pid}\n`);
        await startRefused(
          t,
          new RegExp(
            `names process ${sleeper.pid} \\(sleep\\), which is running.*another program's pid file`,
          ),
        );
        assertEquals(Deno.readTextFileSync(pid), `${sleeper.pid}\n`);
        Deno.writeTextFileSync(pid, "not a pid\n");
        await startRefused(t, /are not a process id/);
        assertEquals(Deno.readTextFileSync(pid), "not a pid\n");
      } finally {
        sleeper.kill("SIGKILL");
        await sleeper.status;
      }

      // Locked with lockf (a POSIX record lock, as the C daemon holds its pid file), or flock.
      for (const lock of ["fcntl.lockf(f, fcntl.LOCK_EX)", "fcntl.flock(f, fcntl.LOCK_EX)"]) {
        const holder = new Deno.Command("python3", {
          args: [
            "-c",
            `import fcntl, os, sys, time\nf = open(sys.argv[1], "r+")\n${lock}\n` +
            `print("locked", flush=True)\ntime.sleep(600)`,
            pid,
          ],
          stdout: "piped",
          stderr: "inherit",
        }).spawn();
        try {
          Deno.writeTextFileSync(pid, `${holder.pid}\n`);
          const reader = holder.stdout.getReader();
          let said = "";
          while (!said.includes("\n")) {
            const chunk = await reader.read();
            if (chunk.done) break;
            said += new TextDecoder().decode(chunk.value);
          }
          assertEquals(said, "locked\n");
          reader.releaseLock();
          await startRefused(t, /already running \(pid file .* is locked\)/);
          assertEquals(Deno.readTextFileSync(pid), `${holder.pid}\n`, lock);
        } finally {
          holder.kill("SIGKILL");
          await holder.status;
          await holder.stdout.cancel().catch(() => {});
        }
      }

      // A stale pid file (its process is gone) is taken over, and removed at exit.
      const gone = new Deno.Command("true").spawn();
      await gone.status;
      Deno.writeTextFileSync(pid, `${gone.pid}\n`);
      await startServing(t);
      const daemonPid = Number(Deno.readTextFileSync(pid).trim());
      assert(daemonPid !== gone.pid && daemonPid > 0, `pid file holds ${daemonPid}`);
      await t.stop();
      assert(!existsPath(pid), "the pid file is removed at exit");
    }),
});

function existsPath(path: string): boolean {
  try {
    Deno.lstatSync(path);
    return true;
  } catch {
    return false;
  }
}

Deno.test({
  ...opts,
  name:
    "a directory named like a state temp file is reported and left alone, and the device is exported",
  fn: () =>
    withTarget({
      beforeStart: (t) => {
        Deno.mkdirSync(`${t.dir}/state/disk1.config.tmp-4242/inside`, { recursive: true });
        Deno.writeTextFileSync(`${t.dir}/state/disk1.config.tmp-4242/inside/f`, "x");
      },
    }, async (t) => {
      const ini = t.initiator();
      assertEquals(ini.discover({ waitMs: 2000 }).map((d) => `${d.shelf}.${d.slot}`), ["0.1"]);
      await t.waitForLog(/disk1\.config\.tmp-4242 is named like a temp file/);
      assertEquals(Deno.readTextFileSync(`${t.dir}/state/disk1.config.tmp-4242/inside/f`), "x");
      // The config string is still written next to it.
      const disk = ini.find(0, 1);
      ini.queryConfig(disk, AOE_CFG_FORCE_SET, "next to it");
      assertEquals(ini.queryConfig(disk, AOE_CFG_READ)!.config, "next to it");
    }),
});

Deno.test({
  ...opts,
  name:
    "a config string change is fsynced before its reply: temp file fsync, rename, directory fsync (strace)",
  fn: async () => {
    const trace = Deno.makeTempFileSync({ prefix: "ggaoed-strace-" });
    try {
      await withTarget({
        wrapper: [
          "strace",
          "-f",
          "-qq",
          "-y",
          "--seccomp-bpf",
          "-e",
          "trace=fsync,fdatasync,rename,renameat,renameat2",
          "-o",
          trace,
        ],
      }, async (t) => {
        try {
          traceConfigChange(t, trace);
        } finally {
          // Killing strace (as closing the target does) would leave the daemon running, holding
          // the log pipes: stop the daemon itself, and strace exits with it.
          try {
            Deno.kill(Number(Deno.readTextFileSync(t.pidPath).trim()), "SIGTERM");
          } catch { /* not running */ }
          await Promise.race([
            t.process!.status,
            new Promise((r) => setTimeout(r, 30_000)),
          ]);
        }
      });
    } finally {
      Deno.removeSync(trace);
    }
  },
});

function traceConfigChange(t: TestTarget, trace: string): void {
  const ini = t.initiator();
  const disk = ini.find(0, 1, { waitMs: 5000 });
  const before = Deno.readTextFileSync(trace).length;
  ini.queryConfig(disk, AOE_CFG_FORCE_SET, "durable");
  // The reply is out: what the trace holds from here on happened before it.
  const lines = Deno.readTextFileSync(trace).slice(before).split("\n");
  const state = `${t.dir}/state`;
  const at = (re: RegExp) => lines.findIndex((l) => re.test(l));
  const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");
  const tmp = `${esc(state)}/disk1\\.config\\.tmp-\\d+`;
  const fileSync = at(new RegExp(`fsync\\(\\d+<${tmp}>\\) = 0`));
  const rename = at(new RegExp(`rename.*"${tmp}", .*"${esc(state)}/disk1\\.config"[,)].* = 0`));
  const dirSync = at(new RegExp(`fsync\\(\\d+<${esc(state)}>\\) = 0`));
  const shown = lines.join("\n");
  assert(fileSync >= 0, `no fsync of the temp file:\n${shown}`);
  assert(rename > fileSync, `no rename after the fsync:\n${shown}`);
  assert(dirSync > rename, `no directory fsync after the rename:\n${shown}`);
  assertEquals(ini.queryConfig(disk, AOE_CFG_READ)!.config, "durable");
}

Deno.test({
  ...opts,
  name:
    "admin covers the config string: another host's set and force set get AoE error 6 and change nothing on disk; the admin host sets it; admin-config-string = false opens it",
  fn: () =>
    withTarget({ links: 2, devices: [{ name: "disk1", sizeMiB: 4 }] }, async (t) => {
      const admin = t.initiator({}, t.links[0].hostIf);
      const other = t.initiator({}, t.links[1].hostIf);
      const configure = async (extra: string) => {
        t.writeConfig(targetConfig(t, { devices: [{ name: "disk1", extra }] }));
        const r = await t.ctl("reload");
        assertEquals(r.code, 0, r.stderr);
      };
      await configure(`admin = ["${formatMac(admin.mac)}"]`);
      const a = admin.find(0, 1, { waitMs: 3000 });
      const o = other.find(0, 1, { waitMs: 3000 });
      const file = `${t.dir}/state/disk1.config`;
      for (const ccmd of [AOE_CFG_SET, AOE_CFG_FORCE_SET]) {
        const e = assertThrows(() => other.queryConfig(o, ccmd, "other's"), AoeError);
        assertEquals((e as AoeError).code, AOE_ERR_RESERVED, e.message);
      }
      assert(!existsPath(file), "nothing written");
      assertEquals(admin.queryConfig(a, AOE_CFG_FORCE_SET, "admin's")!.config, "admin's");
      assertEquals(other.queryConfig(o, AOE_CFG_READ)!.config, "admin's", "reads stay open");
      assertEquals(
        new TextDecoder().decode(decodeConfigFile(Deno.readFileSync(file)) as Uint8Array),
        "admin's",
      );
      await configure(`admin = ["${formatMac(admin.mac)}"]\nadmin-config-string = false`);
      assertEquals(other.queryConfig(o, AOE_CFG_FORCE_SET, "other's")!.config, "other's");
    }),
});
