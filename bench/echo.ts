/**
 * The echo responder: the reference target of `deno task bench`, the ceiling of this link,
 * this initiator and this machine.
 *
 * It answers Query Config (read) and IDENTIFY like a target, every ATA read with data copied
 * from a memory buffer, and every ATA write with an immediate ack: no disk, no queue, no AIO.
 * Frames come and go through the TPACKET_V2 rings of {@link PacketSocket}; replies are written
 * straight into TX ring frames and the kernel is kicked once per receive burst. Nothing is
 * allocated per frame: the hot path writes bytes at the protocol's offsets, and the read data
 * views are made once per sector count.
 *
 * ```sh
 * ip netns exec NS deno run --allow-all bench/echo.ts IFACE SHELF SLOT SECTORS [BUFCNT]
 * ```
 * Prints "echo is running" once the socket is open; stops on SIGTERM/SIGINT (default action).
 *
 * @module
 */

import { Epoll, EPOLLIN, PacketSocket } from "../ffi/mod.ts";
import { buildConfigResponse } from "../src/protocol/config.ts";
import {
  AOE_AFL_WRITE,
  AOE_ATA_HDR_LEN,
  AOE_CFG_READ,
  AOE_CMD_ATA,
  AOE_CMD_CFG,
  AOE_FL_RESPONSE,
  AOE_HDR_LEN,
  AOE_SHELF_BROADCAST,
  AOE_SLOT_BROADCAST,
  AOE_VERSION,
  ATA_ABORTED,
  ATA_CMD_ID_ATA,
  ATA_CMD_READ,
  ATA_CMD_READ_EXT,
  ATA_CMD_WRITE,
  ATA_CMD_WRITE_EXT,
  ATA_DRDY,
  ATA_ERR,
  ETH_P_AOE,
  SECTOR_SIZE,
} from "../src/protocol/constants.ts";
import { ataLba, OFF_CMD_STATUS, OFF_ERR_FEATURE, OFF_SECTOR_COUNT } from "../src/protocol/ata.ts";
import { cfgCcmd } from "../src/protocol/config.ts";
import { OFF_COMMAND, OFF_MAJOR, OFF_MINOR, OFF_VER_FLAGS } from "../src/protocol/header.ts";
import { IDENTIFY_MODEL, IDENTIFY_SIZE, putIdentify } from "../src/protocol/identify.ts";

/** Ring memory (RX + TX): room for several windows of jumbo frames each way. */
const RING_BYTES = 8 * 1024 * 1024;
/** Most frames answered before the TX ring is kicked. */
const BURST = 128;

const [ifname, shelfArg, slotArg, sectorsArg, bufArg] = Deno.args;
if (!ifname || sectorsArg === undefined) {
  console.error("usage: echo.ts IFACE SHELF SLOT SECTORS [BUFCNT]");
  Deno.exit(2);
}
const SHELF = Number(shelfArg);
const SLOT = Number(slotArg);
const SECTORS = Number(sectorsArg);
const BUFCNT = Number(bufArg ?? 64);

const sock = PacketSocket.open(ifname, { ringBytes: RING_BYTES, filter: "requests" });
const epoll = Epoll.open(4);
epoll.add(sock.fd, EPOLLIN, 0);

/** Our MAC, as bytes. */
const MAC = new Uint8Array(6);
for (let i = 0, m = sock.mac; i < 6; i++) MAC[5 - i] = Math.floor(m / 256 ** i) % 256;
/** Most sectors per request on this link: header + data must fit in one frame. */
const MAX_SECTORS = Math.min(255, Math.floor((sock.mtu - AOE_ATA_HDR_LEN) / SECTOR_SIZE));

/** Read data: one buffer of the largest request; VIEWS[n] is its first n sectors. */
const DATA = new Uint8Array(MAX_SECTORS * SECTOR_SIZE);
for (let i = 0; i < DATA.length; i++) DATA[i] = (i * 131 + 7) & 0xff;
const VIEWS: Uint8Array[] = [];
for (let n = 0; n <= MAX_SECTORS; n++) VIEWS.push(DATA.subarray(0, n * SECTOR_SIZE));

const IDENTIFY = new Uint8Array(IDENTIFY_SIZE);
putIdentify(IDENTIFY, 0, "echo", "bench", IDENTIFY_MODEL, SECTORS);

/**
 * Common reply header into `f`: to the requester, from us, R flag, our address, command and
 * tag echoed (bytes 19..23). `rx` and `f` are different ring frames.
 */
function putReplyHeader(f: Uint8Array, rx: Uint8Array): void {
  f[0] = rx[6];
  f[1] = rx[7];
  f[2] = rx[8];
  f[3] = rx[9];
  f[4] = rx[10];
  f[5] = rx[11];
  f[6] = MAC[0];
  f[7] = MAC[1];
  f[8] = MAC[2];
  f[9] = MAC[3];
  f[10] = MAC[4];
  f[11] = MAC[5];
  f[12] = ETH_P_AOE >>> 8;
  f[13] = ETH_P_AOE & 0xff;
  f[OFF_VER_FLAGS] = (AOE_VERSION << 4) | AOE_FL_RESPONSE;
  f[15] = 0;
  f[OFF_MAJOR] = SHELF >>> 8;
  f[OFF_MAJOR + 1] = SHELF & 0xff;
  f[OFF_MINOR] = SLOT;
  f[19] = rx[19];
  f[20] = rx[20];
  f[21] = rx[21];
  f[22] = rx[22];
  f[23] = rx[23];
}

/** Writes the reply to ATA request `rx` into `f`; returns its length (commit pads to 60). */
function ataReply(f: Uint8Array, rx: Uint8Array, length: number): number {
  putReplyHeader(f, rx);
  for (let i = AOE_HDR_LEN; i < AOE_ATA_HDR_LEN; i++) f[i] = rx[i];
  f[OFF_ERR_FEATURE] = 0;
  f[OFF_CMD_STATUS] = ATA_DRDY;
  const cmd = rx[OFF_CMD_STATUS];
  const count = rx[OFF_SECTOR_COUNT];
  if (cmd === ATA_CMD_READ_EXT || cmd === ATA_CMD_READ) {
    if (count > MAX_SECTORS || ataLba(rx) + count > SECTORS) return ataAbort(f);
    f.set(VIEWS[count], AOE_ATA_HDR_LEN);
    return AOE_ATA_HDR_LEN + count * SECTOR_SIZE;
  }
  if (cmd === ATA_CMD_WRITE_EXT || cmd === ATA_CMD_WRITE) {
    if ((rx[24] & AOE_AFL_WRITE) === 0 || length < AOE_ATA_HDR_LEN + count * SECTOR_SIZE) {
      return ataAbort(f);
    }
    f[OFF_SECTOR_COUNT] = 0;
    return AOE_ATA_HDR_LEN;
  }
  if (cmd === ATA_CMD_ID_ATA) {
    f.set(IDENTIFY, AOE_ATA_HDR_LEN);
    return AOE_ATA_HDR_LEN + IDENTIFY_SIZE;
  }
  return AOE_ATA_HDR_LEN; // FLUSH, CHECK POWER, ...: nothing to do
}

function ataAbort(f: Uint8Array): number {
  f[OFF_ERR_FEATURE] = ATA_ABORTED;
  f[OFF_CMD_STATUS] = ATA_DRDY | ATA_ERR;
  return AOE_ATA_HDR_LEN;
}

/** Writes the reply to `rx` into `f`; 0 = no reply. */
function answer(f: Uint8Array, rx: Uint8Array, length: number): number {
  if (length < AOE_HDR_LEN || (rx[OFF_VER_FLAGS] >>> 4) !== AOE_VERSION) return 0;
  const shelf = (rx[OFF_MAJOR] << 8) | rx[OFF_MAJOR + 1];
  const slot = rx[OFF_MINOR];
  if (shelf !== SHELF && shelf !== AOE_SHELF_BROADCAST) return 0;
  if (slot !== SLOT && slot !== AOE_SLOT_BROADCAST) return 0;
  const command = rx[OFF_COMMAND];
  if (command === AOE_CMD_ATA) {
    return length < AOE_ATA_HDR_LEN ? 0 : ataReply(f, rx, length);
  }
  if (command === AOE_CMD_CFG && length >= 32 && cfgCcmd(rx) === AOE_CFG_READ) {
    // Rare (discovery): the protocol builder, allocation allowed.
    const n = buildConfigResponse(f, {
      dst: 0,
      src: 0,
      shelf: SHELF,
      slot: SLOT,
      tag: 0,
    }, {
      bufferCount: BUFCNT,
      firmware: 0x4019,
      sectorCount: MAX_SECTORS,
      ccmd: AOE_CFG_READ,
      config: new Uint8Array(0),
    });
    putReplyHeader(f, rx);
    return n;
  }
  return 0;
}

console.log(
  `echo is running on ${ifname} (e${SHELF}.${SLOT}, ${MAX_SECTORS} sectors per request, ` +
    `${sock.rxFrames}/${sock.txFrames} ring frames)`,
);

for (;;) {
  let handled = 0;
  for (;;) {
    const rx = sock.receive();
    if (rx === null) break;
    let out = sock.txBuffer();
    while (out === null) {
      // TX ring full: hand the queued frames to the kernel, give it a moment, try again.
      sock.flush();
      out = sock.txBuffer();
      if (out === null) epoll.wait(1);
    }
    const n = answer(out, rx, sock.rxLength);
    sock.release();
    if (n > 0) sock.commit(n);
    if (++handled === BURST) {
      sock.flush();
      handled = 0;
    }
  }
  sock.flush();
  epoll.wait(-1);
}
