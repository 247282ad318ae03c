/**
 * Per-initiator views on RBD (src/rbd/clones.ts) against a one-node cluster (lab/ceph.ts):
 * clones of a protected snapshot made, listed and removed; what they read and where their
 * writes go; the errors for an unprotected snapshot; and kill -9 during creation.
 */
import assert from "node:assert/strict";
import { type ImageSpec, RadosCluster } from "../../ffi/rbd.ts";
import { type CephCluster, withCephCluster } from "../../lab/ceph.ts";
import { firstDifference } from "../../lab/files.ts";
import { RbdViewStore, REMOVE_WAIT_MS } from "../../src/rbd/clones.ts";
import { rbdIo } from "./lab.ts";
import { killedCreator } from "../../lab/view_creator.ts";

const MiB = 1024 * 1024;
/** The golden image: 8 MiB in 1 MiB objects, every byte depending on its offset. */
const SIZE = 8 * MiB;
const GOLDEN: ImageSpec = { pool: "rbd", image: "gold", snapshot: "v1" };

function goldenBytes(): Uint8Array {
  const bytes = new Uint8Array(SIZE);
  for (let i = 0; i < SIZE; i++) bytes[i] = (i * 7 + (i >> 9) * 13 + (i >> 20)) & 0xff;
  return bytes;
}

function assertSameBytes(actual: Uint8Array, expected: Uint8Array, what: string): void {
  assert.equal(actual.length, expected.length, `${what}: length`);
  const at = firstDifference(actual, expected);
  assert.equal(at, -1, `${what}: first difference at byte ${at}`);
}

Deno.test("RBD views: clones of the golden snapshot, one per host", async (t) => {
  await withCephCluster({}, async (cluster) => {
    const golden = goldenBytes();
    const raw = `${cluster.dir}/golden.raw`;
    await Deno.writeFile(raw, golden);
    await cluster.rbd(
      ["import", "--no-progress", "--order", "20", "--image-feature", "layering", raw, "rbd/gold"],
    );
    await cluster.createSnapshot("gold", "v1");
    const client = await RadosCluster.connect({ conf: cluster.conf, user: cluster.user });
    const store = new RbdViewStore({
      device: "farm",
      golden: GOLDEN,
      pool: "rbd",
      cluster: client,
    });
    try {
      await viewSteps(t, cluster, client, store, golden);
    } finally {
      await client.closeAsync();
    }
  });
});

async function viewSteps(
  t: Deno.TestContext,
  cluster: CephCluster,
  client: RadosCluster,
  store: RbdViewStore,
  golden: Uint8Array,
) {
  const mac1 = "525400123456";
  const mac2 = "525400abcdef";

  await t.step(
    "an unprotected snapshot: check() fails and says to run rbd snap protect",
    async () => {
      await assert.rejects(
        store.check(),
        /disk\/farm: views of rbd:rbd\/gold@v1 in pool 'rbd': the snapshot is not protected.*: run rbd snap protect rbd\/gold@v1$/,
      );
      await assert.rejects(store.ensure(mac1), /EINVAL .*rbd snap protect rbd\/gold@v1/);
      const missing = new RbdViewStore({
        device: "farm",
        golden: { ...GOLDEN, snapshot: "v9" },
        pool: "rbd",
        cluster: client,
      });
      await assert.rejects(
        missing.check(),
        /ENOENT .*no snapshot 'v9' .*rbd snap create rbd\/gold@v9/,
      );
      const noPool = new RbdViewStore({
        device: "farm",
        golden: GOLDEN,
        pool: "nopool",
        cluster: client,
      });
      await cluster.rbd(["snap", "protect", "rbd/gold@v1"]);
      await assert.rejects(
        noPool.check(),
        /cannot clone the snapshot: .*pool 'nopool' does not exist/,
      );
      await store.check();
      assert.deepEqual(await cluster.listImages(), ["gold"], "the probe clone is gone");
      assert.deepEqual(await store.list(), []);
    },
  );

  await t.step("ensure makes a view once, list shows it, remove removes it", async () => {
    assert.equal(await store.ensure(mac1), true);
    assert.equal(await store.ensure(mac1), false);
    // Two at once for one MAC: one makes it.
    const both = await Promise.all([store.ensure(mac2), store.ensure(mac2)]);
    assert.deepEqual(both.sort(), [false, true]);
    assert.deepEqual(await store.list(), [mac1, mac2]);
    assert.deepEqual((await cluster.listImages()).sort(), [
      `farm-${mac1}`,
      `farm-${mac2}`,
      "gold",
    ]);
    const info = JSON.parse(await cluster.rbd(["info", "--format", "json", `rbd/farm-${mac1}`]));
    assert.equal(info.parent.pool, "rbd");
    assert.equal(info.parent.image, "gold");
    assert.equal(info.parent.snapshot, "v1");
    assert.equal(info.size, SIZE);
    await store.remove(mac1);
    await store.remove(mac1); // nothing to remove: no error
    assert.deepEqual(await store.list(), [mac2]);
    assert.equal(store.where, "rbd/farm-*");
    assert.deepEqual(store.image(mac2), { pool: "rbd", image: `farm-${mac2}` });
    assert.throws(() => store.image("52:54:00:12:34:56"), /12 lower-case hex digits/);
    // Another device's views and other images are not its views.
    await cluster.createImage("farm-x-525400000001", { sizeBytes: MiB });
    await cluster.createImage(`farmx-${mac1}`, { sizeBytes: MiB });
    assert.deepEqual(await store.list(), [mac2]);
    await cluster.removeImage("farm-x-525400000001");
    await cluster.removeImage(`farmx-${mac1}`);
  });

  await t.step(
    "remove waits for a view whose close is under way; one left open is an error that says so",
    async () => {
      assert.equal(await store.ensure(mac1), true);
      // Open read-write: the image has a watch, and rbd_remove refuses it (EBUSY).
      const open = await client.openImage(store.image(mac1));
      const closing = new Promise((r) => setTimeout(r, 300)).then(() => open.closeAsync());
      const started = performance.now();
      await store.remove(mac1);
      await closing;
      const waited = performance.now() - started;
      assert.ok(waited >= 250, `removed after ${waited.toFixed(0)} ms, before the close`);
      assert.deepEqual(await store.list(), [mac2]);

      assert.equal(await store.ensure(mac1), true);
      const kept = await client.openImage(store.image(mac1));
      try {
        await assert.rejects(
          store.remove(mac1),
          new RegExp(
            `disk/farm: cannot remove rbd/farm-${mac1}: rbd_remove\\(rbd/farm-${mac1}\\): EBUSY .*` +
              `rbd status rbd/farm-${mac1}.*still open after ${REMOVE_WAIT_MS / 1000} s$`,
          ),
        );
      } finally {
        await kept.closeAsync();
      }
      await store.remove(mac1);
      assert.deepEqual(await store.list(), [mac2]);
    },
  );

  await t.step(
    "a view reads the snapshot's bytes; its writes reach neither the snapshot nor the head",
    async () => {
      const view = store.image(mac2);
      assertSameBytes(await rbdIo(client, view, 0, SIZE), golden, "a fresh view");
      assert.equal(await store.bytesWritten(mac2), 0);
      // One sector at the start, and 64 KiB across the boundary of objects 3 and 4.
      const expected = golden.slice();
      const writes: [number, number][] = [[0, 512], [4 * MiB - 32 * 1024, 64 * 1024]];
      for (const [offset, length] of writes) {
        const data = new Uint8Array(length).map((_, i) => (i * 31 + offset + 0x5a) & 0xff);
        await rbdIo(client, view, offset, length, data);
        expected.set(data, offset);
      }
      assertSameBytes(await rbdIo(client, view, 0, SIZE), expected, "the view after writes");
      const written = await store.bytesWritten(mac2);
      // Each write copied its 1 MiB object up: three objects.
      assert.ok(written >= 64 * 1024 + 512 && written <= 3 * MiB, `bytesWritten ${written}`);
      assertSameBytes(
        await rbdIo(client, { ...GOLDEN, readOnly: true }, 0, SIZE),
        golden,
        "the snapshot",
      );
      assertSameBytes(
        await rbdIo(client, { pool: "rbd", image: "gold", readOnly: true }, 0, SIZE),
        golden,
        "the head",
      );
      // The other hosts' views do not see it either.
      assert.equal(await store.ensure(mac1), true);
      assertSameBytes(await rbdIo(client, store.image(mac1), 0, SIZE), golden, "another view");
    },
  );

  await t.step(
    "kill -9 during creation leaves no half-made view under a final name; cleanup removes the rest",
    async () => {
      const before = new Set(await store.list());
      const made = new Set<string>();
      const rounds = 12;
      for (let round = 0; round < rounds; round++) {
        for (const mac of await killedClones(cluster, 40 + Math.random() * 400)) made.add(mac);
      }
      const names = await cluster.listImages();
      const leftovers = names.filter((n) => n.endsWith(".creating"));
      const views = (await store.list()).filter((mac) => !before.has(mac));
      console.log(
        `  ${rounds} kills: ${views.length} views made, ${leftovers.length} left under .creating`,
      );
      for (const mac of made) assert.ok(views.includes(mac), `view ${mac} was reported made`);
      // Every view under a final name is whole: a clone of the snapshot that reads its bytes.
      for (const mac of views) {
        assertSameBytes(await rbdIo(client, store.image(mac), 0, SIZE), golden, `view ${mac}`);
      }
      const started = performance.now();
      await store.cleanup();
      const after = await cluster.listImages();
      assert.deepEqual(after.filter((n) => n.endsWith(".creating")), [], "cleanup leaves none");
      console.log(`  cleanup took ${Math.round(performance.now() - started)} ms`);
      // The snapshot's children are the views (none dangling from a cut-short clone).
      const children = JSON.parse(
        await cluster.rbd(["children", "--format", "json", "rbd/gold@v1"]),
      ).map((c: { image: string }) => c.image).sort();
      assert.deepEqual(children, (await store.list()).map((mac) => `farm-${mac}`));
      // A MAC whose creation was cut short gets its view.
      for (const name of leftovers.slice(0, 2)) {
        const mac = /^farm-([0-9a-f]{12})\.creating$/.exec(name)![1];
        assert.equal(await store.ensure(mac), true);
        assertSameBytes(await rbdIo(client, store.image(mac), 0, SIZE), golden, `view ${mac}`);
      }
    },
  );
}

/** Makes views in a child process (tests/rbd/views_child.ts), killed -9 `afterMs` after it started. */
function killedClones(cluster: CephCluster, afterMs: number): Promise<string[]> {
  const script = new URL("./views_child.ts", import.meta.url).pathname;
  const args = [cluster.conf, cluster.user, "farm", "rbd", "rbd/gold@v1"];
  return killedCreator(script, args, { afterMs });
}
