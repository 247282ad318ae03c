/**
 * ggaoectl end to end: the real CLI in a subprocess, talking to a real control server over a
 * Unix socket, with a handler holding real counters and device state.
 */

import assert from "node:assert/strict";
import { startControlServer } from "../../src/control/server.ts";
import { CONTROL_COMMANDS } from "../../src/control/types.ts";
import { DS, IS } from "../../src/stats.ts";
import { VERSION } from "../../src/version.ts";
import { TestHandler } from "./handler.ts";

const GGAOECTL = new URL("../../ggaoectl.ts", import.meta.url).pathname;
const REPO = new URL("../../", import.meta.url).pathname;
const PERMISSIONS = ["--allow-read", "--allow-write", "--allow-env", "--allow-net"];
const decoder = new TextDecoder();
const encoder = new TextEncoder();

function ggaoectlCommand(args: string[], stdout: "piped" | "null" = "piped"): Deno.Command {
  return new Deno.Command(Deno.execPath(), {
    args: ["run", "--quiet", "--no-prompt", ...PERMISSIONS, GGAOECTL, ...args],
    cwd: REPO,
    stdin: "null",
    stdout,
    stderr: "piped",
    env: { NO_COLOR: "1" },
  });
}

async function ggaoectl(...args: string[]): Promise<{ code: number; out: string; err: string }> {
  const r = await ggaoectlCommand(args).output();
  return { code: r.code, out: decoder.decode(r.stdout), err: decoder.decode(r.stderr) };
}

/** A server with devices disk1, disk2, other and interface eth0 on a socket in a temp dir. */
async function withDaemon(
  fn: (ctx: { sock: string; dir: string; handler: TestHandler }) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "ggaoectl-" });
  const sock = `${dir}/ggaoed.sock`;
  const handler = new TestHandler(["disk1", "disk2", "other"], ["eth0"]);
  const server = await startControlServer(sock, handler, () => {});
  try {
    await fn({ sock, dir, handler });
  } finally {
    await server.close();
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("ggaoectl stats prints every counter of each matching device and interface", async () => {
  await withDaemon(async ({ sock, handler }) => {
    const d = handler.device("disk1").stats;
    d[DS.read_cnt] = 1200;
    d[DS.read_bytes] = 4915200;
    d[DS.read_time] = 0.8125;
    d[DS.write_cnt] = 3;
    d[DS.write_bytes] = 1536;
    d[DS.write_time] = 0.00002;
    d[DS.other_cnt] = 4;
    d[DS.io_slots] = 600;
    d[DS.io_runs] = 300;
    d[DS.queue_length] = 2400;
    d[DS.queue_drop] = 5;
    d[DS.denied] = 6;
    const n = handler.interfaces[0].stats;
    n[IS.rx_cnt] = 1207;
    n[IS.rx_bytes] = 9876543210;
    n[IS.broadcast] = 2;
    n[IS.tx_in_place] = 900;
    const { code, out, err } = await ggaoectl("-s", sock, "stats", "disk1", "eth*");
    assert.equal(err, "");
    assert.equal(code, 0);
    assert.equal(
      out,
      `# Statistics for device disk1
read_cnt: 1200
read_bytes: 4915200
read_time: 0.8125
write_cnt: 3
write_bytes: 1536
write_time: 2e-05
other_cnt: 4
other_time: 0
io_slots: 600
io_runs: 300
queue_length: 2400
queue_stall: 0
queue_over: 0
ata_err: 0
proto_err: 0
queue_drop: 5
denied: 6
io_retries: 0
state_writes: 0
state_errors: 0
stale_drop: 0
stall_drop: 0
rbd_fencings: 0
rbd_fenced: 0
rbd_fenced_drops: 0
state_drop: 0
views: 0
view_write_bytes: 0
view_wait_drop: 0
view_limit: 0

# Statistics for interface eth0
rx_cnt: 1207
rx_bytes: 9876543210
rx_runs: 0
rx_buffers_full: 0
tx_cnt: 0
tx_bytes: 0
tx_runs: 0
tx_buffers_full: 0
dropped: 0
ignored: 0
broadcast: 2
tx_in_place: 900
tx_dropped: 0
link_errors: 0
wildcard_dropped: 0

`,
    );
  });
});

Deno.test("ggaoectl --json prints the daemon's answer as one JSON line", async () => {
  await withDaemon(async ({ sock, handler }) => {
    handler.clock = 12.25;
    handler.device("disk2").stats[DS.write_cnt] = 9;
    const { code, out } = await ggaoectl("--json", "-s", sock, "stats", "disk?");
    assert.equal(code, 0);
    assert.equal(out.split("\n").length, 2);
    const reply = JSON.parse(out);
    assert.equal(reply.uptime, 12.25);
    assert.deepEqual(reply.devices.map((x: { name: string }) => x.name), ["disk1", "disk2"]);
    assert.equal(reply.devices[1].stats.write_cnt, 9);
    assert.deepEqual(reply.interfaces, []);
  });
});

Deno.test("ggaoectl show-config prints a hex and ASCII dump per device", async () => {
  await withDaemon(async ({ sock, handler }) => {
    handler.device("disk1").state.setConfig(
      encoder.encode("AoE cfg\x00\x01 sixteen+ bytes\x7f\xfe"),
    );
    const { code, out } = await ggaoectl("-s", sock, "show-config", "disk?");
    assert.equal(code, 0);
    assert.equal(
      out,
      "Device disk1:\n" +
        "41 6f 45 20 63 66 67 00 01 20 73 69 78 74 65 65  AoE cfg.. sixtee\n" +
        "6e 2b 20 62 79 74 65 73 7f c3 be                 n+ bytes\x7f..\n" +
        "\n" +
        "Device disk2:\n" +
        "\n",
    );
  });
});

Deno.test("ggaoectl show-macmask prints four MACs a line; show-reserve the reserve list", async () => {
  await withDaemon(async ({ sock, handler }) => {
    const s = handler.device("disk1").state;
    for (let i = 1; i <= 5; i++) s.addMask(0x001b21000000 + i);
    handler.device("disk2").state.setReserve([0xaabbccddeeff]);
    const mask = await ggaoectl("-s", sock, "show-macmask", "disk*");
    assert.equal(mask.code, 0);
    assert.equal(
      mask.out,
      "Device disk1:\n" +
        "00:1b:21:00:00:01 00:1b:21:00:00:02 00:1b:21:00:00:03 00:1b:21:00:00:04\n" +
        "00:1b:21:00:00:05 \n" +
        "\n" +
        "Device disk2:\n" +
        "\n",
    );
    const reserve = await ggaoectl("-s", sock, "show-reserve", "disk*");
    assert.equal(reserve.code, 0);
    assert.equal(reserve.out, "Device disk1:\n\nDevice disk2:\naa:bb:cc:dd:ee:ff \n\n");
  });
});

Deno.test("ggaoectl show-rbd prints each RBD device's image, cluster, features, fencing and hosts", async () => {
  await withDaemon(async ({ sock, handler }) => {
    const host = {
      pid: 4211,
      device: "shared",
      target: "e1.1",
      seen: 1700000000,
      readOnly: false,
      version: VERSION,
    };
    handler.rbd = [{
      name: "shared",
      image: "rbd:rbd/shared",
      cluster: { conf: "/etc/ceph/ceph.conf", user: "admin", fsid: "5a3c6e0e-0000-4c1a-9a43" },
      features: ["layering", "exclusive-lock"],
      size: 16 * 1024 * 1024,
      readOnly: false,
      prefix: "ggaoed.",
      hosts: [
        {
          ...host,
          id: "storage2",
          host: "storage2",
          interfaces: [{ name: "eth1", mac: "52:54:00:65:43:21" }],
          ageSeconds: 41,
          stale: true,
          self: false,
          address: "192.0.2.2:0/1234",
          fenced: { by: "storage1", host: "storage1", at: 1700000004, address: "192.0.2.2:0/1234" },
        },
        {
          ...host,
          id: "storage1",
          host: "storage1",
          interfaces: [{ name: "eth1", mac: "52:54:00:12:34:56" }],
          ageSeconds: 3.2,
          stale: false,
          self: true,
          address: "192.0.2.1:0/5678",
        },
      ],
      client: "192.0.2.1:0/5678",
      fencing: { enabled: true, afterSeconds: 2.5, fencings: 1, fenced: 0, droppedRequests: 0 },
      polledAgo: 0.1,
      pollError: null,
    }];
    const text = await ggaoectl("-s", sock, "show-rbd", "sh*");
    assert.equal(text.code, 0, text.err);
    assert.equal(
      text.out,
      "Device shared: rbd:rbd/shared, 16 MiB\n" +
        "  cluster   fsid 5a3c6e0e-0000-4c1a-9a43, /etc/ceph/ceph.conf, user admin, " +
        "client 192.0.2.1:0/5678\n" +
        "  features  layering, exclusive-lock  (exclusive-lock: serve read-write from one host only)\n" +
        "  state     metadata ggaoed.config, ggaoed.mac_mask, ggaoed.reserve (read 0.1 s ago)\n" +
        "  fencing   after 2.5 s without a refresh; fenced 1 other host(s); was fenced 0 time(s), " +
        "0 request(s) dropped\n" +
        "  hosts     2\n" +
        "    * storage1  e1.1  pid 4211  [eth1 52:54:00:12:34:56]  seen 3.2 s ago  client 192.0.2.1:0/5678\n" +
        "      storage2  e1.1  pid 4211  [eth1 52:54:00:65:43:21]  seen 41.0 s ago (STALE)  " +
        "client 192.0.2.2:0/1234  FENCED by storage1 at 2023-11-14T22:13:24.000Z\n\n",
    );
    const json = JSON.parse((await ggaoectl("-s", sock, "--json", "show-rbd")).out);
    assert.deepEqual(json, { ok: true, devices: handler.rbd });
    const none = await ggaoectl("-s", sock, "show-rbd", "disk1");
    assert.equal(none.out, "No Ceph RBD devices.\n");
  });
});

Deno.test("ggaoectl clear-* empty what the globs match, quietly", async () => {
  await withDaemon(async ({ sock, handler }) => {
    for (const d of handler.devices) {
      d.state.setConfig(encoder.encode("cfg"));
      d.state.addMask(1);
      d.state.setReserve([2]);
      d.stats[DS.read_cnt] = 10;
    }
    handler.interfaces[0].stats[IS.rx_cnt] = 10;

    assert.deepEqual(await ggaoectl("-s", sock, "clear-config", "disk*"), {
      code: 0,
      out: "",
      err: "",
    });
    assert.deepEqual(handler.devices.map((d) => d.state.configLength), [0, 0, 3]);
    const mask = await ggaoectl("--json", "-s", sock, "clear-macmask", "?ther");
    assert.deepEqual(JSON.parse(mask.out), { ok: true, cleared: ["other"] });
    assert.deepEqual(handler.devices.map((d) => d.state.macMask.length), [1, 1, 0]);
    assert.equal((await ggaoectl("-s", sock, "clear-reserve", "disk2")).code, 0);
    assert.deepEqual(handler.devices.map((d) => d.state.reserve.length), [1, 0, 1]);

    assert.equal((await ggaoectl("-s", sock, "clear-stats", "disk1")).code, 0);
    assert.deepEqual(handler.devices.map((d) => d.stats[DS.read_cnt]), [0, 10, 10]);
    assert.equal(handler.interfaces[0].stats[IS.rx_cnt], 10);
    assert.equal((await ggaoectl("-s", sock, "clear-stats")).code, 0);
    assert.deepEqual(handler.devices.map((d) => d.stats[DS.read_cnt]), [0, 0, 0]);
    assert.equal(handler.interfaces[0].stats[IS.rx_cnt], 0);
  });
});

Deno.test("ggaoectl clear-config, clear-macmask, clear-reserve without names exit 1", async () => {
  // No daemon needed: the check comes before connecting.
  for (const cmd of ["clear-config", "clear-macmask", "clear-reserve"]) {
    assert.deepEqual(await ggaoectl("-s", "/nonexistent/ggaoed.sock", cmd), {
      code: 1,
      out: "",
      err: "No names were given on the command line\n",
    });
  }
});

Deno.test("ggaoectl reload is quiet when the daemon reloads, and reports why when it cannot", async () => {
  await withDaemon(async ({ sock, handler }) => {
    assert.deepEqual(await ggaoectl("-s", sock, "reload"), { code: 0, out: "", err: "" });
    assert.equal(handler.reloads, 1);
    handler.reloadResult = { ok: false, message: "The config file contains errors, not reloading" };
    assert.deepEqual(await ggaoectl("-s", sock, "reload"), {
      code: 1,
      out: "",
      err: "ggaoed: The config file contains errors, not reloading\n",
    });
  });
});

Deno.test("ggaoectl explains an absent daemon and reads the socket path from -c", async () => {
  const dir = await Deno.makeTempDir({ prefix: "ggaoectl-" });
  try {
    const expected = (p: string) =>
      `cannot reach ggaoed at ${p}: no such file — is the daemon running? ` +
      "(start it, or pass -c/-s)\n";
    const r = await ggaoectl("-s", `${dir}/ggaoed.sock`, "stats");
    assert.deepEqual(r, { code: 1, out: "", err: expected(`${dir}/ggaoed.sock`) });

    await Deno.writeTextFile(
      `${dir}/ggaoed.conf`,
      `[defaults]\ncontrol-socket = "${dir}/from-config.sock"\n`,
    );
    const c = await ggaoectl("-c", `${dir}/ggaoed.conf`, "show-config");
    assert.deepEqual(c, { code: 1, out: "", err: expected(`${dir}/from-config.sock`) });

    const missing = await ggaoectl("-c", `${dir}/none.conf`, "stats");
    assert.equal(missing.code, 1);
    assert.match(missing.err, /^Loading the config file has failed: .*none\.conf/);

    const json = await ggaoectl("--json", "-s", `${dir}/ggaoed.sock`, "stats");
    assert.equal(json.code, 1);
    assert.deepEqual(JSON.parse(json.out), {
      ok: false,
      error: expected(`${dir}/ggaoed.sock`).trimEnd(),
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("ggaoectl talks to the daemon named by -c in a TOML config", async () => {
  await withDaemon(async ({ sock, dir }) => {
    await Deno.writeTextFile(`${dir}/ggaoed.conf`, `[defaults]\ncontrol-socket = "${sock}"\n`);
    const r = await ggaoectl("-c", `${dir}/ggaoed.conf`, "show-macmask", "other");
    assert.deepEqual(r, { code: 0, out: "Device other:\n\n", err: "" });
  });
});

Deno.test("ggaoectl usage: help lists every command with an example; errors exit 1", async () => {
  const help = await ggaoectl("--help");
  assert.equal(help.code, 0);
  for (const cmd of [...CONTROL_COMMANDS, "monitor"]) {
    assert.match(help.out, new RegExp(`^  ${cmd} `, "m"), `${cmd} is listed`);
    assert.match(help.out, new RegExp(`^ +ggaoectl ${cmd}\\b`, "m"), `${cmd} has an example`);
  }
  assert.deepEqual(await ggaoectl("-V"), {
    code: 0,
    out: `ggaoectl (ggaoed) ${VERSION}\n`,
    err: "",
  });

  const unknown = await ggaoectl("frobnicate");
  assert.equal(unknown.code, 1);
  assert.equal(unknown.out, "");
  assert.ok(unknown.err.startsWith('Unknown command "frobnicate"\n\nUsage: ggaoectl'));

  assert.deepEqual(await ggaoectl(), {
    code: 1,
    out: "",
    err: "You must specify a command. (ggaoectl --help lists them)\n",
  });
  const badOption = await ggaoectl("-x", "stats");
  assert.equal(badOption.code, 1);
  assert.match(badOption.err, /Usage: ggaoectl/);
});

Deno.test("ggaoectl monitor prints the original's tables each interval and stops on SIGINT", async () => {
  await withDaemon(async ({ sock, handler }) => {
    // Every sample: one simulated second, and the same traffic.
    handler.onStats = () => {
      handler.clock += 1;
      const d1 = handler.device("disk1").stats;
      d1[DS.read_cnt] += 10;
      d1[DS.read_bytes] += 10 * 4096;
      d1[DS.read_time] += 1 / 64; // 1.5625 ms a request: an exact tie, printed as 1.56
      d1[DS.queue_length] += 20;
      const d2 = handler.device("disk2").stats;
      d2[DS.write_cnt] += 5;
      d2[DS.write_bytes] += 5 * 512;
      d2[DS.write_time] += 1 / 128;
      d2[DS.other_cnt] += 1;
      d2[DS.proto_err] += 1;
      d2[DS.queue_drop] += 2;
      d2[DS.denied] += 7;
      const n = handler.interfaces[0].stats;
      n[IS.rx_cnt] += 30;
      n[IS.rx_bytes] += 30 * 1024;
      n[IS.tx_cnt] += 10;
      n[IS.tx_bytes] += 10 * 1024;
      n[IS.rx_runs] += 3;
      n[IS.tx_runs] += 1;
      n[IS.dropped] += 1;
    };
    const sample = //
      "dev     rrqm/s      rkB/s   wrqm/s      wkB/s oth avgqsz qs qf ae pe    svctm qdrop denied\n" +
      "disk1     10.0      40.00      0.0       0.00   0   2.00  0  0  0  0     1.56     0      0\n" +
      "disk2      0.0       0.00      5.0       2.50   1   0.00  0  0  0  1     1.30     2      7\n" +
      "\n" +
      "net     rrqm/s      rkB/s   wrqm/s      wkB/s drp  avrun\n" +
      "eth0      30.0      30.00     10.0      10.00   1  10.00\n" +
      "\n";

    const child = ggaoectlCommand(["-s", sock, "monitor", "0.05", "disk*", "eth0"]).spawn();
    let out = "";
    const reader = child.stdout.getReader();
    while (out.length < 3 * sample.length) {
      const { value, done } = await reader.read();
      if (done) break;
      out += decoder.decode(value, { stream: true });
    }
    child.kill("SIGINT");
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      out += decoder.decode(value, { stream: true });
    }
    const status = await child.status;
    const err = decoder.decode(await new Response(child.stderr).arrayBuffer());
    assert.equal(err, "");
    assert.equal(status.code, 0, "a signal ends monitor cleanly");
    assert.ok(out.length >= 3 * sample.length);
    assert.equal(out, sample.repeat(out.length / sample.length), "whole samples only");
  });
});
