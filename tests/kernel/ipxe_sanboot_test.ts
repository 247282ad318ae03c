/**
 * iPXE (Debian's ipxe.lkrn under qemu, see ipxe.ts) sanboots a disk that ggaoed serves: the boot
 * sector on the disk runs and prints its marker on the serial console. See tests/kernel/README.md.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { tail, withTapNamespace } from "./harness.ts";
import { Host } from "./hosts.ts";
import {
  BOOT_SECTOR_EXIT_STATUS,
  bootSector,
  ipxeUnavailable,
  runIpxeSanboot,
  writeBootImage,
} from "./ipxe.ts";

const skip = ipxeUnavailable();
if (skip) console.warn(`SKIP tests/kernel/ipxe_sanboot_test.ts: ${skip}`);

const MAC = "52:54:00:18:b0:01";

/**
 * Serves a 16 MiB file whose sector 0 is `sector` as e1.1 with ggaoed on a tap, and boots iPXE
 * on that tap with `sanboot aoe:e1.<slot>`.
 */
async function sanbootServed(
  sector: Uint8Array,
  slot: number,
  check: (boot: Awaited<ReturnType<typeof runIpxeSanboot>>, host: Host, context: string) => void,
): Promise<void> {
  // Not /tmp: the daemon opens files O_DIRECT, which tmpfs refuses.
  const dir = await Deno.makeTempDir({ dir: "/var/tmp", prefix: "ggaoed-ipxe-" });
  try {
    const disk = join(dir, "boot.img");
    await writeBootImage(disk, sector);
    await withTapNamespace(1500, async (ns) => {
      const host = new Host("a", dir, ns.netns, ns.tap, [
        `path = "${disk}"`,
        "shelf = 1",
        "slot = 1",
      ]);
      await host.start();
      try {
        const boot = await runIpxeSanboot({ ...ns, mac: MAC, shelf: 1, slot, timeoutMs: 90_000 });
        const context = `\n--- serial console (tail) ---\n${tail(boot.output)}\n--- ggaoed ---\n${
          tail(host.log(), 15)
        }`;
        check(boot, host, context);
        const stats = await host.stats();
        assert.ok(stats, `no counters from ggaoed${context}`);
        assert.equal(stats.ata_err + stats.proto_err, 0, `${JSON.stringify(stats)}${context}`);
        console.log(`iPXE sanboot e1.${slot}: ${boot.durationMs} ms, reads ${stats.read_cnt}`);
      } finally {
        await host.stop();
      }
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test({
  name: "iPXE sanboots a ggaoed device and runs the boot sector it serves",
  ignore: skip !== null,
  fn: () =>
    sanbootServed(bootSector("GOLDEN"), 1, (boot, _host, context) => {
      assert.equal(boot.timedOut, false, `qemu timed out${context}`);
      assert.deepEqual(boot.errors, [], `iPXE did not boot the disk${context}`);
      assert.equal(boot.marker, "GOLDEN", `the boot sector did not print its marker${context}`);
      assert.equal(boot.exitCode, BOOT_SECTOR_EXIT_STATUS, `qemu exit status${context}`);
    }),
});

Deno.test({
  name: "iPXE refuses a served disk whose sector 0 lacks the boot signature 0x55AA, and says so",
  ignore: skip !== null,
  fn: () =>
    sanbootServed(bootSector("UNSIGNED", { signature: false }), 1, (boot, _host, context) => {
      assert.equal(boot.timedOut, false, `qemu timed out${context}`);
      assert.equal(boot.marker, null, `a boot sector without signature ran${context}`);
      assert.match(boot.errors.join("\n"), /Boot from SAN device 0x80 failed/, context);
      assert.ok(boot.errors.includes("No bootable device."), context);
    }),
});
