/**
 * The real daemon against real peers: aoetools' `aoeping` and `aoecfg` (Coraid's own
 * initiator-side tools) on the host end of the veth, and Wireshark's AoE dissector (`tshark`)
 * reading a capture of a mix of traffic. Wireshark decodes the common and ATA headers only.
 */

import { assert, assertEquals } from "../helpers/assert.ts";
import { type Output, run, show, stopProcess } from "../../lab/command.ts";
import { AoeError } from "../../src/initiator/mod.ts";
import { VERSION } from "../../src/version.ts";
import { formatMac } from "../../src/mac.ts";
import { putHeader } from "../../src/protocol/header.ts";
import {
  AOE_CFG_FORCE_SET,
  AOE_CFG_READ,
  AOE_CFG_SET,
  AOE_CFG_TEST,
  AOE_CFG_TEST_PREFIX,
  AOE_DCMD_ADD,
  AOE_DCMD_DELETE,
  ATA_CMD_ID_ATA,
  ATA_CMD_READ_EXT,
} from "../../src/protocol/constants.ts";
import { pattern, withTarget } from "../../lab/target.ts";

const OPTS = { sanitizeResources: false, sanitizeOps: false };
const OTHER = 0x02_00_00_00_00_77;

/** Runs a peer tool to completion, bounded; the test judges its exit status. */
function tool(args: string[], timeoutMs = 10_000): Promise<Output> {
  return run(args, { check: false, timeoutMs });
}

Deno.test({
  name:
    "aoeping finds the target and -I prints our IDENTIFY fields: model, serial (shelf.slot:hostname, or the serial key), firmware",
  ...OPTS,
  fn: () =>
    withTarget({
      devices: [{ name: "disk1", sizeMiB: 1, shelf: 4, slot: 2 }, {
        name: "volume-x",
        sizeMiB: 1,
        shelf: 4,
        slot: 3,
        extra: 'serial = "VOL-X 0001"',
      }],
    }, async (t) => {
      const ini = t.initiator();
      const disk = ini.find(4, 2, { waitMs: 3000 });
      const targetMac = formatMac(disk.mac).replaceAll(":", "");

      const plain = await tool(["aoeping", "-s", "5", "4", "2", t.hostIf]);
      assertEquals(plain.code, 0, show(plain));

      const verbose = await tool(["aoeping", "-v", "-s", "5", "4", "2", t.hostIf]);
      assertEquals(verbose.code, 0, show(verbose));
      assert(verbose.stdout.includes(`found e4.2 with mac ${targetMac}`), show(verbose));
      assert(verbose.stdout.includes("config query response:"), show(verbose));

      const hostSerial = `4.2:${Deno.hostname()}`.slice(0, 20);
      for (const [slot, serial] of [[2, hostSerial], [3, "VOL-X 0001"]] as const) {
        const id = await tool(["aoeping", "-I", "-s", "5", "4", String(slot), t.hostIf]);
        assertEquals(id.code, 0, show(id));
        const fields = new Map<string, string>();
        for (const line of id.stdout.split("\n")) {
          const m = /^(\w+): (.*)$/.exec(line);
          if (m) fields.set(m[1], m[2].trimEnd());
        }
        assertEquals(fields.get("model"), "GGs AoE target", show(id));
        assertEquals(fields.get("serial_number"), serial, show(id));
        assertEquals(fields.get("firmware_rev"), VERSION, show(id));
        assertEquals(VERSION, "2.0.0");
      }

      // The raw dump (-i) is the 512-byte page, byte for byte what our initiator reads.
      const raw = await tool(["aoeping", "-i", "-s", "5", "4", "2", t.hostIf]);
      assertEquals(raw.code, 0, show(raw));
      const bytes = (raw.stdout.match(/\b[0-9a-f]{2}\b/g) ?? []).map((b) => parseInt(b, 16));
      assertEquals(bytes, [...ini.identify(disk).raw], show(raw));

      // Nobody at 4.9: aoeping gives up after its timeout with a failure status.
      const none = await tool(["aoeping", "-s", "1", "4", "9", t.hostIf]);
      assert(none.code !== 0, show(none));
    }),
});

Deno.test({
  name:
    "aoecfg sets, reads, tests and prefix-tests the config string, and set with a different string fails with error 4",
  ...OPTS,
  fn: () =>
    withTarget({ devices: [{ name: "disk1", sizeMiB: 1 }] }, async (t) => {
      const IF = t.hostIf;
      const STRING = "cluster=alpha node=7";
      const fset = await tool(["aoecfg", "-t", "2", "-c", "fset", "-s", STRING, "0", "1", IF]);
      assertEquals([fset.code, fset.stdout.trim()], [0, STRING], show(fset));
      const read = await tool(["aoecfg", "-t", "2", "0", "1", IF]);
      assertEquals(read.stdout.trim(), STRING, show(read));

      const cfg = await t.ctl("show-config", "disk1");
      assertEquals(cfg.code, 0, cfg.stderr);
      assert(cfg.stdout.startsWith("Device disk1:\n63 6c 75 73 74 65 72 3d"), cfg.stdout);
      assert(cfg.stdout.includes("cluster=alpha no"), cfg.stdout);
      assert(cfg.stdout.includes("de=7"), cfg.stdout);

      const test = (cmd: string, s: string) =>
        tool(["aoecfg", "-t", "1", "-c", cmd, "-s", s, "0", "1", IF]);
      // Matches answer with the stored string; mismatches are not answered at all. One at a
      // time: aoecfg takes any config reply of e0.1 on the interface, so a concurrent matching
      // query's answer would reach a mismatching one too.
      const exact = await test("test", STRING);
      const exactNo = await test("test", "cluster=alpha");
      const prefix = await test("prefix", "cluster=al");
      const prefixFull = await test("prefix", STRING);
      const prefixNo = await test("prefix", "cluster=beta");
      const prefixLonger = await test("prefix", STRING + "x");
      assertEquals(exact.stdout.trim(), STRING, show(exact));
      assertEquals(prefix.stdout.trim(), STRING, show(prefix));
      assertEquals(prefixFull.stdout.trim(), STRING, show(prefixFull));
      for (const o of [exactNo, prefixNo, prefixLonger]) assertEquals(o.stdout.trim(), "", show(o));

      // set with a different string: AoE error 4, which aoecfg names *badcfg*; nothing changes.
      const set = await tool(["aoecfg", "-t", "2", "-c", "set", "-s", "other", "0", "1", IF]);
      assertEquals(set.stdout.trim(), "*badcfg*", show(set));
      const ini = t.initiator();
      const disk = ini.find(0, 1, { waitMs: 3000 });
      assertEquals(disk.config, STRING);
      let code = 0;
      try {
        ini.queryConfig(disk, AOE_CFG_SET, "other");
      } catch (e) {
        assert(e instanceof AoeError, String(e));
        code = e.code;
      }
      assertEquals(code, 4, "Query Config set over a different string");
      // The mismatches above were unanswered by the daemon, not filtered by aoecfg.
      assertEquals(ini.queryConfig(disk, AOE_CFG_TEST, "cluster=alpha"), null);
      assertEquals(ini.queryConfig(disk, AOE_CFG_TEST_PREFIX, "cluster=beta"), null);
      assertEquals(ini.queryConfig(disk, AOE_CFG_TEST_PREFIX, "cluster=")?.config, STRING);
      // set with the same string is fine, and fset replaces it.
      const same = await tool(["aoecfg", "-t", "2", "-c", "set", "-s", STRING, "0", "1", IF]);
      assertEquals(same.stdout.trim(), STRING, show(same));
      const fset2 = await tool(["aoecfg", "-t", "2", "-c", "fset", "-s", "v2", "0", "1", IF]);
      assertEquals(fset2.stdout.trim(), "v2", show(fset2));
      assertEquals(ini.queryConfig(disk, AOE_CFG_READ)?.config, "v2");
      const cfg2 = await t.ctl("show-config", "disk1");
      assertEquals(
        cfg2.stdout,
        "Device disk1:\n76 32                                            v2\n\n",
      );
    }),
});

// ---- tshark ---------------------------------------------------------------------------------

/** A running `tshark -w`: its process, and how many requests and replies it has written. */
interface Capture {
  child: Deno.ChildProcess;
  /** AoE requests and responses captured so far (from tshark's `-P` summary lines). */
  exchangeFrames(): number;
}

const isExchange = (line: string) => / (Request|Response)\b/.test(line);

/**
 * Starts `tshark -w` on an interface and returns once it demonstrably captures: `sentinel()`
 * sends a frame (a version 2 one, which the daemon ignores) until tshark's `-P` summary shows one.
 */
async function startCapture(
  ifname: string,
  file: string,
  sentinel: () => void,
): Promise<Capture> {
  const child = new Deno.Command("tshark", {
    args: ["-i", ifname, "-w", file, "-f", "ether proto 0x88a2", "-l", "-P"],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const drain = async (stream: ReadableStream<Uint8Array>, sink?: (text: string) => void) => {
    try {
      for await (const chunk of stream.pipeThrough(new TextDecoderStream())) sink?.(chunk);
    } catch { /* closed */ }
  };
  let out = "";
  let err = "";
  drain(child.stdout, (c) => (out += c));
  drain(child.stderr, (c) => (err += c));
  // tshark loads every dissector before it captures: seconds, many more on a busy machine.
  const deadline = Date.now() + 90_000;
  while (out.trim() === "") {
    if (Date.now() > deadline) {
      await stopCapture(child);
      throw new Error(`tshark captured nothing: ${err}`);
    }
    if (err.includes("Capturing on")) sentinel();
    await new Promise((r) => setTimeout(r, 100));
  }
  // A summary line names an AoE request or response; the sentinels' lines name neither.
  return { child, exchangeFrames: () => out.split("\n").filter(isExchange).length };
}

/** Stops tshark by its PID with SIGINT, on which it finishes the capture (SIGKILL after 10 s). */
async function stopCapture(child: Deno.ChildProcess): Promise<void> {
  await stopProcess(child, "SIGINT", 10_000);
}

interface Packet {
  number: number;
  len: number;
  src: string;
  response: boolean;
  errorFlag: boolean;
  error: number;
  cmd: number;
  tag: number;
  ataCmd?: number;
  ataStatus?: number;
  responseIn?: number;
  responseTo?: number;
  malformed: boolean;
  expertSeverities: number[];
  protocols: string;
}

const FIELDS = [
  "frame.number",
  "frame.len",
  "frame.protocols",
  "eth.src",
  "aoe.response",
  "aoe.flags_error",
  "aoe.error",
  "aoe.cmd",
  "aoe.tag",
  "aoe.ata.cmd",
  "aoe.ata.status",
  "aoe.response_in",
  "aoe.response_to",
  "_ws.malformed",
  "_ws.expert.severity",
];

/** Decodes the capture with tshark and returns one record per frame. */
async function decode(file: string): Promise<Packet[]> {
  const out = await tool(
    ["tshark", "-r", file, "-2", "-T", "json", ...FIELDS.flatMap((f) => ["-e", f])],
    30000,
  );
  assertEquals(out.code, 0, show(out));
  const frames = JSON.parse(out.stdout) as { _source: { layers: Record<string, string[]> } }[];
  const num = (v: string[] | undefined) => (v === undefined ? undefined : Number(v[0]));
  const bool = (v: string[] | undefined) => v !== undefined && (v[0] === "1" || v[0] === "True");
  return frames.map(({ _source: { layers: l } }) => ({
    number: num(l["frame.number"])!,
    len: num(l["frame.len"])!,
    protocols: l["frame.protocols"]?.[0] ?? "",
    src: l["eth.src"]?.[0] ?? "",
    response: bool(l["aoe.response"]),
    errorFlag: bool(l["aoe.flags_error"]),
    error: num(l["aoe.error"]) ?? -1,
    cmd: num(l["aoe.cmd"]) ?? -1,
    tag: num(l["aoe.tag"]) ?? -1,
    ataCmd: num(l["aoe.ata.cmd"]),
    ataStatus: num(l["aoe.ata.status"]),
    responseIn: num(l["aoe.response_in"]),
    responseTo: num(l["aoe.response_to"]),
    malformed: l["_ws.malformed"] !== undefined,
    expertSeverities: (l["_ws.expert.severity"] ?? []).map(Number),
  }));
}

/** Tag of the version 2 frames that show the capture is running (the daemon ignores them). */
const SENTINEL_TAG = 0x5e471e1;

/**
 * Requests of the traffic mix, each answered once: discovery, identify, power, flush, 8 + 8
 * data, IDNF, 2 AoE errors, 2 config, 3 mask, 3 reserve, aoeping (config query + identify),
 * aoecfg read.
 */
const EXCHANGES = 34;

/** Wireshark's PI_ERROR expert severity. */
const PI_ERROR = 0x00800000;

Deno.test({
  name:
    "tshark decodes every frame of a traffic mix as well-formed AoE: replies >= 60 bytes, one reply per request",
  ...OPTS,
  fn: () =>
    withTarget({ mtu: 9000, devices: [{ name: "disk1", sizeMiB: 4 }] }, async (t) => {
      // A retransmission would make the counts below differ: wait long for every answer, so that
      // a busy machine does not cause one.
      const ini = t.initiator({ window: 8, adaptive: false, timeoutMs: 10_000 });
      const disk = ini.find(0, 1, { waitMs: 3000 });
      assertEquals(disk.maxSectors, 17);
      const file = `${t.dir}/capture.pcapng`;
      const sentinel = new Uint8Array(60);
      putHeader(sentinel, {
        dst: 0xffffffffffff,
        src: ini.mac,
        shelf: 0xffff,
        slot: 0xff,
        tag: SENTINEL_TAG,
        version: 2,
        flags: 0,
        error: 0,
        command: 1,
      });
      const capture = await startCapture(t.hostIf, file, () => ini.sendRaw(sentinel));
      try {
        // Discovery, IDENTIFY, CHECK POWER, FLUSH.
        assertEquals(ini.discover({ waitMs: 10_000, first: true }).length, 1);
        assertEquals(ini.identify(disk).serial, `0.1:${Deno.hostname()}`.slice(0, 20));
        ini.checkPower(disk);
        ini.flush(disk, { ext: true });
        // Reads and writes of the MTU's max sectors (17 at MTU 9000): 8 requests each way.
        const data = pattern(17 * 512 * 8, 3);
        ini.writeRange(disk, 100, data);
        assertEquals(ini.readRange(disk, 100, 17 * 8).length, data.length);
        // An ATA error (IDNF) and two AoE errors (IDENTIFY count 2; unknown command 4).
        const idnf = ini.ata(disk, { cmd: ATA_CMD_READ_EXT, lba: 8192, count: 1 });
        assertEquals(idnf.status, 0x41);
        try {
          ini.ata(disk, { cmd: ATA_CMD_ID_ATA, count: 2 });
          throw new Error("IDENTIFY count 2 was accepted");
        } catch (e) {
          assert(e instanceof AoeError && e.code === 2, String(e));
        }
        const unknown = new Uint8Array(60);
        putHeader(unknown, {
          dst: disk.mac,
          src: ini.mac,
          shelf: 0,
          slot: 1,
          tag: 0x7777,
          version: 1,
          flags: 0,
          error: 0,
          command: 4,
        });
        ini.sendRaw(unknown);
        assert(ini.receiveRaw(10_000) !== null, "no answer to command 4");
        // Config, mask, reserve.
        ini.queryConfig(disk, AOE_CFG_FORCE_SET, "captured");
        assertEquals(ini.queryConfig(disk, AOE_CFG_READ)?.config, "captured");
        ini.macMaskEdit(disk, [{ dcmd: AOE_DCMD_ADD, mac: ini.mac }, {
          dcmd: AOE_DCMD_ADD,
          mac: OTHER,
        }]);
        assertEquals(ini.macMaskRead(disk).directives.length, 2);
        ini.macMaskEdit(disk, [{ dcmd: AOE_DCMD_DELETE, mac: OTHER }, {
          dcmd: AOE_DCMD_DELETE,
          mac: ini.mac,
        }]);
        ini.reserveForceSet(disk, [ini.mac]);
        assertEquals(ini.reserveRead(disk), [ini.mac]);
        ini.reserveForceSet(disk, []);
        // And the real peers.
        assertEquals((await tool(["aoeping", "-I", "-s", "5", "0", "1", t.hostIf])).code, 0);
        const cfg = await tool(["aoecfg", "-t", "2", "0", "1", t.hostIf]);
        assertEquals(cfg.stdout.trim(), "captured");
        // Every frame is on the wire; stop once tshark has written every request and reply.
        const deadline = Date.now() + 60_000;
        while (capture.exchangeFrames() < 2 * EXCHANGES && Date.now() < deadline) {
          await new Promise((r) => setTimeout(r, 50));
        }
        assertEquals(capture.exchangeFrames(), 2 * EXCHANGES, "requests and replies captured");
      } finally {
        await stopCapture(capture.child);
      }
      assertEquals(ini.retransmits, 0, "retransmissions would make the counts differ");

      // Leading version 2 sentinels: Wireshark decodes only version 1 past the version nibble.
      const all = await decode(file);
      const first = all.findIndex((p) => p.tag !== -1);
      assert(first > 0, "no sentinel before the traffic");
      assert(all.slice(0, first).every((p) => p.src === formatMac(ini.mac) && !p.malformed));
      const packets = all.slice(first);
      const targetMac = formatMac(disk.mac);
      const requests = packets.filter((p) => !p.response);
      const replies = packets.filter((p) => p.response);
      assertEquals([requests.length, replies.length], [EXCHANGES, EXCHANGES]);
      for (const p of packets) {
        const what = `frame ${p.number} (${p.protocols})`;
        assert(p.protocols.endsWith("eth:ethertype:aoe"), `${what}: not decoded as AoE`);
        assert(!p.malformed, `${what}: malformed`);
        assert(
          p.expertSeverities.every((s) => s < PI_ERROR),
          `${what}: expert error ${p.expertSeverities}`,
        );
        assert(p.cmd >= 0 && p.tag >= 0, `${what}: no AoE command/tag field`);
        if (p.response) {
          assertEquals(p.src, targetMac, `${what}: reply source`);
          assert(p.len >= 60, `${what}: reply of ${p.len} bytes`);
        }
      }
      // One reply per request, paired by (command, tag).
      const key = (p: Packet) => `${p.cmd}/${p.tag}`;
      const replyKeys = replies.map(key).sort();
      assertEquals(requests.map(key).sort(), replyKeys);
      assertEquals(new Set(replyKeys).size, replyKeys.length, "duplicate replies");
      // The largest frames carry 17 sectors: 36 + 8704 bytes, within the 9000-byte MTU + 14.
      const biggest = Math.max(...packets.map((p) => p.len));
      assertEquals(biggest, 36 + 17 * 512);
      // Errors as Wireshark sees them.
      const errors = replies.filter((p) => p.errorFlag).map((p) => `${p.cmd}:${p.error}`).sort();
      assertEquals(errors, ["0:2", "4:1"]);
      assertEquals(replies.filter((p) => p.ataStatus === 0x41).length, 1, "one ATA error");
      // Wireshark pairs ATA requests and replies by tag.
      for (const p of requests.filter((p) => p.cmd === 0 && p.ataCmd !== undefined)) {
        assert(p.responseIn !== undefined, `ATA request in frame ${p.number} has no response_in`);
      }
    }),
});
