/**
 * Fencing between the hosts of one Ceph RBD image, end to end: a one-node cluster and two
 * daemons ("hosts") serving the same image in a network namespace (tests/rbd/lab.ts). One host
 * is frozen (SIGSTOP) while librbd holds writes of it; the other fences it (blocklists its
 * client); newer data is written through the live host over the same sectors; the frozen host
 * resumes: the OSDs refuse its late writes (`rbd export` shows the newer data everywhere), and it
 * reconnects as a new client and serves again, without a restart.
 *
 * The frozen host's writes are held in its librbd by librbd's own QoS throttle
 * (`rbd_qos_write_iops_limit`, set through ceph-options on that host only): they leave it a few
 * per second, so when it is stopped most of them are still queued in its process, exactly the
 * writes that a host stopped mid-write sends late.
 */

import assert from "node:assert/strict";
import type { TestTarget } from "../../lab/target.ts";
import { allThreadsStopped } from "../../lab/command.ts";
import { type RbdLab, sector, showRbd, stats, until, withRbdLab } from "./lab.ts";
import type { Initiator, TargetInfo } from "../../src/initiator/mod.ts";
import { ataReadWriteFields, buildAtaRequest, parseAtaResponse } from "../../src/protocol/ata.ts";
import { frameCommand, frameTag } from "../../src/protocol/header.ts";
import { AOE_CMD_ATA } from "../../src/protocol/constants.ts";
import { DEFAULTS } from "../../src/config/types.ts";

const MiB = 1024 * 1024;
const SHARED = { name: "shared", image: "shared", shelf: 1, slot: 1 };
/** Writes the frozen host holds: one sector each, 8 KiB apart (never merged into one). */
const WRITES = 40;
const STRIDE = 16;
/** librbd lets this many writes per second leave the throttled host. */
const QOS_IOPS = 10;
const FENCE_AFTER_MS = DEFAULTS.fenceAfter * 1000;
/**
 * Held writes the frozen host may still answer after it resumes: those librbd had finished
 * but its loop not yet handled when it stopped (see where it is checked).
 */
const LATE_ANSWERS = 4;

const lbaOf = (i: number) => i * STRIDE;

/** Sends the writes without waiting for their replies (an initiator's outstanding requests). */
function sendWrites(ini: Initiator, t: TargetInfo, fill: number, firstTag: number): void {
  for (let i = 0; i < WRITES; i++) {
    const frame = new Uint8Array(36 + 512 + 60);
    const length = buildAtaRequest(
      frame,
      { dst: t.mac, src: ini.mac, shelf: t.shelf, slot: t.slot, tag: firstTag + i },
      ataReadWriteFields(true, lbaOf(i), 1, true),
      sector(lbaOf(i), fill),
    );
    ini.sendRaw(frame.subarray(0, length));
  }
}

/** Collects the replies to tags `firstTag..+WRITES` that arrive within `ms`; returns them. */
function collectReplies(ini: Initiator, firstTag: number, ms: number): number[] {
  const tags: number[] = [];
  const deadline = performance.now() + ms;
  for (;;) {
    const left = deadline - performance.now();
    if (left <= 0) return tags;
    const f = ini.receiveRaw(left);
    if (f === null) return tags;
    if (frameCommand(f) !== AOE_CMD_ATA) continue;
    const i = frameTag(f) - firstTag;
    if (i < 0 || i >= WRITES) continue;
    assert.equal(f[15], 0, `write ${i}: AoE error ${f[15]}`);
    assert.equal(parseAtaResponse(f).cmdStatus & 0x01, 0, `write ${i} answered with ERR`);
    tags.push(i);
  }
}

/** Stops daemon `t` (SIGSTOP) and waits until every thread of it is stopped. */
async function freeze(t: TestTarget): Promise<void> {
  const pid = t.process!.pid;
  Deno.kill(pid, "SIGSTOP");
  await until(`daemon ${t.dir} stopped`, 5_000, () => allThreadsStopped(pid));
}

function thaw(t: TestTarget): void {
  Deno.kill(t.process!.pid, "SIGCONT");
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

/** Figures for the docs, printed at the end. */
const measured: string[] = [];

Deno.test({
  name: "RBD fencing: a host frozen with writes queued in librbd is fenced, writes nothing late, " +
    "and serves again when it resumes",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async (t) => {
    await withRbdLab(async (lab) => {
      await lab.cluster.createImage("shared", { sizeBytes: 16 * MiB });
      const a = await lab.daemon("a", [SHARED]);
      const b = await lab.daemon("b", [{
        ...SHARED,
        extra: `ceph-options = { rbd_qos_write_iops_limit = "${QOS_IOPS}" }`,
      }]);
      const ia = a.initiator();
      const ta = ia.find(1, 1);
      const ib = b.initiator();
      const tb = ib.find(1, 1);
      // Both hosts' records, with their client addresses, as each sees them.
      let bAddress = "";
      await until("a sees b's record with its client address", 10_000, async () => {
        const info = await showRbd(a);
        const rb = info.hosts.find((h) => !h.self);
        bAddress = rb?.address ?? "";
        return info.hosts.length === 2 && info.client !== "" && bAddress !== "";
      });
      assert.equal((await showRbd(b)).client, bAddress);

      await t.step("a 1 s freeze fences nothing", async () => {
        const frozenAt = performance.now();
        await freeze(b);
        await new Promise((r) => setTimeout(r, 1000));
        thaw(b);
        // Fencing, had it been due, would come within fence-after of the freeze (plus polling):
        // watch a for that long and more.
        const watchUntil = frozenAt + FENCE_AFTER_MS + 2_000;
        while (performance.now() < watchUntil) {
          assert.doesNotMatch(a.log, /fencing it/);
          await new Promise((r) => setTimeout(r, 100));
        }
        assert.equal((await stats(a)).rbd_fencings, 0);
        assert.equal((await stats(b)).rbd_fenced, 0);
        assert.equal((await showRbd(a)).hosts.find((h) => !h.self)?.fenced, undefined);
        // b serves on, through the same client.
        ib.write(tb, 4096, sector(4096, 0x11));
        assert.deepEqual(ia.read(ta, 4096, 1), sector(4096, 0x11));
        assert.equal((await showRbd(b)).client, bAddress);
      });

      await t.step(
        "frozen with writes queued in librbd: fenced within the bound; its late writes are refused; " +
          "it reconnects and serves again",
        async () => {
          const firstTag = 0x51000000;
          const before = await stats(b);
          sendWrites(ib, tb, 0xbb, firstTag);
          // Every write reached b and went to librbd (accepted for I/O), and some are answered:
          // the rest wait in librbd's throttle.
          await until(
            "b took every write",
            10_000,
            async () => (await stats(b)).write_cnt - before.write_cnt >= WRITES,
          );
          const answered = collectReplies(ib, firstTag, 300);
          const stoppedAt = performance.now();
          await freeze(b);
          answered.push(...collectReplies(ib, firstTag, 200)); // already on their way
          const held = WRITES - answered.length;
          measured.push(`${held} of ${WRITES} writes held in the frozen host's librbd`);
          assert.ok(held >= WRITES / 4, `only ${held} of ${WRITES} writes held in b's librbd`);

          // a fences b: log, counter, record.
          await until(
            "a fences b",
            FENCE_AFTER_MS + 5_000,
            () => /fenced host .* in \d+ ms: the OSDs refuse/.test(a.log),
          );
          const fenceMs = performance.now() - stoppedAt;
          measured.push(
            `host stopped at t=0: fenced at t=${(fenceMs / 1000).toFixed(2)} s ` +
              `(fence-after ${DEFAULTS.fenceAfter} s)`,
          );
          // b's last refresh came at most a refresh period (0.5 s, due at a poll: every 0.25 s)
          // before it stopped.
          assert.ok(fenceMs >= FENCE_AFTER_MS - 1000, `fenced after only ${fenceMs} ms`);
          assert.match(
            a.log,
            new RegExp(
              `client ${bAddress.replace(/[./]/g, "\\$&")}\\) has not refreshed its record`,
            ),
          );
          assert.equal((await stats(a)).rbd_fencings, 1);

          // Newer data over the same sectors, through a.
          for (let i = 0; i < WRITES; i++) ia.write(ta, lbaOf(i), sector(lbaOf(i), 0xcc));

          // b resumes: librbd's throttle lets the held writes go at its pace; every one must be
          // refused by the OSDs and dropped (none answered).
          thaw(b);
          const thawedAt = performance.now();
          const servingAgain = b.waitForLog(
            /disk\/shared: serving again, through a new Ceph client/,
            30_000,
          )
            .then(() => performance.now());
          const late: number[] = [];
          await until(
            "every held write refused and dropped, or answered",
            (held / QOS_IOPS) * 1000 + 10_000,
            async () => {
              late.push(...collectReplies(ib, firstTag, 50));
              return (await stats(b)).rbd_fenced_drops + late.length >= held;
            },
          );
          const fills = await exportedFills(lab);
          const newer = new Array(WRITES).fill(0xcc);
          assert.deepEqual(fills, newer, `late writes landed over newer data: ${fills}`);
          // A reply after the thaw is for a write whose completion b had not yet handled when
          // it stopped (a busy machine: the loop had not run since librbd finished it). That
          // write reached the OSDs before the fencing (they refuse everything after it), and
          // the newer data is over it (above): its success is true, not a late write. Writes
          // leave the throttle 1/QOS_IOPS s apart, so each such reply beyond the first means
          // the loop had not run for that much longer; more than a few is not a busy machine.
          assert.ok(late.length <= LATE_ANSWERS, `b answered ${late.length} held writes: ${late}`);
          await b.waitForLog(/was fenced by another host/, 15_000);
          await b.waitForLog(/reconnected after being fenced/, 30_000);
          const servingMs = (await servingAgain) - thawedAt;
          measured.push(
            `resumed at t=0: serving again through a new client at t=${
              (servingMs / 1000).toFixed(2)
            } s`,
          );
          const blocklist = await lab.cluster.ceph(["osd", "blocklist", "ls"]);
          assert.ok(blocklist.includes(bAddress), blocklist);
          await until("b's record says it is fenced", 5_000, async () => {
            const rb = (await showRbd(a)).hosts.find((h) => !h.self);
            return rb?.fenced?.address === bAddress || rb?.address !== bAddress;
          });
          const sb = await stats(b);
          assert.equal(sb.rbd_fenced, 1);
          assert.equal(sb.rbd_fenced_drops, held - late.length, JSON.stringify(sb));
          assert.equal(
            sb.ata_err,
            before.ata_err,
            "fenced requests must not be answered as errors",
          );
          const info = await showRbd(b);
          assert.notEqual(info.client, bAddress, "b reconnected as a new client");
          assert.equal(info.fencing.fenced, 1);
          assert.equal(info.fencing.droppedRequests, held - late.length);

          // b serves again: its writes land, both hosts read them.
          const fresh = sector(8192, 0x5a);
          ib.write(tb, 8192, fresh);
          assert.deepEqual(ib.read(tb, 8192, 1), fresh);
          assert.deepEqual(ia.read(ta, 8192, 1), fresh);
          assert.deepEqual(ib.read(tb, lbaOf(3), 1), sector(lbaOf(3), 0xcc));
          // a sees b's new record (new address), not fenced, and does not fence it again.
          await until("a sees b's new record", 5_000, async () => {
            const rb = (await showRbd(a)).hosts.find((h) => !h.self);
            return rb?.address === info.client && rb.fenced === undefined;
          });
          assert.equal((await stats(a)).rbd_fencings, 1);
        },
      );

      await t.step("a host stopped for good stays fenced; the survivor keeps serving", async () => {
        const address = (await showRbd(b)).client;
        await freeze(b);
        await until(
          "a fences b again",
          FENCE_AFTER_MS + 5_000,
          async () => (await stats(a)).rbd_fencings === 2,
        );
        await b.stop("SIGKILL");
        const data = sector(12288, 0x77);
        ia.write(ta, 12288, data);
        assert.deepEqual(ia.read(ta, 12288, 1), data);
        const rb = (await showRbd(a)).hosts.find((h) => !h.self);
        assert.equal(rb?.fenced?.address, address, JSON.stringify(rb));
        assert.ok(rb?.stale, "b's record is shown stale");
        const text = await a.ctl("show-rbd", "shared");
        assert.match(text.stdout, /fencing {3}after 2\.5 s without a refresh; fenced 2 other host/);
        assert.match(text.stdout, /\(STALE\) {2}client \S+ {2}FENCED by /);
      });
    });
    for (const m of measured) console.log(`  ${m}`);
  },
});
