import assert from "node:assert/strict";
import { NetLab, withNetLab } from "../../lab/netns.ts";
import { JsonAgent } from "./fixtures/json_agent.ts";
import { buildFrame, checksum } from "./fixtures/frames.ts";
import type { FrameSpec, ReceivedFrame } from "./fixtures/frames.ts";

const AGENT = new URL("./fixtures/packet_agent.ts", import.meta.url).pathname;
const AOE = 0x88a2;
const REQUEST = 0x10; // AoE version 1, no flags
const RESPONSE = 0x18; // version 1, R set

/** Two namespaces joined by a veth pair at `mtu`, an agent in each. */
async function pair(lab: NetLab, mtu: number) {
  const [nsA, nsB] = [await lab.namespace(), await lab.namespace()];
  const [ifA, ifB] = await lab.vethPair(nsA, nsB, { mtu });
  return {
    a: JsonAgent.start(lab, nsA, AGENT),
    b: JsonAgent.start(lab, nsB, AGENT),
    ifA,
    ifB,
    nsA,
    nsB,
  };
}

/** The checksum the receiver must report for `spec` sent from `src`: padded to 60 bytes. */
function expectedChecksum(spec: FrameSpec, src: number): number {
  const frame = new Uint8Array(Math.max(60, spec.length));
  buildFrame(frame, spec, src);
  return checksum(frame);
}

for (const mtu of [1500, 9000]) {
  for (const rings of [true, false]) {
    const mode = rings ? "RX/TX rings" : "recv/send";
    Deno.test(`MTU ${mtu}, ${mode}: frames up to the maximum size cross a veth pair intact, short ones padded to 60`, async () => {
      await withNetLab(async (lab) => {
        const { a, b, ifA, ifB } = await pair(lab, mtu);
        const ringBytes = rings ? 1 << 20 : 0;
        const sender = await a.call({ op: "open", ifname: ifA, ringBytes, filter: "none" });
        const receiver = await b.call({ op: "open", ifname: ifB, ringBytes, filter: "requests" });
        for (const s of [sender, receiver]) {
          assert.equal(s.rxRing, rings);
          assert.equal(s.txRing, rings);
          assert.equal(s.mtu, mtu);
          assert.equal(s.frameSize, mtu + 14);
        }
        const specs: FrameSpec[] = [mtu + 14, 20, 59, 60, 61, 1000, mtu + 14, mtu]
          .map((length, seed) => ({
            dst: receiver.mac,
            ethertype: AOE,
            flags: REQUEST,
            length,
            seed,
          }));
        const sent = await a.call({ op: "send", frames: specs });
        const got = await b.call({ op: "receive", count: specs.length, timeoutMs: 5000 });
        assert.equal(got.frames.length, specs.length);
        got.frames.forEach((frame: ReceivedFrame, i: number) => {
          const wire = Math.max(60, specs[i].length);
          assert.equal(frame.length, wire, `frame ${i} length`);
          assert.equal(frame.wireLength, wire);
          assert.equal(frame.src, sender.mac);
          assert.equal(frame.checksum, expectedChecksum(specs[i], sender.mac), `frame ${i} bytes`);
          assert.equal(frame.checksum, sent.checksums[i]);
          assert.ok(
            Math.abs(frame.timestamp - Date.now() / 1000) < 30,
            "timestamp is wall-clock seconds",
          );
        });
        if (rings) assert.ok(sent.txKicks >= 1, "the TX ring was kicked");
        assert.equal(got.kernelDrops, 0);
      });
    });
  }
}

Deno.test("the requests filter passes AoE requests only, responses passes responses, none all AoE", async () => {
  await withNetLab(async (lab) => {
    const { a, ifA, ifB, nsB } = await pair(lab, 1500);
    const sender = await a.call({ op: "open", ifname: ifA, ringBytes: 1 << 20, filter: "none" });
    const mixed = (dst: number): FrameSpec[] => [
      { dst, ethertype: AOE, flags: RESPONSE, length: 100, seed: 1 },
      { dst, ethertype: 0x88b5, flags: REQUEST, length: 100, seed: 2 }, // not AoE
      { dst, ethertype: AOE, flags: REQUEST, length: 100, seed: 3 },
      { dst, ethertype: AOE, flags: REQUEST | 0x04, length: 100, seed: 4 }, // E set, R clear
      { dst, ethertype: AOE, flags: RESPONSE | 0x04, length: 100, seed: 5 },
    ];
    const expected = { requests: [2, 3], responses: [0, 4], none: [0, 2, 3, 4] };
    for (const [filter, indices] of Object.entries(expected)) {
      const b = JsonAgent.start(lab, nsB, AGENT);
      const { mac } = await b.call({ op: "open", ifname: ifB, ringBytes: 1 << 20, filter });
      // A last frame the filter accepts marks the end: frames arrive in order over the veth,
      // so any frame wrongly let through would have arrived before it.
      const marker = {
        dst: mac,
        ethertype: AOE,
        flags: filter === "responses" ? RESPONSE : REQUEST,
        length: 64,
        seed: 9,
      };
      const frames = [...mixed(mac), marker];
      await a.call({ op: "send", frames });
      const got = await b.call({ op: "receive", count: indices.length + 1, timeoutMs: 3000 });
      assert.deepEqual(
        got.frames.map((f: ReceivedFrame) => f.checksum),
        [...indices, frames.length - 1].map((i) => expectedChecksum(frames[i], sender.mac)),
        `filter ${filter}`,
      );
      await b.call({ op: "close" });
    }
  });
});

Deno.test("an address filter passes requests to its AoE addresses (or to every address but its except list) and broadcasts only, and is replaced at once", async () => {
  await withNetLab(async (lab) => {
    const { a, b, ifA, ifB } = await pair(lab, 1500);
    const sender = await a.call({ op: "open", ifname: ifA, ringBytes: 1 << 20, filter: "none" });
    const { mac } = await b.call({
      op: "open",
      ifname: ifB,
      ringBytes: 1 << 20,
      filter: "requests",
    });
    const frame = (shelf: number, slot: number, seed: number, flags = REQUEST): FrameSpec => ({
      dst: mac,
      ethertype: AOE,
      flags,
      length: 100,
      seed,
      shelf,
      slot,
    });
    type Address = { shelf: number; slot: number };
    type Round = ({ addresses: Address[] | null } | { except: Address[] }) & {
      frames: FrameSpec[];
      pass: number[];
    };
    const rounds: Round[] = [
      {
        addresses: [{ shelf: 0, slot: 1 }, { shelf: 7, slot: 3 }, { shelf: 0xfffe, slot: 0xfe }],
        frames: [
          frame(0, 1, 1), // 0
          frame(0, 2, 2),
          frame(7, 3, 3), // 2
          frame(7, 1, 4),
          frame(3, 1, 5),
          frame(0xffff, 5, 6), // 5: broadcast shelf
          frame(3, 0xff, 7), // 6: broadcast slot
          frame(0, 1, 8, RESPONSE),
          { dst: mac, ethertype: 0x88b5, flags: REQUEST, length: 100, seed: 9, shelf: 0, slot: 1 },
          frame(0xfffe, 0xfe, 10), // 9
          frame(0x0100, 1, 11), // a major that differs in its high byte only
          frame(0, 1, 12), // 11: the marker
        ],
        pass: [0, 2, 5, 6, 9, 11],
      },
      {
        // Replaced: 0.1 no longer passes, 0.2 does.
        addresses: [{ shelf: 0, slot: 2 }],
        frames: [
          frame(0, 1, 21),
          frame(0, 2, 22),
          frame(7, 3, 23),
          frame(0xffff, 0xff, 24),
          frame(0, 2, 25),
        ],
        pass: [1, 3, 4],
      },
      {
        // None: not even broadcasts (a worker without devices on the interface has nothing to say).
        addresses: [],
        frames: [frame(0, 2, 31), frame(0xffff, 0xff, 32), frame(0, 1, 33)],
        pass: [],
      },
      {
        // The catch-all worker's: every request but those to the other workers' addresses.
        except: [{ shelf: 0, slot: 1 }, { shelf: 7, slot: 3 }],
        frames: [
          frame(0, 1, 51),
          frame(0, 2, 52), // 1
          frame(7, 3, 53),
          frame(0xffff, 0xff, 54), // 3: broadcast
          frame(7, 0xff, 55), // 4: broadcast slot on a shelf with an excluded address
          frame(0, 2, 56, RESPONSE),
          frame(0x0100, 1, 57), // 6: a major that differs in its high byte only
          frame(9, 9, 58), // 7: the marker
        ],
        pass: [1, 3, 4, 6, 7],
      },
      {
        except: [], // nothing excluded: every request, as without a filter
        frames: [frame(0, 1, 61), frame(0, 1, 62, RESPONSE), frame(5, 5, 63)],
        pass: [0, 2],
      },
      {
        addresses: null, // every request again
        frames: [frame(0, 2, 41), frame(9, 9, 42), frame(0, 1, 43, RESPONSE), frame(0, 1, 44)],
        pass: [0, 1, 3],
      },
    ];
    for (const [n, round] of rounds.entries()) {
      const addresses = "except" in round ? { except: round.except } : round.addresses;
      await b.call({ op: "filterAddresses", addresses });
      await a.call({ op: "send", frames: round.frames });
      const got = await b.call({
        op: "receive",
        // The last frame of a round passes: frames arrive in order over the veth, so one let
        // through wrongly comes before it. A round passing nothing waits a little for any.
        count: Math.max(round.pass.length, 1),
        timeoutMs: round.pass.length === 0 ? 500 : 3000,
      });
      assert.deepEqual(
        got.frames.map((f: ReceivedFrame) => f.checksum),
        round.pass.map((i) => expectedChecksum(round.frames[i], sender.mac)),
        `round ${n}: ${JSON.stringify(addresses)}`,
      );
    }
    await b.call({ op: "close" });
  });
});

Deno.test("a socket opened with an address filter has it from the start: no request to another address reaches it before a later change", async () => {
  await withNetLab(async (lab) => {
    const { a, ifA, ifB, nsB } = await pair(lab, 1500);
    const sender = await a.call({ op: "open", ifname: ifA, ringBytes: 1 << 20, filter: "none" });
    for (const ringBytes of [1 << 20, 0]) {
      const b = JsonAgent.start(lab, nsB, AGENT);
      const { mac } = await b.call({
        op: "open",
        ifname: ifB,
        ringBytes,
        filter: "requests",
        addresses: { except: [{ shelf: 0, slot: 2 }] },
      });
      const frame = (shelf: number, slot: number, seed: number): FrameSpec => ({
        dst: mac,
        ethertype: AOE,
        flags: REQUEST,
        length: 100,
        seed,
        shelf,
        slot,
      });
      const frames = [frame(0, 2, 1), frame(0, 1, 2), frame(0xffff, 0xff, 3), frame(0, 2, 4)];
      frames.push(frame(0, 3, 5)); // the marker
      await a.call({ op: "send", frames });
      const got = await b.call({ op: "receive", count: 3, timeoutMs: 3000 });
      assert.deepEqual(
        got.frames.map((f: ReceivedFrame) => f.checksum),
        [1, 2, 4].map((i) => expectedChecksum(frames[i], sender.mac)),
        `ring bytes ${ringBytes}`,
      );
      await b.call({ op: "close" });
    }
  });
});

Deno.test("a full TX ring gives no buffer until a kick lets the kernel drain it", async () => {
  await withNetLab(async (lab) => {
    const { a, b, ifA, ifB } = await pair(lab, 1500);
    // 128 KiB: a 64 KiB TX ring of 42 frames of 1552 bytes.
    const sender = await a.call({ op: "open", ifname: ifA, ringBytes: 128 * 1024, filter: "none" });
    assert.equal(sender.txFrames, 42);
    const receiver = await b.call({
      op: "open",
      ifname: ifB,
      ringBytes: 4 << 20,
      filter: "requests",
    });
    const fill = await a.call({ op: "fillTx", dst: receiver.mac });
    assert.equal(fill.filled, sender.txFrames);
    assert.equal(fill.txBufferNull, true);
    // The kernel reports EPOLLOUT whenever the socket buffer has room (datagram_poll), even
    // with every TX frame taken: EPOLLOUT alone does not mean txBuffer() will succeed.
    assert.equal(fill.writable, true);
    const drained = await a.call({ op: "flushAndWait", timeoutMs: 3000 });
    assert.equal(drained.free, true);
    assert.equal(drained.txKicks, 1);
    const got = await b.call({ op: "receive", count: fill.filled, timeoutMs: 3000 });
    assert.equal(got.frames.length + got.kernelDrops, fill.filled);
    assert.ok(got.frames.every((f: ReceivedFrame) => f.length === 100));
  });
});

for (const rings of [true, false]) {
  Deno.test(`${rings ? "RX ring" : "recv"}: a frame longer than frameSize arrives truncated, with its wire length`, async () => {
    await withNetLab(async (lab) => {
      const { a, b, ifA, ifB } = await pair(lab, 1500);
      const ringBytes = rings ? 1 << 20 : 0;
      const sender = await a.call({ op: "open", ifname: ifA, ringBytes, filter: "none" });
      const receiver = await b.call({
        op: "open",
        ifname: ifB,
        ringBytes,
        filter: "requests",
        frameSize: 1000,
      });
      assert.equal(receiver.frameSize, 1000);
      const spec = { dst: receiver.mac, ethertype: AOE, flags: REQUEST, length: 1514, seed: 7 };
      await a.call({ op: "send", frames: [spec] });
      const [frame] = (await b.call({ op: "receive", count: 1, timeoutMs: 3000 })).frames;
      assert.equal(frame.wireLength, 1514);
      assert.ok(frame.length >= 1000 && frame.length < 1514, `kept ${frame.length} bytes`);
      const full = new Uint8Array(1514);
      buildFrame(full, spec, sender.mac);
      assert.equal(frame.checksum, checksum(full.subarray(0, frame.length)), "the kept prefix");
    });
  });
}

for (const rings of [true, false]) {
  Deno.test(`${rings ? "RX ring" : "recvmsg"}: a frame read late carries the time the kernel received it, not the time it was read`, async () => {
    await withNetLab(async (lab) => {
      const { a, b, ifA, ifB } = await pair(lab, 1500);
      const ringBytes = rings ? 1 << 20 : 0;
      await a.call({ op: "open", ifname: ifA, ringBytes, filter: "none" });
      const receiver = await b.call({ op: "open", ifname: ifB, ringBytes, filter: "requests" });
      const spec = { dst: receiver.mac, ethertype: AOE, flags: REQUEST, length: 100, seed: 3 };
      const before = Date.now() / 1000;
      await a.call({ op: "send", frames: [spec] });
      const after = Date.now() / 1000;
      // The frame waits in the ring or the socket queue for a second before it is read.
      await new Promise((r) => setTimeout(r, 1000));
      const [frame] = (await b.call({ op: "receive", count: 1, timeoutMs: 3000 })).frames;
      assert.ok(
        frame.timestamp >= before - 0.05 && frame.timestamp <= after + 0.05,
        `received at ${frame.timestamp}, sent between ${before} and ${after}`,
      );
    });
  });
}
