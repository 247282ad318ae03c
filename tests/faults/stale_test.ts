/**
 * Stale requests: a daemon that hangs and comes back must never write late over newer data.
 *
 * An initiator that gets no answer resends its request (with a new tag each time) and, with
 * another target of the same storage, eventually completes it there and writes newer data over
 * the same sectors. The daemon that hung must then drop, unanswered, everything it received
 * before it ran again (`max-stall`), and never start a request older than `max-request-age`.
 * Scenarios, with the packet rings, without them (recvmsg), and with a ring that overflows:
 * - the daemon stopped (SIGSTOP) for longer than the bound while writes and their resends
 *   arrive, the newer data written straight into the file meanwhile: the file keeps the newer
 *   data, every stale write is counted and logged, none is answered, and serving goes on;
 * - stopped for 1 s (shorter than the bounds): every write is served, nothing is dropped;
 * - stopped in the middle of a loop turn (its worker thread running its own code, not waiting in
 *   epoll_wait), again and again: no write received during a stop is carried out after it;
 * - storage that hangs longer than the bound (the FUSE fixture's delay): what waited behind
 *   the stuck write is dropped, never started.
 */

import { assert, assertEquals } from "../helpers/assert.ts";
import type { Initiator, TargetInfo } from "../../src/initiator/mod.ts";
import { ataReadWriteFields, buildAtaRequest, parseAtaResponse } from "../../src/protocol/ata.ts";
import { frameCommand, frameTag } from "../../src/protocol/header.ts";
import { AOE_CMD_ATA } from "../../src/protocol/constants.ts";
import {
  firstDifference,
  pattern,
  readFileRange,
  type TestTarget,
  withTarget,
} from "../../lab/target.ts";
import { withFaultyFile } from "../../lab/storage_faults.ts";
import { freezeProcess } from "../../lab/command.ts";

const OPTS = { sanitizeResources: false, sanitizeOps: false };
const SECTOR = 512;
/** Writes of 2 sectors (they fit an MTU of 1500), one after the other from LBA 0. */
const PER = 2;
const REQUESTS = 8;
const REGION = REQUESTS * PER * SECTOR;
/** A fixed retransmit timeout, long enough that the initiator never resends on its own. */
const STEADY = { adaptive: false, timeoutMs: 1000 };
/** The defaults under test: max-request-age = max-stall = 2 s. */
const BOUND_MS = 2000;
const DRDY = 0x40;

let nextTag = 0x6a000000;

/** Raw ATA write frames for `REQUESTS` writes of `data` from LBA `firstLba`, fresh tags. */
function writeFrames(ini: Initiator, disk: TargetInfo, firstLba: number, data: Uint8Array) {
  const frames: Uint8Array[] = [];
  const tags: number[] = [];
  for (let i = 0; i < data.length / (PER * SECTOR); i++) {
    const tag = nextTag++ >>> 0;
    const frame = new Uint8Array(36 + PER * SECTOR + 60);
    const length = buildAtaRequest(
      frame,
      { dst: disk.mac, src: ini.mac, shelf: disk.shelf, slot: disk.slot, tag },
      ataReadWriteFields(true, firstLba + i * PER, PER, true),
      data.subarray(i * PER * SECTOR, (i + 1) * PER * SECTOR),
    );
    frames.push(frame.subarray(0, length));
    tags.push(tag);
  }
  return { frames, tags };
}

/** Replies by tag among `tags` until `want` of them came or `ms` passed with none. */
function collectReplies(ini: Initiator, tags: number[], want: number, ms: number) {
  const wanted = new Set(tags);
  const replies = new Map<number, number>();
  while (replies.size < want) {
    const f = ini.receiveRaw(ms);
    if (f === null) break;
    if (frameCommand(f) !== AOE_CMD_ATA || !wanted.has(frameTag(f))) continue;
    replies.set(frameTag(f), parseAtaResponse(f).cmdStatus);
  }
  return replies;
}

function writeFileAt(path: string, offset: number, data: Uint8Array): void {
  const f = Deno.openSync(path, { write: true });
  try {
    f.seekSync(offset, Deno.SeekMode.Start);
    let done = 0;
    while (done < data.length) done += f.writeSync(data.subarray(done));
    f.syncDataSync();
  } finally {
    f.close();
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function deviceStats(t: TestTarget, name: string): Promise<Record<string, number>> {
  const r = await t.ctl("--json", "stats");
  assertEquals(r.code, 0, r.stderr);
  const device = JSON.parse(r.stdout).devices.find((d: { name: string }) => d.name === name);
  assert(device, `no device ${name} in ${r.stdout}`);
  return device.stats;
}

/** Writes a fresh pattern through the initiator elsewhere and reads it back. */
function assertServes(ini: Initiator, disk: TargetInfo, path: string): void {
  const data = pattern(64 * 1024, 99, 4096);
  ini.writeRange(disk, 4096, data);
  assertEquals(firstDifference(ini.readRange(disk, 4096, data.length / SECTOR), data), -1);
  assertEquals(firstDifference(readFileRange(path, 4096 * SECTOR, data.length), data), -1);
}

/** A process stopped with SIGSTOP until `body` ends (SIGCONT, also when it throws). */
async function stopped(pid: number, body: () => Promise<void>): Promise<void> {
  try {
    await freezeProcess(pid, `process ${pid}`, 10_000);
    await body();
  } finally {
    Deno.kill(pid, "SIGCONT");
  }
}

/**
 * `t`'s daemon stopped while the initiator sends `old` over the region and resends it (new
 * tags, the same data) every 500 ms, as the Linux driver does, for 3 s; then the initiator
 * completes the writes through another host, which writes `newer` into the file; then the
 * daemon resumes, having been stopped for longer than 2 s (max-stall and max-request-age).
 * The last copies are young when it resumes: only the stall bound keeps them from starting.
 * Returns the tags sent.
 */
async function stopWhileWriting(
  t: TestTarget,
  ini: Initiator,
  disk: TargetInfo,
  old: Uint8Array,
  newer: Uint8Array,
): Promise<number[]> {
  const tags: number[] = [];
  await stopped(t.process!.pid, async () => {
    const start = performance.now();
    for (let round = 0; round < 7; round++) {
      if (round > 0) await sleep(start + round * 500 - performance.now());
      const w = writeFrames(ini, disk, 0, old);
      for (const f of w.frames) ini.sendRaw(f);
      tags.push(...w.tags);
    }
    writeFileAt(t.images.get("disk1")!, 0, newer);
  });
  return tags;
}

const MODES = [
  { label: "rings", ringKiB: 4096, overflow: false },
  { label: "no rings (recvmsg)", ringKiB: 0, overflow: false },
  // 32 KiB of RX ring hold 20 frames: most of the 56 sent during the stop are lost.
  { label: "rings full during the stop", ringKiB: 64, overflow: true },
];

for (const m of MODES) {
  Deno.test({
    ...OPTS,
    name:
      `${m.label}: writes received while the daemon was stopped longer than max-stall, young copies included, are dropped unanswered; the newer data written meanwhile stays, every byte; serving goes on`,
    fn: () =>
      withTarget({ ringKiB: m.ringKiB, devices: [{ name: "disk1", sizeMiB: 8 }] }, async (t) => {
        const path = t.images.get("disk1")!;
        const ini = t.initiator(STEADY);
        const disk = ini.find(0, 1, { waitMs: 3000 });
        ini.writeRange(disk, 0, pattern(REGION, 1));
        const newer = pattern(REGION, 3);
        const tags = await stopWhileWriting(t, ini, disk, pattern(REGION, 2), newer);
        const replies = collectReplies(ini, tags, tags.length, 1000);
        // Served in order: once this is done, everything received during the stop was handled.
        assertServes(ini, disk, path);
        assertEquals(firstDifference(readFileRange(path, 0, REGION), newer), -1);
        assertEquals(replies.size, 0, "a stale write was answered");
        await t.waitForLog(/did not run for [\d.]+ s \(longer than max-stall\): dropped \d+/);
        const st = await deviceStats(t, "disk1");
        const logged = Number(/dropped (\d+) request/.exec(t.log)![1]);
        assertEquals(logged, st.stall_drop);
        if (m.overflow) {
          assert(st.stall_drop >= 1 && st.stall_drop < tags.length, JSON.stringify(st));
        } else {
          assertEquals(st.stall_drop, tags.length);
        }
        assertEquals(st.stale_drop, 0);
      }),
  });

  if (m.overflow) continue;

  Deno.test({
    ...OPTS,
    name:
      `${m.label}: a stop of 1 s (shorter than the bounds) drops nothing; every write is served`,
    fn: () =>
      withTarget({ ringKiB: m.ringKiB, devices: [{ name: "disk1", sizeMiB: 8 }] }, async (t) => {
        const path = t.images.get("disk1")!;
        const ini = t.initiator(STEADY);
        const disk = ini.find(0, 1, { waitMs: 3000 });
        ini.writeRange(disk, 0, pattern(REGION, 1));
        const data = pattern(REGION, 4);
        const w = writeFrames(ini, disk, 0, data);
        await stopped(t.process!.pid, async () => {
          for (const f of w.frames) ini.sendRaw(f);
          await sleep(1000);
        });
        const replies = collectReplies(ini, w.tags, w.tags.length, 10000);
        assertEquals(replies.size, w.tags.length, "a write was not answered");
        for (const status of replies.values()) assertEquals(status, DRDY);
        assertEquals(firstDifference(readFileRange(path, 0, REGION), data), -1);
        assertServes(ini, disk, path);
        const st = await deviceStats(t, "disk1");
        assertEquals([st.stall_drop, st.stale_drop], [0, 0]);
        assert(!/did not run for/.test(t.log), t.log);
      }),
  });
}

for (const together of [false, true]) {
  Deno.test({
    ...OPTS,
    name: `writes ${
      together ? "queued together (merge-delay) " : ""
    }behind a write that hangs longer than max-stall are dropped, never started; serving goes on`,
    fn: () =>
      withFaultyFile(
        { sizeBytes: 8 * 1024 * 1024 },
        (f) =>
          withTarget({
            directIo: false,
            devices: [{
              name: "disk1",
              path: f.path,
              extra: together ? "merge-delay = 0.2" : undefined,
            }],
          }, async (t) => {
            const ini = t.initiator(STEADY);
            const disk = ini.find(0, 1, { waitMs: 3000 });
            // Four writes far apart (not merged): the first hangs in the storage for 3 s.
            const data = pattern(PER * SECTOR, 5);
            const sent: { lba: number; tag: number }[] = [];
            f.setDelay(BOUND_MS + 1000);
            for (const lba of [0, 512, 1024, 1536]) {
              const w = writeFrames(ini, disk, lba, pattern(PER * SECTOR, 5, lba));
              ini.sendRaw(w.frames[0]);
              sent.push({ lba, tag: w.tags[0] });
            }
            const replies = collectReplies(ini, sent.map((s) => s.tag), 1, 15000);
            f.setDelay(0);
            assertEquals([...replies.keys()], [sent[0].tag], "only the first write is answered");
            assertEquals(replies.get(sent[0].tag), DRDY);
            assertEquals(collectReplies(ini, sent.map((s) => s.tag), 1, 1000).size, 0);
            assertServes(ini, disk, f.path);
            // The first write is in the file; the three that waited behind it never started.
            assertEquals(
              firstDifference(
                readFileRange(f.imagePath, 0, data.length),
                pattern(PER * SECTOR, 5, 0),
              ),
              -1,
            );
            for (const { lba } of sent.slice(1)) {
              const got = readFileRange(f.imagePath, lba * SECTOR, data.length);
              assertEquals(firstDifference(got, new Uint8Array(data.length)), -1, `LBA ${lba}`);
            }
            const st = await deviceStats(t, "disk1");
            assertEquals(st.stall_drop + st.stale_drop, 3, JSON.stringify(st));
          }),
      ),
  });
}

Deno.test({
  ...OPTS,
  name:
    "with max-stall off, writes older than max-request-age when they would start are dropped unanswered, the younger ones served",
  fn: () =>
    withTarget({
      ringKiB: 4096,
      defaults: "max-stall = 0",
      devices: [{ name: "disk1", sizeMiB: 8 }],
    }, async (t) => {
      const path = t.images.get("disk1")!;
      const ini = t.initiator(STEADY);
      const disk = ini.find(0, 1, { waitMs: 3000 });
      ini.writeRange(disk, 0, pattern(2 * REGION, 1));
      const old = writeFrames(ini, disk, 0, pattern(REGION, 2));
      const young = writeFrames(ini, disk, REGION / SECTOR, pattern(REGION, 4, REGION / SECTOR));
      await stopped(t.process!.pid, async () => {
        for (const f of old.frames) ini.sendRaw(f);
        await sleep(BOUND_MS + 1000);
        for (const f of young.frames) ini.sendRaw(f);
      });
      const replies = collectReplies(ini, [...old.tags, ...young.tags], young.tags.length, 10000);
      assertServes(ini, disk, path);
      assertEquals([...replies.keys()].sort(), [...young.tags].sort());
      const file = readFileRange(path, 0, 2 * REGION);
      assertEquals(firstDifference(file.subarray(0, REGION), pattern(REGION, 1)), -1);
      assertEquals(
        firstDifference(file.subarray(REGION), pattern(REGION, 4, REGION / SECTOR)),
        -1,
      );
      const st = await deviceStats(t, "disk1");
      assertEquals([st.stale_drop, st.stall_drop], [old.tags.length, 0]);
      await t.waitForLog(/disk\/disk1: 8 request\(s\) dropped unanswered/);
    }),
});

/**
 * The thread of process `pid` of the data-path worker that serves the first device (Deno names a
 * Worker's thread worker-N, N from 1 in creation order; the daemon's first worker, worker-1, gets
 * the first device also when there are several, see docs/workers.md).
 */
function workerThread(pid: number): number {
  for (const task of Deno.readDirSync(`/proc/${pid}/task`)) {
    try {
      const comm = Deno.readTextFileSync(`/proc/${pid}/task/${task.name}/comm`);
      if (comm.trim() === "worker-1") return Number(task.name);
    } catch { /* the thread exited meanwhile */ }
  }
  throw new Error(`no worker thread in process ${pid}`);
}

/**
 * What thread `tid` of `pid` is doing, from /proc/PID/task/TID/syscall: "running" (on a CPU),
 * -1 (stopped or preempted in its own code), or the number of the system call it is in (or,
 * when stopped, the one it stopped on its way back from).
 */
function syscallOf(pid: number, tid: number): number | "running" {
  const s = Deno.readTextFileSync(`/proc/${pid}/task/${tid}/syscall`).trim();
  return s === "running" ? s : Number(s.split(" ")[0]);
}

/** Stops that catch the worker running its own code (mid-turn), and a bound on the tries. */
const MID_TURN_STOPS = 12;
const MAX_TRIES = 400;
/**
 * How long each of those stops lasts: longer than max-stall (1 s here) plus the longest wait
 * for events (1 s), since a stop that catches the worker between its clock reading and its
 * epoll_wait is seen only as a wait that returned that much late.
 */
const STOP_MS = 2500;
/** Where the writes that keep the worker busy go (far from the region under test). */
const BURST_LBA = 1024;

Deno.test({
  ...OPTS,
  name:
    "stopped in the middle of a loop turn (draining the ring, submitting) for longer than max-stall, the daemon never carries out, after it resumes, a write received during the stop: the newer data written meanwhile stays, every byte, stop after stop",
  fn: () =>
    withTarget({
      ringKiB: 4096,
      defaults: "max-stall = 1",
      devices: [{ name: "disk1", sizeMiB: 8 }],
    }, async (t) => {
      const pid = t.process!.pid;
      const path = t.images.get("disk1")!;
      const ini = t.initiator(STEADY);
      const disk = ini.find(0, 1, { waitMs: 3000 });
      const worker = workerThread(pid);
      let tries = 0;
      let stops = 0;
      while (stops < MID_TURN_STOPS) {
        assert(++tries <= MAX_TRIES, `only ${stops} of ${tries} stops caught the worker mid-turn`);
        // A burst of writes elsewhere (each sent 8 times): the worker wakes and drains it. Stop
        // the daemon once the worker runs; if it was not stopped in its own code (in epoll_wait
        // between turns, or in another system call), resume at once and try again.
        const burst = writeFrames(ini, disk, BURST_LBA, pattern(REGION, tries, BURST_LBA));
        for (let copy = 0; copy < 8; copy++) for (const f of burst.frames) ini.sendRaw(f);
        const deadline = performance.now() + 1000;
        while (syscallOf(pid, worker) !== "running" && performance.now() < deadline) {
          /* poll: the worker is woken within microseconds to milliseconds */
        }
        let midTurn = false;
        const newer = pattern(REGION, 2000 + tries);
        await stopped(pid, async () => {
          midTurn = syscallOf(pid, worker) === -1;
          if (!midTurn) return;
          // Writes over the region reach it late in the stop (young: only the stall bound keeps
          // them from starting), then their initiator completes them elsewhere: the newer data
          // goes straight into the file.
          await sleep(STOP_MS);
          const old = writeFrames(ini, disk, 0, pattern(REGION, 1000 + tries));
          for (let copy = 0; copy < 2; copy++) for (const f of old.frames) ini.sendRaw(f);
          writeFileAt(path, 0, newer);
        });
        if (!midTurn) continue;
        stops++;
        // Served in order: once this is done, everything received before it was handled.
        assertServes(ini, disk, path);
        assertEquals(
          firstDifference(readFileRange(path, 0, REGION), newer),
          -1,
          `a write received during stop ${stops} (try ${tries}) was carried out after it`,
        );
      }
      // Every copy sent during a stop was counted as dropped (with what the bursts left).
      const st = await deviceStats(t, "disk1");
      assert(st.stall_drop >= stops * 2 * REQUESTS, JSON.stringify(st));
      await t.waitForLog(/longer than max-stall/);
    }),
});
