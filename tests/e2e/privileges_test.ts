/**
 * The least privilege the daemon runs with: a user without a name (uid 61234, no supplementary
 * groups) that owns its files, holding only the capabilities a test grants (ambient, so they
 * survive exec; the bounding set is cut to the same), with no-new-privs, as systemd's
 * `User=` + `AmbientCapabilities=` + `CapabilityBoundingSet=` + `NoNewPrivileges=` would run it.
 * What each capability buys is asserted from the daemon's own effective set and behaviour.
 */

import { assert, assertEquals } from "../helpers/assert.ts";
import { run } from "../../lab/command.ts";
import { exists } from "../../lab/files.ts";
import { AOE_CFG_FORCE_SET } from "../../src/protocol/constants.ts";
import {
  assertRoundTrip,
  REPO,
  type TargetOptions,
  type TestTarget,
  withTarget,
} from "../../lab/target.ts";

const opts = { sanitizeResources: false, sanitizeOps: false };
const UID = 61234;
/** Capability numbers (linux/capability.h). */
const CAP = { net_admin: 12, net_raw: 13 } as const;

/**
 * Target options that run the daemon as {@link UID} with only `caps`: the test directory and
 * `chown` (extra paths, e.g. a device node) are given to that user, and Deno gets a cache of its
 * own holding the program's npm packages (root's cache is not readable by the user).
 */
function unprivileged(caps: (keyof typeof CAP)[], extra: TargetOptions = {}): TargetOptions {
  const list = caps.map((c) => `+${c}`).join(",");
  return {
    ...extra,
    wrapper: [
      "setpriv",
      `--reuid=${UID}`,
      `--regid=${UID}`,
      "--clear-groups",
      `--inh-caps=-all${list ? "," + list : ""}`,
      `--ambient-caps=-all${list ? "," + list : ""}`,
      `--bounding-set=-all${list ? "," + list : ""}`,
      "--no-new-privs",
    ],
    beforeStart: async (t) => {
      await run(["chown", "-R", `${UID}:${UID}`, t.dir]);
      const denoDir = `${t.dir}/deno-dir`;
      await npmCacheFor(denoDir, UID);
      t.env = { ...t.env, DENO_DIR: denoDir, DENO_NO_UPDATE_CHECK: "1" };
      await extra.beforeStart?.(t);
    },
  };
}

/**
 * A Deno cache for `uid` holding this Deno's npm packages: new directories owned by `uid`,
 * files hard-linked (read-only for it; copied where links cannot be made).
 */
async function npmCacheFor(denoDir: string, uid: number): Promise<void> {
  const info = JSON.parse((await run([Deno.execPath(), "info", "--json"])).stdout);
  Deno.mkdirSync(denoDir);
  const linked = await run(["cp", "-al", info.npmCache, `${denoDir}/npm`], { check: false });
  if (linked.code !== 0) await run(["cp", "-a", info.npmCache, `${denoDir}/npm`]);
  await run(["find", denoDir, "-type", "d", "-exec", "chown", `${uid}:${uid}`, "{}", "+"]);
}

/** The daemon's uid and effective capabilities, from /proc. */
function credentials(t: TestTarget): { uid: number; effective: bigint; bounding: bigint } {
  const status = Deno.readTextFileSync(`/proc/${t.process!.pid}/status`);
  const field = (name: string) => status.match(new RegExp(`^${name}:\\s*(\\S+)`, "m"))![1];
  return {
    uid: Number(field("Uid")),
    effective: BigInt(`0x${field("CapEff")}`),
    bounding: BigInt(`0x${field("CapBnd")}`),
  };
}

function capSet(caps: (keyof typeof CAP)[]): bigint {
  return caps.reduce((set, c) => set | (1n << BigInt(CAP[c])), 0n);
}

/** Writes and reads back 1 MiB through the initiator; checks the exported file or device. */
function roundTrip(t: TestTarget, path: string): void {
  const ini = t.initiator();
  assertRoundTrip(ini, ini.find(0, 1), path);
}

/** Reads `net.core.rmem_max` as the daemon's network namespace sees it. */
async function rmemMax(t: TestTarget): Promise<number> {
  const r = await t.lab.exec(t.ns, ["cat", "/proc/sys/net/core/rmem_max"], { check: true });
  return Number(r.stdout.trim());
}

Deno.test({
  ...opts,
  name: "as a user that owns its files, with CAP_NET_RAW and CAP_NET_ADMIN only, the daemon " +
    "serves I/O, forces a receive buffer above rmem_max, and stops cleanly",
  fn: async () => {
    // A receive buffer twice the sysctl limit: only CAP_NET_ADMIN (SO_RCVBUFFORCE) gets it.
    const limit = Number(Deno.readTextFileSync("/proc/sys/net/core/rmem_max").trim());
    const kib = Math.ceil((2 * limit) / 1024);
    await withTarget(
      unprivileged(["net_raw", "net_admin"], { defaults: `receive-buffer-size = ${kib}` }),
      async (t) => {
        const who = credentials(t);
        assertEquals(who.uid, UID);
        assertEquals(who.effective, capSet(["net_raw", "net_admin"]));
        assertEquals(who.bounding, capSet(["net_raw", "net_admin"]));
        roundTrip(t, t.images.get("disk1")!);
        const granted = Number(t.log.match(/send\/receive buffer is \d+\/(\d+) bytes/)![1]);
        assertEquals(granted, 2 * kib * 1024, "SO_RCVBUFFORCE: the kernel doubles the request");
        assert(granted > 2 * (await rmemMax(t)));
        const stats = await t.ctl("stats", "disk1");
        assert(/^write_cnt: [1-9]/m.test(stats.stdout), stats.stdout + stats.stderr);
        // A state change is written (by the unprivileged daemon, into the directory it owns).
        const ini = t.initiator();
        ini.queryConfig(ini.find(0, 1), AOE_CFG_FORCE_SET, "owner=unprivileged");
        assertEquals((await t.stop("SIGTERM")).code, 0);
        for (const gone of [t.pidPath, t.socketPath]) {
          assert(!exists(gone), `${gone} left behind`);
        }
        const state = [...Deno.readDirSync(`${t.dir}/state`)].map((e) => e.name).sort();
        assertEquals(state, ["disk1.config"]);
        assertEquals(Deno.statSync(`${t.dir}/state/disk1.config`).uid, UID);
      },
    );
  },
});

Deno.test({
  ...opts,
  name: "CAP_NET_RAW alone is enough: without CAP_NET_ADMIN only socket buffers above " +
    "rmem_max are capped",
  fn: async () => {
    const limit = Number(Deno.readTextFileSync("/proc/sys/net/core/rmem_max").trim());
    const kib = Math.ceil((2 * limit) / 1024);
    await withTarget(
      unprivileged(["net_raw"], { defaults: `receive-buffer-size = ${kib}` }),
      async (t) => {
        assertEquals(credentials(t).effective, capSet(["net_raw"]));
        roundTrip(t, t.images.get("disk1")!);
        const granted = Number(t.log.match(/send\/receive buffer is \d+\/(\d+) bytes/)![1]);
        assertEquals(granted, 2 * (await rmemMax(t)), "SO_RCVBUF is capped at rmem_max");
      },
    );
  },
});

Deno.test({
  ...opts,
  name: "a block device needs no capability: a loop device owned by the user is opened " +
    "O_EXCL|O_DIRECT and served with CAP_NET_RAW alone",
  fn: async () => {
    const dir = Deno.makeTempDirSync({ dir: "/var/tmp", prefix: "ggaoed-loop-" });
    let loop = "";
    let owner: Deno.FileInfo | null = null;
    try {
      const backing = `${dir}/backing.img`;
      await run(["truncate", "-s", "32M", backing]);
      loop = (await run(["losetup", "--find", "--show", backing])).stdout.trim();
      owner = Deno.statSync(loop);
      await withTarget(
        unprivileged(["net_raw"], {
          devices: [{ name: "disk1", path: loop }],
          directIo: true,
          beforeStart: () => Deno.chownSync(loop, UID, UID),
        }),
        async (t) => {
          assertEquals(credentials(t).effective, capSet(["net_raw"]));
          await t.waitForLog(/disk1: .*opened, using direct I\/O/);
          roundTrip(t, loop);
          // O_EXCL holds the device: a second exclusive open (a mount, a second target) fails.
          const held = await run(["sh", "-c", `exec 3<>"${loop}"; blockdev --getsz "${loop}"`], {
            check: false,
          });
          assertEquals(held.code, 0, "a plain open still works");
          const excl = await run([
            Deno.execPath(),
            "eval",
            `import { openStorage } from "${REPO}ffi/mod.ts";` +
            `try { openStorage("${loop}", { readOnly: true, direct: false, exclusive: true });` +
            ` console.log("opened"); }` +
            ` catch (e) { console.log(e.message); }`,
          ]);
          assert(/EBUSY/.test(excl.stdout), `second O_EXCL open: ${excl.stdout}${excl.stderr}`);
        },
      );
    } finally {
      if (loop) {
        if (owner) Deno.chownSync(loop, owner.uid, owner.gid);
        await run(["losetup", "-d", loop], { check: false });
      }
      Deno.removeSync(dir, { recursive: true });
    }
  },
});
