/**
 * Per-host views (`views = DIR`) seen by real initiators: the Linux kernel's aoe driver and iPXE,
 * booted under qemu with the NIC MAC each test chooses, on one tap, against one ggaoed serving a
 * golden image on a fresh XFS (views are reflinked copies of it). Every host gets the same
 * shelf.slot and its own data; the golden image is never written. See tests/kernel/README.md.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { withScratchFileSystem } from "../../lab/files.ts";
import {
  type GuestRun,
  hostHas,
  kernelHarnessUnavailable,
  runGuest,
  tail,
  type TapNamespace,
  withTapNamespace,
} from "./harness.ts";
import { Host } from "./hosts.ts";
import {
  BOOT_SECTOR_EXIT_STATUS,
  bootSector,
  type IpxeBoot,
  ipxeUnavailable,
  runIpxeSanboot,
  writeBootImage,
} from "./ipxe.ts";
import {
  fileMd5,
  guestScripts,
  layeredPatternMd5,
  patternMd5,
  writePatternFile,
} from "./scripts.ts";

const kernelSkip = kernelHarnessUnavailable() ??
  (hostHas("mkfs.xfs") ? null : "per-host views need mkfs.xfs (Debian: xfsprogs) for reflinks") ??
  (hostHas("losetup") && hostHas("mount") ? null : "needs losetup and mount (util-linux)");
const ipxeSkip = kernelSkip ?? ipxeUnavailable();
if (ipxeSkip) console.warn(`SKIP tests/kernel/views_boot_test.ts: ${ipxeSkip}`);

/** Host A and host B: the NIC MACs of their boots, and the names of their views. */
const A = { mac: "52:54:00:18:b0:0a", view: "52540018b00a" };
const B = { mac: "52:54:00:18:b0:0b", view: "52540018b00b" };

const SIZE_MIB = 16;

function md5(bytes: Uint8Array): string {
  return createHash("md5").update(bytes).digest("hex");
}

async function sector0(path: string): Promise<Uint8Array> {
  using file = await Deno.open(path);
  const buf = new Uint8Array(512);
  assert.equal(await file.read(buf), 512, `${path} is shorter than a sector`);
  return buf;
}

/** One views device served to the tap, and where its files are. */
interface Farm {
  ns: TapNamespace;
  host: Host;
  golden: string;
  views: string;
}

/**
 * Makes a fresh XFS (reflinks), a golden image on it with `makeGolden`, and a ggaoed serving it
 * as e1.1 with `views` in a directory beside it on a tap (`options.lifecycle`: by default
 * `persist`, views live until removed); runs `body`, checks that `options.views` views are open
 * (2 by default), stops the daemon (it must exit 0) and hands the files to `after`.
 */
function withFarm(
  makeGolden: (path: string) => Promise<void>,
  body: (farm: Farm) => Promise<void>,
  after: (farm: Farm) => Promise<void>,
  options: { lifecycle: string[]; views: number } = {
    lifecycle: [`views-lifecycle = "persist"`],
    views: 2,
  },
): Promise<void> {
  return withScratchFileSystem("xfs", "i18-boot", 512, async (dir) => {
    const golden = join(dir, "golden.img");
    const views = join(dir, "views");
    await Deno.mkdir(views);
    await makeGolden(golden);
    await withTapNamespace(1500, async (ns) => {
      const host = new Host("ggaoed", dir, ns.netns, ns.tap, [
        `path = "${golden}"`,
        "shelf = 1",
        "slot = 1",
        `views = "${views}"`,
        ...options.lifecycle,
        "max-views = 8",
      ]);
      await host.start();
      const farm = { ns, host, golden, views };
      try {
        await body(farm);
        const stats = await host.stats();
        assert.ok(stats, "ggaoed's counters");
        assert.equal(stats.views, options.views, `views: ${JSON.stringify(stats)}`);
        assert.equal(stats.ata_err + stats.proto_err, 0, JSON.stringify(stats));
      } finally {
        await host.stop();
      }
      assert.equal((await host.process!.status).code, 0, `ggaoed exit status\n${host.log()}`);
      await after(farm);
    });
  });
}

/** Boots the kernel guest with `mac` and `guestScript`; it must run the script to exit 0. */
async function kernelBoot(
  farm: Farm,
  mac: string,
  guestScript: string,
  files: Record<string, Uint8Array> = {},
): Promise<GuestRun> {
  const run = await runGuest({ ...farm.ns, mac, guestScript, files, timeoutMs: 120_000 });
  const context = `\n--- guest ${mac} (tail) ---\n${tail(run.output)}\n--- ggaoed ---\n${
    tail(farm.host.log(), 15)
  }`;
  assert.equal(run.timedOut, false, `guest ${mac} timed out${context}`);
  assert.deepEqual(run.guestErrors, [], context);
  assert.equal(run.exitCode, 0, `guest ${mac} failed${context}`);
  assert.equal(run.results.get("size_bytes"), String(SIZE_MIB * 1024 * 1024), context);
  return run;
}

/** Sanboots iPXE with `mac`; it must boot a sector that prints its marker. */
async function ipxeBoot(farm: Farm, mac: string): Promise<IpxeBoot> {
  const boot = await runIpxeSanboot({ ...farm.ns, mac, shelf: 1, slot: 1, timeoutMs: 90_000 });
  const context = `\n--- iPXE ${mac} serial console (tail) ---\n${tail(boot.output)}\n` +
    `--- ggaoed ---\n${tail(farm.host.log(), 15)}`;
  assert.equal(boot.timedOut, false, `iPXE ${mac} timed out${context}`);
  assert.deepEqual(boot.errors, [], `iPXE ${mac} did not boot${context}`);
  assert.equal(boot.exitCode, BOOT_SECTOR_EXIT_STATUS, `qemu exit status${context}`);
  return boot;
}

const GOLDEN_SECTOR = bootSector("GOLDEN");
const HOST_A_SECTOR = bootSector("HOST-A");

/**
 * withFarm over a 16 MiB golden image whose sector 0 is the `GOLDEN` boot sector, into whose
 * view host A has written the `HOST-A` boot sector (through the kernel's driver, with MAC A)
 * before `body` runs; `after` runs once the golden image is found unchanged.
 */
function withBootFarm(
  body: (farm: Farm, install: GuestRun) => Promise<void>,
  after: (farm: Farm) => Promise<void>,
  options?: Parameters<typeof withFarm>[3],
): Promise<void> {
  let goldenMd5 = "";
  return withFarm(
    async (path) => {
      await writeBootImage(path, GOLDEN_SECTOR, SIZE_MIB * 1024 * 1024);
      goldenMd5 = await fileMd5(path);
    },
    async (farm) => {
      const script = guestScripts.writeFileAt("e1.1", "/guest/mbr", 0);
      const run = await kernelBoot(farm, A.mac, script, { "/guest/mbr": HOST_A_SECTOR });
      assert.equal(run.results.get("written_md5"), md5(HOST_A_SECTOR));
      assert.equal(run.results.get("read_md5"), md5(HOST_A_SECTOR), "A reads back its sector");
      await body(farm, run);
    },
    async (farm) => {
      assert.equal(await fileMd5(farm.golden), goldenMd5, "the golden image was written");
      await after(farm);
    },
    options,
  );
}

Deno.test({
  name: "iPXE boots each host's own view: host A's boot sector for MAC A, the golden one for " +
    "MAC B, and the golden image is untouched",
  ignore: ipxeSkip !== null,
  fn: () =>
    withBootFarm(
      async (farm, install) => {
        const bootA = await ipxeBoot(farm, A.mac);
        assert.equal(bootA.marker, "HOST-A", "iPXE with MAC A booted another sector than A's");
        const bootB = await ipxeBoot(farm, B.mac);
        assert.equal(bootB.marker, "GOLDEN", "iPXE with MAC B booted another sector than golden");
        console.log(
          `views: host A wrote its boot sector in ${install.durationMs} ms (boot to power-off); ` +
            `iPXE as A ${bootA.durationMs} ms, as B ${bootB.durationMs} ms`,
        );
      },
      async ({ views }) => {
        const a = await sector0(join(views, `${A.view}.img`));
        assert.deepEqual(a, HOST_A_SECTOR, "view A, sector 0");
        assert.deepEqual(await sector0(join(views, `${B.view}.img`)), GOLDEN_SECTOR, "view B");
      },
    ),
});

Deno.test({
  name: "the kernel aoe initiator with MAC A, then MAC B, writes the same sectors of one views " +
    "device: each reads its own data, A's next boot finds A's, and the golden image is untouched",
  ignore: kernelSkip !== null,
  fn: async () => {
    const MIB = 4; // the sectors both hosts write: MiB 0 to 4
    const layered = (seed: string) =>
      layeredPatternMd5(SIZE_MIB, [
        { seed: "golden", from: 0, to: SIZE_MIB },
        { seed, from: 0, to: MIB },
      ]);
    const times: string[] = [];
    await withFarm(
      (path) => writePatternFile(path, SIZE_MIB, "golden"),
      async (farm) => {
        const steps = [
          { who: A, expect: "golden", other: "hostB", write: "hostA", md5: layered("hostA") },
          { who: B, expect: "golden", other: "hostA", write: "hostB", md5: layered("hostB") },
          // A's second boot only reads: its data, none of B's.
          { who: A, expect: "hostA", other: "hostB", write: undefined, md5: layered("hostA") },
        ];
        for (const [i, step] of steps.entries()) {
          const script = guestScripts.patternOverlay("e1.1", SIZE_MIB, { mib: MIB, ...step });
          const run = await kernelBoot(farm, step.who.mac, script);
          const r = (key: string) => run.results.get(key);
          const what = `boot ${i + 1} (MAC ${step.who.mac})\n${tail(run.output, 15)}`;
          assert.equal(r("before_checked_sectors"), String(MIB * 2048), what);
          assert.equal(r("before_stale_sectors"), "0", `sees the other host's data: ${what}`);
          assert.equal(r("before_wrong_sectors"), "0", `does not find ${step.expect}: ${what}`);
          if (step.write) {
            assert.equal(r("after_wrong_sectors"), "0", `reads back other data: ${what}`);
          }
          assert.equal(r("md5"), step.md5, `whole device: ${what}`);
          times.push(`boot ${i + 1} ${run.durationMs} ms`);
        }
      },
      async ({ golden, views }) => {
        assert.equal(await fileMd5(golden), patternMd5(SIZE_MIB, "golden"), "golden was written");
        assert.equal(await fileMd5(join(views, `${A.view}.img`)), layered("hostA"), "view A");
        assert.equal(await fileMd5(join(views, `${B.view}.img`)), layered("hostB"), "view B");
      },
    );
    console.log(`views, kernel initiator: ${times.join(", ")} (boot to power-off)`);
  },
});

/** views-quiet of the reset-on-discover test: far above the gap between two boots in a row. */
const QUIET_SECONDS = 15;

Deno.test({
  name: "with reset-on-discover, iPXE as host A boots A's own boot sector while A was heard " +
    "from within views-quiet, and the golden one after views-quiet of silence",
  ignore: ipxeSkip !== null,
  fn: () =>
    withBootFarm(
      async (farm) => {
        // A reboots at once: its Query Config comes seconds after its last frame.
        const soon = await ipxeBoot(farm, A.mac);
        assert.equal(soon.marker, "HOST-A", "a reboot within views-quiet reset host A's view");
        const quietFrom = Date.now();
        await new Promise((r) => setTimeout(r, (QUIET_SECONDS + 3) * 1000));
        const later = await ipxeBoot(farm, A.mac);
        assert.equal(later.marker, "GOLDEN", "a boot after views-quiet kept host A's old view");
        // Once, for the second boot: the view made at the first frame is logged otherwise.
        const resets = farm.host.log().match(/starts again from the golden image/g) ?? [];
        assert.equal(resets.length, 1, `one reset logged:\n${farm.host.log()}`);
        console.log(
          `reset-on-discover: boot within views-quiet ${soon.durationMs} ms, after ${
            Date.now() - quietFrom - later.durationMs
          } ms of silence ${later.durationMs} ms`,
        );
      },
      async ({ views }) => {
        assert.deepEqual(await sector0(join(views, `${A.view}.img`)), GOLDEN_SECTOR, "view A");
      },
      {
        lifecycle: [`views-lifecycle = "reset-on-discover"`, `views-quiet = ${QUIET_SECONDS}`],
        views: 1,
      },
    ),
});
