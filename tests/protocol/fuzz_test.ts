/**
 * Seeded fuzzing of the engine: a million random and mutated-from-valid frames through
 * classifyFrame + handleRequest (+ completeRequest for I/O), each checked for a well-formed
 * outcome, with the heap measured for growth. Reproducible: the seed and the failing iteration
 * are in the failure message.
 */

import { assert } from "../helpers/assert.ts";
import {
  classifyFrame,
  completeRequest,
  describeRequest,
  FrameClass,
  handleRequest,
  maxSectorsForMtu,
} from "../../src/protocol/engine.ts";
import { Action, Drop, type Port, type Target } from "../../src/protocol/types.ts";
import { ataReadWriteFields, buildAtaRequest } from "../../src/protocol/ata.ts";
import { buildConfigRequest } from "../../src/protocol/config.ts";
import { buildMaskRequest } from "../../src/protocol/macmask.ts";
import { buildReserveRequest } from "../../src/protocol/reserve.ts";
import { putRequestHeader } from "../../src/protocol/header.ts";
import { DeviceState } from "../../src/state/device_state.ts";
import { env, HOST_MAC, makePort, makeTarget, makeWork, OTHER_MAC } from "./fixtures.ts";

const SEED = Number(Deno.env.get("AOE_FUZZ_SEED") ?? 0x5eed_a0e);
const FRAMES = 1_000_000;
const MAX_LEN = 9100;

/** mulberry32: small, fast, good enough to drive a fuzzer, and reproducible. */
function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Valid requests of every kind, to mutate. */
function templates(): Uint8Array[] {
  const out: Uint8Array[] = [];
  const add = (build: (f: Uint8Array) => number) => {
    const f = new Uint8Array(16400);
    out.push(f.slice(0, build(f)));
  };
  const e = env();
  for (
    const [write, lba, count] of [[false, 0, 1], [true, 5, 2], [false, 2 ** 29, 17], [
      true,
      1000,
      31,
    ]] as const
  ) {
    add((f) =>
      buildAtaRequest(
        f,
        e,
        ataReadWriteFields(write, lba, count),
        write ? new Uint8Array(count * 512).fill(0xa5) : undefined,
      )
    );
  }
  for (const op of [0xec, 0xe7, 0xea, 0xe5, 0xb0]) {
    add((f) =>
      buildAtaRequest(f, e, { aflags: 0, errFeature: 0, sectorCount: 1, cmdStatus: op, lba: 0 })
    );
  }
  for (const ccmd of [0, 1, 2, 3, 4]) {
    add((f) => buildConfigRequest(f, e, ccmd, new TextEncoder().encode("fuzz")));
  }
  add((f) => buildMaskRequest(f, e, 0));
  add((f) =>
    buildMaskRequest(f, e, 1, [{ dcmd: 1, mac: HOST_MAC }, { dcmd: 1, mac: OTHER_MAC }, {
      dcmd: 2,
      mac: 7,
    }])
  );
  add((f) => buildReserveRequest(f, e, 0));
  add((f) => buildReserveRequest(f, e, 1, [HOST_MAC]));
  add((f) => buildReserveRequest(f, e, 2, [HOST_MAC, OTHER_MAC]));
  add((f) => buildReserveRequest(f, e, 2, []));
  add((f) => {
    putRequestHeader(f, e, 0xf3);
    return 60;
  });
  return out;
}

const SOURCES = [HOST_MAC, OTHER_MAC, 0x0a0b0c0d0e0f, 0xffffffffffff];

Deno.test({
  name: "a million random and mutated frames all get a well-formed outcome, heap stays flat",
  fn() {
    const rand = mulberry32(SEED);
    const int = (n: number) => Math.floor(rand() * n);
    const tpl = templates();
    const ports: Port[] = [makePort(1500), makePort(9000), makePort(16384), makePort(1056)];
    const targets: Target[] = [
      makeTarget({ sectors: 2 ** 20, state: new DeviceState() }),
      makeTarget({ sectors: 1000, readOnly: true, shelf: 0, slot: 0 }),
      makeTarget({ sectors: 2 ** 40, accept: [HOST_MAC, OTHER_MAC], deny: [OTHER_MAC] }),
    ];
    const rx = new Uint8Array(16400);
    for (let i = 0; i < rx.length; i++) rx[i] = int(256);
    const work = makeWork();
    const counts = new Float64Array(8);
    const heapAt = (n: number) => n === 100_000 || n === FRAMES;
    const minHeap = [Infinity, Infinity];

    for (let n = 1; n <= FRAMES; n++) {
      // ---- make a frame ----
      let length: number;
      const mode = rand();
      if (mode < 0.25) {
        // Random header bytes, mostly AoE v1 requests so that they reach the engine.
        length = int(MAX_LEN + 1);
        for (let i = 0; i < 64; i++) rx[i] = int(256);
        if (rand() < 0.9) {
          rx[12] = 0x88;
          rx[13] = 0xa2;
          rx[14] = 0x10 | (rx[14] & 0x07);
        }
      } else {
        // Half of the mutations start from a READ/WRITE (the first four templates).
        const t = tpl[rand() < 0.5 ? int(4) : int(tpl.length)];
        rx.set(t);
        length = rand() < 0.7 ? t.length : int(MAX_LEN + 1);
        const mutations = int(4);
        for (let m = 0; m < mutations; m++) rx[14 + int(Math.min(50, t.length))] = int(256);
        if (rand() < 0.3) rx[26] = int(256); // ATA count / config length byte
        if (rand() < 0.3) { for (let i = 28; i < 34; i++) rx[i] = int(256); // LBA
         }
        if (rand() < 0.1) rx[14] = 0x10 | int(8);
      }
      const src = rand() < 0.5 ? HOST_MAC : SOURCES[int(SOURCES.length)];
      for (let i = 0; i < 6; i++) rx[6 + i] = Math.floor(src / 2 ** (8 * (5 - i))) & 0xff;

      const port = ports[int(ports.length)];
      const target = targets[int(targets.length)];
      if (n % 1000 === 0) {
        for (const t of targets) {
          t.state.clearMacMask();
          t.state.setReserve([]);
        }
      }

      // ---- run and check ----
      try {
        const cls = classifyFrame(rx, length);
        if (cls !== FrameClass.OK) {
          assert.ok(cls >= 1 && cls <= 4);
          counts[0]++;
          continue;
        }
        if (n % 97 === 0) assert.ok(describeRequest(rx, length).length > 0);
        const action = handleRequest(rx, length, port, target, work);
        assert.equal(work.action, action);
        const f = work.frame;
        if (action === Action.DROP) {
          assert.ok(
            work.drop === Drop.SHORT || work.drop === Drop.DENIED ||
              work.drop === Drop.CONFIG_MISMATCH,
            `drop reason ${work.drop}`,
          );
          assert.equal(work.length, 0);
          counts[1]++;
          continue;
        }
        if (action === Action.READ || action === Action.WRITE) {
          assert.equal(work.length, 36);
          assert.equal(work.offset % 512, 0);
          assert.ok(work.bytes >= 512 && work.bytes <= maxSectorsForMtu(port.mtu) * 512);
          assert.ok(work.offset + work.bytes <= target.sectors * 512, "I/O within the device");
          assert.ok(Number.isSafeInteger(work.offset + work.bytes));
          if (action === Action.WRITE) {
            assert.ok(!target.readOnly);
            assert.equal(f[36], rx[36]);
            assert.equal(f[35 + work.bytes], rx[35 + work.bytes]);
          }
          const r = rand();
          const result = r < 0.6
            ? work.bytes
            : r < 0.7
            ? -5
            : r < 0.8
            ? -28
            : r < 0.9
            ? work.bytes - 512
            : int(work.bytes);
          completeRequest(work, result, target.stats);
          assert.equal(f[27], result === work.bytes ? 0x40 : 0x41);
          assert.equal(
            work.length,
            result === work.bytes && action === Action.READ ? 36 + work.bytes : 60,
          );
          counts[action]++;
        } else if (action === Action.FLUSH) {
          assert.equal(work.length, 36);
          completeRequest(work, rand() < 0.8 ? 0 : -5, target.stats);
          assert.equal(work.length, 60);
          counts[4]++;
        } else {
          assert.equal(action, Action.REPLY);
          counts[5]++;
        }
        // Every reply: sized, to the requester, from the port, R set, tag and command echoed.
        assert.ok(
          work.length >= 60 && work.length <= port.mtu + 14,
          `reply of ${work.length} bytes at MTU ${port.mtu}`,
        );
        for (let i = 0; i < 6; i++) {
          assert.equal(f[i], rx[6 + i], "destination = request source");
          assert.equal(f[6 + i], port.mac[i], "source = port MAC");
        }
        assert.equal(f[12], 0x88);
        assert.equal(f[13], 0xa2);
        assert.equal(f[14] & 0xf8, 0x18, "version 1, R flag");
        assert.equal((f[14] & 0x04) !== 0, f[15] !== 0, "E flag iff AoE error");
        assert.equal((f[16] << 8) | f[17], target.shelf);
        assert.equal(f[18], target.slot);
        for (let i = 19; i < 24; i++) assert.equal(f[i], rx[i], "command and tag echoed");
      } catch (e) {
        throw new Error(
          `fuzz seed ${SEED} frame ${n} (length ${length}): ${(e as Error).message}`,
          { cause: e },
        );
      }
      if (n >= 90_000 && n <= 100_000 && n % 500 === 0) {
        minHeap[0] = Math.min(minHeap[0], Deno.memoryUsage().heapUsed);
      }
      if (n >= FRAMES - 10_000 && n % 500 === 0) {
        minHeap[1] = Math.min(minHeap[1], Deno.memoryUsage().heapUsed);
      }
      if (heapAt(n)) counts[6]++;
    }
    // Every outcome was exercised.
    for (
      const [i, what] of ["ignored", "dropped", "read", "write", "flush", "reply"].entries()
    ) {
      if (what) assert.ok(counts[i] > 1000, `only ${counts[i]} ${what} outcomes`);
    }
    const growth = minHeap[1] - minHeap[0];
    if (Deno.env.get("AOE_FUZZ_VERBOSE")) console.log(counts, minHeap, growth);
    assert.ok(
      growth < 8 * 1024 * 1024,
      `heap grew by ${(growth / 1048576).toFixed(1)} MiB between 100k and 1M frames`,
    );
  },
});
