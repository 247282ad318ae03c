/**
 * Per-host views under a fault: the daemon killed (SIGKILL) while two hosts write to their views,
 * and started again. Pass: no half-made view is left (nor what a kill during a view's creation
 * leaves), the golden image is untouched, and every write acknowledged before the kill is in its
 * host's view, as the verifying loads check against each view file.
 */

import { assertEquals } from "../helpers/assert.ts";
import { withFaultLab } from "../../lab/fault_lab.ts";
import { pattern } from "../../lab/target.ts";
import { fileDigest, HAVE_XFS, withViewsFiles } from "../../lab/views.ts";

const OPTS = { sanitizeResources: false, sanitizeOps: false, ignore: !HAVE_XFS };

for (const directIo of [false, true]) {
  Deno.test({
    ...OPTS,
    name:
      `direct-io = ${directIo}: SIGKILL under write load from two hosts, then a restart: no half-made view, the golden image untouched, every acknowledged write in its host's view`,
    fn: () =>
      withViewsFiles(async ({ golden, views }) => {
        // The loads write the first 8 MiB: golden zeros there (what an unwritten chunk holds).
        Deno.writeFileSync(golden, new Uint8Array(8 << 20), { append: false });
        Deno.writeFileSync(golden, pattern(8 << 20, 9, 16384), { append: true });
        const before = await fileDigest(golden);
        const farm = { name: "farm", path: golden, extra: `views = "${views}"` };
        await withFaultLab(
          { mtu: 1500, ringKiB: 4096, links: 2, devices: [farm], directIo },
          async (lab) => {
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
            assertEquals(await fileDigest(golden), before, "the golden image was written");
          },
        );
      }),
  });
}
