/**
 * Proves the kernel-initiator harness against a known-good target: vblade serves a sparse file
 * on the tap, and Debian's kernel aoe driver in the guest discovers it, writes a pattern over the
 * whole device and reads it back. Bytes are checked three ways: the guest's read-back, the
 * backing file on the host, and the pattern computed here.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  hostHas,
  kernelHarnessUnavailable,
  loadPreparedGuest,
  runGuest,
  spawnInNamespace,
  tail,
  withTapNamespace,
} from "./harness.ts";
import { assertFilesystemRoundTrip, fileMd5, guestScripts, patternMd5 } from "./scripts.ts";

const skip = kernelHarnessUnavailable(["vblade"]);
if (skip) console.warn(`SKIP tests/kernel/vblade_test.ts: ${skip}`);

const SIZE_MIB = 64;

async function patternRoundTrip(mtu: number, seed: string): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "ggaoed-kernel-vblade-" });
  try {
    const disk = join(dir, "disk.img");
    // Sparse, so nothing is there until the guest writes it.
    await Deno.writeFile(disk, new Uint8Array());
    await Deno.truncate(disk, SIZE_MIB * 1024 * 1024);

    await withTapNamespace(mtu, async (ns) => {
      const vblade = spawnInNamespace(ns.netns, "vblade", ["-b", "16", "0", "1", ns.tap, disk]);
      let run;
      try {
        run = await runGuest({
          netns: ns.netns,
          tap: ns.tap,
          mtu,
          guestScript: guestScripts.patternWriteAndMd5("e0.1", SIZE_MIB, { seed }),
          timeoutMs: 80_000,
        });
      } finally {
        await vblade.stop();
      }
      const context = `\n--- guest console (tail) ---\n${tail(run.output)}\n--- vblade ---\n${
        tail(vblade.output(), 10)
      }`;
      assert.equal(run.timedOut, false, `guest timed out${context}`);
      assert.deepEqual(run.guestErrors, [], `guest setup failed${context}`);
      assert.equal(run.exitCode, 0, `guest script failed${context}`);
      assert.equal(run.results.get("size_bytes"), String(SIZE_MIB * 1024 * 1024), context);

      // One 1500-byte frame carries two sectors; jumbo frames must carry more, or the MTU
      // never reached the driver.
      const payload = Number(run.results.get("payload_bytes"));
      if (mtu >= 9000) assert.ok(payload > 1024, `payload ${payload} at MTU ${mtu}${context}`);
      else assert.equal(payload, 1024, `payload at MTU ${mtu}${context}`);

      const expected = patternMd5(SIZE_MIB, seed);
      assert.equal(run.results.get("md5"), expected, `guest read back other bytes${context}`);
      assert.equal(await fileMd5(disk), expected, `backing file differs from the pattern`);
      console.log(
        `mtu ${mtu}: payload ${payload} B, boot-to-poweroff ${run.durationMs} ms, write ${
          run.results.get("write_seconds")
        } s, read ${run.results.get("md5_seconds")} s (guest clock)`,
      );
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test({
  name: "kernel aoe initiator writes and reads back a 64 MiB vblade device byte-exact at MTU 1500",
  ignore: skip !== null,
  fn: () => patternRoundTrip(1500, "mtu1500"),
});

Deno.test({
  name: "kernel aoe initiator writes and reads back a 64 MiB vblade device byte-exact at MTU 9000",
  ignore: skip !== null,
  fn: () => patternRoundTrip(9000, "mtu9000"),
});

Deno.test({
  name: "kernel aoe initiator makes an ext2 filesystem on a vblade device that e2fsck accepts",
  ignore: skip !== null || !loadPreparedGuest()?.e2fsprogs || !hostHas("e2fsck"),
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "ggaoed-kernel-vblade-" });
    try {
      const disk = join(dir, "disk.img");
      await Deno.writeFile(disk, new Uint8Array());
      await Deno.truncate(disk, SIZE_MIB * 1024 * 1024);
      await withTapNamespace(1500, async (ns) => {
        const vblade = spawnInNamespace(ns.netns, "vblade", ["-b", "16", "0", "1", ns.tap, disk]);
        let run;
        try {
          run = await runGuest({
            netns: ns.netns,
            tap: ns.tap,
            mtu: 1500,
            guestScript: guestScripts.mkfsFsckAndMd5("e0.1"),
            timeoutMs: 80_000,
          });
        } finally {
          await vblade.stop();
        }
        const context = `\n--- guest console (tail) ---\n${tail(run.output)}`;
        assert.equal(run.exitCode, 0, `guest script failed${context}`);
        await assertFilesystemRoundTrip(run.results, disk, context);
      });
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "kernel aoe initiator discovers a vblade target and learns its size and MAC address",
  ignore: skip !== null,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "ggaoed-kernel-vblade-" });
    try {
      const disk = join(dir, "disk.img");
      await Deno.writeFile(disk, new Uint8Array());
      await Deno.truncate(disk, 8 * 1024 * 1024);
      await withTapNamespace(1500, async (ns) => {
        const link = await new Deno.Command("ip", {
          args: ["-n", ns.netns, "-o", "link", "show", ns.tap],
        }).output();
        const tapMac = /link\/ether ([0-9a-f:]{17})/.exec(new TextDecoder().decode(link.stdout))
          ?.[1];
        assert.ok(tapMac, "tap has a MAC address");
        const vblade = spawnInNamespace(ns.netns, "vblade", ["3", "7", ns.tap, disk]);
        let run;
        try {
          run = await runGuest({
            netns: ns.netns,
            tap: ns.tap,
            mtu: 1500,
            guestScript: guestScripts.discoverOnly("e3.7"),
            timeoutMs: 60_000,
          });
        } finally {
          await vblade.stop();
        }
        const context = `\n--- guest console (tail) ---\n${tail(run.output)}`;
        assert.equal(run.exitCode, 0, context);
        assert.equal(run.results.get("size_bytes"), String(8 * 1024 * 1024), context);
        assert.equal(run.results.get("state"), "up", context);
        assert.equal(run.results.get("netif"), "eth0", context);
        // vblade answers from the tap's own address.
        assert.equal(run.results.get("mac"), tapMac.replaceAll(":", ""), context);
        assert.match(run.results.get("fwver") ?? "", /^0x[0-9a-f]+$/, context);
      });
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
