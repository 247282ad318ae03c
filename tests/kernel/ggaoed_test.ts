/**
 * Debian's kernel aoe driver, booted under qemu (see tests/kernel/README.md), as the initiator
 * of ggaoed: the daemon runs inside the test's network namespace on the tap, the guest
 * discovers it, writes and reads through it. Bytes are checked three ways (the guest's
 * O_DIRECT read-back, the backing file read on the host after the daemon stopped, and the
 * pattern computed here), and `ggaoectl --json stats` must show the I/O counted without errors.
 */
import { CTL_FLAGS, DAEMON_FLAGS } from "../../src/permissions.ts";
import assert from "node:assert/strict";
import { join } from "node:path";
import { withTestWorkers } from "../../lab/target.ts";
import {
  type GuestRun,
  hostHas,
  kernelHarnessUnavailable,
  loadPreparedGuest,
  REPO_ROOT,
  runGuest,
  spawnInNamespace,
  tail,
  type TapNamespace,
  withTapNamespace,
} from "./harness.ts";
import { assertFilesystemRoundTrip, fileMd5, guestScripts, patternMd5 } from "./scripts.ts";

const skip = kernelHarnessUnavailable();
if (skip) console.warn(`SKIP tests/kernel/ggaoed_test.ts: ${skip}`);

const SIZE_MIB = 64;
const SIZE_BYTES = SIZE_MIB * 1024 * 1024;

/** Device counters from `ggaoectl --json stats` (the names src/stats.ts prints). */
type DeviceStats = Record<string, number>;

/** What one guest run against the daemon left behind. */
interface DaemonRun {
  run: GuestRun;
  disk: string;
  /** Counters of the one exported device, read while the daemon still ran. */
  stats: DeviceStats;
  /** The tap's MAC address without colons, as the driver's sysfs `mac` shows it. */
  tapMac: string;
  /** Daemon log and guest console tail, for assertion messages. */
  context: string;
}

async function tapMac(ns: TapNamespace): Promise<string> {
  const out = await new Deno.Command("ip", {
    args: ["-n", ns.netns, "-o", "link", "show", ns.tap],
  }).output();
  const mac = /link\/ether ([0-9a-f:]{17})/.exec(new TextDecoder().decode(out.stdout))?.[1];
  assert.ok(mac, "tap has a MAC address");
  return mac.replaceAll(":", "");
}

async function ctlStats(socket: string): Promise<DeviceStats> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", ...CTL_FLAGS, join(REPO_ROOT, "ggaoectl.ts"), "-s", socket, "--json", "stats"],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout);
  assert.equal(out.code, 0, `ggaoectl stats failed: ${new TextDecoder().decode(out.stderr)}`);
  const reply = JSON.parse(text);
  assert.equal(reply.devices?.length, 1, `one device in ${text}`);
  // The device's counters, plus the read replies sent from their TX frames on any interface.
  const inPlace = (reply.interfaces ?? []).reduce(
    (sum: number, i: { stats: DeviceStats }) => sum + i.stats.tx_in_place,
    0,
  );
  return { ...reply.devices[0].stats, tx_in_place: inPlace };
}

/**
 * Serves a fresh sparse 64 MiB file as e0.1 with ggaoed on a tap at `mtu` (inside the tap's
 * namespace), boots the guest with `guestScript`, reads the daemon's stats, stops it with
 * SIGTERM (exit code 0 required) and hands what happened to `check` while the backing file
 * still exists.
 */
async function withDaemonAndGuest(
  opts: { mtu: number; directIo: boolean; guestScript: string; timeoutMs?: number },
  check: (r: DaemonRun) => Promise<void>,
): Promise<void> {
  // Not /tmp: O_DIRECT needs a filesystem that supports it, and /tmp may be tmpfs.
  const dir = await Deno.makeTempDir({ dir: "/var/tmp", prefix: "ggaoed-kernel-" });
  try {
    const disk = join(dir, "disk.img");
    await Deno.writeFile(disk, new Uint8Array());
    await Deno.truncate(disk, SIZE_BYTES);
    await Deno.mkdir(join(dir, "state"));
    const socket = join(dir, "ggaoed.sock");

    await withTapNamespace(opts.mtu, async (ns) => {
      const conf = join(dir, "ggaoed.conf");
      // ring-buffer-size left at its default (the packet rings).
      await Deno.writeTextFile(
        conf,
        withTestWorkers([
          "[defaults]",
          `interfaces = ["${ns.tap}"]`,
          `pid-file = "${dir}/ggaoed.pid"`,
          `control-socket = "${socket}"`,
          `state-directory = "${dir}/state"`,
          `direct-io = ${opts.directIo}`,
          "",
          "[devices.kdisk]",
          `path = "${disk}"`,
          "shelf = 0",
          "slot = 1",
          "",
        ].join("\n")),
      );
      const mac = await tapMac(ns);
      const daemon = spawnInNamespace(ns.netns, Deno.execPath(), [
        "run",
        ...DAEMON_FLAGS,
        join(REPO_ROOT, "ggaoed.ts"),
        "-c",
        conf,
      ]);
      let run: GuestRun | undefined;
      let stats: DeviceStats | undefined;
      let status: Deno.CommandStatus;
      try {
        let exited = false;
        daemon.status.then(() => (exited = true));
        const deadline = Date.now() + 20_000;
        while (!/ggaoed is running/.test(daemon.output())) {
          if (exited || Date.now() > deadline) {
            throw new Error(`daemon did not come up:\n${daemon.output()}`);
          }
          await new Promise((r) => setTimeout(r, 50));
        }
        run = await runGuest({
          ...ns,
          guestScript: opts.guestScript,
          timeoutMs: opts.timeoutMs ?? 80_000,
        });
        stats = await ctlStats(socket);
      } finally {
        status = await daemon.stop(5000);
      }
      const context = `\n--- guest console (tail) ---\n${tail(run.output)}\n--- ggaoed ---\n${
        tail(daemon.output(), 20)
      }`;
      assert.equal(status.code, 0, `ggaoed did not exit 0 on SIGTERM${context}`);
      assert.equal(run.timedOut, false, `guest timed out${context}`);
      assert.deepEqual(run.guestErrors, [], `guest setup failed${context}`);
      assert.equal(run.exitCode, 0, `guest script failed${context}`);
      assert.equal(run.results.get("size_bytes"), String(SIZE_BYTES), context);
      await check({ run, disk, stats, tapMac: mac, context });
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Reads and writes were counted, and no request was answered with an error. */
function assertCleanStats(stats: DeviceStats, context: string): void {
  const s = JSON.stringify(stats);
  assert.ok(stats.read_cnt > 0, `no reads counted: ${s}${context}`);
  assert.ok(stats.write_cnt > 0, `no writes counted: ${s}${context}`);
  // The guest read the whole device back at least once, and wrote at least what mkfs wrote.
  assert.ok(stats.read_bytes >= SIZE_BYTES, `read_bytes ${stats.read_bytes}: ${s}`);
  assert.equal(stats.ata_err, 0, `ata_err: ${s}${context}`);
  assert.equal(stats.proto_err, 0, `proto_err: ${s}${context}`);
}

/** Bytes per request the driver settles on: whole sectors of what one frame holds. */
function expectedPayload(mtu: number): number {
  // 36 bytes of Ethernet, AoE and ATA headers; the daemon offers the same in Query Config.
  return Math.floor((mtu - 36) / 512) * 512;
}

async function patternRoundTrip(mtu: number, directIo: boolean): Promise<void> {
  const seed = `ggaoed-mtu${mtu}`;
  await withDaemonAndGuest(
    { mtu, directIo, guestScript: guestScripts.patternWriteAndMd5("e0.1", SIZE_MIB, { seed }) },
    async ({ run, disk, stats, context }) => {
      const payload = Number(run.results.get("payload_bytes"));
      // 1024 at MTU 1500; at 9000 jumbo requests (8704), or the MTU never reached the driver.
      assert.equal(payload, expectedPayload(mtu), `payload at MTU ${mtu}${context}`);
      if (mtu >= 9000) assert.ok(payload > 1024);

      const expected = patternMd5(SIZE_MIB, seed);
      assert.equal(run.results.get("md5"), expected, `guest read back other bytes${context}`);
      assert.equal(await fileMd5(disk), expected, "backing file differs from the pattern");

      assertCleanStats(stats, context);
      assert.ok(stats.write_bytes >= SIZE_BYTES, `write_bytes ${stats.write_bytes}`);
      // Page-cache reads went straight into their TX ring frames; O_DIRECT ones never do.
      assert.equal(stats.tx_in_place, directIo ? 0 : stats.read_cnt, `tx_in_place${context}`);
      // The daemon's side of the same: at 9000 the O_DIRECT 1 MiB reads arrive as jumbo
      // requests, more than one 1500-byte frame could carry. (The pattern's buffered writes
      // reach the driver as one-page bios: 4 KiB per request even at 9000.)
      const bytesPerRead = stats.read_bytes / stats.read_cnt;
      if (mtu >= 9000) {
        assert.ok(bytesPerRead > 4096, `${bytesPerRead} bytes per read at MTU ${mtu}`);
      } else assert.ok(bytesPerRead <= 1024, `${bytesPerRead} bytes per read at MTU ${mtu}`);
      console.log(
        `ggaoed mtu ${mtu} direct-io ${directIo}: payload ${payload} B, boot-to-poweroff ${run.durationMs} ms, write ${
          run.results.get("write_seconds")
        } s, read ${
          run.results.get("md5_seconds")
        } s (guest clock); reads ${stats.read_cnt}, writes ${stats.write_cnt}`,
      );
    },
  );
}

Deno.test({
  name: "kernel aoe initiator writes and reads back a 64 MiB ggaoed device byte-exact at MTU " +
    "1500 (direct-io on)",
  ignore: skip !== null,
  fn: () => patternRoundTrip(1500, true),
});

Deno.test({
  name: "kernel aoe initiator uses jumbo requests and round-trips a 64 MiB ggaoed device " +
    "byte-exact at MTU 9000 (direct-io off)",
  ignore: skip !== null,
  fn: () => patternRoundTrip(9000, false),
});

Deno.test({
  name: "kernel aoe initiator makes an ext2 filesystem on a ggaoed device that e2fsck accepts " +
    "in the guest and on the host",
  ignore: skip !== null || !loadPreparedGuest()?.e2fsprogs || !hostHas("e2fsck"),
  fn: () =>
    withDaemonAndGuest(
      { mtu: 9000, directIo: true, guestScript: guestScripts.mkfsFsckAndMd5("e0.1") },
      async ({ run, disk, stats, context }) => {
        await assertFilesystemRoundTrip(run.results, disk, context);
        assertCleanStats(stats, context);
        console.log(
          `ggaoed ext2: boot-to-poweroff ${run.durationMs} ms; reads ${stats.read_cnt}, writes ${stats.write_cnt}`,
        );
      },
    ),
});

Deno.test({
  name: "kernel aoe initiator discovers ggaoed and learns its size, state and tap MAC address",
  ignore: skip !== null,
  fn: () =>
    withDaemonAndGuest(
      { mtu: 1500, directIo: true, guestScript: guestScripts.discoverOnly("e0.1") },
      ({ run, stats, tapMac, context }) => {
        assert.equal(run.results.get("state"), "up", context);
        assert.equal(run.results.get("netif"), "eth0", context);
        // The daemon answers from the address of the interface the request came in on.
        assert.equal(run.results.get("mac"), tapMac, context);
        assert.match(run.results.get("fwver") ?? "", /^0x[0-9a-f]+$/, context);
        // Query Config and IDENTIFY count as "other"; the partition scan reads.
        assert.ok(stats.other_cnt > 0, JSON.stringify(stats));
        assert.equal(stats.ata_err + stats.proto_err, 0, JSON.stringify(stats));
        return Promise.resolve();
      },
    ),
});
