/**
 * Process and peer faults under load: the daemon killed with SIGKILL and started again; two
 * initiators on two links at once; storage that fails with EIO on some sectors and runs out of
 * space, while a verifying load runs beside them. Each at MTU 1500 and 9000, with packet rings
 * and with recvfrom/sendto.
 *
 * Pass: every write the daemon acknowledged before the kill is in the file afterwards, and the
 * load resumes against the new daemon; two loads on two links are both served and verified;
 * requests that touch bad sectors or need space that is not there get their ATA error while
 * every other request is served byte-exact, and the counters say so.
 */

import { assert, assertEquals } from "../helpers/assert.ts";
import { withFaultyFile, withFillingFile } from "../../lab/storage_faults.ts";
import {
  type FaultLab,
  type LabDevice,
  type Load,
  MATRIX,
  withFaultLab,
} from "../../lab/fault_lab.ts";

const OPTS = { sanitizeResources: false, sanitizeOps: false };

/**
 * `m`'s lab with two links serving `disk1`, and a load on its first 8 MiB from link 1, 10
 * chunks in when `body` starts. Afterwards the daemon must be up and every chunk the load
 * acknowledged in the file.
 */
function underLoad(
  m: (typeof MATRIX)[number],
  disk1: Omit<LabDevice, "name">,
  body: (lab: FaultLab, load: Load) => Promise<void>,
): Promise<void> {
  const devices = [{ name: "disk1", ...disk1 }];
  return withFaultLab({ mtu: m.mtu, ringKiB: m.ringKiB, links: 2, devices }, async (lab) => {
    const load = lab.startLoad();
    await load.progress(10);
    await body(lab, load);
    await lab.assertAlive();
    await lab.finishLoad(load);
  });
}

for (const m of MATRIX) {
  for (const directIo of [false, true]) {
    Deno.test({
      ...OPTS,
      name:
        `${m.label}, direct-io = ${directIo}: SIGKILL under load and a restart keep every acknowledged write, and the load goes on`,
      fn: () =>
        withFaultLab({ mtu: m.mtu, ringKiB: m.ringKiB, directIo }, async (lab) => {
          const load = lab.startLoad();
          await load.progress(20);
          const killed = await lab.target.stop("SIGKILL");
          assertEquals(killed.signal, "SIGKILL");
          // The kill left the pid file and socket behind: the new daemon takes them over.
          lab.target.start();
          await lab.target.waitForLog(/ggaoed is running[\s\S]*ggaoed is running/);
          await load.progress(20);
          await lab.assertAlive();
          // Every chunk the load acknowledged, before and after the kill, is in the file.
          await lab.finishLoad(load);
        }),
    });
  }

  Deno.test({
    ...OPTS,
    name: `${m.label}: two initiators on two links at once are both served, every byte verified`,
    fn: () =>
      withFaultLab({
        mtu: m.mtu,
        ringKiB: m.ringKiB,
        links: 2,
        devices: [{ name: "disk1" }, { name: "disk2" }],
      }, async (lab) => {
        const a = lab.startLoad({ link: 0, slot: 1 });
        const b = lab.startLoad({ link: 1, slot: 2 });
        // The same device from both links, in separate regions.
        const c = lab.startLoad({ link: 1, slot: 1, firstLba: 16384, sectors: 8192 });
        await Promise.all([a.progress(30), b.progress(30), c.progress(15)]);
        await lab.assertAlive();
        await lab.finishLoad(a);
        await lab.finishLoad(b, "disk2");
        await lab.finishLoad(c);
        const s = await lab.stats();
        for (const l of lab.links) assert(s.iface[l.target].tx_cnt > 0, `${l.target} sent nothing`);
      }),
  });

  Deno.test({
    ...OPTS,
    name:
      `${m.label}: bad sectors hit while a load runs get ATA UNC; every other request is served byte-exact`,
    fn: () =>
      withFaultyFile({ sizeBytes: 32 * 1024 * 1024 }, async (f) => {
        await underLoad(m, { path: f.path }, async (lab, load) => {
          // The load works on the first 8 MiB; the bad sectors are beyond, hit from link 2.
          f.setBad([{ sector: 40000, count: 8 }, { sector: 50001, count: 1 }]);
          const before = await lab.stats();
          const probe = await lab.ops(
            1,
            0,
            1,
            "read-sectors",
            "40000",
            "16",
            "50000",
            "4",
            "60000",
            "8",
          );
          assertEquals(probe.results, ["UNC", "UNC", "ok"], JSON.stringify(probe));
          await load.progress(10);
          f.setBad([]);
          const healed = await lab.ops(1, 0, 1, "read-sectors", "40000", "16");
          assertEquals(healed.results, ["ok"]);
          const after = await lab.stats();
          assert(after.dev.disk1.ata_err - before.dev.disk1.ata_err >= 2, "ata_err counted");
          assert(f.counters().readErrors >= 2, "the faults were hit");
        });
      }),
  });

  Deno.test({
    ...OPTS,
    name:
      `${m.label}: writes that run out of space get ATA ABRT while a load on allocated space is served byte-exact`,
    fn: () =>
      withFillingFile({ tmpfsBytes: 12 * 1024 * 1024, fileBytes: 32 * 1024 * 1024 }, async (f) => {
        // Allocate the load's region (the first 8 MiB) before the space runs out.
        const fd = Deno.openSync(f.path, { write: true });
        fd.writeSync(new Uint8Array(8 * 1024 * 1024));
        fd.close();
        await underLoad(m, { path: f.path }, async (lab, load) => {
          f.fill();
          const before = await lab.stats();
          const probe = await lab.ops(1, 0, 1, "write-sectors", "40000", "64");
          assertEquals(probe.results, ["ABRT"], JSON.stringify(probe));
          await load.progress(10);
          f.free();
          const later = await lab.ops(1, 0, 1, "write-sectors", "40000", "64");
          assertEquals(later.results, ["ok"], JSON.stringify(later));
          const after = await lab.stats();
          assert(after.dev.disk1.ata_err > before.dev.disk1.ata_err, "ata_err counted");
        });
      }),
  });

  Deno.test({
    ...OPTS,
    name:
      `${m.label}: the exported file truncated under load: reads past the new end get ATA ABRT, the daemon stays up, the rest is served byte-exact`,
    fn: () =>
      underLoad(m, { sizeMiB: 32 }, async (lab, load) => {
        // Page-cache reads are copies out of a mapping of the file: a page past the end of a
        // truncated file would raise SIGBUS (ffi/filemap.ts catches it; preadv reports it).
        const warm = await lab.ops(1, 0, 1, "read-sectors", "40000", "64");
        assertEquals(warm.results, ["ok"], "mapped and read before the truncation");
        Deno.truncateSync(lab.images.get("disk1")!, 16 * 1024 * 1024);
        const after = await lab.ops(1, 0, 1, "read-sectors", "40000", "64", "50000", "8");
        assertEquals(after.results, ["ABRT", "ABRT"], JSON.stringify(after));
        await load.progress(10);
      }),
  });
}
