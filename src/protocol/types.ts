/**
 * The contract between the protocol engine (`src/protocol/engine.ts`, pure, no I/O) and the
 * data path (`src/engine/`), which receives frames, runs the I/O the engine asks for and sends
 * the replies the engine builds.
 *
 * One request, one {@link Work}: a preallocated object with a reply buffer. The engine reads the
 * request frame, decides, and writes the reply (or the reply header, for I/O) into `work.frame`.
 * Nothing is allocated per request.
 *
 * @module
 */

import type { DeviceState } from "../state/device_state.ts";

/** An interface as the engine sees it. */
export interface Port {
  /** The interface's current MAC (6 bytes): the source of every reply. */
  readonly mac: Uint8Array;
  /** Effective MTU (link MTU capped at 16384, lowered by configuration). */
  readonly mtu: number;
  /** floor((mtu - 36) / 512): most sectors one ATA request may carry on this interface. */
  readonly maxSectors: number;
}

/** An exported device as the engine sees it. */
export interface Target {
  readonly name: string;
  readonly shelf: number;
  readonly slot: number;
  /** Exported 512-byte sectors (size >> 9). */
  readonly sectors: number;
  readonly readOnly: boolean;
  /** Buffer Count advertised in Query Config replies (the `queue-length` setting). */
  readonly bufferCount: number;
  /** Static allow list (source MACs as numbers); null = everyone. */
  readonly accept: ReadonlySet<number> | null;
  /** Static deny list; null = nobody. */
  readonly deny: ReadonlySet<number> | null;
  /**
   * Source MACs whose Mac Mask List edits and Reserve/Release sets are obeyed; others get AoE
   * error 6. null = every host served.
   */
  readonly admin: ReadonlySet<number> | null;
  /** Byte offset of sector 0 in the file or device (the `offset` setting × 512). */
  readonly base: number;
  /** IDENTIFY serial number (at most 20 ASCII characters). */
  readonly serial: string;
  /** Config string, MAC mask list, reserve list (persistent). */
  readonly state: DeviceState;
  /** Device counters (`src/stats.ts`, indices `DS.*`). */
  readonly stats: Float64Array;
}

/** What the data path must do with a request after {@link handleRequest}. */
export const Action = {
  /** Nothing to send; see `work.drop` for why. */
  DROP: 0,
  /** Send `work.frame[0..work.length]` now. */
  REPLY: 1,
  /** Read `work.bytes` bytes at device offset `work.offset` into `work.frame[36..]`, then
   * call `completeRequest` and send. */
  READ: 2,
  /** Write `work.frame[36..36+work.bytes]` at device offset `work.offset`, then complete. */
  WRITE: 3,
  /** After every earlier write of this device has completed, flush (fdatasync), then complete. */
  FLUSH: 4,
} as const;
export type Action = typeof Action[keyof typeof Action];

/** Why a request got no reply. */
export const Drop = {
  NONE: 0,
  /** Shorter than its command header: count in the interface's `dropped`. */
  SHORT: 1,
  /** Refused by accept/deny or the MAC mask list: count in the device's `denied`. */
  DENIED: 2,
  /** Query Config test / test-prefix that did not match: no reply by design (already counted
   * in `other_cnt`). */
  CONFIG_MISMATCH: 3,
  /** Failed because this host's Ceph client was fenced (blocklisted): never answered, never
   * redone (count in the device's `rbd_fenced_drops`). */
  FENCED: 4,
} as const;
export type Drop = typeof Drop[keyof typeof Drop];

/** Offset in `Work.frame` where ATA data starts: the data path keeps it 512-byte aligned in
 * memory so that O_DIRECT I/O can go straight to and from it. */
export const ATA_DATA_OFFSET = 36;

/** Size of every `Work.frame`: the largest frame at MTU 16384 plus room for echoed requests. */
export const WORK_FRAME_SIZE = 16384 + 14 + 2;

/**
 * One request in flight. The data path creates a fixed number of these (with `frame` views into
 * aligned memory) and reuses them; the engine fills the other fields.
 */
export class Work {
  /** Reply frame buffer (>= WORK_FRAME_SIZE bytes). For READ/WRITE the data is at [36..]. */
  readonly frame: Uint8Array;
  action: Action = Action.DROP;
  drop: Drop = Drop.NONE;
  /** REPLY: frame bytes to send. READ/WRITE/FLUSH: header bytes built so far (36). */
  length = 0;
  /** READ/WRITE: byte offset on the device. */
  offset = 0;
  /** READ/WRITE: byte count (sector count × 512). */
  bytes = 0;
  /**
   * A command that sets persistent state (Query Config set/force set, Mac Mask edit, Reserve
   * set/force set): the StateKind it sets, whether or not it changed anything; -1 otherwise.
   * Its reply acknowledges that state, so the data path sends it only once the state is on disk.
   */
  stateKind = -1;

  constructor(frame: Uint8Array) {
    if (frame.length < WORK_FRAME_SIZE) throw new RangeError("Work.frame is too small");
    this.frame = frame;
  }
}
