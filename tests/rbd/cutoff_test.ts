/**
 * A host cut off from the cluster but alive, end to end: a one-node cluster and two daemons
 * ("hosts") serving the same image (tests/rbd/lab.ts). Host b runs (as root) with a group of its
 * own; iptables in the lab's namespace marks every connection b opens (`-m owner --gid-owner`,
 * CONNMARK), and a `-j DROP` of the marked connections cuts b, and only b, off from the monitor
 * and the OSD, silently and both ways, while its AoE link to the initiator stays up. (Binding b's
 * client to an address of its own, `public_addr` with `ms_bind_before_connect`, did not work:
 * its connections still came from 127.0.0.1.)
 *
 * While b is cut off an initiator writes through it: librbd sends those writes into connections
 * whose packets are dropped, the kernel keeps them to retransmit, and librados gives up on them
 * after `rados_osd_op_timeout`. Host a keeps serving, fences b, and newer data is written through
 * a over the same sectors. Then b's path is restored: the kernel delivers what it kept. With
 * fencing the OSDs refuse it (b is blocklisted), b notices it was fenced, reconnects as a new
 * client and serves again; with `fence = false` nothing stops those late writes, and they land
 * over the newer data: the last test shows it.
 */

import assert from "node:assert/strict";
import { type RbdLab, sector, showRbd, stats, until, withRbdLab } from "./lab.ts";
import type { Initiator, TargetInfo } from "../../src/initiator/mod.ts";
import { ataReadWriteFields, buildAtaRequest, parseAtaResponse } from "../../src/protocol/ata.ts";
import { frameCommand, frameTag } from "../../src/protocol/header.ts";
import { AOE_CMD_ATA } from "../../src/protocol/constants.ts";
import { DEFAULTS } from "../../src/config/types.ts";

const MiB = 1024 * 1024;
const SHARED = { name: "shared", image: "shared", shelf: 1, slot: 1 };
/** Host b runs with this group (still as root): iptables tells its connections by it. */
const B_GID = 4316;
/** Writes sent through b while it is cut off: one sector each, 8 KiB apart. */
const WRITES = 40;
const STRIDE = 16;
const FENCE_AFTER_MS = DEFAULTS.fenceAfter * 1000;
/** ggaoed's rados_osd_op_timeout (ffi/rbd.ts). */
const OSD_OP_TIMEOUT_MS = 5_000;
/** How long b is cut off: longer than the aoe driver's 10 s before it gives up on a target. */
const CUT_MS = 12_000;

const lbaOf = (i: number) => i * STRIDE;

/** Tag of write `i` of round `round` (each round: the same writes, as a driver re-sends them). */
const FIRST_TAG = 0x52000000;
const tagOf = (round: number, i: number) => FIRST_TAG + round * 256 + i;

/** Sends round `round` of the writes without waiting for their replies. */
function sendWrites(
  ini: Initiator,
  t: TargetInfo,
  fill: number,
  round: number,
  only?: number,
): void {
  for (let i = only ?? 0; i < (only === undefined ? WRITES : only + 1); i++) {
    const frame = new Uint8Array(36 + 512 + 60);
    const length = buildAtaRequest(
      frame,
      { dst: t.mac, src: ini.mac, shelf: t.shelf, slot: t.slot, tag: tagOf(round, i) },
      ataReadWriteFields(true, lbaOf(i), 1, true),
      sector(lbaOf(i), fill),
    );
    ini.sendRaw(frame.subarray(0, length));
  }
}

/** A reply to one of the writes: which, when (ms after the cut), and whether it failed. */
interface Reply {
  round: number;
  index: number;
  atMs: number;
  /** The ATA error register if the status has ERR set (0x04: ABRT), else null. */
  ataError: number | null;
  aoeError: number;
}

/** Collects the replies to the writes' tags that arrive within `ms`. */
function collectReplies(ini: Initiator, ms: number, cutAt: number): Reply[] {
  const replies: Reply[] = [];
  const deadline = performance.now() + ms;
  for (;;) {
    const left = deadline - performance.now();
    if (left <= 0) return replies;
    const f = ini.receiveRaw(left);
    if (f === null) return replies;
    if (frameCommand(f) !== AOE_CMD_ATA) continue;
    const tag = frameTag(f) - FIRST_TAG;
    if (tag < 0 || tag >= 256 * 256 || tag % 256 >= WRITES) continue;
    const ata = parseAtaResponse(f);
    replies.push({
      round: Math.floor(tag / 256),
      index: tag % 256,
      atMs: Math.round(performance.now() - cutAt),
      ataError: ata.cmdStatus & 0x01 ? ata.errFeature : null,
      aoeError: f[15],
    });
  }
}

/**
 * Marks every connection that b opens (its process runs with group {@link B_GID}); done once,
 * before b starts.
 */
async function markB(lab: RbdLab): Promise<void> {
  await lab.net.exec(lab.ns, [
    ..."iptables -w -t mangle -A OUTPUT -m owner --gid-owner".split(" "),
    String(B_GID),
    ..."-j CONNMARK --set-mark 0x16".split(" "),
  ], { check: true });
}

/**
 * Cuts b off from the cluster, or restores its path: every packet of b's connections, both
 * ways, silently dropped (on loopback both directions pass OUTPUT).
 */
async function cut(lab: RbdLab, on: boolean): Promise<void> {
  await lab.net.exec(lab.ns, [
    ..."iptables -w".split(" "),
    on ? "-I" : "-D",
    ..."OUTPUT -m connmark --mark 0x16 -j DROP".split(" "),
  ], { check: true });
}

/** b's TCP connections now: "local peer" of each. */
async function connectionsOf(lab: RbdLab, pid: number): Promise<string[]> {
  const r = await lab.net.exec(lab.ns, ["ss", "-Htnp"], { check: true });
  return r.stdout.split("\n").filter((l) => l.includes(`pid=${pid},`)).map((l) => {
    const f = l.trim().split(/\s+/);
    return `${f[3]} ${f[4]}`;
  });
}

/** Bytes that the given connections still hold to send (0 for those gone). */
async function bytesQueued(lab: RbdLab, connections: string[]): Promise<number> {
  const r = await lab.net.exec(lab.ns, ["ss", "-Htna"], { check: true });
  let sum = 0;
  for (const l of r.stdout.split("\n")) {
    const f = l.trim().split(/\s+/);
    if (f.length >= 5 && connections.includes(`${f[3]} ${f[4]}`)) sum += Number(f[2]);
  }
  return sum;
}

/** Each written sector of the image, as `rbd export` has it: its fill byte, or -1 if mixed. */
async function exportedFills(lab: RbdLab): Promise<number[]> {
  const path = `${lab.dir}/shared.raw`;
  await lab.cluster.exportImage("shared", path);
  const image = Deno.readFileSync(path);
  Deno.removeSync(path);
  return Array.from({ length: WRITES }, (_, i) => {
    const s = image.subarray(lbaOf(i) * 512, lbaOf(i) * 512 + 512);
    const expected = sector(lbaOf(i), s[511]);
    return s.every((b, k) => b === expected[k]) ? s[511] : -1;
  });
}

/** Two hosts; a has fencing as given. Returns them, ready, with b's client address. */
async function twoHosts(lab: RbdLab, fence: boolean) {
  await lab.cluster.createImage("shared", { sizeBytes: 16 * MiB });
  const extra = fence ? "" : "fence = false";
  const a = await lab.daemon("a", [{ ...SHARED, extra }]);
  await markB(lab);
  const b = await lab.daemon("b", [{ ...SHARED, extra }], {
    wrapper: ["setpriv", `--regid=${B_GID}`, "--clear-groups", "--"],
  });
  let bAddress = "";
  await until("a sees b's record with its client address", 10_000, async () => {
    const info = await showRbd(a);
    bAddress = info.hosts.find((h) => !h.self)?.address ?? "";
    return info.hosts.length === 2 && info.client !== "" && bAddress !== "";
  });
  assert.equal((await showRbd(b)).client, bAddress);
  const ia = a.initiator();
  const ib = b.initiator();
  return { a, b, ia, ta: ia.find(1, 1), ib, tb: ib.find(1, 1), bAddress };
}

/**
 * Cuts b off for {@link CUT_MS} while the initiator writes through it: `heavy`, the 40 writes
 * every second (b's queue fills up); otherwise one write every 250 ms.
 */
async function cutOffWhileWriting(heavy: boolean, measured: string[]): Promise<void> {
  await withRbdLab(async (lab) => {
    const { a, b, ia, ta, ib, tb, bAddress } = await twoHosts(lab, true);
    // Both hosts serve.
    ib.write(tb, 8192, sector(8192, 0x11));
    assert.deepEqual(ia.read(ta, 8192, 1), sector(8192, 0x11));
    const before = await stats(b);

    await cut(lab, true);
    const cutAt = performance.now();
    // The initiator writes through b all along the cut, as a driver re-sends what goes
    // unanswered: the same writes again in new rounds (new tags), for longer than the
    // driver's 10 s.
    const replies: Reply[] = [];
    const sentAt: number[] = [];
    let fenceMs = 0;
    const fenced = () => /fenced host .* in \d+ ms: the OSDs refuse/.test(a.log);
    while (performance.now() - cutAt < CUT_MS) {
      sentAt.push(Math.round(performance.now() - cutAt));
      const round = sentAt.length - 1;
      sendWrites(ib, tb, 0xbb, round, heavy ? undefined : round % WRITES);
      const next = cutAt + sentAt.length * (heavy ? 1000 : 250);
      while (performance.now() < next) {
        replies.push(...collectReplies(ib, Math.min(50, next - performance.now()), cutAt));
        await new Promise((r) => setTimeout(r, 0)); // the daemons' logs come in
        if (fenceMs === 0 && fenced()) fenceMs = performance.now() - cutAt;
      }
    }
    const sent = sentAt.length * (heavy ? WRITES : 1);

    // a kept serving and fenced b: log, counter, record.
    assert.ok(fenceMs > 0, "a fenced b");
    // b's last refresh came at most a refresh period before the cut (due at a 0.25 s poll).
    assert.ok(fenceMs >= FENCE_AFTER_MS - 1000, `fenced after only ${fenceMs} ms`);
    assert.match(
      a.log,
      new RegExp(`client ${bAddress.replace(/[./]/g, "\\$&")}\\) has not refreshed its record`),
    );
    assert.equal((await stats(a)).rbd_fencings, 1);
    assert.equal((await showRbd(a)).hosts.find((h) => !h.self)?.fenced?.address, bAddress);
    const aData = sector(12288, 0x22);
    ia.write(ta, 12288, aData);
    assert.deepEqual(ia.read(ta, 12288, 1), aData);

    // Newer data over the same sectors, through a.
    for (let i = 0; i < WRITES; i++) ia.write(ta, lbaOf(i), sector(lbaOf(i), 0xcc));

    // What b did with the writes sent to it during the cut: each waited in librbd until
    // rados_osd_op_timeout (or, beyond its queue limit, was dropped at once). Those received
    // before b's first operation timed out were then dropped unanswered: its I/O had not
    // progressed for longer than max-stall, so what it received before is stale. Those
    // received after it, while b's I/O kept failing less than max-stall apart, were answered
    // with ATA ABRT, 5 s after they arrived.
    const dropped = (s: Record<string, number>) =>
      s.stall_drop + s.stale_drop + s.rbd_fenced_drops + s.queue_drop -
      (before.stall_drop + before.stale_drop + before.rbd_fenced_drops + before.queue_drop);
    await until("b drops the first writes", OSD_OP_TIMEOUT_MS + 10_000, async () => {
      replies.push(...collectReplies(ib, 50, cutAt));
      return (await stats(b)).stall_drop - before.stall_drop >= (heavy ? WRITES : 1);
    });
    const cutStats = await stats(b);
    const answered = () => JSON.stringify({ replies, sentAt });
    for (const r of replies) {
      assert.equal(r.aoeError, 0, answered());
      assert.equal(r.ataError, 0x04, `not ABRT: ${answered()}`);
      assert.ok(r.atMs - sentAt[r.round] >= OSD_OP_TIMEOUT_MS - 100, answered());
      assert.ok(
        sentAt[r.round] >= OSD_OP_TIMEOUT_MS - 500,
        `an early write answered: ${answered()}`,
      );
    }
    if (heavy) assert.equal(replies.length, 0, `b answered while cut off: ${answered()}`);
    else assert.ok(replies.length > 0, "later writes are answered with ABRT");
    assert.equal(cutStats.ata_err - before.ata_err, replies.length);
    assert.equal(cutStats.rbd_fenced, 0, "b cannot know yet that it was fenced");
    const abrtMs = replies.map((r) => r.atMs);
    measured.push(
      `${sent} writes sent to b during the cut (${
        heavy ? `${WRITES} every second` : "one every 0.25 s"
      }): ` +
        `${cutStats.stall_drop - before.stall_drop} dropped after the op timeout (stall_drop), ` +
        `${cutStats.queue_drop - before.queue_drop} over the queue limit (queue_drop), ` +
        `${replies.length} answered with ABRT${
          abrtMs.length
            ? ` (first at t=${(Math.min(...abrtMs) / 1000).toFixed(2)} s, sent at t=${
              (sentAt[replies[0].round] / 1000).toFixed(2)
            } s)`
            : ""
        }, ${sent - dropped(cutStats) - replies.length} still in librbd when the path came back`,
    );
    // The writes are still in b's sockets, waiting for the path to come back.
    const held = await connectionsOf(lab, b.process!.pid);
    const queued = await bytesQueued(lab, held);
    assert.ok(queued >= WRITES * 512, `only ${queued} bytes queued in b's connections`);

    // The path comes back: b finds it was fenced, reconnects, serves again.
    const cutMs = performance.now() - cutAt;
    await cut(lab, false);
    const restoredAt = performance.now();
    await b.waitForLog(/was fenced by another host/, 30_000);
    await b.waitForLog(/disk\/shared: serving again, through a new Ceph client/, 30_000);
    const servingMs = performance.now() - restoredAt;
    // The kernel has delivered what b's old connections held (or they are gone).
    await until("b accounts for every write sent during the cut", 30_000, async () => {
      replies.push(...collectReplies(ib, 50, cutAt));
      return dropped(await stats(b)) + replies.length >= sent;
    });
    const drainedMs = await until(
      "b's old connections drained",
      60_000,
      async () => (await bytesQueued(lab, held)) === 0,
    );
    const fills = await exportedFills(lab);
    assert.deepEqual(fills, new Array(WRITES).fill(0xcc), `late writes landed: ${fills}`);
    const answeredInCut = replies.length;
    replies.push(...collectReplies(ib, 100, cutAt));
    assert.equal(replies.length, answeredInCut, `answered after the cut: ${answered()}`);
    const sb = await stats(b);
    assert.equal(dropped(sb) + replies.length, sent, JSON.stringify(sb));
    assert.equal(sb.ata_err - before.ata_err, replies.length);
    // What librbd still held when the path came back was refused by the OSDs, and counted so.
    assert.ok(sb.rbd_fenced_drops > before.rbd_fenced_drops, JSON.stringify(sb));
    if (heavy) assert.equal(replies.length, 0, `b answered: ${answered()}`);
    measured.push(`b's counters: ${JSON.stringify(sb)}`);

    const info = await showRbd(b);
    assert.notEqual(info.client, bAddress, "b reconnected as a new client");
    assert.equal(info.fencing.fenced, 1);
    assert.equal(sb.rbd_fenced, 1);
    assert.ok((await lab.cluster.ceph(["osd", "blocklist", "ls"])).includes(bAddress));

    // b serves again: its writes land, both hosts read them; it reads a's newer data.
    const fresh = sector(8192, 0x5a);
    ib.write(tb, 8192, fresh);
    assert.deepEqual(ib.read(tb, 8192, 1), fresh);
    assert.deepEqual(ia.read(ta, 8192, 1), fresh);
    assert.deepEqual(ib.read(tb, 12288, 1), aData);
    assert.deepEqual(ib.read(tb, lbaOf(3), 1), sector(lbaOf(3), 0xcc));
    await until("a sees b's new record", 5_000, async () => {
      const rb = (await showRbd(a)).hosts.find((h) => !h.self);
      return rb?.address === info.client && rb.fenced === undefined;
    });
    assert.equal((await stats(a)).rbd_fencings, 1);

    measured.push(
      `cut at t=0: fenced by a at t=${(fenceMs / 1000).toFixed(2)} s; cut for ${
        (cutMs / 1000).toFixed(1)
      } s`,
      `restored at t=0: serving again through a new client at t=${
        (servingMs / 1000).toFixed(2)
      } s; ${queued} bytes queued in b's old connections, drained ${
        (drainedMs / 1000).toFixed(2)
      } s after that`,
    );
  });
}

for (const heavy of [true, false]) {
  Deno.test({
    name:
      `RBD cut-off, ${
        heavy ? "writing 40 sectors every second" : "writing a sector every 0.25 s"
      }: ` +
      "a host cut off from the cluster is fenced, writes nothing late, and reconnects and serves " +
      "again when the cluster is back",
    sanitizeOps: false,
    sanitizeResources: false,
    fn: async () => {
      /** Figures for the docs, printed at the end. */
      const measured: string[] = [];
      try {
        await cutOffWhileWriting(heavy, measured);
      } finally {
        for (const m of measured) console.log(`  ${m}`);
      }
    },
  });
}

Deno.test({
  name: "RBD cut-off without fencing (fence = false): the writes a cut-off host held land late " +
    "over newer data when its path comes back",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const measured: string[] = [];
    await withRbdLab(async (lab) => {
      const { a, b, ia, ta, ib, tb } = await twoHosts(lab, false);
      ib.write(tb, 8192, sector(8192, 0x11));
      assert.deepEqual(ia.read(ta, 8192, 1), sector(8192, 0x11));
      const before = await stats(b);

      await cut(lab, true);
      const cutAt = performance.now();
      sendWrites(ib, tb, 0xbb, 0);
      // librados gives up on them after the op timeout; b drops them unanswered.
      const replies: Reply[] = [];
      await until("b drops the writes", OSD_OP_TIMEOUT_MS + 10_000, async () => {
        replies.push(...collectReplies(ib, 50, cutAt));
        return (await stats(b)).stall_drop - before.stall_drop >= WRITES;
      });
      assert.deepEqual(replies, []);
      // Nobody fences b, although its record went unrefreshed for longer than fence-after.
      assert.ok(performance.now() - cutAt > FENCE_AFTER_MS + 1000);
      assert.equal((await stats(a)).rbd_fencings, 0);
      assert.doesNotMatch(a.log, /fencing it/);
      const held = await connectionsOf(lab, b.process!.pid);
      const queued = await bytesQueued(lab, held);
      assert.ok(queued >= WRITES * 512, `only ${queued} bytes queued in b's connections`);

      // Newer data over the same sectors, through a; then b's path comes back.
      for (let i = 0; i < WRITES; i++) ia.write(ta, lbaOf(i), sector(lbaOf(i), 0xcc));
      assert.deepEqual(await exportedFills(lab), new Array(WRITES).fill(0xcc));
      await cut(lab, false);
      const restoredAt = performance.now();
      await until(
        "b's old connections drained",
        60_000,
        async () => (await bytesQueued(lab, held)) === 0,
      );
      let fills: number[] = [];
      await until("b's late writes land", 30_000, async () => {
        fills = await exportedFills(lab);
        return fills.some((f) => f === 0xbb);
      });
      const late = fills.filter((f) => f === 0xbb).length;
      measured.push(
        `fence = false: ${queued} bytes held in b's connections; ${late} of ${WRITES} sectors ` +
          `overwritten by b's late writes ${
            ((performance.now() - restoredAt) / 1000).toFixed(2)
          } s after its path came back, over newer data written through a`,
      );
      assert.ok(late > 0);
      assert.equal((await stats(b)).rbd_fenced, 0);
    });
    for (const m of measured) console.log(`  ${m}`);
  },
});
