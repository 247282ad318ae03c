/**
 * Ceph RBD images served by ggaoed, end to end: a one-node cluster in a network namespace, two
 * daemons ("hosts") serving the same image as the same shelf.slot, each on its own veth pair;
 * the project's initiator and aoetools on the host ends; `rbd` (the cluster's own client) to
 * check what landed. One cluster for the whole file.
 */

import assert from "node:assert/strict";
import { pattern } from "../e2e/target.ts";
import { firstDifference } from "../helpers/files.ts";
import type { TestTarget } from "../e2e/target.ts";
import { type RbdLab, withRbdLab } from "./lab.ts";

const MiB = 1024 * 1024;
const SHARED = { name: "shared", image: "shared", shelf: 1, slot: 1 };

function stats(t: TestTarget, device: string) {
  return t.ctl("--json", "stats", device).then((r) => {
    assert.equal(r.code, 0, r.stderr);
    return JSON.parse(r.stdout).devices[0].stats as Record<string, number>;
  });
}

Deno.test({
  name: "Ceph RBD images served from two hosts at once",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async (t) => {
    await withRbdLab(async (lab) => {
      console.log(`  cluster up in ${lab.cluster.bringUpMs} ms`);
      await lab.cluster.createImage("shared", { sizeBytes: 16 * MiB });
      const a = await lab.daemon("a", [SHARED]);
      const b = await lab.daemon("b", [SHARED]);
      await servingSteps(t, lab, a, b);
    });
  },
});

async function servingSteps(t: Deno.TestContext, lab: RbdLab, a: TestTarget, b: TestTarget) {
  await t.step(
    "what one host writes, the other reads back at once, and rbd export has it",
    async () => {
      const ia = a.initiator();
      const ib = b.initiator();
      const ta = ia.find(1, 1);
      const tb = ib.find(1, 1);
      assert.equal(ia.identify(ta).sectors, 16 * MiB / 512);
      assert.equal(ib.identify(tb).sectors, 16 * MiB / 512);
      const data = pattern(4 * MiB, 7);
      ia.writeRange(ta, 2048, data);
      const back = ib.readRange(tb, 2048, data.length / 512);
      assert.equal(firstDifference(back, data), -1, "read through b after the write through a");
      const file = `${lab.dir}/shared.raw`;
      await lab.cluster.exportImage("shared", file);
      const exported = await Deno.readFile(file);
      assert.equal(
        firstDifference(exported.subarray(2048 * 512, 2048 * 512 + data.length), data),
        -1,
        "rbd export",
      );
      const sa = await stats(a, "shared");
      const sb = await stats(b, "shared");
      assert.ok(sa.write_bytes >= data.length, JSON.stringify(sa));
      assert.ok(sb.read_bytes >= data.length, JSON.stringify(sb));
      assert.equal(sa.ata_err + sb.ata_err, 0);
    },
  );
}
