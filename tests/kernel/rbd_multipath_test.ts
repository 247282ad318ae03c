/**
 * Several hosts, one device, the Linux initiator: two ggaoed daemons serve the same Ceph RBD
 * image as the same shelf.slot, each on its own tap; the guest (tests/kernel/README.md) has one
 * NIC per tap, and its aoe driver keeps both as targets of e1.1, spreads frames over them, and
 * when one stops answering reassigns its frames to the other (drivers/block/aoe/aoecmd.c).
 *
 * The guest writes a pattern over the whole device, then reads it all back. One daemon is
 * killed (SIGKILL, a crash) in the middle of the write, started again during the pause that
 * follows, and the other is killed in the middle of the read. The write and the read must
 * complete without an error, and every byte must be right: the guest's md5 of the device, the
 * pattern's, and that of `rbd export` (the cluster's own client) agree.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { hostHas, kernelHarnessUnavailable, runGuest, withTapNamespace } from "./harness.ts";
import { Host, note, sleep, type Timeline, waitForTraffic, watchSurvivor } from "./hosts.ts";
import { fileMd5, guestScripts, patternMd5 } from "./scripts.ts";
import { withCephCluster } from "../../lab/ceph.ts";

const skip = kernelHarnessUnavailable() ??
  (hostHas("ceph-mon") ? null : "needs the Ceph packages (scripts/install-deps.sh --test)");
if (skip) console.warn(`SKIP tests/kernel/rbd_multipath_test.ts: ${skip}`);

const SIZE_MIB = 64;
const SIZE = SIZE_MIB * 1024 * 1024;
const MTU = 9000;
const SEED = "multipath";

Deno.test({
  name: "the kernel aoe driver with two paths to one RBD image (two daemons) finds both, " +
    "uses both, and rides out a daemon killed mid-write and the other killed mid-read with " +
    "every byte right",
  ignore: skip !== null,
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const dir = await Deno.makeTempDir({ dir: "/var/tmp", prefix: "ggaoed-multipath-" });
    try {
      await withTapNamespace(MTU, async (ns) => {
        await withCephCluster({ netns: ns.netns }, async (cluster) => {
          await cluster.createImage("multi", { sizeBytes: SIZE });
          const device = ['path = "rbd:rbd/multi"', "shelf = 1", "slot = 1"];
          const defaults = [`ceph-conf = "${cluster.conf}"`];
          const a = new Host("a", dir, ns.netns, ns.taps[0], device, defaults);
          const b = new Host("b", dir, ns.netns, ns.taps[1], device, defaults);
          const timeline: Timeline = { started: performance.now(), events: [] };
          const phases = new Set<string>();
          let serial = "";
          let guestDone = false;
          try {
            await a.start();
            await b.start();
            note(timeline, "both daemons serve rbd/multi as e1.1");
            const guest = runGuest({
              ...ns,
              extraTaps: [ns.taps[1]],
              guestScript: guestScripts.multipathPatternRoundTrip("e1.1", SIZE_MIB, {
                seed: SEED,
                paths: 2,
                pauseSeconds: 5,
              }),
              timeoutMs: 300_000,
              memoryMiB: 512,
              onOutput: (text) => {
                serial += text;
                for (const m of serial.matchAll(/^@@RESULT phase (\w+)\r?\n/gm)) {
                  if (phases.has(m[1])) continue;
                  phases.add(m[1]);
                  note(timeline, `guest: phase ${m[1]}`);
                }
              },
            }).finally(() => (guestDone = true));
            const phase = async (name: string) => {
              while (!phases.has(name) && !guestDone) await sleep(50);
              if (phases.has(name)) return;
              const out = (await guest).output.split("\n").slice(-40).join("\n");
              throw new Error(`the guest never reached phase ${name}:\n${out}`);
            };

            // The long write: both paths carry it; a third of the way through, a dies.
            await phase("write");
            const beforeKillA = await waitForTraffic(
              [a, b],
              "write_bytes",
              SIZE / 3,
              () => guestDone,
            );
            await a.crash();
            note(
              timeline,
              `a killed (SIGKILL) mid-write: a had ${
                beforeKillA[0]?.write_bytes
              } bytes written, b ${beforeKillA[1]?.write_bytes}`,
            );
            const writeFailover = await watchSurvivor(
              b,
              "write_bytes",
              () => phases.has("pause") || guestDone,
            );
            note(timeline, `b wrote ${writeFailover.bytes} bytes after the kill`);

            // The pause: a comes back (same tap, same MAC) and advertises itself.
            await phase("pause");
            await a.start();
            note(timeline, "a started again");

            // The long read: once a answers reads again, b dies.
            await phase("read");
            let aReads = 0;
            for (;;) {
              const s = await a.stats();
              aReads = s?.read_bytes ?? 0;
              if (aReads > SIZE / 8 || guestDone) break;
              await sleep(5);
            }
            const bBefore = await b.stats();
            await b.crash();
            note(
              timeline,
              `b killed (SIGKILL) mid-read: b had read ${bBefore?.read_bytes} bytes, a ${aReads}`,
            );
            const readFailover = await watchSurvivor(a, "read_bytes", () => guestDone);
            note(timeline, `a read ${readFailover.bytes} bytes after the kill`);

            const run = await guest;
            const aStats = await a.stats();
            await a.stop();
            const context = `\n--- timeline ---\n${timeline.events.join("\n")}\n` +
              `--- guest console (tail) ---\n${run.output.split("\n").slice(-40).join("\n")}` +
              `\n--- a ---\n${a.log().slice(-3000)}\n--- b ---\n${b.log().slice(-3000)}`;
            assert.equal(run.timedOut, false, `guest timed out${context}`);
            assert.deepEqual(run.guestErrors, [], context);
            assert.equal(run.exitCode, 0, `guest I/O failed${context}`);
            // Both paths, in the order the driver discovered them.
            assert.deepEqual(
              run.results.get("netif")?.split(",").sort(),
              ["eth0", "eth1"],
              context,
            );

            // Each daemon carried its share before it was killed.
            assert.ok((beforeKillA[0]?.write_bytes ?? 0) > 0, `a wrote nothing${context}`);
            assert.ok((beforeKillA[1]?.write_bytes ?? 0) > 0, `b wrote nothing${context}`);
            assert.ok((bBefore?.read_bytes ?? 0) > 0, `b read nothing${context}`);
            assert.ok(aReads > 0, `a (restarted) read nothing${context}`);
            assert.ok(writeFailover.bytes > 0 && readFailover.bytes > 0, context);
            assert.equal(aStats?.ata_err, 0, context);

            // Every byte: the guest's read-back, the pattern, and the cluster's own client.
            const expected = patternMd5(SIZE_MIB, SEED);
            assert.equal(run.results.get("md5"), expected, `guest read other bytes${context}`);
            const exported = join(dir, "multi.raw");
            await cluster.exportImage("multi", exported);
            assert.equal(await fileMd5(exported), expected, "rbd export differs");

            const chunks = [...run.results].filter(([k]) => /^chunk_\d+_seconds$/.test(k))
              .map(([, v]) => Number(v));
            console.log(
              [
                `multipath over RBD: boot-to-poweroff ${run.durationMs} ms; write ${
                  run.results.get("write_seconds")
                } s (16 MiB chunks: ${chunks.join(", ")} s), read ${
                  run.results.get("md5_seconds")
                } s (guest clock)`,
                `  longest stall seen on the surviving daemon: ${
                  (writeFailover.stallMs / 1000).toFixed(1)
                } s after the kill mid-write, ${
                  (readFailover.stallMs / 1000).toFixed(1)
                } s after the kill mid-read`,
                ...timeline.events.map((e) => `  ${e}`),
              ].join("\n"),
            );
          } finally {
            await a.stop();
            await b.stop();
          }
        });
      }, { taps: 2 });
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
