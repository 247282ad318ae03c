/**
 * State faults under load: the state file system full, and floods of Reserve/Release and Mac
 * Mask frames from a second host while the first one reads and writes. Each runs at MTU 1500
 * and 9000, with packet rings and with recvfrom/sendto.
 *
 * Pass: the daemon stays up (a state write that failed used to make the worker throw), the load
 * is served and verified throughout, a change that cannot be written is answered with AoE error
 * 3 (reply) or a non-zero `ggaoectl` exit with the reason, and stays in effect; state is written
 * only when it changes, at a bounded rate, and never on the data path's thread (a flood used to
 * fsync on every frame).
 */

import { assert, assertEquals } from "../helpers/assert.ts";
import { type FaultLab, MATRIX, until, withFaultLab } from "../../lab/fault_lab.ts";
import { decodeMacListFile } from "../../src/state/store.ts";
import { parseMac } from "../../src/mac.ts";

const OPTS = { sanitizeResources: false, sanitizeOps: false };

/** Runs `body` with a tmpfs of `bytes` mounted on a fresh directory; unmounts it afterwards. */
async function withTinyFs<T>(bytes: number, body: (dir: string) => Promise<T>): Promise<T> {
  const dir = Deno.makeTempDirSync({ dir: "/var/tmp", prefix: "ggaoed-statefs-" });
  const mount = await new Deno.Command("mount", {
    args: ["-t", "tmpfs", "-o", `size=${bytes},mode=0700`, "tmpfs", dir],
  }).output();
  assert(mount.success, new TextDecoder().decode(mount.stderr));
  try {
    return await body(dir);
  } finally {
    await new Deno.Command("umount", { args: ["-l", dir] }).output();
    Deno.removeSync(dir, { recursive: true });
  }
}

type Stats = Awaited<ReturnType<FaultLab["stats"]>>;

/**
 * Frames on the target's end of link `k` that the kernel dropped before the daemon read them,
 * or replies it refused to send: a flood on a busy machine loses some (without packet rings,
 * the socket's receive buffer overflows), and they are counted there.
 */
function linkLoss(lab: FaultLab, before: Stats, after: Stats, k: number): number {
  const name = lab.links[k].target;
  const d = (f: string) => after.iface[name][f] - before.iface[name][f];
  return d("dropped") + d("tx_dropped");
}

/** Every frame of a flood of `sent` was answered or counted: `counted`, or lost on the link. */
function assertAccounted(counted: number, sent: number, lost: number): void {
  assert(counted <= sent, `${counted} answered or counted of ${sent} sent`);
  assert(
    counted + lost >= sent,
    `${sent - counted} frames neither answered nor counted by the device; ${lost} lost on the link`,
  );
}

/** Fills the file system of `dir` with a filler file; returns a function that frees it. */
function fill(dir: string): () => void {
  const path = `${dir}/filler`;
  const f = Deno.openSync(path, { create: true, write: true });
  const chunk = new Uint8Array(4096).fill(1);
  try {
    for (;;) f.writeSync(chunk);
  } catch { /* ENOSPC: full */ }
  f.close();
  return () => Deno.removeSync(path);
}

for (const m of MATRIX) {
  Deno.test({
    ...OPTS,
    name:
      `${m.label}: a full state file system: the change answers AoE error 3 and stays in effect, clear-* fails with the reason, serving goes on, writes resume once there is room`,
    fn: () =>
      withTinyFs(64 * 1024, (stateDir) =>
        withFaultLab(
          { mtu: m.mtu, ringKiB: m.ringKiB, stateDirectory: stateDir, links: 2 },
          async (lab) => {
            const load = lab.startLoad();
            await load.progress(10);
            // A reservation on disk before the file system fills up: the load's host and one
            // more, so that the load goes on.
            const first = await lab.ops(0, 0, 1, "reserve-force", "self", "02:00:00:00:00:41");
            assertEquals(first.ok, true, JSON.stringify(first));
            const durable = first.list!.map((m) => parseMac(m)!).sort((a, b) => a - b);
            const onDisk = () => {
              const bytes = Deno.readFileSync(`${stateDir}/disk1.reserve`);
              assertEquals(bytes.length, 2048, "the state file is whole");
              return decodeMacListFile(bytes);
            };
            assertEquals(onDisk(), durable);
            const free = fill(stateDir);
            // Host 2 takes a reservation that cannot be written: AoE error 3, and in effect.
            const second = await lab.ops(1, 0, 1, "reserve-force", "02:00:00:00:00:42");
            assertEquals(second.ok, false);
            assertEquals(second.error, 3);
            // On disk: the old list, whole; no temp file left beside it.
            assertEquals(onDisk(), durable);
            assertEquals(
              [...Deno.readDirSync(stateDir)].map((e) => e.name).filter((n) => n.includes(".tmp-")),
              [],
            );
            const shown = await lab.target.ctl("show-reserve");
            assert(/02:00:00:00:00:42/.test(shown.stdout), shown.stdout);
            // The load (host 1) is now refused (reserved), so release it again: the clear fails
            // to persist, and says why, but takes effect.
            const clear = await lab.target.ctl("clear-reserve", "disk1");
            assert(clear.code !== 0, "clear-reserve exited 0 with the state file system full");
            assert(/not saved.*No space left on device|ENOSPC/s.test(clear.stderr), clear.stderr);
            assert(!/02:00:00:00:00:42/.test((await lab.target.ctl("show-reserve")).stdout));
            assertEquals(onDisk(), durable, "still the last durable list");
            await load.progress(10);
            await lab.assertAlive();
            const during = await lab.stats();
            assert(during.dev.disk1.state_errors >= 1, JSON.stringify(during.dev.disk1));
            assert(/error: disk\/disk1: cannot write/.test(lab.log), lab.log);
            // Room again: the retry writes the state; clear-* works again.
            free();
            await until("the retried write", () => /state written again/.test(lab.log), 40000);
            const again = await lab.target.ctl("clear-reserve", "disk1");
            assertEquals(again.code, 0, again.stderr);
            assertEquals(onDisk(), [], "an empty list on disk");
            await load.progress(10);
            await lab.finishLoad(load);
          },
        )),
  });

  Deno.test({
    ...OPTS,
    name:
      `${m.label}: floods of Reserve/Release and Mask frames from a second host write state only on change, at a bounded rate, while the first host's load is served`,
    fn: () =>
      withFaultLab({
        mtu: m.mtu,
        ringKiB: m.ringKiB,
        links: 2,
        devices: [{ name: "disk1" }, { name: "disk2", sizeMiB: 4 }],
      }, async (lab) => {
        const load = lab.startLoad();
        await load.progress(10);
        const before = await lab.stats();
        // 2,000 identical sets (release: the list is already empty) and 2,000 empty edits:
        // nothing changes, nothing is written (the old daemon fsynced on each frame).
        const same = await lab.ops(1, 0, 1, "flood-reserve", "2000");
        const masks = await lab.ops(1, 0, 1, "flood-mask", "2000");
        assert(same.replies! > 1000, JSON.stringify(same));
        assert(masks.replies! > 1000, JSON.stringify(masks));
        assertEquals([same.errors, masks.errors], [0, 0]);
        // 2,000 changes on disk2: written coalesced, at most one write per 20 ms. Each reply
        // waits until its change is on disk, holding one of disk2's 64 request buffers; beyond
        // 16 such replies further changes are dropped and counted in state_drop (the initiator
        // would retransmit them).
        const t0 = performance.now();
        const changes = await lab.ops(1, 0, 2, "flood-force", "2000", "02:00:00:00:00:43");
        const seconds = (performance.now() - t0) / 1000;
        await load.progress(10);
        const after = await lab.stats();
        const dropped = after.dev.disk2.queue_drop - before.dev.disk2.queue_drop +
          after.dev.disk2.state_drop - before.dev.disk2.state_drop;
        assert(changes.replies! >= 16, JSON.stringify(changes));
        assertAccounted(changes.replies! + dropped, 2000, linkLoss(lab, before, after, 1));
        assertEquals(
          after.dev.disk1.state_writes - before.dev.disk1.state_writes,
          0,
          "disk1's state never changed",
        );
        const writes = after.dev.disk2.state_writes - before.dev.disk2.state_writes;
        assert(writes >= 1, "disk2's changes were written");
        assert(writes <= seconds * 50 + 5, `${writes} writes of disk2 in ${seconds.toFixed(1)} s`);
        await lab.assertAlive();
        await lab.finishLoad(load);
      }),
  });
}

for (const m of [MATRIX[0], MATRIX[3]]) {
  Deno.test({
    ...OPTS,
    name:
      `${m.label}: a flood of Query Config force sets from a second host: fsync'd rewrites bounded, changes beyond a quarter of the buffers dropped (state_drop), none of the load's requests on that device dropped`,
    fn: () =>
      withFaultLab({ mtu: m.mtu, ringKiB: m.ringKiB, links: 2 }, async (lab) => {
        const load = lab.startLoad(); // on disk1, 32 requests in flight
        await load.progress(10);
        const before = await lab.stats();
        const t0 = performance.now();
        const flood = await lab.ops(1, 0, 1, "flood-config", "3000");
        const seconds = (performance.now() - t0) / 1000;
        await load.progress(10);
        const after = await lab.stats();
        const d = (k: string) => after.dev.disk1[k] - before.dev.disk1[k];
        assertEquals(d("queue_drop"), 0, "a request of disk1 found no buffer");
        assert(d("state_drop") > 0, `the flood never reached the bound: ${JSON.stringify(flood)}`);
        assertAccounted(flood.replies! + d("state_drop"), 3000, linkLoss(lab, before, after, 1));
        assertEquals(flood.errors, 0);
        const writes = d("state_writes");
        assert(writes >= 1, "the changes were written");
        assert(writes <= seconds * 50 + 5, `${writes} writes in ${seconds.toFixed(1)} s`);
        await lab.assertAlive();
        await lab.finishLoad(load);
      }),
  });
}

Deno.test({
  ...OPTS,
  name: "a world-writable state directory is refused at start, naming the key and the fix",
  fn: async () => {
    const dir = Deno.makeTempDirSync({ dir: "/var/tmp", prefix: "ggaoed-ww-" });
    try {
      Deno.mkdirSync(`${dir}/state`);
      Deno.chmodSync(`${dir}/state`, 0o777);
      Deno.writeFileSync(`${dir}/d.img`, new Uint8Array(1 << 20));
      Deno.writeTextFileSync(
        `${dir}/ggaoed.conf`,
        `[defaults]\nstate-directory = "${dir}/state"\npid-file = "${dir}/p"\ncontrol-socket = "${dir}/s"\n\n[devices.d]\npath = "${dir}/d.img"\nshelf = 0\nslot = 1\n`,
      );
      const r = await new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "-A",
          new URL("../../ggaoed.ts", import.meta.url).pathname,
          "check-config",
          "-c",
          `${dir}/ggaoed.conf`,
        ],
        stdout: "piped",
        stderr: "piped",
      }).output();
      const text = new TextDecoder().decode(r.stdout) + new TextDecoder().decode(r.stderr);
      assertEquals(r.code, 1, text);
      assert(/state-directory.*writable by every user/.test(text), text);
      assert(/chmod o-w/.test(text), text);
    } finally {
      Deno.removeSync(dir, { recursive: true });
    }
  },
});
