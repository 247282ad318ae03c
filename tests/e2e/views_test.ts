/**
 * Per-initiator copy-on-write views (`views = DIR`): every host, by source MAC, reads and writes
 * its own reflinked copy of the golden image; the golden image is never written. Each test makes
 * its own XFS (or ext4) file system on a loop device and removes it afterwards.
 */

import { assert, assertEquals } from "../helpers/assert.ts";
import { match as assertMatch } from "node:assert/strict";
import { AtaError } from "../../src/initiator/errors.ts";
import { have } from "../../lab/command.ts";
import {
  firstDifference,
  pattern,
  readFileRange,
  type TestTarget,
  withTarget,
} from "../../lab/target.ts";
import { withScratchFileSystem } from "../../lab/files.ts";
import { withFaultLab } from "../../lab/fault_lab.ts";
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

Deno.test({
  ...OPTS,
  name:
    "reset-on-discover: a host quiet for views-quiet that sends a Query Config reads golden data again; a host that kept talking keeps its data",
  fn: () =>
    withViews(async ({ golden, views, data }) => {
      const farm = {
        name: "farm",
        path: golden,
        extra: `views = "${views}"\nviews-lifecycle = "reset-on-discover"\nviews-quiet = 2`,
      };
      await withTarget({ links: 2, devices: [farm] }, async (t) => {
        const a = t.initiator({}, t.links[0].hostIf);
        const b = t.initiator({}, t.links[1].hostIf);
        const da = a.find(0, 1, { waitMs: 5000 });
        const db = b.find(0, 1, { waitMs: 5000 });
        const mine = pattern(BYTES, 3, LBA);
        const yours = pattern(BYTES, 4, LBA);
        a.writeRange(da, LBA, mine);
        b.writeRange(db, LBA, yours);
        // A says nothing for 3.5 s; B reads every 0.5 s meanwhile.
        const until = Date.now() + 3500;
        while (Date.now() < until) {
          assertReads(b, db, yours, "host B while A is quiet");
          await new Promise((r) => setTimeout(r, 500));
        }
        const da2 = a.find(0, 1, { waitMs: 5000 }); // a Query Config after the quiet time: a boot
        const db2 = b.find(0, 1, { waitMs: 5000 }); // B was never quiet
        assertReads(a, da2, goldenAt(data), "host A after its boot");
        assertReads(b, db2, yours, "host B, never quiet");
        await t.waitForLog(/host [0-9a-f:]+ sent a Query Config after more than views-quiet = 2 s/);
        assertEquals(t.log.match(/sent a Query Config after more than views-quiet/g)?.length, 1);
      });
    }),
});

Deno.test({
  ...OPTS,
  name:
    "max-views = 1: the second host's reads and writes are answered ATA ABRT, with one log line that says how to raise the limit",
  fn: () =>
    withViews(async ({ golden, views }) => {
      const farm = { name: "farm", path: golden, extra: `views = "${views}"\nmax-views = 1` };
      await withTarget({ links: 2, devices: [farm] }, async (t) => {
        const a = t.initiator({}, t.links[0].hostIf);
        const da = a.find(0, 1, { waitMs: 5000 });
        a.writeRange(da, LBA, pattern(BYTES, 5, LBA));
        const b = t.initiator({}, t.links[1].hostIf);
        const db = b.find(0, 1, { waitMs: 5000 });
        // Its first requests may be dropped while the main thread finds the limit; then ABRT.
        let error: unknown = null;
        for (let i = 0; i < 3 && error === null; i++) {
          try {
            b.read(db, LBA, 8);
          } catch (e) {
            error = e;
          }
        }
        assert(error instanceof AtaError, `host B got ${error}`);
        assertMatch(String(error), /ABRT/);
        let refused = 0;
        for (let i = 0; i < 3; i++) {
          try {
            b.write(db, LBA, pattern(4096, 6, LBA));
          } catch (e) {
            if (e instanceof AtaError) refused++;
          }
        }
        assertEquals(refused, 3, "writes of the host past max-views");
        assertEquals(Deno.readDirSync(views).toArray().map((e) => e.name), [
          `${viewMac(a.mac)}.img`,
        ]);
        await t.waitForLog(/has no view and the device has max-views = 1 views already/);
        const lines = t.log.match(
          /max-views = 1 views already.*raise max-views in \[devices\.farm\]/g,
        );
        assertEquals(lines?.length, 1, t.log);
        assert((await farmStats(t)).view_limit >= 4);
      });
    }),
});

Deno.test({
  ...OPTS,
  ignore: false,
  name:
    "a views directory on ext4 (no reflinks) is refused at start with the reason and the fix; the other devices are served",
  fn: () =>
    withScratchFileSystem("ext4", "i18-views", 64, async (dir) => {
      const golden = `${dir}/golden.img`;
      Deno.writeFileSync(golden, new Uint8Array(1 << 20));
      Deno.mkdirSync(`${dir}/views`);
      const farm = { name: "farm", path: golden, extra: `views = "${dir}/views"` };
      await withTarget({ devices: [farm, { name: "disk1", sizeMiB: 8 }] }, async (t) => {
        assertMatch(
          t.log,
          /disk\/farm: .*ggaoed\.conf: devices\.farm: views = ".*\/views": the file system of .*\/views cannot share extents \(reflinks: ioctl\(.*FICLONE\): EOPNOTSUPP.*ext4 has no reflinks: put the golden image and the views on XFS or btrfs \(mkfs\.xfs -m reflink=1\), or serve an RBD snapshot; device not exported/,
        );
        assertMatch(t.log, /ggaoed is running WITHOUT farm/);
        const ini = t.initiator();
        ini.find(0, 2, { waitMs: 5000 }); // disk1 is served
        assertEquals(Deno.readDirSync(`${dir}/views`).toArray(), [], "the probe was left behind");
      });
    }),
});

Deno.test({
  ...OPTS,
  name:
    "SIGKILL under write load from two hosts, then a restart: no half-made view, the golden image untouched, every acknowledged write in its host's view",
  fn: () =>
    withViews(async ({ golden, views }) => {
      // The loads write the first 8 MiB: golden zeros there (what an unwritten chunk holds).
      Deno.writeFileSync(golden, new Uint8Array(8 << 20), { append: false });
      Deno.writeFileSync(golden, pattern(8 << 20, 9, 16384), { append: true });
      const before = await digest(golden);
      const farm = { name: "farm", path: golden, extra: `views = "${views}"` };
      await withFaultLab({ mtu: 1500, ringKiB: 4096, links: 2, devices: [farm] }, async (lab) => {
        const a = lab.startLoad({ link: 0, seed: 11 });
        const b = lab.startLoad({ link: 1, seed: 12 });
        await a.progress(10);
        await b.progress(10);
        const killed = await lab.target.stop("SIGKILL");
        assertEquals(killed.signal, "SIGKILL");
        // What a kill during a view's creation leaves: a temporary file, never the final name.
        Deno.writeFileSync(`${views}/.aabbccddeeff.img.creating`, new Uint8Array(4096));
        lab.target.start();
        await lab.target.waitForLog(/ggaoed is running[\s\S]*ggaoed is running/);
        await a.progress(10);
        await b.progress(10);
        const names = Deno.readDirSync(views).toArray().map((e) => e.name).sort();
        const macA = await lab.initiatorMac(0);
        const macB = await lab.initiatorMac(1);
        assertEquals(names, [`${macA}.img`, `${macB}.img`].sort(), "the views directory");
        await lab.finishLoad(a, "farm", `${views}/${macA}.img`);
        await lab.finishLoad(b, "farm", `${views}/${macB}.img`);
        assertEquals(await digest(golden), before, "the golden image was written");
      });
    }),
});
