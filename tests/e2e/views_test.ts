/**
 * Per-initiator copy-on-write views (`views = DIR`): every host, by source MAC, reads and writes
 * its own reflinked copy of the golden image; the golden image is never written. Each test makes
 * its own XFS (or ext4) file system on a loop device and removes it afterwards.
 */

import { assert, assertEquals } from "../helpers/assert.ts";
import { have } from "../../lab/command.ts";
import {
  firstDifference,
  pattern,
  readFileRange,
  type TestTarget,
  withTarget,
} from "../../lab/target.ts";
import { withScratchFileSystem } from "../../lab/files.ts";
import type { Initiator, TargetInfo } from "../../src/initiator/mod.ts";
import { viewMac } from "../../src/storage/views.ts";

const HAVE_XFS = await have("mkfs.xfs");
if (!HAVE_XFS) {
  console.error("views_test: mkfs.xfs is missing (Debian: xfsprogs): the views tests are skipped");
}
const OPTS = { sanitizeResources: false, sanitizeOps: false, ignore: !HAVE_XFS };

/** Size of the golden image in the tests. */
const GOLDEN_MIB = 16;
/** Where the hosts write: 256 KiB at LBA 1024. */
const LBA = 1024;
const BYTES = 256 * 1024;

/** Makes the golden image: a known pattern over all of it. */
function makeGolden(path: string): Uint8Array {
  const data = pattern(GOLDEN_MIB * 1024 * 1024, 777);
  Deno.writeFileSync(path, data);
  return data;
}

async function digest(path: string): Promise<string> {
  const bytes = await crypto.subtle.digest("SHA-256", Deno.readFileSync(path));
  return Array.from(new Uint8Array(bytes), (b) => b.toString(16).padStart(2, "0")).join("");
}

/** The golden image's bytes where the hosts write. */
function goldenAt(golden: Uint8Array): Uint8Array {
  return golden.subarray(LBA * 512, LBA * 512 + BYTES);
}

function assertReads(ini: Initiator, disk: TargetInfo, want: Uint8Array, what: string): void {
  const got = ini.readRange(disk, LBA, BYTES / 512);
  const at = firstDifference(got, want);
  assertEquals(at, -1, `${what}: the first difference is at byte ${at}`);
}

/** `ggaoectl --json stats farm`: the counters of device farm. */
async function farmStats(t: TestTarget): Promise<Record<string, number>> {
  const r = await t.ctl("--json", "stats", "farm");
  assertEquals(r.code, 0, r.stderr);
  return JSON.parse(r.stdout).devices[0].stats;
}

/** A views device over a golden image on a fresh XFS; `body` gets the paths. */
function withViews(
  body: (fs: { golden: string; views: string; data: Uint8Array }) => Promise<void>,
): Promise<void> {
  return withScratchFileSystem("xfs", "i18-views", 1024, async (dir) => {
    const golden = `${dir}/golden.img`;
    const views = `${dir}/views`;
    Deno.mkdirSync(views);
    const data = makeGolden(golden);
    await body({ golden, views, data });
  });
}

Deno.test({
  ...OPTS,
  name:
    "two hosts write the same sectors of one views device and each reads its own; the golden image is untouched; views persist across a restart; reset-view gives golden data back",
  fn: () =>
    withViews(async ({ golden, views, data }) => {
      const before = await digest(golden);
      const farm = { name: "farm", path: golden, extra: `views = "${views}"` };
      await withTarget({ links: 2, devices: [farm] }, async (t) => {
        const a = t.initiator({}, t.links[0].hostIf);
        const b = t.initiator({}, t.links[1].hostIf);
        const da = a.find(0, 1, { waitMs: 5000 });
        const db = b.find(0, 1, { waitMs: 5000 });
        // IDENTIFY is the same for every host: one size, one serial number.
        const ia = a.identify(da);
        const ib = b.identify(db);
        assertEquals([ia.sectors, ia.serial], [ib.sectors, ib.serial]);
        assertEquals(ia.sectors, GOLDEN_MIB * 2048);
        assertReads(a, da, goldenAt(data), "host A before any write");
        const mine = pattern(BYTES, 1, LBA);
        const yours = pattern(BYTES, 2, LBA);
        a.writeRange(da, LBA, mine);
        b.writeRange(db, LBA, yours);
        a.flush(da);
        b.flush(db);
        assertReads(a, da, mine, "host A reads its own write");
        assertReads(b, db, yours, "host B reads its own write");
        assertEquals(await digest(golden), before, "the golden image was written");
        // Each view file holds its host's data: the MAC mapping is right.
        const macA = viewMac(a.mac);
        const macB = viewMac(b.mac);
        const viewA = `${views}/${macA}.img`;
        const viewB = `${views}/${macB}.img`;
        assertEquals(firstDifference(readFileRange(viewA, LBA * 512, BYTES), mine), -1);
        assertEquals(firstDifference(readFileRange(viewB, LBA * 512, BYTES), yours), -1);

        const listed = await t.ctl("--json", "views", "farm");
        assertEquals(listed.code, 0, listed.stderr);
        const list = JSON.parse(listed.stdout).views as { mac: string; open: boolean }[];
        assertEquals(list.map((v) => v.mac).sort(), [macA, macB].sort());
        assert(list.every((v) => v.open), listed.stdout);
        const text = await t.ctl("views");
        assert(text.stdout.includes(macA.replace(/(..)(?!$)/g, "$1:")), text.stdout);

        const s = await farmStats(t);
        assertEquals(s.views, 2, "ggaoed_device_views");
        assertEquals(s.view_write_bytes, 2 * BYTES, "bytes written to views");

        // A restart: the views persist, each host finds its own data again.
        await t.stop("SIGTERM");
        t.start();
        await t.waitForLog(/ggaoed is running[\s\S]*ggaoed is running/);
        const da2 = a.find(0, 1, { waitMs: 5000 });
        const db2 = b.find(0, 1, { waitMs: 5000 });
        assertReads(a, da2, mine, "host A after a restart");
        assertReads(b, db2, yours, "host B after a restart");

        // reset-view: host A reads golden data again, host B keeps its own.
        const reset = await t.ctl("reset-view", "farm", a.mac.toString(16).padStart(12, "0"));
        assertEquals(reset.code, 0, reset.stderr + reset.stdout);
        assertReads(a, da2, goldenAt(data), "host A after reset-view");
        assertReads(b, db2, yours, "host B after host A's reset-view");
        assertEquals(await digest(golden), before, "the golden image was written");

        assertEquals((await farmStats(t)).views, 2, "ggaoed_device_views");
      });
    }),
});
