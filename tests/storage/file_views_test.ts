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
        for (const mac of await killedCreator(golden, views, 5 + Math.random() * 40)) {
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
        await killedCreator(golden, views, 0, at);
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

/**
 * Runs tests/storage/file_views_child.ts (ensure on fresh MACs in a loop), kills it with SIGKILL
 * `afterMs` after it started, and returns the MACs it reported made.
 */
async function killedCreator(
  golden: string,
  views: string,
  afterMs: number,
  atIoctl?: number,
): Promise<string[]> {
  const deno = [
    Deno.execPath(),
    "run",
    "-A",
    new URL("./file_views_child.ts", import.meta.url).pathname,
    golden,
    views,
  ];
  const strace = ["-f", "-qq", "-o", "/dev/null", "-e", "trace=ioctl"];
  const [command, ...args] = atIoctl === undefined
    ? deno
    : ["strace", ...strace, "-e", `inject=ioctl:signal=SIGKILL:when=${atIoctl}`, ...deno];
  const child = new Deno.Command(command, {
    args,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let out = "";
  const reading = (async () => {
    for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) out += chunk;
  })();
  const errors = new Response(child.stderr).text();
  if (atIoctl !== undefined) {
    // strace kills it: wait for that (bounded).
    const timer = setTimeout(() => child.kill("SIGKILL"), 30_000);
    await child.status;
    clearTimeout(timer);
    await reading;
    await errors;
    return [...out.matchAll(/^made ([0-9a-f]{12})$/gm)].map((m) => m[1]);
  }
  try {
    const deadline = performance.now() + 30_000;
    while (!out.includes("ready\n")) {
      if (performance.now() > deadline) throw new Error(`the child did not start: ${out}`);
      await new Promise((r) => setTimeout(r, 5));
    }
    await new Promise((r) => setTimeout(r, afterMs));
  } finally {
    child.kill("SIGKILL");
    const status = await child.status;
    await reading;
    const stderr = await errors;
    assert.equal(status.signal, "SIGKILL", `the child ended on its own:\n${stderr}`);
  }
  return [...out.matchAll(/^made ([0-9a-f]{12})$/gm)].map((m) => m[1]);
}
