/**
 * The interface's TX queue (docs/decisions.md §4.2): a reply that finds no TX room waits, every later
 * reply queues behind it (order kept), and the queue drains in order as room appears. Driven
 * through a stand-in socket whose TX room the test controls, so the congestion is certain.
 * And TX frames reserved for reads that put their data straight into them (reserveReply).
 */

import { assertEquals } from "../helpers/assert.ts";
import { Memory, type PacketSocket } from "../../ffi/mod.ts";
import { Iface } from "../../src/engine/iface.ts";
import type { Request } from "../../src/engine/pool.ts";
import { ATA_DATA_OFFSET, Work } from "../../src/protocol/types.ts";
import { IS, newIfaceStats } from "../../src/stats.ts";

/** A socket with `room` free TX frames; `sent` records the first byte of each frame. */
class FakeSocket {
  readonly mac = 0x020000000001;
  readonly mtu = 9000;
  readonly txRing = true;
  readonly fd = -1;
  readonly txDropped = 0;
  readonly txWrongFormat = 0;
  readonly needsKick = false;
  room = 0;
  readonly sent: number[] = [];
  kicks = 0;
  readonly #frame = new Uint8Array(9014);
  txBuffer(): Uint8Array | null {
    return this.room > 0 ? this.#frame : null;
  }
  commit(_length: number): boolean {
    this.room--;
    this.sent.push(this.#frame[0]);
    return true;
  }
  flush(): void {
    this.kicks++;
  }
  close(): void {}
}

function reply(id: number): Request {
  const w = new Work(new Uint8Array(20000)) as Request;
  w.frame[0] = id;
  w.length = 60;
  return w;
}

/** An interface over the stand-in socket `sock`, with fresh counters. */
function ifaceOn(sock: object, name = "fake0"): { ifc: Iface; stats: Float64Array } {
  const stats = newIfaceStats();
  const cfg = { mtu: 0, ringBufferSize: 0, sendBufferSize: 0, receiveBufferSize: 0 };
  return { ifc: new Iface(0, name, sock as unknown as PacketSocket, cfg, stats), stats };
}

Deno.test("replies without TX room wait in order and drain in order as frames free up", () => {
  const sock = new FakeSocket();
  const { ifc, stats } = ifaceOn(sock);
  sock.room = 2;
  const results = [1, 2, 3, 4, 5].map((id) => ifc.send(reply(id)));
  assertEquals(results, [true, true, false, false, false]);
  assertEquals(ifc.queued, 3);
  assertEquals(stats[IS.tx_buffers_full], 1);
  // A reply built later must not overtake the queued ones, even if room appeared meanwhile.
  sock.room = 1;
  assertEquals(ifc.send(reply(6)), false);
  assertEquals(sock.sent, [1, 2]);
  const done: number[] = [];
  assertEquals(ifc.drainQueue((r) => done.push(r.frame[0])), false);
  assertEquals(done, [3]);
  sock.room = 10;
  assertEquals(ifc.drainQueue((r) => done.push(r.frame[0])), true);
  assertEquals(done, [3, 4, 5, 6]);
  assertEquals(sock.sent, [1, 2, 3, 4, 5, 6]);
  assertEquals(ifc.congested, false);
  assertEquals(stats[IS.tx_cnt], 6);
  ifc.flush();
  assertEquals(sock.kicks, 1);
  ifc.flush();
  assertEquals(sock.kicks, 1, "no kick without new frames");
});

Deno.test("an interface going away hands every queued reply back for release", () => {
  const sock = new FakeSocket();
  const { ifc } = ifaceOn(sock);
  for (const id of [7, 8, 9]) ifc.send(reply(id));
  const dropped: number[] = [];
  ifc.dropQueue((r) => dropped.push(r.frame[0]));
  assertEquals(dropped, [7, 8, 9]);
  assertEquals(ifc.queued, 0);
});

/**
 * A TX ring of `frames` frames of `frameSize` bytes in real memory: frames `head .. head+room-1`
 * are free. `sent` records each committed frame's bytes.
 */
class FakeRing {
  readonly mac = 0x020000000001;
  readonly mtu = 1500;
  readonly frameSize = 1514;
  readonly txRing = true;
  readonly fd = -1;
  readonly txDropped = 0;
  readonly txWrongFormat = 0;
  readonly needsKick = false;
  readonly frames = 8;
  readonly ringMemory = Memory.allocate(8 * 2048);
  head = 0;
  room = 8;
  readonly sent: Uint8Array[] = [];
  txFrameAhead(ahead: number): number {
    return ahead < this.room ? ((this.head + ahead) % this.frames) * 2048 : -1;
  }
  txBuffer(): Uint8Array | null {
    const at = this.txFrameAhead(0);
    return at < 0 ? null : this.ringMemory.bytes.subarray(at, at + this.frameSize);
  }
  commit(length: number): boolean {
    this.sent.push(this.txBuffer()!.slice(0, length));
    this.head = (this.head + 1) % this.frames;
    this.room--;
    return true;
  }
  flush(): void {}
  close(): void {
    this.ringMemory.close();
  }
}

/** A good read reply of `sectors` sectors for `id`: header built, data to be read. */
function readReply(id: number, sectors: number): Request {
  const r = reply(id);
  r.bytes = sectors * 512;
  r.length = ATA_DATA_OFFSET + r.bytes;
  return r;
}

Deno.test("reads reserved in TX ring frames go out in order with their header and in-place data", () => {
  const sock = new FakeRing();
  const { ifc, stats } = ifaceOn(sock, "ring0");
  try {
    const a = readReply(1, 2);
    const b = readReply(2, 1);
    const ring = ifc.reserveReply(a);
    assertEquals(ring === sock.ringMemory, true);
    assertEquals(ifc.reserveReply(b) === sock.ringMemory, true);
    assertEquals([a.txFrame, b.txFrame], [0, 2048]);
    // The "read": data straight into the frames, as preadv would put it.
    sock.ringMemory.bytes.fill(0xa1, a.txFrame + ATA_DATA_OFFSET, a.txFrame + a.length);
    sock.ringMemory.bytes.fill(0xb2, b.txFrame + ATA_DATA_OFFSET, b.txFrame + b.length);
    assertEquals(ifc.send(a), true);
    assertEquals(ifc.send(b), true);
    assertEquals(sock.sent.map((f) => [f[0], f.length, f[36], f[f.length - 1]]), [
      [1, 36 + 1024, 0xa1, 0xa1],
      [2, 36 + 512, 0xb2, 0xb2],
    ]);
    assertEquals(stats[IS.tx_in_place], 2);
    assertEquals([a.txFrame, b.txFrame], [-1, -1]);
    // A request too large for a frame, or an interface with queued replies, gets no frame.
    assertEquals(ifc.reserveReply(readReply(3, 3)), null);
    sock.room = 0;
    assertEquals(ifc.send(reply(4)), false);
    sock.room = 5;
    assertEquals(ifc.reserveReply(readReply(5, 1)), null, "queued replies go first");
  } finally {
    ifc.close();
  }
});

Deno.test("a reserved read sent out of order is dropped and counted, never sent with another's data", () => {
  const sock = new FakeRing();
  const { ifc, stats } = ifaceOn(sock, "ring0");
  try {
    const a = readReply(1, 1);
    const b = readReply(2, 1);
    ifc.reserveReply(a);
    ifc.reserveReply(b);
    assertEquals(ifc.send(b), true, "handed back for release");
    assertEquals(sock.sent.length, 0);
    assertEquals(stats[IS.dropped], 1);
    assertEquals(ifc.send(a), true);
    assertEquals(sock.sent.map((f) => f[0]), [1]);
    // An error reply (60 bytes, zero padded in r.frame) covers the frame's stale data.
    const c = readReply(3, 1);
    ifc.reserveReply(c);
    sock.ringMemory.bytes.fill(0xcc, c.txFrame, c.txFrame + 600);
    c.frame.fill(0, 36, 60);
    c.length = 60;
    ifc.send(c);
    assertEquals([...sock.sent[1].subarray(36)], new Array(24).fill(0));
    // Reservations end with the turn: after flush() the next one starts at the ring's head.
    ifc.reserveReply(readReply(4, 1));
    ifc.flush();
    const d = readReply(5, 1);
    ifc.reserveReply(d);
    assertEquals(d.txFrame, sock.txFrameAhead(0));
  } finally {
    ifc.close();
  }
});
