/**
 * Per-host views of an RBD snapshot served end to end: a daemon serves one device whose golden
 * image is a protected snapshot (`path = "rbd:rbd/gold@v1"`, `views = "rbd:rbd"`); two hosts
 * (two macvlan interfaces with their own MACs on the daemon's veth) write different data to the
 * same sectors and each reads back its own, while the snapshot keeps its bytes.
 */

import assert from "node:assert/strict";
import { run } from "../../lab/command.ts";
import { firstDifference } from "../../lab/files.ts";
import { pattern } from "../../lab/target.ts";
import { withRbdLab } from "./lab.ts";

const MiB = 1024 * 1024;
const SIZE = 16 * MiB;

/** A macvlan on `lower` with its own MAC, up; removed by {@link removeLink}. */
async function macvlan(name: string, lower: string, mac: string): Promise<string> {
  await run(["ip", "link", "add", name, "link", lower, "type", "macvlan", "mode", "bridge"]);
  await run(["ip", "link", "set", name, "address", mac, "up"]);
  return name;
}

async function removeLink(name: string): Promise<void> {
  await run(["ip", "link", "del", name], { check: false });
}

Deno.test({
  name: "RBD views: two hosts write the same sectors of one device and each reads back its own",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    await withRbdLab(async (lab) => {
      const golden = pattern(SIZE, 99);
      const raw = `${lab.dir}/gold.raw`;
      await Deno.writeFile(raw, golden);
      await lab.cluster.rbd([
        "import",
        "--no-progress",
        "--image-feature",
        "layering",
        raw,
        "rbd/gold",
      ]);
      await lab.cluster.createSnapshot("gold", "v1");
      await lab.cluster.rbd(["snap", "protect", "rbd/gold@v1"]);
      const d = await lab.daemon("a", [{
        name: "farm",
        image: "gold@v1",
        shelf: 1,
        slot: 1,
        extra: 'views = "rbd:rbd"',
      }]);
      const macs = ["52:54:00:18:00:0a", "52:54:00:18:00:0b"];
      const hexMacs = macs.map((m) => m.replaceAll(":", ""));
      const links: string[] = [];
      try {
        for (const [i, mac] of macs.entries()) {
          links.push(await macvlan(`i18rc${process()}${i}`, d.hostIf, mac));
        }
        const [ia, ib] = links.map((l) => d.initiator({ timeoutMs: 500, retries: 20 }, l));
        const ta = ia.find(1, 1);
        const tb = ib.find(1, 1);
        assert.equal(ia.identify(ta).sectors, SIZE / 512);
        assert.equal(ib.identify(tb).sectors, SIZE / 512);
        // Both read the golden bytes first.
        const lba = 2048;
        const length = 1 * MiB;
        const before = golden.subarray(lba * 512, lba * 512 + length);
        assert.equal(firstDifference(ia.readRange(ta, lba, length / 512), before), -1, "a reads");
        assert.equal(firstDifference(ib.readRange(tb, lba, length / 512), before), -1, "b reads");
        // Different data to the same sectors, then each reads back its own.
        const da = pattern(length, 1, lba);
        const db = pattern(length, 2, lba);
        ia.writeRange(ta, lba, da);
        ib.writeRange(tb, lba, db);
        assert.equal(firstDifference(ia.readRange(ta, lba, length / 512), da), -1, "a's own");
        assert.equal(firstDifference(ib.readRange(tb, lba, length / 512), db), -1, "b's own");
        ia.close();
        ib.close();

        // The snapshot and the head keep the golden bytes; each view holds its host's.
        for (const image of ["gold@v1", "gold"]) {
          const file = `${lab.dir}/export.raw`;
          await lab.cluster.exportImage(image, file);
          assert.equal(firstDifference(await Deno.readFile(file), golden), -1, image);
          await Deno.remove(file);
        }
        const names = hexMacs.map((m) => `farm-${m}`);
        assert.deepEqual((await lab.cluster.listImages()).sort(), ["gold", ...names].sort());
        for (const [i, data] of [da, db].entries()) {
          const file = `${lab.dir}/view.raw`;
          await lab.cluster.exportImage(names[i], file);
          const view = await Deno.readFile(file);
          const expected = golden.slice();
          expected.set(data, lba * 512);
          assert.equal(firstDifference(view, expected), -1, names[i]);
          await Deno.remove(file);
        }

        // ggaoectl views lists both, open.
        const listed = await d.ctl("--json", "views", "farm");
        assert.equal(listed.code, 0, listed.stderr);
        const list = JSON.parse(listed.stdout).views as { mac: string; open: boolean }[];
        assert.deepEqual(list.map((v) => v.mac).sort(), hexMacs);
        assert.ok(list.every((v) => v.open), listed.stdout);

        // A restart: the views persist; reset-view gives host A the golden bytes again (its
        // clone is removed and made anew), host B keeps its own.
        await d.stop("SIGTERM");
        d.start();
        await d.waitForLog(/ggaoed is running[\s\S]*ggaoed is running/, 30_000);
        const [ia2, ib2] = links.map((l) => d.initiator({ timeoutMs: 500, retries: 20 }, l));
        const ta2 = ia2.find(1, 1);
        const tb2 = ib2.find(1, 1);
        assert.equal(
          firstDifference(ia2.readRange(ta2, lba, length / 512), da),
          -1,
          "a, restarted",
        );
        assert.equal(
          firstDifference(ib2.readRange(tb2, lba, length / 512), db),
          -1,
          "b, restarted",
        );
        // Each reset closes the open clone and removes it at once: the removal must not find
        // the clone still open (rbd_remove refuses an image with watchers).
        for (let i = 1; i <= 5; i++) {
          const reset = await d.ctl("reset-view", "farm", hexMacs[0]);
          assert.equal(reset.code, 0, reset.stderr + reset.stdout);
          const back = ia2.readRange(ta2, lba, length / 512);
          assert.equal(firstDifference(back, before), -1, `a, reset ${i}`);
          ia2.writeRange(ta2, lba, da);
        }
        assert.equal(firstDifference(ib2.readRange(tb2, lba, length / 512), db), -1, "b, kept");
        ia2.close();
        ib2.close();
      } finally {
        for (const l of links) await removeLink(l);
      }
    });
  },
});

/** A few digits of this process's id: link names unique among parallel test runs. */
function process(): string {
  return String(Deno.pid % 10000);
}
