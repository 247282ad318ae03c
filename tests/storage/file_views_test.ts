/**
 * The file view store (src/storage/file_views.ts) on a real XFS: a view is a reflinked copy that
 * appears under its final name only when complete, is listed by MAC, removed, and what a cut-short
 * creation left is cleaned up; the golden image never changes.
 */

import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { FileViewStore } from "../../src/storage/file_views.ts";
import { viewConfig, viewPath } from "../../src/storage/views.ts";
import { parseConfigText } from "../../src/config/load.ts";
import { fileDigest, HAVE_XFS, withViewsFiles } from "../../lab/views.ts";
import { have } from "../../lab/command.ts";
import { type Kill, killedCreator } from "../../lab/view_creator.ts";

const HAVE_STRACE = await have("strace");
import { withScratchFileSystem } from "../../lab/files.ts";

const OPTS = { sanitizeResources: false, sanitizeOps: false, ignore: !HAVE_XFS };
const MAC = "525400123456";

Deno.test({
  ...OPTS,
  name:
    "ensure makes a view that reads as the golden image once, then finds it; list, remove and cleanup keep to views and leftovers",
  fn: () =>
    withViewsFiles(async ({ golden, views, data }) => {
      const before = await fileDigest(golden);
      const store = new FileViewStore(golden, views);
      await store.check();
      assert.deepEqual(Deno.readDirSync(views).toArray(), [], "check left its probe");
      assert.equal(await store.ensure(MAC), true);
      assert.equal(await store.ensure(MAC), false, "made twice");
      const view = `${views}/${MAC}.img`;
      assert.deepEqual(Deno.readFileSync(view), data);
      // A write to the view is the view's: the golden image keeps its bytes.
      const f = Deno.openSync(view, { write: true });
      f.writeSync(new Uint8Array(4096).fill(0xee));
      f.close();
      assert.equal(await fileDigest(golden), before);

      Deno.writeFileSync(`${views}/.aabbccddeeff.img.creating`, new Uint8Array(512));
      Deno.writeFileSync(`${views}/notes.txt`, new Uint8Array(1));
      assert.deepEqual(await store.list(), [MAC]);
      await store.cleanup();
      assert.deepEqual(
        Deno.readDirSync(views).toArray().map((e) => e.name).sort(),
        [`${MAC}.img`, "notes.txt"],
      );
      await store.remove(MAC);
      await store.remove(MAC); // nothing when there is none
      assert.deepEqual(await store.list(), []);
    }),
});

Deno.test({
  ...OPTS,
  name: "a view that cannot be made leaves nothing under its final name",
  fn: () =>
    withViewsFiles(async ({ views }) => {
      const store = new FileViewStore(`${views}/../missing.img`, views);
      await assert.rejects(store.ensure(MAC), /open\(.*missing\.img\): ENOENT/);
      await assert.rejects(store.check(), /cannot make a view in/);
      assert.deepEqual(Deno.readDirSync(views).toArray(), []);
    }),
});

Deno.test({
  sanitizeResources: false,
  sanitizeOps: false,
  name: "check on ext4 says that ext4 has no reflinks and what to do",
  fn: () =>
    withScratchFileSystem("ext4", "views-store", 64, async (dir) => {
      Deno.writeFileSync(`${dir}/golden.img`, new Uint8Array(8192));
      const store = new FileViewStore(`${dir}/golden.img`, dir);
      await assert.rejects(
        store.check(),
        /cannot share extents .*EOPNOTSUPP.*ext4 has no reflinks: put the golden image and the views on XFS or btrfs \(mkfs\.xfs -m reflink=1\), or serve an RBD snapshot/,
      );
      assert.deepEqual(
        Deno.readDirSync(dir).toArray().map((e) => e.name).sort(),
        ["golden.img", "lost+found"],
      );
    }),
});

Deno.test("a view's path and configuration: the device's settings, writable, over its own file", () => {
  const dir = Deno.makeTempDirSync({ prefix: "ggaoed-views-path-" });
  try {
    Deno.mkdirSync(`${dir}/state`);
    Deno.mkdirSync(`${dir}/views`);
    Deno.writeFileSync(`${dir}/golden.img`, new Uint8Array(4096));
    const c = parseConfigText(
      `[defaults]\nstate-directory = "${dir}/state"\n[devices.farm]\npath = "${dir}/golden.img"\nshelf = 1\nslot = 1\nviews = "${dir}/views"\nqueue-length = 16\n`,
      "farm.conf",
      { hostname: "storage1" },
    );
    const d = c.devices[0];
    assert.equal(viewPath(d, MAC), `${dir}/views/${MAC}.img`);
    const v = viewConfig(d, MAC);
    assert.equal(v.path, `${dir}/views/${MAC}.img`);
    assert.equal(v.readOnly, false);
    assert.equal(v.views, null);
    assert.equal(v.queueLength, 16);
    assert.equal(v.name, `farm/${MAC}`);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test({
  ...OPTS,
  name:
    "kill -9 during creation leaves no half-made view under a final name; cleanup removes the rest; the golden image is untouched",
  fn: () =>
    withViewsFiles(async ({ golden, views, data }) => {
      const before = await fileDigest(golden);
      const made = new Set<string>();
      const rounds = 15;
      for (let i = 0; i < rounds; i++) {
        for (const mac of await creator(golden, views, { afterMs: 5 + Math.random() * 40 })) {
          made.add(mac);
        }
      }
      const names = Deno.readDirSync(views).toArray().map((e) => e.name);
      const finals = names.filter((n) => /^[0-9a-f]{12}\.img$/.test(n));
      const leftovers = names.filter((n) => n.endsWith(".creating"));
      console.error(
        `  ${rounds} kills: ${finals.length} views, ${leftovers.length} left under .creating`,
      );
      for (const mac of made) assert.ok(finals.includes(`${mac}.img`), `view ${mac} reported made`);
      assertWholeViews(views, data);
      const store = new FileViewStore(golden, views);
      await store.cleanup();
      assert.deepEqual(
        Deno.readDirSync(views).toArray().map((e) => e.name).filter((n) => !finals.includes(n)),
        [],
        "cleanup left something besides the views",
      );
      assert.equal(await fileDigest(golden), before, "the golden image changed");
    }),
});

Deno.test({
  ...OPTS,
  ignore: !HAVE_XFS || !HAVE_STRACE,
  name:
    "kill -9 at the clone itself (strace kills the creator at an ioctl): no view under a final name is empty or partial",
  fn: () =>
    withViewsFiles(async ({ golden, views, data }) => {
      // A kill at a random moment rarely lands between the creation of the file and its clone;
      // strace makes it land there: SIGKILL at the Nth ioctl, FICLONE being most of them.
      let landed = 0;
      for (let i = 0; i < 6; i++) {
        const at = 20 + Math.floor(Math.random() * 60);
        await creator(golden, views, { atIoctl: at });
        const names = Deno.readDirSync(views).toArray().map((e) => e.name);
        if (names.some((n) => n.endsWith(".creating"))) landed++;
        assertWholeViews(views, data);
        await new FileViewStore(golden, views).cleanup();
      }
      assert.ok(landed > 0, "no kill landed at a clone: the test proved nothing");
    }),
});

/** Every view under a final name in `views` holds the golden image's bytes, every one. */
function assertWholeViews(views: string, data: Uint8Array): string[] {
  const goldenBytes = Buffer.from(data);
  const finals = Deno.readDirSync(views).toArray().map((e) => e.name)
    .filter((n) => /^[0-9a-f]{12}\.img$/.test(n));
  for (const name of finals) {
    const bytes = Deno.readFileSync(`${views}/${name}`);
    assert.equal(bytes.length, data.length, `${name}: half made (${bytes.length} bytes)`);
    assert.ok(Buffer.from(bytes).equals(goldenBytes), `${name}: not the golden image's bytes`);
  }
  return finals;
}

/** Makes views in a child process until it is killed as `kill` says (lab/view_creator.ts). */
function creator(golden: string, views: string, kill: Kill): Promise<string[]> {
  const script = new URL("./file_views_child.ts", import.meta.url).pathname;
  return killedCreator(script, [golden, views], kill);
}
