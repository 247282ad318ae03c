/**
 * `sync-writes` against the real daemon: the exported file is open with O_DSYNC (as the kernel
 * shows it in /proc/PID/fdinfo), and only that device's; writes still round-trip, and FLUSH CACHE
 * (EXT) is still answered DRDY.
 */

import { assert, assertEquals } from "../helpers/assert.ts";
import { O_DSYNC } from "../../ffi/constants.ts";
import { ATA_DRDY, ATA_ERR } from "../../src/protocol/constants.ts";
import { pattern, readFileRange, withTarget } from "../../lab/target.ts";

const OPTS = { sanitizeResources: false, sanitizeOps: false };

/** The open flags (fdinfo `flags:`, octal) of the daemon's descriptor for `path`. */
function openFlags(pid: number, path: string): number {
  for (const entry of Deno.readDirSync(`/proc/${pid}/fd`)) {
    let target: string;
    try {
      target = Deno.readLinkSync(`/proc/${pid}/fd/${entry.name}`);
    } catch {
      continue; // closed meanwhile
    }
    if (target !== path) continue;
    const info = Deno.readTextFileSync(`/proc/${pid}/fdinfo/${entry.name}`);
    const m = /^flags:\s+([0-7]+)$/m.exec(info);
    if (m) return parseInt(m[1], 8);
  }
  throw new Error(`process ${pid} has no descriptor open on ${path}`);
}

for (const directIo of [false, true]) {
  Deno.test({
    name: `sync-writes (${
      directIo ? "O_DIRECT" : "buffered"
    }): the file is open with O_DSYNC, writes round-trip, FLUSH is still honoured`,
    ...OPTS,
    fn: () =>
      withTarget({
        directIo,
        devices: [
          { name: "sync", sizeMiB: 4, extra: "sync-writes = true" },
          { name: "plain", sizeMiB: 4 },
        ],
      }, async (t) => {
        const pid = Number((await Deno.readTextFile(t.pidPath)).trim());
        const syncFlags = openFlags(pid, t.images.get("sync")!);
        assertEquals(syncFlags & O_DSYNC, O_DSYNC, `flags 0${syncFlags.toString(8)}`);
        assertEquals(openFlags(pid, t.images.get("plain")!) & O_DSYNC, 0, "only where asked");

        const ini = t.initiator();
        const d = ini.find(0, 1, { waitMs: 3000 });
        const data = pattern(256 * 1024, 5, 100);
        ini.writeRange(d, 100, data);
        assertEquals(ini.readRange(d, 100, data.length / 512), data);
        assertEquals(readFileRange(t.images.get("sync")!, 100 * 512, data.length), data);
        for (const ext of [false, true]) {
          const status = ini.flush(d, { ext });
          assertEquals(status & (ATA_DRDY | ATA_ERR), ATA_DRDY, `FLUSH${ext ? " EXT" : ""}`);
        }
        const stats = JSON.parse((await t.ctl("--json", "stats", "sync")).stdout);
        assert(stats.devices[0].stats.write_cnt > 0);
        assertEquals(stats.devices[0].stats.ata_err, 0);
      }),
  });
}
