/**
 * Golden frames: every kind of frame the protocol code builds is written to a pcap file and
 * decoded by tshark's AoE dissector, which must flag nothing as malformed and must read the
 * fields we meant to write. Wireshark's dissector decodes the common header and the ATA header;
 * for Query Config, Mac Mask and Reserve it stops after the common header, so their argument
 * fields are checked on the bytes tshark read back (`frame_raw`) with our parsers.
 */

import { assert, assertEquals } from "../helpers/assert.ts";
import { writePcap } from "../helpers/pcap.ts";
import { ataReadWriteFields, buildAtaRequest } from "../../src/protocol/ata.ts";
import { buildConfigRequest, parseConfigResponse } from "../../src/protocol/config.ts";
import { buildMaskRequest, parseMaskResponse } from "../../src/protocol/macmask.ts";
import { buildReserveRequest, parseReserveResponse } from "../../src/protocol/reserve.ts";
import { putRequestHeader } from "../../src/protocol/header.ts";
import {
  buildAdvertisement,
  classifyFrame,
  completeRequest,
  FrameClass,
  handleRequest,
} from "../../src/protocol/engine.ts";
import { Action } from "../../src/protocol/types.ts";
import { BROADCAST_MAC } from "../../src/mac.ts";
import { DeviceState } from "../../src/state/device_state.ts";
import { env, frameBuffer, makePort, makeTarget, makeWork, OTHER_MAC } from "./fixtures.ts";

type Fields = Record<string, string>;

interface Golden {
  name: string;
  frame: Uint8Array;
  /** tshark field name -> expected value as tshark prints it in JSON. */
  expect: Fields;
  /** Extra check on the bytes tshark read back. */
  check?: (raw: Uint8Array) => void;
}

const text = (s: string) => new TextEncoder().encode(s);
const hex = (n: number, digits: number) => "0x" + n.toString(16).padStart(digits, "0");

const port = makePort(9000);
let tag = 0x100;

/** A request built by our builders, and the engine's reply to it. */
function exchange(
  name: string,
  build: (f: Uint8Array, t: number) => number,
  opts: {
    target?: ReturnType<typeof makeTarget>;
    result?: number;
    request?: Fields;
    reply: Fields;
    check?: (raw: Uint8Array) => void;
  },
): Golden[] {
  const t = ++tag;
  const rx = frameBuffer();
  const n = build(rx, t);
  assertEquals(classifyFrame(rx, n), FrameClass.OK, name);
  const target = opts.target ?? makeTarget({ sectors: 2 ** 34 });
  const work = makeWork();
  const action = handleRequest(rx, n, port, target, work);
  if (action === Action.READ || action === Action.WRITE || action === Action.FLUSH) {
    completeRequest(work, opts.result ?? work.bytes, target.stats);
  }
  assert.ok(action !== Action.DROP, `${name}: dropped`);
  const common = { "aoe.version": "1", "aoe.tag": hex(t, 8) };
  return [
    {
      name: `${name} request`,
      frame: rx.slice(0, n),
      expect: { ...common, "aoe.response": "0", ...opts.request },
    },
    {
      name: `${name} reply`,
      frame: work.frame.slice(0, work.length),
      expect: {
        ...common,
        "aoe.response": "1",
        "aoe.major": "0x0007",
        "aoe.minor": "0x03",
        "eth.src": "02:00:00:00:00:01",
        "eth.dst": "00:1b:21:0a:aa:22",
        ...opts.reply,
      },
      check: opts.check,
    },
  ];
}

function ataReq(a: Parameters<typeof ataReadWriteFields>, data?: Uint8Array) {
  return (f: Uint8Array, t: number) =>
    buildAtaRequest(f, env({ tag: t }), ataReadWriteFields(...a), data);
}

function ataOp(cmd: number, count = 1, feature = 0) {
  return (f: Uint8Array, t: number) =>
    buildAtaRequest(f, env({ tag: t }), {
      aflags: 0,
      errFeature: feature,
      sectorCount: count,
      cmdStatus: cmd,
      lba: 0,
    });
}

const ok = { "aoe.flags_error": "0", "aoe.err_feature": "0x00", "aoe.ata.status": "0x40" };
const abrt = { "aoe.flags_error": "0", "aoe.err_feature": "0x04", "aoe.ata.status": "0x41" };

function goldens(): Golden[] {
  const list: Golden[] = [
    ...exchange("READ EXT LBA48", ataReq([false, 2 ** 30, 2]), {
      request: {
        "aoe.cmd": "0",
        "aoe.ata.cmd": "0x24",
        "aoe.aflags.e": "1",
        "aoe.aflags.w": "0",
        "aoe.sector_count": "2",
        "aoe.lba": hex(2 ** 30, 16),
      },
      reply: { ...ok, "aoe.sector_count": "2", "aoe.lba": hex(2 ** 30, 16), "frame.len": "1060" },
    }),
    ...exchange("WRITE LBA28", ataReq([true, 12345, 1], new Uint8Array(512).fill(1)), {
      request: { "aoe.ata.cmd": "0x30", "aoe.aflags.w": "1", "aoe.aflags.e": "0" },
      reply: { ...ok, "frame.len": "60" },
    }),
    ...exchange("READ with -EIO", ataReq([false, 0, 1]), {
      result: -5,
      reply: { "aoe.err_feature": "0x40", "aoe.ata.status": "0x41", "frame.len": "60" },
    }),
    ...exchange("READ past the end", ataReq([false, 2 ** 34, 1, true]), {
      reply: { "aoe.err_feature": "0x10", "aoe.ata.status": "0x41", "frame.len": "60" },
    }),
    ...exchange("IDENTIFY", ataOp(0xec), {
      request: { "aoe.ata.cmd": "0xec" },
      reply: { ...ok, "frame.len": "548" },
    }),
    ...exchange("FLUSH CACHE EXT", ataOp(0xea, 0, 0x12), {
      request: { "aoe.ata.cmd": "0xea" },
      reply: { ...ok, "frame.len": "60" },
    }),
    ...exchange("CHECK POWER MODE", ataOp(0xe5, 0), {
      reply: { ...ok, "aoe.sector_count": "255" },
    }),
    ...exchange("SMART", ataOp(0xb0), { reply: { ...abrt, "frame.len": "60" } }),
    ...exchange("IDENTIFY count 2", ataOp(0xec, 2), {
      reply: { "aoe.flags_error": "1", "aoe.error": "2", "aoe.cmd": "0", "frame.len": "60" },
    }),
    ...exchange("READ while reserved", ataReq([false, 0, 1]), {
      target: makeTarget({ state: new DeviceState(null, { reserve: [OTHER_MAC] }) }),
      reply: { "aoe.flags_error": "1", "aoe.error": "6" },
    }),
    ...exchange("vendor command 0xf0", (f, t) => {
      putRequestHeader(f, env({ tag: t }), 0xf0);
      f.fill(0x5a, 24, 80);
      return 80;
    }, {
      request: { "aoe.cmd": "240" },
      reply: { "aoe.flags_error": "1", "aoe.error": "1", "aoe.cmd": "240", "frame.len": "80" },
    }),
    ...exchange("config read", (f, t) => buildConfigRequest(f, env({ tag: t }), 0), {
      target: makeTarget({ state: new DeviceState(null, { config: text("hello") }) }),
      request: { "aoe.cmd": "1" },
      reply: { "aoe.cmd": "1", "aoe.flags_error": "0", "frame.len": "60" },
      check: (raw) => {
        const c = parseConfigResponse(raw);
        assertEquals([c.bufferCount, c.firmware, c.sectorCount, c.aoeVersion, c.ccmd], [
          64,
          0x0200,
          17,
          1,
          0,
        ]);
        assertEquals(c.config, text("hello"));
      },
    }),
    ...exchange(
      "config set over another string",
      (f, t) => buildConfigRequest(f, env({ tag: t }), 3, text("other")),
      {
        target: makeTarget({ state: new DeviceState(null, { config: text("hello") }) }),
        reply: { "aoe.cmd": "1", "aoe.flags_error": "1", "aoe.error": "4" },
      },
    ),
    ...exchange(
      "mask edit",
      (f, t) => buildMaskRequest(f, env({ tag: t }), 1, [{ dcmd: 1, mac: 0x001b210aaa22 }]),
      {
        request: { "aoe.cmd": "2" },
        reply: { "aoe.cmd": "2", "aoe.flags_error": "0" },
        check: (raw) => {
          const m = parseMaskResponse(raw);
          assertEquals([m.mcmd, m.merror, m.dirCount], [1, 0, 1]);
          assertEquals(m.directives, [{ dcmd: 0, mac: 0x001b210aaa22 }]);
        },
      },
    ),
    ...exchange(
      "mask bad directive",
      (f, t) => buildMaskRequest(f, env({ tag: t }), 1, [{ dcmd: 9, mac: 1 }]),
      {
        reply: { "aoe.cmd": "2", "aoe.flags_error": "0" },
        check: (raw) => assertEquals([raw[15], raw[26], raw[27]], [0, 2, 0]),
      },
    ),
    ...exchange(
      "reserve force set",
      (f, t) => buildReserveRequest(f, env({ tag: t }), 2, [0x001b210aaa22, 5]),
      {
        request: { "aoe.cmd": "3" },
        reply: { "aoe.cmd": "3", "aoe.flags_error": "0" },
        check: (raw) => {
          const r = parseReserveResponse(raw);
          assertEquals([r.rcmd, r.macs], [2, [5, 0x001b210aaa22]]);
        },
      },
    ),
    ...exchange("reserve bad RCmd", (f, t) => buildReserveRequest(f, env({ tag: t }), 7), {
      reply: { "aoe.cmd": "3", "aoe.flags_error": "1", "aoe.error": "2" },
    }),
  ];
  const adv = new Uint8Array(2000);
  const target = makeTarget({ state: new DeviceState(null, { config: text("adv") }) });
  const n = buildAdvertisement(target, port, BROADCAST_MAC, adv);
  list.push({
    name: "advertisement",
    frame: adv.slice(0, n),
    expect: {
      "eth.dst": "ff:ff:ff:ff:ff:ff",
      "aoe.response": "1",
      "aoe.cmd": "1",
      "aoe.tag": "0x00000000",
      "aoe.major": "0x0007",
      "aoe.minor": "0x03",
      "frame.len": "60",
    },
    check: (raw) => assertEquals(parseConfigResponse(raw).config, text("adv")),
  });
  return list;
}

/** Every value of `key` anywhere in a tshark JSON tree (fields can repeat and nest). */
function collect(node: unknown, out: Map<string, string[]>): void {
  if (node === null || typeof node !== "object") return;
  for (const [k, v] of Object.entries(node as Record<string, unknown>)) {
    if (typeof v === "string") out.set(k, [...(out.get(k) ?? []), v]);
    else if (Array.isArray(v) && typeof v[0] === "string") {
      out.set(k, [...(out.get(k) ?? []), v[0] as string]);
    }
    collect(v, out);
  }
}

Deno.test({
  name: "tshark decodes every frame we build as well-formed AoE with the fields we meant",
  async fn() {
    const frames = goldens();
    const dir = await Deno.makeTempDir({ prefix: "aoe-golden-" });
    try {
      const file = `${dir}/frames.pcap`;
      await writePcap(file, frames.map((g) => g.frame));
      const cmd = new Deno.Command("tshark", {
        args: ["-r", file, "-T", "json", "-x", "-n"],
        stdout: "piped",
        stderr: "piped",
        env: { HOME: dir },
      });
      const { code, stdout, stderr } = await cmd.output();
      assertEquals(code, 0, new TextDecoder().decode(stderr));
      const packets = JSON.parse(new TextDecoder().decode(stdout)) as {
        _source: { layers: Record<string, unknown> };
      }[];
      assertEquals(packets.length, frames.length);
      packets.forEach((p, i) => {
        const g = frames[i];
        const layers = p._source.layers;
        const fields = new Map<string, string[]>();
        collect(layers, fields);
        const keys = [...fields.keys()];
        assert.ok(!("_ws.malformed" in layers), `${g.name}: malformed`);
        assert.ok(
          !keys.some((k) => k.startsWith("_ws.malformed") || k.startsWith("_ws.expert")),
          `${g.name}: expert info ${keys.filter((k) => k.startsWith("_ws")).join(", ")}`,
        );
        assertEquals(fields.get("frame.protocols")?.[0], "eth:ethertype:aoe", g.name);
        for (const [k, v] of Object.entries(g.expect)) {
          assertEquals(fields.get(k)?.[0], v, `${g.name}: ${k}`);
        }
        const rawHex = fields.get("frame_raw")?.[0] ?? "";
        const raw = Uint8Array.from(rawHex.match(/../g) ?? [], (h) => parseInt(h, 16));
        assertEquals(raw, g.frame, `${g.name}: bytes read back`);
        g.check?.(raw);
        if (g.name.endsWith("reply") && fields.get("aoe.cmd")?.[0] === "0") {
          // tshark pairs ATA replies with their request by tag (only ATA: it keeps no
          // conversation state for the other commands).
          assertEquals(fields.get("aoe.response_to")?.[0], String(i), `${g.name}: response_to`);
        }
      });
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
