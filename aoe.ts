/**
 * aoe: a small AoE initiator on the command line, for testing targets (ggaoed, vblade, ...).
 *
 * Run `deno run --allow-ffi --allow-read aoe.ts --help` for the commands.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { formatMac } from "./src/mac.ts";
import { AOE_CFG_FORCE_SET, AOE_CFG_READ, AOE_CFG_SET } from "./src/protocol/constants.ts";
import {
  Initiator,
  type InitiatorOptions,
  type TargetInfo,
  type WorkloadKind,
} from "./src/initiator/mod.ts";

const USAGE = `aoe — ATA over Ethernet initiator

Usage:
  aoe.ts discover IFACE
  aoe.ts identify IFACE SHELF SLOT
  aoe.ts read     IFACE SHELF SLOT LBA COUNT [-o FILE]
  aoe.ts write    IFACE SHELF SLOT LBA FILE
  aoe.ts config   IFACE SHELF SLOT [--set STRING [--force]]
  aoe.ts bench    IFACE SHELF SLOT [--kind KIND] [--window N] [--seconds S] [--io-bytes N]
                                   [--read-percent P] [--json]

Commands:
  discover   broadcast a Query Config read and list every target that answers
  identify   IDENTIFY DEVICE: model, serial, firmware, capacity
  read       read COUNT sectors at LBA; to FILE with -o (needs --allow-write), else a hex dump
  write      write FILE (a multiple of 512 bytes) at LBA
  config     show the config string, or set it (--force: even if another one is set)
  bench      run a workload and print MB/s, IOPS, latency p50/p99 and retransmits;
             KIND is seq-read (default), seq-write (overwrites the device!), rand-read, mixed

Options:
  --wait MS        how long to wait for Query Config answers (default 1000)
  --timeout MS     retransmit timeout ceiling (default 200)
  --retries N      retransmissions before giving up (default 8)
  --window N       outstanding requests for read/write/bench (default 32)
  --no-rings       use recvfrom/sendto instead of TPACKET rings
  -h, --help       this text

Needs root (or CAP_NET_RAW). Examples:
  deno run --allow-ffi --allow-read aoe.ts discover veth0
  deno run --allow-ffi --allow-read aoe.ts identify veth0 0 1
  deno run --allow-ffi --allow-read --allow-write aoe.ts read veth0 0 1 0 16 -o first-8k.bin
  deno run --allow-ffi --allow-read aoe.ts write veth0 0 1 2048 image.bin
  deno run --allow-ffi --allow-read aoe.ts config veth0 0 1 --set "owner=lab1"
  deno run --allow-ffi --allow-read aoe.ts bench veth0 0 1 --kind rand-read --io-bytes 4096
`;

/** A mistake on the command line: print it with a hint, exit 2. */
class UsageError extends Error {}

const KINDS: WorkloadKind[] = ["seq-read", "seq-write", "rand-read", "mixed"];

function integer(text: string | undefined, what: string, min = 0, max = Number.MAX_SAFE_INTEGER) {
  if (text === undefined) throw new UsageError(`missing ${what}`);
  const n = Number(text);
  if (!/^(0x[0-9a-f]+|\d+)$/i.test(text.trim()) || !Number.isSafeInteger(n) || n < min || n > max) {
    throw new UsageError(`${what} must be an integer in ${min}..${max}, got "${text}"`);
  }
  return n;
}

function describeTarget(t: TargetInfo): string {
  const config = t.config === "" ? "" : `  config "${t.config}"`;
  return `e${t.shelf}.${t.slot}  ${formatMac(t.mac)}  buffers ${t.bufferCount}  firmware 0x${
    t.firmware.toString(16).padStart(4, "0")
  }  max ${t.maxSectors} sectors/request${config}`;
}

function hexDump(bytes: Uint8Array, base: number): string {
  const lines: string[] = [];
  for (let i = 0; i < bytes.length; i += 16) {
    const row = bytes.subarray(i, i + 16);
    const hex = Array.from(row, (b) => b.toString(16).padStart(2, "0")).join(" ");
    const text = Array.from(row, (b) => (b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : "."))
      .join("");
    lines.push(`${(base + i).toString(16).padStart(8, "0")}  ${hex.padEnd(47)}  ${text}`);
  }
  return lines.join("\n");
}

function main(argv: string[]): number {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      help: { type: "boolean", short: "h" },
      output: { type: "string", short: "o" },
      set: { type: "string" },
      force: { type: "boolean" },
      kind: { type: "string", default: "seq-read" },
      window: { type: "string", default: "32" },
      seconds: { type: "string", default: "5" },
      "io-bytes": { type: "string" },
      "read-percent": { type: "string", default: "70" },
      json: { type: "boolean" },
      wait: { type: "string", default: "1000" },
      timeout: { type: "string", default: "200" },
      retries: { type: "string", default: "8" },
      "no-rings": { type: "boolean" },
    },
  });
  if (values.help || positionals.length === 0) {
    console.log(USAGE);
    return values.help ? 0 : 2;
  }
  const [command, ifname, ...rest] = positionals;
  if (!["discover", "identify", "read", "write", "config", "bench"].includes(command)) {
    throw new UsageError(`unknown command "${command}"`);
  }
  if (ifname === undefined) throw new UsageError(`${command}: missing IFACE`);
  const waitMs = integer(values.wait, "--wait", 1, 600_000);
  const options: InitiatorOptions = {
    timeoutMs: integer(values.timeout, "--timeout", 1, 600_000),
    retries: integer(values.retries, "--retries", 0, 255),
    window: integer(values.window, "--window", 1, 1023),
    ringBytes: values["no-rings"] ? 0 : undefined,
  };
  // Check the arguments before opening the socket, so mistakes are reported without root.
  const address = command === "discover"
    ? null
    : [integer(rest[0], "SHELF", 0, 0xfffe), integer(rest[1], "SLOT", 0, 0xfe)];

  const ini = Initiator.open(ifname, options);
  try {
    if (address === null) {
      const found = ini.discover({ waitMs });
      if (found.length === 0) {
        throw new Error(`no AoE target answered on ${ifname} within ${waitMs} ms`);
      }
      for (const t of found) console.log(describeTarget(t));
      return 0;
    }
    const t = ini.find(address[0], address[1], { waitMs });
    switch (command) {
      case "identify": {
        const id = ini.identify(t);
        console.log(describeTarget(t));
        console.log(`model     ${id.model}`);
        console.log(`serial    ${id.serial}`);
        console.log(`firmware  ${id.firmware}`);
        console.log(
          `capacity  ${id.sectors} sectors (${(id.sectors * 512 / 2 ** 20).toFixed(1)} MiB), ${
            id.lba48 ? "LBA48" : "LBA28"
          }`,
        );
        return 0;
      }
      case "read": {
        const lba = integer(rest[2], "LBA", 0, 2 ** 48 - 1);
        const count = integer(rest[3], "COUNT", 1, 2 ** 24);
        const data = ini.readRange(t, lba, count);
        if (values.output !== undefined) {
          Deno.writeFileSync(values.output, data);
          console.error(`read ${count} sectors at LBA ${lba} into ${values.output}`);
        } else {
          console.log(hexDump(data, lba * 512));
        }
        return 0;
      }
      case "write": {
        const lba = integer(rest[2], "LBA", 0, 2 ** 48 - 1);
        if (rest[3] === undefined) throw new UsageError("write: missing FILE");
        const data = Deno.readFileSync(rest[3]);
        if (data.length === 0 || data.length % 512 !== 0) {
          throw new Error(
            `${
              rest[3]
            } is ${data.length} bytes: AoE writes whole 512-byte sectors; pad it (truncate -s %512)`,
          );
        }
        ini.writeRange(t, lba, data);
        console.error(
          `wrote ${data.length / 512} sectors at LBA ${lba} (${ini.retransmits} retransmits)`,
        );
        return 0;
      }
      case "config": {
        if (values.set === undefined) {
          const reply = ini.queryConfig(t, AOE_CFG_READ);
          console.log(reply === null ? "" : reply.config);
          return 0;
        }
        const ccmd = values.force ? AOE_CFG_FORCE_SET : AOE_CFG_SET;
        const reply = ini.queryConfig(t, ccmd, values.set);
        if (reply === null) throw new Error(`${describeTarget(t)}: no answer to config set`);
        console.log(reply.config);
        return 0;
      }
      case "bench": {
        const kind = values.kind as WorkloadKind;
        if (!KINDS.includes(kind)) {
          throw new UsageError(`--kind must be one of ${KINDS.join(", ")}, got "${kind}"`);
        }
        const seconds = Number(values.seconds);
        if (!(seconds > 0)) throw new UsageError(`--seconds must be > 0, got "${values.seconds}"`);
        const r = ini.runWorkload({
          target: t,
          kind,
          durationMs: seconds * 1000,
          window: options.window,
          ioBytes: values["io-bytes"] === undefined
            ? undefined
            : integer(values["io-bytes"], "--io-bytes", 512),
          readPercent: integer(values["read-percent"], "--read-percent", 0, 100),
        });
        if (values.json) {
          console.log(JSON.stringify(r));
        } else {
          console.log(
            `${kind} e${t.shelf}.${t.slot} on ${ifname}: ${r.mbPerSec.toFixed(1)} MB/s, ${
              Math.round(r.iops)
            } IOPS, latency p50 ${r.latency.p50.toFixed(3)} ms p99 ${
              r.latency.p99.toFixed(3)
            } ms, ${r.retransmits} retransmits, ${r.errors} errors (${r.ios} I/Os in ${
              r.seconds.toFixed(2)
            } s)`,
          );
          if (r.firstError !== null) console.log(`first error: ${r.firstError}`);
        }
        return r.errors === 0 ? 0 : 1;
      }
    }
    return 2;
  } finally {
    ini.close();
  }
}

if (import.meta.main) {
  try {
    Deno.exit(main(Deno.args));
  } catch (e) {
    const code = (e as { code?: unknown }).code;
    if (
      e instanceof UsageError || (typeof code === "string" && code.startsWith("ERR_PARSE_ARGS"))
    ) {
      console.error(`aoe: ${(e as Error).message}\nRun "aoe.ts --help" for usage.`);
      Deno.exit(2);
    }
    console.error(`aoe: ${e instanceof Error ? e.message : e}`);
    Deno.exit(1);
  }
}
