/**
 * The interface's TX queue (REFERENCE 4.4): a reply that finds no TX room waits, every later
 * reply queues behind it (order kept), and the queue drains in order as room appears. Driven
 * through a stand-in socket whose TX room the test controls, so the congestion is certain.
 */

import { assertEquals } from "../helpers/assert.ts";
import type { PacketSocket } from "../../ffi/mod.ts";
import { Iface } from "../../src/engine/iface.ts";
import type { Request } from "../../src/engine/pool.ts";
import { Work } from "../../src/protocol/types.ts";
import { IS, newIfaceStats } from "../../src/stats.ts";

/** A socket with `room` free TX frames; `sent` records the first byte of each frame. */
class FakeSocket {
  readonly mac = 0x020000000001;
  readonly mtu = 9000;
  readonly txRing = true;
  readonly fd = -1;
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

Deno.test("replies without TX room wait in order and drain in order as frames free up", () => {
  const sock = new FakeSocket();
  const stats = newIfaceStats();
  const cfg = { mtu: 0, ringBufferSize: 0, sendBufferSize: 0, receiveBufferSize: 0 };
  const ifc = new Iface(0, "fake0", sock as unknown as PacketSocket, cfg, stats);
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
  const cfg = { mtu: 0, ringBufferSize: 0, sendBufferSize: 0, receiveBufferSize: 0 };
  const ifc = new Iface(0, "fake0", sock as unknown as PacketSocket, cfg, newIfaceStats());
  for (const id of [7, 8, 9]) ifc.send(reply(id));
  const dropped: number[] = [];
  ifc.dropQueue((r) => dropped.push(r.frame[0]));
  assertEquals(dropped, [7, 8, 9]);
  assertEquals(ifc.queued, 0);
});
