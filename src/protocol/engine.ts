/**
 * The AoE decision engine: given one request frame and the device it addresses, decide what to
 * do and build the reply. Pure: no I/O, no clocks, no logging. The data path (`src/engine/`)
 * receives frames, calls {@link classifyFrame}, finds the matching targets, calls
 * {@link handleRequest} per target, runs the I/O the engine asks for, calls
 * {@link completeRequest}, and sends `work.frame[0..work.length]`.
 *
 * Hot path: {@link handleRequest} and {@link completeRequest} allocate nothing on the READ and
 * WRITE paths (bytes are read and written directly, multi-byte fields by shifts). Config, mask
 * and reserve changes allocate (they are rare and persist to disk anyway).
 *
 * `rx` may be a view of `work.frame` itself (a data path that receives straight into the reply
 * buffer): every field is read before the byte at the same position is rewritten.
 *
 * Our decisions where the original ggaoed was wrong or vague (docs/decisions.md §2):
 * - Every reply is at least 60 bytes, zero padded: veth does not pad, aoeping ignores shorter
 *   replies, and a write reply's bytes 36..60 would otherwise leak payload.
 * - AoE error replies (1 unknown command 4..255 incl. vendor 240..255, 2 bad argument, 3 state
 *   could not be persisted, 4 config string present, 6 reserved) echo the request's full header
 *   and payload, capped at min(rx length, mtu + 14, frame size), with R and E set and Error =
 *   code; destination, source, shelf and slot rewritten as for any reply. Counted in proto_err.
 * - Every reply has version 1, R set, E set only on AoE errors; the request's other flag bits are
 *   not echoed.
 * - A frame shorter than its command's header (ATA 36, config 32, mask 28, reserve 26) is
 *   dropped (Drop.SHORT), not answered. Unknown commands get AoE error 1 even when short.
 * - Version != 1 and response frames are ignored (classifyFrame), never answered.
 * - Accept list, then deny list, then the MAC mask list: a refused source gets no reply for any
 *   command (Drop.DENIED, counted in denied).
 * - LBA: 48 bits if AFlags E is set, else masked to 28 bits (the Linux initiator puts 0xE0 in
 *   the high nibble of LBA3). Direction comes from the opcode, not the W flag. The LBA is checked
 *   against the device size before it is multiplied by 512, so every offset handed out is exact
 *   (< 2^53).
 * - READ/WRITE checks, in order: write on a read-only device -> ATA ABRT; reserved by others
 *   -> AoE error 6; sector count 0 -> ATA ABRT (no I/O is issued); count > the port's max sectors
 *   -> ATA ABRT; write payload < count * 512 -> ATA ABRT; lba + count > sectors -> ATA IDNF.
 * - I/O completion: result == bytes -> status DRDY; -EIO -> UNC; any other error or a short
 *   transfer -> ABRT. ATA errors carry no data and count ata_err.
 * - FLUSH CACHE (EXT) asks the data path to really flush (Action.FLUSH) and answers DRDY.
 * - CHECK POWER MODE answers DRDY with sector count 0xFF (active/idle).
 * - IDENTIFY: count != 1 -> AoE error 2; the page has word 53 = 1 and CHS cylinders clamped
 *   before truncation (see identify.ts); firmware = VERSION.
 * - Query Config: Firmware Version big-endian (FIRMWARE_VERSION); string length > payload or
 *   > 1024 -> AoE error 2 for every CCmd; CCmd 5..15 -> AoE error 2; set/force set with the string
 *   already stored do not rewrite it. The reply string is cut to fit mtu - 32 if ever needed.
 * - Mac Mask List: a failed edit keeps the directives before the failing one and persists once;
 *   read replies are capped to what fits in the MTU, (mtu - 28) / 8 entries.
 * - Reserve/Release: set is allowed to the request's SOURCE MAC when it is on the list (or the
 *   list is empty); the list is kept sorted and de-duplicated; replies capped to (mtu - 26) / 6.
 * - `admin` (target.admin): a Mac Mask List edit or a Reserve/Release set or force set from a
 *   source not on it gets AoE error 6 (target is reserved: administration is reserved to the
 *   hosts listed) and changes nothing; reads stay open. Malformed requests get error 2 first.
 *   A Query Config set or force set likewise (target.configAdmin, `admin-config-string`);
 *   read, test and test prefix, which discovery uses, stay open.
 * - READ/WRITE offsets start at target.base (the `offset` setting); `sectors` is the exported
 *   length, so nothing outside [base, base + sectors * 512) is ever read or written.
 * - A command that sets state (config set/force set, mask edit, reserve set/force set) marks
 *   `work.stateKind`: the engine changes the state in memory only, and the data path holds the
 *   reply until that state is on disk (AoE error 3, device unavailable, if writing it fails: the
 *   change is in memory but not durable, so it is not acknowledged).
 * - Counting: every handled request (not DENIED, not SHORT) counts exactly once in read_cnt
 *   (READ accepted for I/O), write_cnt (WRITE accepted for I/O) or other_cnt (everything else,
 *   including rejected ATA commands, unknown commands and config test mismatches).
 *
 * @module
 */

import { formatMac, macAt, putMac } from "../mac.ts";
import { DS } from "../stats.ts";
import { Action, ATA_DATA_OFFSET, Drop, type Port, type Target, type Work } from "./types.ts";
import { FIRMWARE_VERSION, VERSION } from "../version.ts";
import { StateKind } from "../state/device_state.ts";
import {
  AOE_AFL_ASYNC,
  AOE_AFL_DEV,
  AOE_AFL_EXT,
  AOE_AFL_WRITE,
  AOE_ATA_HDR_LEN,
  AOE_CFG_FORCE_SET,
  AOE_CFG_HDR_LEN,
  AOE_CFG_MAX_LEN,
  AOE_CFG_READ,
  AOE_CFG_SET,
  AOE_CFG_TEST,
  AOE_CFG_TEST_PREFIX,
  AOE_CMD_ATA,
  AOE_CMD_CFG,
  AOE_CMD_MASK,
  AOE_CMD_RESERVE,
  AOE_DCMD_ADD,
  AOE_DCMD_DELETE,
  AOE_DCMD_NONE,
  AOE_DIRECTIVE_LEN,
  AOE_ERR_BADARG,
  AOE_ERR_BADCMD,
  AOE_ERR_CFG_SET,
  AOE_ERR_DEVUNAVAIL,
  AOE_ERR_RESERVED,
  AOE_FL_ERROR,
  AOE_FL_RESPONSE,
  AOE_HDR_LEN,
  AOE_MAC_LEN,
  AOE_MASK_HDR_LEN,
  AOE_MCMD_EDIT,
  AOE_MERR_BADDIR,
  AOE_MERR_FULL,
  AOE_RCMD_FORCE_SET,
  AOE_RCMD_READ,
  AOE_RCMD_SET,
  AOE_RESERVE_HDR_LEN,
  AOE_SHELF_BROADCAST,
  AOE_SLOT_BROADCAST,
  AOE_VERSION,
  ATA_ABORTED,
  ATA_CMD_CHK_POWER,
  ATA_CMD_FLUSH,
  ATA_CMD_FLUSH_EXT,
  ATA_CMD_ID_ATA,
  ATA_CMD_PACKET,
  ATA_CMD_READ,
  ATA_CMD_READ_EXT,
  ATA_CMD_SMART,
  ATA_CMD_WRITE,
  ATA_CMD_WRITE_EXT,
  ATA_DRDY,
  ATA_ERR,
  ATA_IDNF,
  ATA_POWER_ACTIVE,
  ATA_UNC,
  ETH_HLEN,
  ETH_P_AOE,
  ETH_ZLEN,
  SECTOR_SIZE,
} from "./constants.ts";
import {
  frameCommand,
  frameEthertype,
  frameShelf,
  frameSlot,
  frameTag,
  OFF_COMMAND,
  OFF_ERROR,
  OFF_SRC,
  OFF_VER_FLAGS,
} from "./header.ts";
import { ataLba, OFF_CMD_STATUS, OFF_ERR_FEATURE, OFF_SECTOR_COUNT } from "./ata.ts";
import { IDENTIFY_MODEL, IDENTIFY_SIZE, putIdentify } from "./identify.ts";
import { cfgCcmd, cfgStringLength, putConfigHeader } from "./config.ts";
import { OFF_MASK_DIR_COUNT, OFF_MASK_MCMD, putDirective, putMaskHeader } from "./macmask.ts";
import { OFF_RESERVE_NMACS, OFF_RESERVE_RCMD, putReserveHeader, putReserveMac } from "./reserve.ts";

export { frameShelf, frameSlot };

/** Largest MTU we use: link MTUs are capped here. */
export const MAX_MTU = 16384;

/** Extra bytes a whole-buffer write copy may carry before a subarray view is cheaper. */
const WHOLE_COPY_SLACK = 2048;

/** errno EIO, as a completion result -5. */
const EIO = 5;

/** What kind of frame arrived, before any device is looked at. */
export const FrameClass = {
  /** An AoE version 1 request: look up the target(s) and call handleRequest. */
  OK: 0,
  /** Shorter than the 24-byte common header: count in the interface's `dropped`. */
  SHORT: 1,
  /** EtherType is not 0x88A2: count in `ignored`. */
  NOT_AOE: 2,
  /** AoE version is not 1: count in `ignored` (never answered). */
  BAD_VERSION: 3,
  /** R flag set (another target's reply): count in `ignored`. */
  RESPONSE: 4,
} as const;
export type FrameClass = typeof FrameClass[keyof typeof FrameClass];

/** Most sectors one ATA request may carry at `mtu`: 36 counts the Ethernet header too. */
export function maxSectorsForMtu(mtu: number): number {
  return Math.max(0, Math.floor((mtu - AOE_ATA_HDR_LEN) / SECTOR_SIZE));
}

/** Sorts a received frame before any device lookup. */
export function classifyFrame(rx: Uint8Array, length: number): FrameClass {
  if (length < AOE_HDR_LEN || rx.length < AOE_HDR_LEN) return FrameClass.SHORT;
  if (frameEthertype(rx) !== ETH_P_AOE) return FrameClass.NOT_AOE;
  if (rx[OFF_VER_FLAGS] >>> 4 !== AOE_VERSION) return FrameClass.BAD_VERSION;
  if ((rx[OFF_VER_FLAGS] & AOE_FL_RESPONSE) !== 0) return FrameClass.RESPONSE;
  return FrameClass.OK;
}

/** True if a request for (shelf, slot) is for `target`: 0xFFFF and 0xFF match any. */
export function targetMatches(
  target: { readonly shelf: number; readonly slot: number },
  shelf: number,
  slot: number,
): boolean {
  return (shelf === AOE_SHELF_BROADCAST || shelf === target.shelf) &&
    (slot === AOE_SLOT_BROADCAST || slot === target.slot);
}

/** True if (shelf, slot) addresses more than one target (either part is the broadcast value). */
export function isBroadcastAddress(shelf: number, slot: number): boolean {
  return shelf === AOE_SHELF_BROADCAST || slot === AOE_SLOT_BROADCAST;
}

/**
 * True if a request to a wildcard address (shelf 0xFFFF or slot 0xFF) is one we answer: Query
 * Config read, test and test prefix, which change nothing. Everything else sent to a wildcard
 * (a WRITE, a config set, a Mac Mask edit, a reserve) is dropped and counted by the data path,
 * so that one frame can never change every export (the original carried it out on each).
 * Initiators address I/O and state changes to one shelf.slot; only discovery is broadcast.
 */
export function answersWildcard(rx: Uint8Array, length: number): boolean {
  if (rx[OFF_COMMAND] !== AOE_CMD_CFG || length < AOE_CFG_HDR_LEN) return false;
  const ccmd = cfgCcmd(rx);
  return ccmd === AOE_CFG_READ || ccmd === AOE_CFG_TEST || ccmd === AOE_CFG_TEST_PREFIX;
}

/**
 * True if `rx` asks to change persistent state: a Query Config set or force set, a Mac Mask List
 * edit, a Reserve/Release set or force set (whether it would change anything or be refused is
 * for {@link handleRequest} to say). Lets the data path refuse such a request before it takes a
 * request buffer, when too many replies of the device already wait for their state to be
 * written. Allocates nothing.
 */
export function setsState(rx: Uint8Array, length: number): boolean {
  switch (rx[OFF_COMMAND]) {
    case AOE_CMD_CFG: {
      if (length < AOE_CFG_HDR_LEN) return false;
      const ccmd = cfgCcmd(rx);
      return ccmd === AOE_CFG_SET || ccmd === AOE_CFG_FORCE_SET;
    }
    case AOE_CMD_MASK:
      return length >= AOE_MASK_HDR_LEN && rx[OFF_MASK_MCMD] === AOE_MCMD_EDIT;
    case AOE_CMD_RESERVE: {
      if (length < AOE_RESERVE_HDR_LEN) return false;
      const rcmd = rx[OFF_RESERVE_RCMD];
      return rcmd === AOE_RCMD_SET || rcmd === AOE_RCMD_FORCE_SET;
    }
    default:
      return false;
  }
}

// ---------------------------------------------------------------------------------------------
// Reply building blocks

/**
 * Common header of a reply to `rx`: destination = request source, source = port MAC, version 1,
 * R (and E when `error` != 0), the target's own shelf/slot, command and tag echoed. The source
 * MAC is read before byte 0 is written so that `rx` may alias `f`.
 */
function putReplyHeader(f: Uint8Array, rx: Uint8Array, port: Port, target: Target, error: number) {
  const s0 = rx[6], s1 = rx[7], s2 = rx[8], s3 = rx[9], s4 = rx[10], s5 = rx[11];
  f[0] = s0;
  f[1] = s1;
  f[2] = s2;
  f[3] = s3;
  f[4] = s4;
  f[5] = s5;
  const mac = port.mac;
  f[6] = mac[0];
  f[7] = mac[1];
  f[8] = mac[2];
  f[9] = mac[3];
  f[10] = mac[4];
  f[11] = mac[5];
  f[12] = ETH_P_AOE >>> 8;
  f[13] = ETH_P_AOE & 0xff;
  f[14] = (AOE_VERSION << 4) | AOE_FL_RESPONSE | (error !== 0 ? AOE_FL_ERROR : 0);
  f[15] = error;
  f[16] = target.shelf >>> 8;
  f[17] = target.shelf & 0xff;
  f[18] = target.slot;
  f[19] = rx[19];
  f[20] = rx[20];
  f[21] = rx[21];
  f[22] = rx[22];
  f[23] = rx[23];
}

/** Reply header plus the request's 12-byte ATA argument header echoed (bytes 24..36). */
function putAtaReplyHeader(f: Uint8Array, rx: Uint8Array, port: Port, target: Target): void {
  putReplyHeader(f, rx, port, target, 0);
  for (let i = AOE_HDR_LEN; i < AOE_ATA_HDR_LEN; i++) f[i] = rx[i];
}

/** Copies `rx[from..to]` to the same positions in `f`, skipping the copy if they alias. */
function copySame(f: Uint8Array, rx: Uint8Array, from: number, to: number): void {
  if (rx.buffer === f.buffer && rx.byteOffset === f.byteOffset) return;
  f.set(rx.subarray(from, to), from);
}

function drop(work: Work, reason: Drop): Action {
  work.action = Action.DROP;
  work.drop = reason;
  work.length = 0;
  return Action.DROP;
}

function reply(work: Work, length: number): Action {
  if (length < ETH_ZLEN) {
    work.frame.fill(0, length, ETH_ZLEN);
    length = ETH_ZLEN;
  }
  work.action = Action.REPLY;
  work.length = length;
  return Action.REPLY;
}

/** AoE error reply: the request echoed (header and payload), capped to fit. */
function aoeError(
  rx: Uint8Array,
  length: number,
  port: Port,
  target: Target,
  work: Work,
  code: number,
): Action {
  const f = work.frame;
  let cap = length;
  if (cap > port.mtu + ETH_HLEN) cap = port.mtu + ETH_HLEN;
  if (cap > f.length) cap = f.length;
  if (cap < AOE_HDR_LEN) cap = AOE_HDR_LEN;
  copySame(f, rx, AOE_HDR_LEN, cap);
  putReplyHeader(f, rx, port, target, code);
  target.stats[DS.proto_err]++;
  return reply(work, cap);
}

/** ATA error reply: full 36-byte header, Err = `error`, status DRDY|ERR, no data. */
function ataError(rx: Uint8Array, port: Port, target: Target, work: Work, error: number): Action {
  const f = work.frame;
  putAtaReplyHeader(f, rx, port, target);
  f[OFF_ERR_FEATURE] = error;
  f[OFF_CMD_STATUS] = ATA_DRDY | ATA_ERR;
  target.stats[DS.ata_err]++;
  return reply(work, AOE_ATA_HDR_LEN);
}

// ---------------------------------------------------------------------------------------------
// Requests

/**
 * Decides what to do with one request for `target` arriving on `port` and fills `work`
 * (action, drop, length, offset, bytes, and the reply or reply header in `work.frame`).
 * Call only after {@link classifyFrame} said OK and {@link targetMatches} said yes. Counts the
 * device's statistics (not the interface's, not times).
 */
export function handleRequest(
  rx: Uint8Array,
  length: number,
  port: Port,
  target: Target,
  work: Work,
): Action {
  if (length > rx.length) length = rx.length;
  work.drop = Drop.NONE;
  work.offset = 0;
  work.bytes = 0;
  work.stateKind = -1;
  const src = macAt(rx, OFF_SRC);
  if (
    (target.accept !== null && !target.accept.has(src)) ||
    (target.deny !== null && target.deny.has(src)) ||
    !target.state.maskAllows(src)
  ) {
    target.stats[DS.denied]++;
    return drop(work, Drop.DENIED);
  }
  switch (rx[OFF_COMMAND]) {
    case AOE_CMD_ATA:
      if (length < AOE_ATA_HDR_LEN) return drop(work, Drop.SHORT);
      return handleAta(rx, length, port, target, work, src);
    case AOE_CMD_CFG:
      if (length < AOE_CFG_HDR_LEN) return drop(work, Drop.SHORT);
      target.stats[DS.other_cnt]++;
      return handleConfig(rx, length, port, target, work, src);
    case AOE_CMD_MASK:
      if (length < AOE_MASK_HDR_LEN) return drop(work, Drop.SHORT);
      target.stats[DS.other_cnt]++;
      return handleMask(rx, length, port, target, work, src);
    case AOE_CMD_RESERVE:
      if (length < AOE_RESERVE_HDR_LEN) return drop(work, Drop.SHORT);
      target.stats[DS.other_cnt]++;
      return handleReserve(rx, length, port, target, work, src);
    default:
      target.stats[DS.other_cnt]++;
      return aoeError(rx, length, port, target, work, AOE_ERR_BADCMD);
  }
}

function handleAta(
  rx: Uint8Array,
  length: number,
  port: Port,
  target: Target,
  work: Work,
  src: number,
): Action {
  const op = rx[OFF_CMD_STATUS];
  switch (op) {
    case ATA_CMD_READ:
    case ATA_CMD_READ_EXT:
      return readWrite(rx, length, port, target, work, src, false);
    case ATA_CMD_WRITE:
    case ATA_CMD_WRITE_EXT:
      return readWrite(rx, length, port, target, work, src, true);
  }
  const f = work.frame;
  target.stats[DS.other_cnt]++;
  switch (op) {
    case ATA_CMD_ID_ATA:
      if (rx[OFF_SECTOR_COUNT] !== 1) {
        return aoeError(rx, length, port, target, work, AOE_ERR_BADARG);
      }
      putAtaReplyHeader(f, rx, port, target);
      f[OFF_ERR_FEATURE] = 0;
      f[OFF_CMD_STATUS] = ATA_DRDY;
      putIdentify(f, ATA_DATA_OFFSET, target.serial, VERSION, IDENTIFY_MODEL, target.sectors);
      return reply(work, ATA_DATA_OFFSET + IDENTIFY_SIZE);
    case ATA_CMD_FLUSH:
    case ATA_CMD_FLUSH_EXT:
      putAtaReplyHeader(f, rx, port, target);
      work.action = Action.FLUSH;
      work.length = AOE_ATA_HDR_LEN;
      return Action.FLUSH;
    case ATA_CMD_CHK_POWER:
      putAtaReplyHeader(f, rx, port, target);
      f[OFF_ERR_FEATURE] = 0;
      f[OFF_SECTOR_COUNT] = ATA_POWER_ACTIVE;
      f[OFF_CMD_STATUS] = ATA_DRDY;
      return reply(work, AOE_ATA_HDR_LEN);
    default:
      return ataError(rx, port, target, work, ATA_ABORTED);
  }
}

function readWrite(
  rx: Uint8Array,
  length: number,
  port: Port,
  target: Target,
  work: Work,
  src: number,
  write: boolean,
): Action {
  const stats = target.stats;
  if (write && target.readOnly) {
    stats[DS.other_cnt]++;
    return ataError(rx, port, target, work, ATA_ABORTED);
  }
  if (!target.state.reserveAllows(src)) {
    stats[DS.other_cnt]++;
    return aoeError(rx, length, port, target, work, AOE_ERR_RESERVED);
  }
  const count = rx[OFF_SECTOR_COUNT];
  const bytes = count * SECTOR_SIZE;
  if (count === 0 || count > port.maxSectors || (write && length - AOE_ATA_HDR_LEN < bytes)) {
    stats[DS.other_cnt]++;
    return ataError(rx, port, target, work, ATA_ABORTED);
  }
  // lba < 2^48 and count < 256: the sum is exact. Checked before lba * 512, which could pass 2^53.
  const lba = ataLba(rx);
  if (lba + count > target.sectors) {
    stats[DS.other_cnt]++;
    return ataError(rx, port, target, work, ATA_IDNF);
  }
  const f = work.frame;
  if (write) {
    // Copy the payload before writing the header (rx may alias f). When the receive buffer is
    // about the frame's size, one set() of all of it avoids allocating a subarray view per
    // request; a much larger buffer (a whole ring block) is not worth copying whole.
    if (rx.buffer !== f.buffer || rx.byteOffset !== f.byteOffset) {
      if (rx.length <= f.length && rx.length <= AOE_ATA_HDR_LEN + bytes + WHOLE_COPY_SLACK) {
        f.set(rx, 0);
      } else {
        f.set(rx.subarray(AOE_ATA_HDR_LEN, AOE_ATA_HDR_LEN + bytes), AOE_ATA_HDR_LEN);
      }
    }
    stats[DS.write_cnt]++;
    stats[DS.write_bytes] += bytes;
    work.action = Action.WRITE;
  } else {
    stats[DS.read_cnt]++;
    stats[DS.read_bytes] += bytes;
    work.action = Action.READ;
  }
  putAtaReplyHeader(f, rx, port, target);
  work.offset = target.base + lba * SECTOR_SIZE;
  work.bytes = bytes;
  work.length = AOE_ATA_HDR_LEN;
  return work.action;
}

/**
 * Turns the reply built in `work.frame` into AoE error 3 (device unavailable), for a command
 * that set state which could not be written to disk: the change is in memory but not durable,
 * so it is not acknowledged. Counts proto_err.
 */
export function failStateReply(work: Work, stats: Float64Array): void {
  const f = work.frame;
  f[OFF_VER_FLAGS] |= AOE_FL_ERROR;
  f[OFF_ERROR] = AOE_ERR_DEVUNAVAIL;
  stats[DS.proto_err]++;
}

/**
 * Finishes a READ, WRITE or FLUSH after the data path did the I/O: `result` is the byte count
 * transferred (0 for a successful flush) or -errno. Sets the ATA status and `work.length`
 * (the reply to send, >= 60 bytes); `work.action` is left as it was. Counts ata_err.
 */
export function completeRequest(work: Work, result: number, stats: Float64Array): void {
  const f = work.frame;
  let length = ATA_DATA_OFFSET;
  if (result === work.bytes) {
    f[OFF_ERR_FEATURE] = 0;
    f[OFF_CMD_STATUS] = ATA_DRDY;
    if (work.action === Action.READ) length += work.bytes;
  } else {
    f[OFF_ERR_FEATURE] = result === -EIO ? ATA_UNC : ATA_ABORTED;
    f[OFF_CMD_STATUS] = ATA_DRDY | ATA_ERR;
    stats[DS.ata_err]++;
  }
  if (length < ETH_ZLEN) {
    f.fill(0, length, ETH_ZLEN);
    length = ETH_ZLEN;
  }
  work.length = length;
}

/** Query Config reply body (bytes 24..): numbers, CCmd, stored string cut to mtu - 32. */
function putConfigReply(f: Uint8Array, port: Port, target: Target, ccmd: number): number {
  const state = target.state;
  let n = state.configLength;
  const room = port.mtu - AOE_CFG_HDR_LEN;
  if (n > room) n = room > 0 ? room : 0;
  const sectors = port.maxSectors > 0xff ? 0xff : port.maxSectors;
  putConfigHeader(f, target.bufferCount, FIRMWARE_VERSION, sectors, AOE_VERSION, ccmd, n);
  if (n > 0) f.set(state.config.subarray(0, n), AOE_CFG_HDR_LEN);
  return AOE_CFG_HDR_LEN + n;
}

function handleConfig(
  rx: Uint8Array,
  length: number,
  port: Port,
  target: Target,
  work: Work,
  src: number,
): Action {
  const state = target.state;
  const ccmd = cfgCcmd(rx);
  const n = cfgStringLength(rx);
  if (n > length - AOE_CFG_HDR_LEN || n > AOE_CFG_MAX_LEN) {
    return aoeError(rx, length, port, target, work, AOE_ERR_BADARG);
  }
  switch (ccmd) {
    case AOE_CFG_READ:
      break;
    case AOE_CFG_TEST:
      if (!state.configEquals(rx, AOE_CFG_HDR_LEN, n)) return drop(work, Drop.CONFIG_MISMATCH);
      break;
    case AOE_CFG_TEST_PREFIX:
      if (!state.configHasPrefix(rx, AOE_CFG_HDR_LEN, n)) return drop(work, Drop.CONFIG_MISMATCH);
      break;
    case AOE_CFG_SET:
    case AOE_CFG_FORCE_SET:
      if (target.configAdmin !== null && !target.configAdmin.has(src)) {
        return aoeError(rx, length, port, target, work, AOE_ERR_RESERVED);
      }
      work.stateKind = StateKind.CONFIG;
      if (state.configEquals(rx, AOE_CFG_HDR_LEN, n)) break;
      if (ccmd === AOE_CFG_SET && state.configLength !== 0) {
        work.stateKind = -1;
        return aoeError(rx, length, port, target, work, AOE_ERR_CFG_SET);
      }
      state.setConfig(rx, AOE_CFG_HDR_LEN, n);
      break;
    default:
      return aoeError(rx, length, port, target, work, AOE_ERR_BADARG);
  }
  const f = work.frame;
  putReplyHeader(f, rx, port, target, 0);
  return reply(work, putConfigReply(f, port, target, ccmd));
}

function handleMask(
  rx: Uint8Array,
  length: number,
  port: Port,
  target: Target,
  work: Work,
  src: number,
): Action {
  const state = target.state;
  const mcmd = rx[OFF_MASK_MCMD];
  const dirCount = rx[OFF_MASK_DIR_COUNT];
  if (dirCount * AOE_DIRECTIVE_LEN > length - AOE_MASK_HDR_LEN || mcmd > AOE_MCMD_EDIT) {
    return aoeError(rx, length, port, target, work, AOE_ERR_BADARG);
  }
  if (mcmd === AOE_MCMD_EDIT && target.admin !== null && !target.admin.has(src)) {
    return aoeError(rx, length, port, target, work, AOE_ERR_RESERVED);
  }
  const f = work.frame;
  if (mcmd === AOE_MCMD_EDIT) {
    let merror = 0;
    let i = 0;
    let changed = false;
    for (; i < dirCount; i++) {
      const off = AOE_MASK_HDR_LEN + i * AOE_DIRECTIVE_LEN;
      const dcmd = rx[off + 1];
      if (dcmd === AOE_DCMD_NONE) continue;
      if (dcmd === AOE_DCMD_ADD) {
        const r = state.addMask(macAt(rx, off + 2));
        if (r === "full") {
          merror = AOE_MERR_FULL;
          break;
        }
        if (r === "added") changed = true;
      } else if (dcmd === AOE_DCMD_DELETE) {
        if (state.deleteMask(macAt(rx, off + 2))) changed = true;
      } else {
        merror = AOE_MERR_BADDIR;
        break;
      }
    }
    if (changed) state.commitMacMask();
    work.stateKind = StateKind.MAC_MASK;
    if (merror !== 0) {
      // The request's directives stay where they are (same offsets); echo them, capped.
      let end = AOE_MASK_HDR_LEN + dirCount * AOE_DIRECTIVE_LEN;
      if (end > port.mtu + ETH_HLEN) end = port.mtu + ETH_HLEN;
      if (end > AOE_MASK_HDR_LEN) copySame(f, rx, AOE_MASK_HDR_LEN, end);
      putReplyHeader(f, rx, port, target, 0);
      putMaskHeader(f, mcmd, merror, i);
      return reply(work, end);
    }
  }
  putReplyHeader(f, rx, port, target, 0);
  const list = state.macMask;
  let n = list.length;
  const room = Math.floor((port.mtu - AOE_MASK_HDR_LEN) / AOE_DIRECTIVE_LEN);
  if (n > room) n = room > 0 ? room : 0;
  putMaskHeader(f, mcmd, 0, n);
  for (let j = 0; j < n; j++) putDirective(f, j, AOE_DCMD_NONE, list[j]);
  return reply(work, AOE_MASK_HDR_LEN + n * AOE_DIRECTIVE_LEN);
}

function handleReserve(
  rx: Uint8Array,
  length: number,
  port: Port,
  target: Target,
  work: Work,
  src: number,
): Action {
  const state = target.state;
  const rcmd = rx[OFF_RESERVE_RCMD];
  const nmacs = rx[OFF_RESERVE_NMACS];
  if (nmacs * AOE_MAC_LEN > length - AOE_RESERVE_HDR_LEN || rcmd > AOE_RCMD_FORCE_SET) {
    return aoeError(rx, length, port, target, work, AOE_ERR_BADARG);
  }
  if (rcmd !== AOE_RCMD_READ && target.admin !== null && !target.admin.has(src)) {
    return aoeError(rx, length, port, target, work, AOE_ERR_RESERVED);
  }
  if (rcmd === AOE_RCMD_SET && !state.reserveAllows(src)) {
    return aoeError(rx, length, port, target, work, AOE_ERR_RESERVED);
  }
  if (rcmd !== AOE_RCMD_READ) {
    const macs: number[] = [];
    for (let i = 0; i < nmacs; i++) macs.push(macAt(rx, AOE_RESERVE_HDR_LEN + i * AOE_MAC_LEN));
    state.setReserve(macs);
    work.stateKind = StateKind.RESERVE;
  }
  const f = work.frame;
  putReplyHeader(f, rx, port, target, 0);
  const list = state.reserve;
  let n = list.length;
  const room = Math.floor((port.mtu - AOE_RESERVE_HDR_LEN) / AOE_MAC_LEN);
  if (n > room) n = room > 0 ? room : 0;
  putReserveHeader(f, rcmd, n);
  for (let i = 0; i < n; i++) putReserveMac(f, i, list[i]);
  return reply(work, AOE_RESERVE_HDR_LEN + n * AOE_MAC_LEN);
}

/**
 * Builds an unsolicited Query Config read reply announcing `target` on `port` (docs/decisions.md §2.4):
 * to `dst` (a MAC number; BROADCAST_MAC for everyone), tag 0, CCmd 0. Returns the frame length
 * (>= 60). Counts other_cnt.
 */
export function buildAdvertisement(
  target: Target,
  port: Port,
  dst: number,
  out: Uint8Array,
): number {
  putMac(out, 0, dst);
  out.set(port.mac.subarray(0, 6), 6);
  out[12] = ETH_P_AOE >>> 8;
  out[13] = ETH_P_AOE & 0xff;
  out[14] = (AOE_VERSION << 4) | AOE_FL_RESPONSE;
  out[15] = 0;
  out[16] = target.shelf >>> 8;
  out[17] = target.shelf & 0xff;
  out[18] = target.slot;
  out[19] = AOE_CMD_CFG;
  out.fill(0, 20, 24);
  let length = putConfigReply(out, port, target, AOE_CFG_READ);
  if (length < ETH_ZLEN) {
    out.fill(0, length, ETH_ZLEN);
    length = ETH_ZLEN;
  }
  target.stats[DS.other_cnt]++;
  return length;
}

// ---------------------------------------------------------------------------------------------
// trace-io

function hex2(n: number): string {
  return n.toString(16).padStart(2, "0");
}

function ataName(op: number): string {
  switch (op) {
    case ATA_CMD_READ:
      return "READ";
    case ATA_CMD_READ_EXT:
      return "READ_EXT";
    case ATA_CMD_WRITE:
      return "WRITE";
    case ATA_CMD_WRITE_EXT:
      return "WRITE_EXT";
    case ATA_CMD_PACKET:
      return "PACKETCMD";
    case ATA_CMD_SMART:
      return "SMART";
    case ATA_CMD_FLUSH:
      return "FLUSH_CACHE";
    case ATA_CMD_FLUSH_EXT:
      return "FLUSH_CACHE_EXT";
    case ATA_CMD_ID_ATA:
      return "IDENTIFY";
    default:
      return `Unknown (${hex2(op)})`;
  }
}

const CFG_NAMES = ["READ", "TEST", "TEST_PREFIX", "SET", "FORCE_SET"];
const MASK_NAMES = ["READ", "EDIT"];
const RESERVE_NAMES = ["READ", "SET", "FORCESET"];

function subName(names: string[], code: number): string {
  return names[code] ?? `Unknown (${hex2(code)})`;
}

/**
 * One trace-io line for a request (docs/decisions.md §3.5), without the `disk/<name>: ` prefix:
 * `00:1b:21:0a:aa:22/0000002a: Received ATA cmd READ_EXT, LBA48 4096, sect 2 [   ]`.
 */
export function describeRequest(rx: Uint8Array, length: number): string {
  if (length < AOE_HDR_LEN) return `Short frame (${length} bytes)`;
  const who = `${formatMac(macAt(rx, OFF_SRC))}/${frameTag(rx).toString(16).padStart(8, "0")}`;
  const cmd = frameCommand(rx);
  switch (cmd) {
    case AOE_CMD_ATA: {
      if (length < AOE_ATA_HDR_LEN) break;
      const aflags = rx[24];
      const flags = ((aflags & AOE_AFL_DEV) ? "D" : " ") + ((aflags & AOE_AFL_ASYNC) ? "A" : " ") +
        ((aflags & AOE_AFL_WRITE) ? "W" : " ");
      return `${who}: Received ATA cmd ${ataName(rx[OFF_CMD_STATUS])}, LBA${
        aflags & AOE_AFL_EXT ? 48 : 28
      } ${ataLba(rx)}, sect ${rx[OFF_SECTOR_COUNT]} [${flags}]`;
    }
    case AOE_CMD_CFG:
      if (length < AOE_CFG_HDR_LEN) break;
      return `${who}: Received CFG cmd ${subName(CFG_NAMES, cfgCcmd(rx))}`;
    case AOE_CMD_MASK:
      if (length < AOE_MASK_HDR_LEN) break;
      return `${who}: Received MAC mask cmd ${subName(MASK_NAMES, rx[OFF_MASK_MCMD])}`;
    case AOE_CMD_RESERVE:
      if (length < AOE_RESERVE_HDR_LEN) break;
      return `${who}: Received Reserve cmd ${subName(RESERVE_NAMES, rx[OFF_RESERVE_RCMD])}`;
    default:
      return `${who}: Received unknown AoE cmd ${hex2(cmd)}`;
  }
  return `${who}: Short request (${length} bytes) for AoE cmd ${hex2(cmd)}`;
}
