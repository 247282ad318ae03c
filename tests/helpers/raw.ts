/**
 * Raw AoE request frames for tests: a bare request header, and a second packet socket that sends
 * runts (the initiator's `sendRaw` pads to 60 bytes).
 */

import { assertEquals } from "./assert.ts";
import type { Initiator, TargetInfo } from "../../src/initiator/mod.ts";
import { PacketSocket } from "../../ffi/packet.ts";
import { libc } from "../../ffi/libc.ts";
import { putHeader } from "../../src/protocol/header.ts";

/** A request header for `to` (version 1, no flags unless given). */
export function header(
  ini: Initiator,
  to: TargetInfo,
  length: number,
  fields: { command: number; tag: number; version?: number; flags?: number },
): Uint8Array {
  const f = new Uint8Array(length);
  putHeader(f, {
    dst: to.mac,
    src: ini.mac,
    shelf: to.shelf,
    slot: to.slot,
    tag: fields.tag,
    version: fields.version ?? 1,
    flags: fields.flags ?? 0,
    error: 0,
    command: fields.command,
  });
  return f;
}

/** A second packet socket that sends frames exactly as long as given (no padding to 60). */
export class RuntSender {
  readonly #socket: PacketSocket;
  constructor(ifname: string) {
    this.#socket = PacketSocket.open(ifname, { ringBytes: 0, filter: "responses" });
  }
  send(frame: Uint8Array): void {
    const buf = new Uint8Array(new ArrayBuffer(frame.length));
    buf.set(frame);
    const n = libc().send(this.#socket.fd, buf, BigInt(buf.length), 0);
    assertEquals(n, frame.length, "send() of a runt frame");
  }
  close(): void {
    this.#socket.close();
  }
}
