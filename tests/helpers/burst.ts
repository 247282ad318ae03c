/**
 * Bursts of raw ATA requests for tests: every request sent back to back (so the daemon sees a
 * queue of them in one loop turn, as under a real initiator's load), the replies collected by
 * tag, unanswered requests resent.
 */

import { assertEquals } from "./assert.ts";
import type { Initiator, TargetInfo } from "../../src/initiator/mod.ts";
import { ataReadWriteFields, buildAtaRequest, parseAtaResponse } from "../../src/protocol/ata.ts";
import { frameCommand, frameTag } from "../../src/protocol/header.ts";
import { AOE_CMD_ATA } from "../../src/protocol/constants.ts";

/** One ATA read (no `data`) or write of `count` sectors at `lba`. */
export interface IoRequest {
  lba: number;
  count: number;
  data?: Uint8Array;
}

/** The ATA part of a reply. */
export interface IoReply {
  status: number;
  error: number;
  data: Uint8Array;
}

let nextTag = 0x7e000000;

/**
 * Sends every request at once (calling `before(i)` just before request i goes out), then
 * collects the replies by tag; unanswered requests are resent after `timeoutMs` (a resent
 * write writes the same data), at most `retries` times. The daemon sees a queue of contiguous
 * requests, as under a real initiator's load, and merges them into vectored I/O.
 */
export function burst(
  ini: Initiator,
  disk: TargetInfo,
  requests: IoRequest[],
  options: { before?: (i: number) => void; timeoutMs?: number; retries?: number } = {},
): IoReply[] {
  const frames = requests.map((r, i) => {
    const frame = new Uint8Array(36 + (r.data?.length ?? 0) + 60);
    const length = buildAtaRequest(
      frame,
      {
        dst: disk.mac,
        src: ini.mac,
        shelf: disk.shelf,
        slot: disk.slot,
        tag: (nextTag + i) >>> 0,
      },
      ataReadWriteFields(r.data !== undefined, r.lba, r.count, true),
      r.data,
    );
    return frame.subarray(0, length);
  });
  const base = nextTag;
  nextTag = (nextTag + requests.length) >>> 0;
  const replies: (IoReply | null)[] = requests.map(() => null);
  let missing = requests.length;
  frames.forEach((f, i) => {
    options.before?.(i);
    ini.sendRaw(f);
  });
  for (let attempt = 0; missing > 0; attempt++) {
    for (;;) {
      const f = ini.receiveRaw(options.timeoutMs ?? 2000);
      if (f === null) break;
      if (frameCommand(f) !== AOE_CMD_ATA) continue;
      const i = frameTag(f) - base;
      if (i < 0 || i >= requests.length || replies[i] !== null) continue;
      assertEquals(f[15], 0, `request ${i}: AoE error ${f[15]}`);
      const a = parseAtaResponse(f);
      replies[i] = { status: a.cmdStatus, error: a.errFeature, data: a.data };
      if (--missing === 0) break;
    }
    if (missing === 0) break;
    if (attempt >= (options.retries ?? 3)) {
      const lost = replies.flatMap((r, i) => r === null ? [requests[i].lba] : []);
      throw new Error(`no reply to ${lost.length} requests (LBAs ${lost.join(", ")})`);
    }
    replies.forEach((r, i) => r === null && ini.sendRaw(frames[i]));
  }
  return replies as IoReply[];
}
