import { assert, assertEquals } from "../helpers/assert.ts";
import {
  answersWildcard,
  buildAdvertisement,
  classifyFrame,
  completeRequest,
  describeRequest,
  failStateReply,
  FrameClass,
  handleRequest,
  isBroadcastAddress,
  MAX_MTU,
  maxSectorsForMtu,
  setsState,
  targetMatches,
} from "../../src/protocol/engine.ts";
import { Action, Drop, type Port, type Target, Work } from "../../src/protocol/types.ts";
import { type AtaFields, ataReadWriteFields, buildAtaRequest } from "../../src/protocol/ata.ts";
import { buildConfigRequest, parseConfigResponse } from "../../src/protocol/config.ts";
import { buildMaskRequest, parseMaskResponse } from "../../src/protocol/macmask.ts";
import { buildReserveRequest, parseReserveResponse } from "../../src/protocol/reserve.ts";
import { parseIdentify } from "../../src/protocol/identify.ts";
import { parseHeader, putRequestHeader } from "../../src/protocol/header.ts";
import * as C from "../../src/protocol/constants.ts";
import { BROADCAST_MAC, macAt, macBytes } from "../../src/mac.ts";
import { DS } from "../../src/stats.ts";
import { DeviceState, StateKind } from "../../src/state/device_state.ts";
import { FIRMWARE_VERSION, VERSION } from "../../src/version.ts";
import {
  CountingListener,
  env,
  frameBuffer,
  HOST_MAC,
  makePort,
  makeTarget,
  makeWork,
  OTHER_MAC,
  PORT_MAC,
} from "./fixtures.ts";

const text = (s: string) => new TextEncoder().encode(s);

interface Outcome {
  action: number;
  work: Work;
  reply: Uint8Array;
}

/** Runs one request through classifyFrame + handleRequest. */
function run(rx: Uint8Array, length: number, target: Target, port: Port = makePort()): Outcome {
  assertEquals(classifyFrame(rx, length), FrameClass.OK);
  const work = makeWork();
  const action = handleRequest(rx, length, port, target, work);
  assertEquals(work.action, action);
  return { action, work, reply: work.frame.subarray(0, work.length) };
}

function ata(a: Partial<AtaFields>, data?: Uint8Array, over = {}): [Uint8Array, number] {
  const f = frameBuffer();
  const n = buildAtaRequest(
    f,
    env(over),
    { aflags: 0, errFeature: 0, sectorCount: 1, cmdStatus: C.ATA_CMD_READ, lba: 0, ...a },
    data,
  );
  return [f, n];
}

function rw(write: boolean, lba: number, count: number, src = HOST_MAC): [Uint8Array, number] {
  return ata(
    ataReadWriteFields(write, lba, count),
    write ? new Uint8Array(count * 512).fill(0x77) : undefined,
    { src },
  );
}

/** Checks the common reply header: to the requester, from the port, R set, tag echoed. */
function assertReplyHeader(reply: Uint8Array, error = 0, target = makeTarget()) {
  const h = parseHeader(reply);
  assertEquals(h.dst, HOST_MAC, "reply goes to the request source");
  assertEquals(h.src, PORT_MAC, "reply comes from the port");
  assertEquals(h.flags, error ? 0x0c : 0x08);
  assertEquals(h.error, error);
  assertEquals([h.shelf, h.slot], [target.shelf, target.slot]);
  assertEquals(h.tag, 0x11223344);
  assert.ok(reply.length >= 60, `reply of ${reply.length} bytes is shorter than 60`);
}

function assertAtaError(o: Outcome, err: number, t: Target) {
  assertEquals(o.action, Action.REPLY);
  assertReplyHeader(o.reply);
  assertEquals(o.work.length, 60);
  assertEquals(o.reply[25], err, "ATA error register");
  assertEquals(o.reply[27], 0x41, "ATA status DRDY|ERR");
  assertEquals(o.reply.subarray(36, 60), new Uint8Array(24), "no data");
  assertEquals(t.stats[DS.ata_err], 1);
  assertEquals(t.stats[DS.other_cnt], 1);
  assertEquals(t.stats[DS.read_cnt] + t.stats[DS.write_cnt], 0);
}

function assertAoeError(o: Outcome, code: number, rx: Uint8Array, length: number, t: Target) {
  assertEquals(o.action, Action.REPLY);
  assertReplyHeader(o.reply, code, t);
  assertEquals(o.reply[19], rx[19], "command echoed");
  const echoed = Math.min(length, 1514);
  assertEquals(o.reply.subarray(24, echoed), rx.subarray(24, echoed), "request echoed");
  assertEquals(o.work.length, Math.max(60, echoed));
  assertEquals(t.stats[DS.proto_err], 1);
}

// ---- classification and addressing ----

Deno.test("classifyFrame sorts frames: short, not AoE, bad version, response, request", () => {
  const f = frameBuffer();
  putRequestHeader(f, env(), 0);
  assertEquals(classifyFrame(f, 23), FrameClass.SHORT);
  assertEquals(classifyFrame(f, 24), FrameClass.OK);
  assertEquals(classifyFrame(f.subarray(0, 20), 60), FrameClass.SHORT);
  f[14] = 0x18;
  assertEquals(classifyFrame(f, 60), FrameClass.RESPONSE);
  f[14] = 0x20;
  assertEquals(classifyFrame(f, 60), FrameClass.BAD_VERSION);
  f[14] = 0x00;
  assertEquals(classifyFrame(f, 60), FrameClass.BAD_VERSION);
  f[14] = 0x14; // a request with the E flag is still a request
  assertEquals(classifyFrame(f, 60), FrameClass.OK);
  f[12] = 0x08;
  f[13] = 0x00;
  assertEquals(classifyFrame(f, 60), FrameClass.NOT_AOE);
});

Deno.test("targetMatches: exact address, broadcast shelf, broadcast slot, both", () => {
  const t = { shelf: 7, slot: 3 };
  const rows: [number, number, boolean][] = [
    [7, 3, true],
    [7, 4, false],
    [8, 3, false],
    [0xffff, 3, true],
    [0xffff, 4, false],
    [7, 0xff, true],
    [8, 0xff, false],
    [0xffff, 0xff, true],
  ];
  for (const [shelf, slot, expected] of rows) {
    assertEquals(targetMatches(t, shelf, slot), expected, `${shelf}.${slot}`);
  }
  assertEquals(isBroadcastAddress(0xffff, 0), true);
  assertEquals(isBroadcastAddress(0, 0xff), true);
  assertEquals(isBroadcastAddress(0xfffe, 0xfe), false);
});

Deno.test("maxSectorsForMtu: 1056 -> 1, 1500 -> 2, 9000 -> 17, 16384 -> 31", () => {
  const rows = [[1056, 1], [1500, 2], [4200, 8], [4608, 8], [8192, 15], [9000, 17], [16384, 31]];
  for (const [mtu, sectors] of rows) assertEquals(maxSectorsForMtu(mtu), sectors, `MTU ${mtu}`);
  assertEquals(MAX_MTU, 16384);
});

Deno.test("a broadcast request is answered with the device's own shelf and slot", () => {
  const t = makeTarget({ shelf: 12, slot: 9 });
  const [f, n] = ata({ cmdStatus: C.ATA_CMD_CHK_POWER }, undefined, { shelf: 0xffff, slot: 0xff });
  const o = run(f, n, t);
  assertReplyHeader(o.reply, 0, t);
});

// ---- access control ----

Deno.test("accept, deny and mask lists drop refused sources silently for every command", () => {
  const cases: [string, Target][] = [
    ["accept list without the source", makeTarget({ accept: [OTHER_MAC] })],
    ["deny list with the source", makeTarget({ deny: [HOST_MAC] })],
    [
      "mask list without the source",
      makeTarget({ state: new DeviceState(null, { macMask: [1] }) }),
    ],
  ];
  for (const [name, t] of cases) {
    for (const cmd of [0, 1, 2, 3, 200]) {
      const f = frameBuffer();
      buildAtaRequest(f, env(), ataReadWriteFields(false, 0, 1));
      f[19] = cmd;
      const o = run(f, 60, t);
      assertEquals([o.action, o.work.drop, o.work.length], [Action.DROP, Drop.DENIED, 0], name);
    }
    assertEquals(t.stats[DS.denied], 5, name);
    assertEquals(t.stats[DS.other_cnt] + t.stats[DS.read_cnt], 0, name);
  }
});

Deno.test("sources on the accept list and on the mask list are served", () => {
  const t = makeTarget({
    accept: [HOST_MAC],
    deny: [OTHER_MAC],
    state: new DeviceState(null, { macMask: [HOST_MAC] }),
  });
  const o = run(...rw(false, 0, 1), t);
  assertEquals(o.action, Action.READ);
});

Deno.test("a host on both the accept and the deny list is denied: deny wins", () => {
  const t = makeTarget({ accept: [HOST_MAC, OTHER_MAC], deny: [HOST_MAC] });
  for (const cmd of [0, 1, 2, 3]) {
    const f = frameBuffer();
    buildAtaRequest(f, env(), ataReadWriteFields(false, 0, 1));
    f[19] = cmd;
    const o = run(f, 60, t);
    assertEquals([o.action, o.work.drop], [Action.DROP, Drop.DENIED], `command ${cmd}`);
  }
  assertEquals(t.stats[DS.denied], 4);
  // The other host, on the accept list only, is served.
  assertEquals(run(...rw(false, 0, 1, OTHER_MAC), t).action, Action.READ);
});

// ---- unknown commands and short frames ----

for (const cmd of [4, 5, 100, 239, 240, 255]) {
  Deno.test(`unknown AoE command ${cmd} answers AoE error 1 echoing header and payload`, () => {
    const t = makeTarget();
    const f = frameBuffer();
    putRequestHeader(f, env(), cmd);
    for (let i = 24; i < 100; i++) f[i] = i;
    const o = run(f, 100, t);
    assertAoeError(o, C.AOE_ERR_BADCMD, f, 100, t);
    assertEquals(t.stats[DS.other_cnt], 1);
  });
}

Deno.test("unknown command in a bare 24-byte frame is answered, padded to 60", () => {
  const t = makeTarget();
  const f = frameBuffer().fill(0xcc);
  putRequestHeader(f, env(), 4);
  const o = run(f, 24, t);
  assertAoeError(o, C.AOE_ERR_BADCMD, f, 24, t);
  assertEquals(o.reply.subarray(24, 60), new Uint8Array(36), "padding is zeros, not stale bytes");
});

Deno.test("an AoE error reply to an oversized frame is capped at MTU + 14", () => {
  const t = makeTarget();
  const f = frameBuffer();
  putRequestHeader(f, env(), 77);
  const o = run(f, 9014, t, makePort(1500));
  assertEquals(o.work.length, 1514);
});

for (const [cmd, minimum] of [[0, 36], [1, 32], [2, 28], [3, 26]]) {
  Deno.test(`command ${cmd} shorter than its ${minimum}-byte header is dropped as SHORT`, () => {
    const t = makeTarget();
    const f = frameBuffer();
    putRequestHeader(f, env(), cmd);
    const o = run(f, minimum - 1, t);
    assertEquals([o.action, o.work.drop], [Action.DROP, Drop.SHORT]);
    assertEquals(Array.from(t.stats).every((v) => v === 0), true, "no device counter moves");
  });
}

// ---- ATA read/write ----

Deno.test("read accepted: header echoed, offset and bytes set, counted", () => {
  const t = makeTarget();
  const [f, n] = rw(false, 100, 2);
  const o = run(f, n, t);
  assertEquals(o.action, Action.READ);
  assertEquals([o.work.offset, o.work.bytes, o.work.length], [100 * 512, 1024, 36]);
  assertEquals(o.work.frame.subarray(24, 36), f.subarray(24, 36));
  assertEquals([t.stats[DS.read_cnt], t.stats[DS.read_bytes]], [1, 1024]);
  o.work.frame.fill(0x99, 36, 36 + 1024); // the data path reads into the frame
  completeRequest(o.work, 1024, t.stats);
  assertEquals(o.work.length, 36 + 1024);
  assertEquals([o.work.frame[25], o.work.frame[27]], [0, 0x40]);
  assertReplyHeader(o.work.frame.subarray(0, o.work.length));
  assertEquals(t.stats[DS.ata_err], 0);
});

Deno.test("write accepted: payload copied to frame[36..], reply 60 bytes with 36..60 zeroed", () => {
  const t = makeTarget();
  const payload = new Uint8Array(1024).map((_, i) => (i * 7) & 0xff);
  const [f, n] = ata(ataReadWriteFields(true, 5, 2), payload);
  const o = run(f, n, t);
  assertEquals(o.action, Action.WRITE);
  assertEquals([o.work.offset, o.work.bytes], [5 * 512, 1024]);
  assertEquals(o.work.frame.subarray(36, 36 + 1024), payload);
  assertEquals([t.stats[DS.write_cnt], t.stats[DS.write_bytes]], [1, 1024]);
  completeRequest(o.work, 1024, t.stats);
  assertEquals(o.work.length, 60);
  assertEquals(o.work.frame.subarray(36, 60), new Uint8Array(24));
  assertEquals([o.work.frame[25], o.work.frame[27]], [0, 0x40]);
});

Deno.test("write handled in place when the request was received into work.frame", () => {
  const t = makeTarget();
  const work = makeWork();
  const payload = new Uint8Array(512).fill(0x3c);
  const n = buildAtaRequest(work.frame, env(), ataReadWriteFields(true, 1, 1), payload);
  assertEquals(handleRequest(work.frame, n, makePort(), t, work), Action.WRITE);
  assertEquals(work.frame.subarray(36, 548), payload);
  assertReplyHeader(work.frame.subarray(0, 60));
});

Deno.test("write from a receive buffer larger than work.frame still copies the payload", () => {
  const t = makeTarget();
  const rx = new Uint8Array(20000);
  const payload = new Uint8Array(512).fill(0x42);
  const n = buildAtaRequest(rx, env(), ataReadWriteFields(true, 1, 1), payload);
  const o = run(rx, n, t);
  assertEquals(o.action, Action.WRITE);
  assertEquals(o.work.frame.subarray(36, 548), payload);
});

Deno.test("direction comes from the opcode, not the W flag", () => {
  const t = makeTarget();
  const [f, n] = ata({ cmdStatus: C.ATA_CMD_READ, aflags: C.AOE_AFL_WRITE }, new Uint8Array(512));
  assertEquals(run(f, n, t).action, Action.READ);
  const [g, m] = ata({ cmdStatus: C.ATA_CMD_WRITE, aflags: 0 }, new Uint8Array(512));
  assertEquals(run(g, m, t).action, Action.WRITE);
});

Deno.test("LBA28 request with the 0xE0 nibble reads the masked sector", () => {
  const t = makeTarget({ sectors: 0x0fffffff });
  const [f, n] = ata({ cmdStatus: C.ATA_CMD_READ, lba: 0xe0000010 });
  const o = run(f, n, t);
  assertEquals([o.action, o.work.offset], [Action.READ, 16 * 512]);
});

Deno.test("LBA48 request above 2^28 reads at the exact offset", () => {
  const t = makeTarget({ sectors: 2 ** 33 });
  const [f, n] = ata({ cmdStatus: C.ATA_CMD_READ_EXT, aflags: C.AOE_AFL_EXT, lba: 2 ** 32 + 3 });
  const o = run(f, n, t);
  assertEquals([o.action, o.work.offset], [Action.READ, (2 ** 32 + 3) * 512]);
});

Deno.test("LBA near 2^48 on a smaller device answers IDNF (checked before multiplying)", () => {
  const t = makeTarget({ sectors: 2 ** 40 });
  const [f, n] = ata({ cmdStatus: C.ATA_CMD_READ_EXT, aflags: C.AOE_AFL_EXT, lba: 2 ** 48 - 1 });
  assertAtaError(run(f, n, t), C.ATA_IDNF, t);
});

Deno.test("access ending at the last sector is accepted, one past answers IDNF", () => {
  const t = makeTarget({ sectors: 100 });
  assertEquals(run(...rw(false, 98, 2), t).action, Action.READ);
  const t2 = makeTarget({ sectors: 100 });
  assertAtaError(run(...rw(false, 99, 2), t2), C.ATA_IDNF, t2);
});

Deno.test("write past the last sector answers IDNF and asks for no I/O", () => {
  const t = makeTarget({ sectors: 100 });
  const o = run(...rw(true, 100, 1), t);
  assertAtaError(o, C.ATA_IDNF, t);
  assertEquals([o.work.bytes, o.work.offset], [0, 0]);
});

Deno.test("with an offset, I/O starts at base + lba * 512; the exported length still bounds it", () => {
  const base = 2048 * 512;
  const t = makeTarget({ sectors: 100, base });
  let o = run(...rw(false, 0, 1), t);
  assertEquals([o.action, o.work.offset, o.work.bytes], [Action.READ, base, 512]);
  o = run(...rw(true, 98, 2), t);
  assertEquals([o.action, o.work.offset, o.work.bytes], [Action.WRITE, base + 98 * 512, 1024]);
  const t2 = makeTarget({ sectors: 100, base });
  o = run(...rw(true, 99, 2), t2);
  assertAtaError(o, C.ATA_IDNF, t2);
  assertEquals([o.work.offset, o.work.bytes], [0, 0], "no I/O past the exported range");
  const t3 = makeTarget({ sectors: 2 ** 33, base });
  const [f, n] = ata({ cmdStatus: C.ATA_CMD_READ_EXT, aflags: C.AOE_AFL_EXT, lba: 2 ** 32 + 3 });
  assertEquals(run(f, n, t3).work.offset, base + (2 ** 32 + 3) * 512, "LBA48 adds the base");
});

Deno.test("write on a read-only device answers ABRT, even when reserved by someone else", () => {
  const t = makeTarget({ readOnly: true, state: new DeviceState(null, { reserve: [OTHER_MAC] }) });
  assertAtaError(run(...rw(true, 0, 1), t), C.ATA_ABORTED, t);
});

Deno.test("read on a read-only device is served", () => {
  assertEquals(run(...rw(false, 0, 1), makeTarget({ readOnly: true })).action, Action.READ);
});

for (const write of [false, true]) {
  Deno.test(`${write ? "write" : "read"} while reserved by another host answers AoE error 6`, () => {
    const t = makeTarget({ state: new DeviceState(null, { reserve: [OTHER_MAC] }) });
    const [f, n] = rw(write, 0, 1);
    const o = run(f, n, t);
    assertAoeError(o, C.AOE_ERR_RESERVED, f, n, t);
    assertEquals(t.stats[DS.read_cnt] + t.stats[DS.write_cnt], 0);
    const holder = makeTarget({ state: new DeviceState(null, { reserve: [OTHER_MAC, HOST_MAC] }) });
    assert.notEqual(run(f, n, holder).action, Action.REPLY, "the holder is served");
  });
}

Deno.test("sector count 0 answers ABRT without I/O", () => {
  const t = makeTarget();
  assertAtaError(run(...ata({ sectorCount: 0 }), t), C.ATA_ABORTED, t);
});

for (const mtu of [1500, 9000, 16384]) {
  Deno.test(`at MTU ${mtu} the max sector count is accepted and one more answers ABRT`, () => {
    const max = maxSectorsForMtu(mtu);
    const t = makeTarget();
    const port = makePort(mtu);
    const ok = run(...rw(true, 0, max), t, port);
    assertEquals(ok.action, Action.WRITE);
    const t2 = makeTarget();
    assertAtaError(run(...rw(false, 0, max + 1), t2, port), C.ATA_ABORTED, t2);
    // A full read reply fits the MTU.
    const t3 = makeTarget();
    const r = run(...rw(false, 0, max), t3, port);
    completeRequest(r.work, max * 512, t3.stats);
    assertEquals(r.work.length, 36 + max * 512);
    assert.ok(r.work.length <= mtu + 14);
  });
}

Deno.test("write with a payload shorter than count x 512 answers ABRT", () => {
  const t = makeTarget();
  const [f] = ata(ataReadWriteFields(true, 0, 2), new Uint8Array(1024));
  assertAtaError(run(f, 36 + 1023, t), C.ATA_ABORTED, t);
});

const completions: [string, number, number, number][] = [
  ["-EIO answers UNC", -5, 0x40, 0x41],
  ["-ENOSPC answers ABRT", -28, 0x04, 0x41],
  ["a short transfer answers ABRT", 512, 0x04, 0x41],
  ["zero bytes answers ABRT", 0, 0x04, 0x41],
];
for (const [name, result, err, status] of completions) {
  for (const write of [false, true]) {
    Deno.test(`${write ? "write" : "read"} completion: ${name} with no data`, () => {
      const t = makeTarget();
      const o = run(...rw(write, 0, 2), t);
      o.work.frame.fill(0xab, 36, 36 + 1024);
      completeRequest(o.work, result, t.stats);
      assertEquals(o.work.length, 60);
      assertEquals([o.work.frame[25], o.work.frame[27]], [err, status]);
      assertEquals(o.work.frame.subarray(36, 60), new Uint8Array(24));
      assertEquals(t.stats[DS.ata_err], 1);
    });
  }
}

// ---- other ATA commands ----

for (const op of [C.ATA_CMD_FLUSH, C.ATA_CMD_FLUSH_EXT]) {
  Deno.test(`FLUSH 0x${op.toString(16)} asks for a flush, then answers DRDY`, () => {
    const t = makeTarget();
    const o = run(...ata({ cmdStatus: op, errFeature: 0x33 }), t);
    assertEquals([o.action, o.work.length, o.work.bytes], [Action.FLUSH, 36, 0]);
    completeRequest(o.work, 0, t.stats);
    assertEquals(o.work.length, 60);
    assertEquals([o.work.frame[25], o.work.frame[27]], [0, 0x40]);
    assertEquals(t.stats[DS.other_cnt], 1);
    const o2 = run(...ata({ cmdStatus: op }), t);
    completeRequest(o2.work, -5, t.stats);
    assertEquals([o2.work.frame[25], o2.work.frame[27]], [0x40, 0x41]);
  });
}

Deno.test("CHECK POWER MODE answers DRDY, error 0, sector count 0xFF, no data", () => {
  const t = makeTarget();
  const o = run(...ata({ cmdStatus: C.ATA_CMD_CHK_POWER, sectorCount: 0 }), t);
  assertEquals(o.action, Action.REPLY);
  assertReplyHeader(o.reply);
  assertEquals([o.reply[25], o.reply[26], o.reply[27], o.work.length], [0, 0xff, 0x40, 60]);
  assertEquals(t.stats[DS.other_cnt], 1);
});

for (const op of [0x00, 0xa0, 0xb0, 0xc8, 0xef, 0xff]) {
  Deno.test(`ATA opcode 0x${op.toString(16)} answers ABRT`, () => {
    const t = makeTarget();
    assertAtaError(run(...ata({ cmdStatus: op }), t), C.ATA_ABORTED, t);
  });
}

Deno.test("IDENTIFY answers the 512-byte page with DRDY and count 1, serial from the target", () => {
  const t = makeTarget({ name: "disk1", sectors: 123456, serial: "7.3:storage-host" });
  const o = run(...ata({ cmdStatus: C.ATA_CMD_ID_ATA, sectorCount: 1 }), t);
  assertEquals([o.action, o.work.length], [Action.REPLY, 548]);
  assertReplyHeader(o.reply);
  assertEquals([o.reply[25], o.reply[26], o.reply[27]], [0, 1, 0x40]);
  const id = parseIdentify(o.reply.subarray(36));
  assertEquals([id.serial, id.firmware, id.model], ["7.3:storage-host", VERSION, "GGs AoE target"]);
  assertEquals([id.sectors, id.lba28Sectors], [123456, 123456]);
  assertEquals(t.stats[DS.other_cnt], 1);
});

for (const count of [0, 2, 255]) {
  Deno.test(`IDENTIFY with sector count ${count} answers AoE error 2`, () => {
    const t = makeTarget();
    const [f, n] = ata({ cmdStatus: C.ATA_CMD_ID_ATA, sectorCount: count });
    assertAoeError(run(f, n, t), C.AOE_ERR_BADARG, f, n, t);
  });
}

// ---- Query Config ----

function cfg(ccmd: number, s = "", state = new DeviceState()) {
  const t = makeTarget({ state, bufferCount: 0x1234 });
  const f = frameBuffer();
  const n = buildConfigRequest(f, env(), ccmd, text(s));
  return { t, f, n, o: run(f, n, t, makePort(9000)) };
}

Deno.test("config read answers buffer count, firmware BE, max sectors, version, string", () => {
  const { o, t } = cfg(C.AOE_CFG_READ, "", new DeviceState(null, { config: text("hello") }));
  assertReplyHeader(o.reply, 0, t);
  const c = parseConfigResponse(o.reply);
  assertEquals([c.bufferCount, c.firmware, c.sectorCount, c.aoeVersion, c.ccmd], [
    0x1234,
    FIRMWARE_VERSION,
    17,
    1,
    0,
  ]);
  assertEquals(c.config, text("hello"));
  assertEquals(Array.from(o.reply.subarray(26, 28)), [0x02, 0x00], "firmware 0x0200 big-endian");
  assertEquals(t.stats[DS.other_cnt], 1);
});

Deno.test("config test replies only on an exact match", () => {
  const state = () => new DeviceState(null, { config: text("abc") });
  assertEquals(cfg(C.AOE_CFG_TEST, "abc", state()).o.action, Action.REPLY);
  for (const s of ["ab", "abcd", "abd", ""]) {
    const { o, t } = cfg(C.AOE_CFG_TEST, s, state());
    assertEquals([o.action, o.work.drop], [Action.DROP, Drop.CONFIG_MISMATCH], s);
    assertEquals(t.stats[DS.other_cnt], 1);
  }
});

Deno.test("config test prefix replies when the request is a prefix of the stored string", () => {
  const state = () => new DeviceState(null, { config: text("abc") });
  for (const s of ["", "a", "abc"]) {
    assertEquals(cfg(C.AOE_CFG_TEST_PREFIX, s, state()).o.action, Action.REPLY, s);
  }
  for (const s of ["abcd", "b"]) {
    assertEquals(cfg(C.AOE_CFG_TEST_PREFIX, s, state()).o.work.drop, Drop.CONFIG_MISMATCH, s);
  }
});

Deno.test("config set stores into an empty slot, accepts the same string, refuses another", () => {
  const p = new CountingListener();
  const state = new DeviceState(p);
  let r = cfg(C.AOE_CFG_SET, "mine", state);
  assertEquals(parseConfigResponse(r.o.reply).config, text("mine"));
  assertEquals(p.config, 1);
  r = cfg(C.AOE_CFG_SET, "mine", state);
  assertEquals(r.o.action, Action.REPLY);
  assertEquals(p.config, 1, "the same string is not rewritten");
  r = cfg(C.AOE_CFG_SET, "yours", state);
  assertAoeError(r.o, C.AOE_ERR_CFG_SET, r.f, r.n, r.t);
  assertEquals(state.config, text("mine"));
});

Deno.test("config force set replaces, and length 0 clears", () => {
  const state = new DeviceState(null, { config: text("old") });
  assertEquals(parseConfigResponse(cfg(C.AOE_CFG_FORCE_SET, "new", state).o.reply).ccmd, 4);
  assertEquals(state.config, text("new"));
  cfg(C.AOE_CFG_FORCE_SET, "", state);
  assertEquals(state.configLength, 0);
});

for (const ccmd of [5, 9, 15]) {
  Deno.test(`config CCmd ${ccmd} answers AoE error 2`, () => {
    const { o, f, n, t } = cfg(ccmd, "x");
    assertAoeError(o, C.AOE_ERR_BADARG, f, n, t);
  });
}

Deno.test("config string length beyond the payload or over 1024 answers AoE error 2", () => {
  for (const [len, frameLen] of [[29, 60], [1025, 1100]]) {
    for (const ccmd of [0, 1, 4]) {
      const t = makeTarget();
      const f = frameBuffer();
      buildConfigRequest(f, env(), ccmd, new Uint8Array(0));
      f[30] = len >>> 8;
      f[31] = len & 0xff;
      assertAoeError(run(f, frameLen, t), C.AOE_ERR_BADARG, f, frameLen, t);
    }
  }
});

Deno.test("commands that set state mark its kind, whether or not it changed; reads do not", () => {
  const state = new DeviceState(null, { config: text("same") });
  const t = makeTarget({ state });
  assertEquals(cfg(C.AOE_CFG_FORCE_SET, "same", state).o.work.stateKind, StateKind.CONFIG);
  assertEquals(state.seq(StateKind.CONFIG), 0, "setting the same string is no change");
  assertEquals(cfg(C.AOE_CFG_FORCE_SET, "new", state).o.work.stateKind, StateKind.CONFIG);
  assertEquals(state.seq(StateKind.CONFIG), 1);
  assertEquals(cfg(C.AOE_CFG_READ, "", state).o.work.stateKind, -1);
  assertEquals(cfg(C.AOE_CFG_SET, "other", state).o.work.stateKind, -1, "refused: error 4");
  assertEquals(mask(C.AOE_MCMD_EDIT, [], t).o.work.stateKind, StateKind.MAC_MASK);
  assertEquals(mask(C.AOE_MCMD_READ, [], t).o.work.stateKind, -1);
  assertEquals(reserve(C.AOE_RCMD_SET, [HOST_MAC], t).work.stateKind, StateKind.RESERVE);
  assertEquals(reserve(C.AOE_RCMD_READ, [], t).work.stateKind, -1);
});

Deno.test("a state reply that cannot be made durable becomes AoE error 3, header kept", () => {
  const { o, t } = cfg(C.AOE_CFG_FORCE_SET, "x", new DeviceState());
  const before = o.work.frame.slice(0, o.work.length);
  failStateReply(o.work, t.stats);
  const after = o.work.frame.subarray(0, o.work.length);
  assertEquals([after[14], after[15]], [before[14] | 0x04, C.AOE_ERR_DEVUNAVAIL]);
  assertEquals(after.subarray(16), before.subarray(16));
  assertEquals(t.stats[DS.proto_err], 1);
});

Deno.test("config reply string is cut to fit a small MTU", () => {
  const t = makeTarget({ state: new DeviceState(null, { config: new Uint8Array(1024).fill(65) }) });
  const f = frameBuffer();
  const n = buildConfigRequest(f, env(), 0);
  const o = run(f, n, t, makePort(1000));
  assertEquals(parseConfigResponse(o.reply).config.length, 1000 - 32);
});

// ---- Mac Mask List ----

function mask(mcmd: number, directives: { dcmd: number; mac: number }[], t: Target, mtu = 1500) {
  const f = frameBuffer();
  const n = buildMaskRequest(f, env(), mcmd, directives);
  return { f, n, o: run(f, n, t, makePort(mtu)) };
}

Deno.test("mask edit adds and deletes, persists once, replies with the sorted list", () => {
  const p = new CountingListener();
  const t = makeTarget({ state: new DeviceState(p) });
  const { o } = mask(C.AOE_MCMD_EDIT, [
    { dcmd: 1, mac: HOST_MAC },
    { dcmd: 1, mac: 0x0a },
    { dcmd: 0, mac: 0x0b },
    { dcmd: 1, mac: 0x0c },
    { dcmd: 2, mac: 0x0c },
    { dcmd: 2, mac: 0x0d },
  ], t);
  assertReplyHeader(o.reply, 0, t);
  const m = parseMaskResponse(o.reply);
  assertEquals([m.mcmd, m.merror, m.dirCount], [1, 0, 2]);
  assertEquals(m.directives, [{ dcmd: 0, mac: 0x0a }, { dcmd: 0, mac: HOST_MAC }]);
  assertEquals(p.mask, 1);
  assertEquals(t.stats[DS.other_cnt], 1);
});

Deno.test("mask edit stops at a bad directive, keeps earlier changes, echoes the request", () => {
  const p = new CountingListener();
  const t = makeTarget({ state: new DeviceState(p) });
  const { o, f, n } = mask(C.AOE_MCMD_EDIT, [
    { dcmd: 1, mac: HOST_MAC },
    { dcmd: 7, mac: 0x0a },
    { dcmd: 1, mac: 0x0c },
  ], t);
  assertReplyHeader(o.reply, 0, t);
  assertEquals([o.reply[25], o.reply[26], o.reply[27]], [1, C.AOE_MERR_BADDIR, 1]);
  assertEquals(o.reply.subarray(28, 52), f.subarray(28, 52));
  assertEquals(t.state.macMask, [HOST_MAC]);
  assertEquals(p.mask, 1);
  assertEquals(n, 60);
});

Deno.test("mask edit on a full list answers MError 3 at the failing directive", () => {
  const full = Array.from({ length: 255 }, (_, i) => i + 1);
  const t = makeTarget({ state: new DeviceState(null, { macMask: [...full.slice(1), HOST_MAC] }) });
  const { o } = mask(C.AOE_MCMD_EDIT, [{ dcmd: 2, mac: 2 }, { dcmd: 1, mac: 999 }, {
    dcmd: 1,
    mac: 1000,
  }], t);
  assertEquals([o.reply[26], o.reply[27]], [C.AOE_MERR_FULL, 2]);
  assertEquals(t.state.macMask.includes(999), true);
});

Deno.test("mask read is capped to what fits in the MTU", () => {
  const list = Array.from({ length: 255 }, (_, i) => HOST_MAC + i);
  for (const [mtu, expected] of [[1500, 184], [9000, 255]]) {
    const t = makeTarget({ state: new DeviceState(null, { macMask: list }) });
    const { o } = mask(C.AOE_MCMD_READ, [], t, mtu);
    const m = parseMaskResponse(o.reply);
    assertEquals(m.dirCount, expected);
    assert.ok(o.work.length <= mtu + 14);
    assertEquals(m.directives.map((d) => d.mac), list.slice(0, expected));
  }
});

Deno.test("mask Dir Count beyond the payload or MCmd > 1 answers AoE error 2", () => {
  let t = makeTarget();
  const f = frameBuffer();
  const n = buildMaskRequest(f, env(), 0);
  f[27] = 5; // 40 bytes of directives in a 32-byte payload
  assertAoeError(run(f, n, t), C.AOE_ERR_BADARG, f, n, t);
  t = makeTarget();
  const r = mask(2, [], t);
  assertAoeError(r.o, C.AOE_ERR_BADARG, r.f, r.n, t);
});

// ---- Reserve/Release ----

function reserve(rcmd: number, macs: number[], t: Target, src = HOST_MAC) {
  const f = frameBuffer();
  const n = buildReserveRequest(f, env({ src }), rcmd, macs);
  const work = makeWork();
  handleRequest(f, n, makePort(), t, work);
  return { f, n, work, reply: work.frame.subarray(0, work.length) };
}

Deno.test("reserve force set stores sorted unique MACs, read returns them, 0 releases", () => {
  const t = makeTarget();
  let r = reserve(C.AOE_RCMD_FORCE_SET, [9, 3, 9, HOST_MAC], t);
  assertEquals(parseReserveResponse(r.reply).macs, [3, 9, HOST_MAC]);
  r = reserve(C.AOE_RCMD_READ, [], t, OTHER_MAC);
  assertEquals(parseReserveResponse(r.reply).macs, [3, 9, HOST_MAC]);
  r = reserve(C.AOE_RCMD_FORCE_SET, [], t, OTHER_MAC);
  assertEquals(parseReserveResponse(r.reply).macs, []);
  assertEquals(t.state.reserve, []);
  assertEquals(t.stats[DS.other_cnt], 3);
});

Deno.test("reserve set is allowed to a holder (by source MAC) and refused to others", () => {
  const t = makeTarget({ state: new DeviceState(null, { reserve: [HOST_MAC] }) });
  let r = reserve(C.AOE_RCMD_SET, [OTHER_MAC], t, OTHER_MAC);
  assertEquals([r.reply[14] & 0x04, r.reply[15]], [4, C.AOE_ERR_RESERVED]);
  assertEquals(t.state.reserve, [HOST_MAC]);
  r = reserve(C.AOE_RCMD_SET, [HOST_MAC, OTHER_MAC], t, HOST_MAC);
  assertEquals(parseReserveResponse(r.reply).macs, [HOST_MAC, OTHER_MAC].sort((a, b) => a - b));
  const empty = makeTarget();
  r = reserve(C.AOE_RCMD_SET, [OTHER_MAC], empty, HOST_MAC);
  assertEquals(empty.state.reserve, [OTHER_MAC], "anyone may set an empty reservation");
});

Deno.test("reserve NMacs beyond the payload or RCmd > 2 answers AoE error 2", () => {
  let t = makeTarget();
  const f = frameBuffer();
  const n = buildReserveRequest(f, env(), 2, []);
  f[25] = 6; // 36 bytes of MACs in a 34-byte payload
  assertAoeError(run(f, n, t), C.AOE_ERR_BADARG, f, n, t);
  t = makeTarget();
  const r = reserve(3, [], t);
  assertEquals(r.reply[15], C.AOE_ERR_BADARG);
});

Deno.test("reserve reply is capped to what fits in the MTU", () => {
  const t = makeTarget();
  const macs = Array.from({ length: 255 }, (_, i) => i + 1);
  const r = reserve(C.AOE_RCMD_FORCE_SET, macs, t);
  assertEquals(t.state.reserve.length, 255);
  assertEquals(r.reply[25], Math.floor((1500 - 26) / 6));
  assert.ok(r.work.length <= 1514);
});

// ---- admin ----

Deno.test("admin: a mask edit from a host not on it answers AoE error 6 and changes nothing", () => {
  const p = new CountingListener();
  // Adding only itself to an empty list would lock every other host out.
  const t = makeTarget({ admin: [OTHER_MAC], state: new DeviceState(p) });
  const { o, f, n } = mask(C.AOE_MCMD_EDIT, [{ dcmd: 1, mac: HOST_MAC }], t);
  assertAoeError(o, C.AOE_ERR_RESERVED, f, n, t);
  assertEquals(t.state.macMask, []);
  assertEquals(p.mask, 0, "nothing persisted");
  // Deletes and empty edits are edits too.
  const t2 = makeTarget({ admin: [], state: new DeviceState(null, { macMask: [HOST_MAC] }) });
  assertEquals(mask(C.AOE_MCMD_EDIT, [{ dcmd: 2, mac: HOST_MAC }], t2).o.reply[15], 6);
  assertEquals(mask(C.AOE_MCMD_EDIT, [], t2).o.reply[15], 6);
  assertEquals(t2.state.macMask, [HOST_MAC]);
});

Deno.test("admin: reads of the mask and reserve lists stay open to every host served", () => {
  const t = makeTarget({
    admin: [OTHER_MAC],
    state: new DeviceState(null, { macMask: [HOST_MAC, OTHER_MAC], reserve: [OTHER_MAC] }),
  });
  const m = parseMaskResponse(mask(C.AOE_MCMD_READ, [], t).o.reply);
  assertEquals([m.merror, m.directives.map((d) => d.mac)], [0, [HOST_MAC, OTHER_MAC]]);
  const r = reserve(C.AOE_RCMD_READ, [], t, HOST_MAC);
  assertEquals([r.reply[15], parseReserveResponse(r.reply).macs], [0, [OTHER_MAC]]);
  assertEquals(t.stats[DS.proto_err], 0);
});

Deno.test("admin: reserve set and force set from a host not on it answer AoE error 6, nothing changes", () => {
  for (const rcmd of [C.AOE_RCMD_SET, C.AOE_RCMD_FORCE_SET]) {
    const p = new CountingListener();
    // An empty reserve list: without admin, anyone could take it.
    const t = makeTarget({ admin: [OTHER_MAC], state: new DeviceState(p) });
    const r = reserve(rcmd, [HOST_MAC], t, HOST_MAC);
    assertEquals([r.reply[14] & 0x04, r.reply[15]], [4, C.AOE_ERR_RESERVED]);
    assertEquals(r.reply.subarray(24, r.n), r.f.subarray(24, r.n), "request echoed");
    assertEquals([t.state.reserve, p.reserve, t.stats[DS.proto_err]], [[], 0, 1]);
    // The host keeps doing I/O: nothing was reserved.
    assertEquals(run(...rw(true, 0, 1), t).action, Action.WRITE);
  }
});

Deno.test("admin: hosts on it edit the mask list and set, force set and release reservations", () => {
  const t = makeTarget({ admin: [HOST_MAC, 0x0a] });
  const m = parseMaskResponse(
    mask(C.AOE_MCMD_EDIT, [{ dcmd: 1, mac: HOST_MAC }, { dcmd: 1, mac: OTHER_MAC }], t).o.reply,
  );
  assertEquals([m.merror, t.state.macMask], [0, [HOST_MAC, OTHER_MAC]]);
  let r = reserve(C.AOE_RCMD_SET, [HOST_MAC], t, HOST_MAC);
  assertEquals([r.reply[15], t.state.reserve], [0, [HOST_MAC]]);
  r = reserve(C.AOE_RCMD_FORCE_SET, [OTHER_MAC], t, HOST_MAC);
  assertEquals([r.reply[15], t.state.reserve], [0, [OTHER_MAC]]);
  r = reserve(C.AOE_RCMD_FORCE_SET, [], t, HOST_MAC);
  assertEquals([r.reply[15], t.state.reserve], [0, []]);
});

Deno.test("admin: a malformed edit from a non-admin still answers AoE error 2", () => {
  const t = makeTarget({ admin: [OTHER_MAC] });
  const r = mask(2, [], t);
  assertAoeError(r.o, C.AOE_ERR_BADARG, r.f, r.n, t);
});

Deno.test("admin: config set and force set from a host not on it answer AoE error 6 and change nothing", () => {
  for (const ccmd of [C.AOE_CFG_SET, C.AOE_CFG_FORCE_SET]) {
    const p = new CountingListener();
    const state = new DeviceState(p, ccmd === C.AOE_CFG_SET ? {} : { config: text("old") });
    const t = makeTarget({ admin: [OTHER_MAC], state });
    const f = frameBuffer();
    const n = buildConfigRequest(f, env(), ccmd, text("mine"));
    const o = run(f, n, t);
    assertAoeError(o, C.AOE_ERR_RESERVED, f, n, t);
    assertEquals([p.config, o.work.stateKind], [0, -1], "nothing changed, nothing to persist");
    assertEquals(state.config, ccmd === C.AOE_CFG_SET ? text("") : text("old"));
    // Read, test and test prefix (discovery) stay open.
    for (const open of [C.AOE_CFG_READ, C.AOE_CFG_TEST_PREFIX]) {
      const g = frameBuffer();
      const m = buildConfigRequest(
        g,
        env(),
        open,
        open === C.AOE_CFG_READ ? text("") : state.config,
      );
      assertEquals(run(g, m, t).action, Action.REPLY);
    }
    // An admin host sets it.
    const h = frameBuffer();
    const k = buildConfigRequest(h, env({ src: OTHER_MAC }), ccmd, text("theirs"));
    assertEquals(run(h, k, t).action, Action.REPLY);
    assertEquals(state.config, text("theirs"));
  }
});

Deno.test("admin-config-string = false: admin leaves Query Config set open to every host served", () => {
  const state = new DeviceState();
  const t = makeTarget({ admin: [OTHER_MAC], adminConfigString: false, state });
  const f = frameBuffer();
  const n = buildConfigRequest(f, env(), C.AOE_CFG_FORCE_SET, text("any host"));
  assertEquals(run(f, n, t).action, Action.REPLY);
  assertEquals(state.config, text("any host"));
});

Deno.test("setsState: config set/force set, mask edit, reserve set/force set; not reads or ATA", () => {
  const f = frameBuffer();
  assert(setsState(f, buildConfigRequest(f, env(), C.AOE_CFG_SET, text("x"))));
  for (const ccmd of [C.AOE_CFG_READ, C.AOE_CFG_TEST, C.AOE_CFG_TEST_PREFIX]) {
    assert(!setsState(f, buildConfigRequest(f, env(), ccmd, text("x"))), `ccmd ${ccmd}`);
  }
  assert(setsState(f, buildConfigRequest(f, env(), C.AOE_CFG_FORCE_SET, text(""))));
  assert(setsState(f, buildMaskRequest(f, env(), C.AOE_MCMD_EDIT, [])));
  assert(!setsState(f, buildMaskRequest(f, env(), C.AOE_MCMD_READ, [])));
  assert(setsState(f, buildReserveRequest(f, env(), C.AOE_RCMD_SET, [])));
  assert(setsState(f, buildReserveRequest(f, env(), C.AOE_RCMD_FORCE_SET, [HOST_MAC])));
  assert(!setsState(f, buildReserveRequest(f, env(), C.AOE_RCMD_READ, [])));
  buildAtaRequest(f, env(), ataReadWriteFields(true, 0, 1));
  assert(!setsState(f, 60));
  buildConfigRequest(f, env(), C.AOE_CFG_SET, text("x"));
  assert(!setsState(f, 31), "a short frame is left to the engine");
});

// ---- advertisement and trace ----

Deno.test("advertisement is a Query Config read reply with tag 0 to the given destination", () => {
  const t = makeTarget({ state: new DeviceState(null, { config: text("cfg") }), bufferCount: 16 });
  const out = new Uint8Array(2000).fill(0xee);
  for (const dst of [BROADCAST_MAC, HOST_MAC]) {
    const n = buildAdvertisement(t, makePort(9000), dst, out);
    assertEquals(n, 60);
    const c = parseConfigResponse(out, n);
    assertEquals(c.header, {
      dst,
      src: PORT_MAC,
      version: 1,
      flags: 8,
      error: 0,
      shelf: 7,
      slot: 3,
      command: 1,
      tag: 0,
    });
    assertEquals([c.bufferCount, c.firmware, c.sectorCount, c.ccmd], [16, 0x0200, 17, 0]);
    assertEquals(c.config, text("cfg"));
    assertEquals(out.subarray(35, 60), new Uint8Array(25));
  }
  assertEquals(t.stats[DS.other_cnt], 2);
});

Deno.test("describeRequest formats ATA, config, mask, reserve and unknown requests", () => {
  const who = "00:1b:21:0a:aa:22/11223344";
  const rows: [Uint8Array, number, string][] = [
    [
      ...ata({ cmdStatus: 0x24, aflags: 0x40 | 0x10 | 0x02, lba: 2 ** 30, sectorCount: 2 }),
      `${who}: Received ATA cmd READ_EXT, LBA48 1073741824, sect 2 [DA ]`,
    ],
    [
      ...ata({ cmdStatus: 0x30, aflags: 1, lba: 0xe0000005 }, new Uint8Array(512)),
      `${who}: Received ATA cmd WRITE, LBA28 5, sect 1 [  W]`,
    ],
    [...ata({ cmdStatus: 0xe5 }), `${who}: Received ATA cmd Unknown (e5), LBA28 0, sect 1 [   ]`],
    [...ata({ cmdStatus: 0xec }), `${who}: Received ATA cmd IDENTIFY, LBA28 0, sect 1 [   ]`],
  ];
  for (const [f, n, line] of rows) assertEquals(describeRequest(f, n), line);
  const f = frameBuffer();
  buildConfigRequest(f, env(), 2);
  assertEquals(describeRequest(f, 60), `${who}: Received CFG cmd TEST_PREFIX`);
  buildConfigRequest(f, env(), 7);
  assertEquals(describeRequest(f, 60), `${who}: Received CFG cmd Unknown (07)`);
  buildMaskRequest(f, env(), 1);
  assertEquals(describeRequest(f, 60), `${who}: Received MAC mask cmd EDIT`);
  buildReserveRequest(f, env(), 2);
  assertEquals(describeRequest(f, 60), `${who}: Received Reserve cmd FORCESET`);
  f[19] = 0xf0;
  assertEquals(describeRequest(f, 60), `${who}: Received unknown AoE cmd f0`);
  assertEquals(describeRequest(f, 10), "Short frame (10 bytes)");
});

Deno.test("stats: every handled request counts once in read, write or other", () => {
  const t = makeTarget();
  const reqs: [Uint8Array, number][] = [
    rw(false, 0, 1),
    rw(true, 0, 1),
    ata({ cmdStatus: 0xb0 }),
    ata({ cmdStatus: 0xec }),
    ata({ cmdStatus: 0xe7 }),
  ];
  for (const [f, n] of reqs) run(f, n, t);
  assertEquals(
    [t.stats[DS.read_cnt], t.stats[DS.write_cnt], t.stats[DS.other_cnt], t.stats[DS.ata_err]],
    [1, 1, 3, 1],
  );
});

Deno.test("reply source is the port's current MAC", () => {
  const t = makeTarget();
  const port = { ...makePort(), mac: macBytes(0x0a0b0c0d0e0f) };
  const o = run(...ata({ cmdStatus: C.ATA_CMD_CHK_POWER }), t, port);
  assertEquals(macAt(o.reply, 6), 0x0a0b0c0d0e0f);
});

Deno.test("of frames to a wildcard address only Query Config read, test and test prefix are answered", () => {
  const f = frameBuffer();
  for (const [ccmd, answered] of [[0, true], [1, true], [2, true], [3, false], [4, false]]) {
    const n = buildConfigRequest(f, env({ shelf: 0xffff, slot: 0xff }), ccmd as number);
    assertEquals(answersWildcard(f, n), answered, `CCmd ${ccmd}`);
    assertEquals(answersWildcard(f, 31), false, "a short config header never");
  }
  const ata = buildAtaRequest(
    f,
    env({ shelf: 0xffff, slot: 0xff }),
    ataReadWriteFields(true, 0, 1),
    new Uint8Array(512),
  );
  assertEquals(answersWildcard(f, ata), false);
  for (
    const build of [
      () => buildMaskRequest(f, env(), C.AOE_MCMD_READ, []),
      () => buildReserveRequest(f, env(), C.AOE_RCMD_READ, []),
    ]
  ) assertEquals(answersWildcard(f, build()), false);
});
