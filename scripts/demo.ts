/**
 * `deno task demo`: ggaoed end to end on a throw-away network.
 *
 * Creates a network namespace joined to this one by a veth pair, a 64 MiB sparse image and a
 * configuration in a temporary directory, starts the daemon inside the namespace, and then, with
 * the project's own initiator on the other end of the veth: discovers the target, identifies it,
 * writes a pattern, reads it back and checks every byte, printing throughput as it goes.
 * Everything is removed at the end, also when interrupted with Ctrl-C.
 *
 * Needs root (network namespaces, packet sockets).
 *
 * @module
 */

import { Initiator } from "../src/initiator/initiator.ts";
import { formatMac } from "../src/mac.ts";
import { CTL_FLAGS, DAEMON_FLAGS } from "../src/permissions.ts";

const DENO = Deno.execPath();
const ROOT = new URL("..", import.meta.url).pathname;
const id = `${Deno.pid % 100000}`;
const ns = `ggaoed-demo-${id}`;
const hostEnd = `gd${id}a`;
const targetEnd = `gd${id}b`;
const IMAGE_MIB = 64;

const cleanups: (() => void | Promise<void>)[] = [];
let cleaning: Promise<void> | null = null;

/** Removes everything created so far, newest first; every caller waits for the same run. */
function cleanup(): Promise<void> {
  cleaning ??= (async () => {
    while (cleanups.length) {
      try {
        await cleanups.pop()!();
      } catch { /* keep going: remove as much as possible */ }
    }
  })();
  return cleaning;
}

function run(cmd: string, ...args: string[]): void {
  const out = new Deno.Command(cmd, { args, stdout: "null", stderr: "piped" }).outputSync();
  if (!out.success) {
    throw new Error(`${cmd} ${args.join(" ")}: ${new TextDecoder().decode(out.stderr).trim()}`);
  }
}

function step(text: string): void {
  console.log(`\n\x1b[1m==> ${text}\x1b[0m`);
}

function rate(bytes: number, seconds: number): string {
  return `${(bytes / seconds / 1e6).toFixed(1)} MB/s`;
}

async function main(): Promise<void> {
  if (Deno.uid() !== 0) {
    console.error(
      "The demo needs root (network namespaces and packet sockets): sudo npx deno task demo",
    );
    Deno.exit(1);
  }
  const onSignal = () => {
    console.log("\ninterrupted: cleaning up");
    cleanup().then(() => Deno.exit(130));
  };
  Deno.addSignalListener("SIGINT", onSignal);
  Deno.addSignalListener("SIGTERM", onSignal);

  step(`network: namespace ${ns}, veth ${hostEnd} (here) <-> ${targetEnd} (in ${ns}), MTU 9000`);
  run("ip", "netns", "add", ns);
  cleanups.push(() => run("ip", "netns", "del", ns));
  run(
    "ip",
    "link",
    "add",
    hostEnd,
    "mtu",
    "9000",
    "type",
    "veth",
    "peer",
    "name",
    targetEnd,
    "mtu",
    "9000",
  );
  cleanups.push(() => run("ip", "link", "del", hostEnd));
  run("ip", "link", "set", targetEnd, "netns", ns);
  run("ip", "link", "set", hostEnd, "up");
  run("ip", "-n", ns, "link", "set", targetEnd, "up");

  const dir = Deno.makeTempDirSync({ prefix: "ggaoed-demo-" });
  cleanups.push(() => Deno.removeSync(dir, { recursive: true }));
  const image = `${dir}/disk.img`;
  step(`storage: ${IMAGE_MIB} MiB sparse image ${image}`);
  const f = Deno.openSync(image, { create: true, write: true });
  f.truncateSync(IMAGE_MIB * 1024 * 1024);
  f.close();
  Deno.mkdirSync(`${dir}/state`);
  const conf = `${dir}/ggaoed.conf`;
  Deno.writeTextFileSync(
    conf,
    `# written by the ggaoed demo
[defaults]
interfaces = ["${targetEnd}"]
pid-file = "${dir}/ggaoed.pid"
control-socket = "${dir}/ggaoed.sock"
state-directory = "${dir}/state"

[devices.demo]
path = "${image}"
shelf = 0
slot = 1
direct-io = false
`,
  );
  console.log(Deno.readTextFileSync(conf).replace(/^/gm, "    "));

  step("daemon: ggaoed in the namespace");
  const daemon = new Deno.Command("ip", {
    args: [
      "netns",
      "exec",
      ns,
      DENO,
      "run",
      ...DAEMON_FLAGS,
      `${ROOT}ggaoed.ts`,
      "-c",
      conf,
    ],
    stdout: "inherit",
    stderr: "inherit",
  }).spawn();
  cleanups.push(async () => {
    try {
      daemon.kill("SIGTERM");
    } catch { /* already gone */ }
    await daemon.status;
  });

  const ini = Initiator.open(hostEnd, { timeoutMs: 200 });
  cleanups.push(() => ini.close());

  step("discovery: Query Config broadcast");
  let targets: ReturnType<Initiator["discover"]> = [];
  for (let i = 0; i < 50 && targets.length === 0; i++) targets = ini.discover({ waitMs: 200 });
  if (targets.length === 0) throw new Error("no AoE target answered within 10 s");
  for (const t of targets) {
    console.log(
      `    e${t.shelf}.${t.slot} at ${formatMac(t.mac)}: buffer count ${t.bufferCount}, ` +
        `${t.maxSectors} sectors per request, firmware 0x${t.firmware.toString(16)}`,
    );
  }
  const t = targets[0];

  step("IDENTIFY DEVICE");
  const idf = ini.identify(t);
  console.log(`    model '${idf.model}', serial '${idf.serial}', firmware '${idf.firmware}'`);
  console.log(
    `    ${idf.sectors} sectors (${
      (idf.sectors * 512 / 1048576).toFixed(0)
    } MiB), LBA48 ${idf.lba48}`,
  );

  const size = IMAGE_MIB * 1024 * 1024;
  const data = new Uint8Array(size);
  for (let i = 0; i < size; i += 4) new DataView(data.buffer).setUint32(i, (i * 2654435761) >>> 0);

  step(`write: ${IMAGE_MIB} MiB pattern, window 32`);
  let t0 = performance.now();
  ini.writeRange(t, 0, data);
  ini.flush(t);
  let secs = (performance.now() - t0) / 1000;
  console.log(`    ${rate(size, secs)} (${ini.retransmits} retransmits)`);

  step(`read back: ${IMAGE_MIB} MiB, window 32, every byte compared`);
  t0 = performance.now();
  const back = ini.readRange(t, 0, size / 512);
  secs = (performance.now() - t0) / 1000;
  let bad = -1;
  for (let i = 0; i < size; i++) {
    if (back[i] !== data[i]) {
      bad = i;
      break;
    }
  }
  console.log(
    `    ${rate(size, secs)}; ${bad < 0 ? "all bytes match" : `MISMATCH at byte ${bad}`}`,
  );
  const onDisk = Deno.readFileSync(image);
  const diskOk = onDisk.length === size && onDisk.every((b, i) => b === data[i]);
  console.log(`    the image file on disk ${diskOk ? "matches" : "DOES NOT match"} the pattern`);

  step("ggaoectl stats");
  const ctl = new Deno.Command(DENO, {
    args: ["run", ...CTL_FLAGS, `${ROOT}ggaoectl.ts`, "-s", `${dir}/ggaoed.sock`, "stats"],
    stdout: "inherit",
    stderr: "inherit",
  }).outputSync();
  if (!ctl.success) console.log("    (ggaoectl failed)");

  step("shutdown and cleanup");
  await cleanup();
  console.log(bad < 0 && diskOk ? "\ndemo finished: all data verified" : "\ndemo FAILED");
  Deno.exit(bad < 0 && diskOk ? 0 : 1);
}

main().catch(async (e) => {
  console.error(`demo failed: ${e instanceof Error ? e.message : e}`);
  await cleanup();
  Deno.exit(1);
});
