/**
 * `ggaoed export`, the one-line export without a configuration file, as the real program in a
 * throw-away network namespace: the project's initiator, aoeping and aoecfg read, write and
 * configure what it serves; `ggaoectl -s SOCKET stats` shows its counters; two exports with the
 * default file locations run side by side; bad arguments are refused with what to do.
 */

import { assert, assertEquals } from "../helpers/assert.ts";
import { type Output, run, show, stopProcess } from "../../lab/command.ts";
import { exists } from "../../lab/files.ts";
import { discoverSet } from "../helpers/discovery.ts";
import { NetLab } from "../../lab/netns.ts";
import { O_DSYNC } from "../../ffi/constants.ts";
import { formatMac } from "../../src/mac.ts";
import { interfaceInfo } from "../../ffi/netif.ts";
import { Initiator } from "../../src/initiator/mod.ts";
import { EXPORT_DEFAULTS } from "../../src/config/export.ts";
import { DAEMON_FLAGS, DENO, pattern, readFileRange, REPO } from "../../lab/target.ts";

const OPTS = { sanitizeResources: false, sanitizeOps: false };
const S = 512;

/** Runs a program to completion, bounded; the test judges its exit status. */
function outcome(args: string[]): Promise<Output> {
  return run(args, { check: false, timeoutMs: 20_000 });
}

/** `ggaoed export ARGS` running inside namespace `ns`, its output collected. */
class Export {
  readonly child: Deno.ChildProcess;
  log = "";
  readonly #done: Promise<void>;

  constructor(ns: string, args: string[]) {
    this.child = new Deno.Command("ip", {
      args: [
        "netns",
        "exec",
        ns,
        DENO,
        "run",
        ...DAEMON_FLAGS,
        `${REPO}ggaoed.ts`,
        "export",
        ...args,
      ],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const collect = async (stream: ReadableStream<Uint8Array>) => {
      for await (const text of stream.pipeThrough(new TextDecoderStream())) this.log += text;
    };
    this.#done = Promise.all([collect(this.child.stdout), collect(this.child.stderr)]).then(
      () => {},
    );
  }

  async waitFor(re: RegExp, timeoutMs = 15000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!re.test(this.log)) {
      if (Date.now() > deadline) throw new Error(`export never logged ${re}; log:\n${this.log}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** SIGTERM (SIGKILL after 10 s); the exit status. */
  async stop(): Promise<Deno.CommandStatus> {
    const status = await stopProcess(this.child, "SIGTERM", 10_000);
    await this.#done;
    return status;
  }
}

/** ggaoectl against a socket. */
function ctl(socket: string, ...args: string[]): Promise<Output> {
  return outcome([DENO, "run", ...DAEMON_FLAGS, `${REPO}ggaoectl.ts`, "-s", socket, ...args]);
}

/** The open flags (fdinfo, octal) of process `pid`'s descriptor for `path`. */
function openFlags(pid: number, path: string): number {
  for (const e of Deno.readDirSync(`/proc/${pid}/fd`)) {
    try {
      if (Deno.readLinkSync(`/proc/${pid}/fd/${e.name}`) !== path) continue;
      const m = /^flags:\s+([0-7]+)$/m.exec(Deno.readTextFileSync(`/proc/${pid}/fdinfo/${e.name}`));
      if (m) return parseInt(m[1], 8);
    } catch { /* closed meanwhile */ }
  }
  throw new Error(`process ${pid} has no descriptor open on ${path}`);
}

Deno.test({
  name:
    "ggaoed export serves a file with vblade's options: our initiator, aoeping and aoecfg use it, ggaoectl -s shows its counters",
  ...OPTS,
  fn: async () => {
    const lab = new NetLab();
    const dir = Deno.makeTempDirSync({ dir: "/var/tmp", prefix: "ggaoed-export-" });
    let exp: Export | null = null;
    try {
      const ns = await lab.namespace();
      const [hostIf, targetIf] = await lab.hostVethPair(ns);
      const image = `${dir}/disk.img`;
      const before = pattern(8 * S, 0x5a, 0);
      Deno.writeFileSync(image, before);
      Deno.truncateSync(image, 4096 * S);
      const hostMac = formatMac(interfaceInfo(hostIf).mac);
      const serial = `7.3:${Deno.hostname()}`.slice(0, 20);
      const socket = `${dir}/export.sock`;
      const pidFile = `${dir}/export.pid`;
      exp = new Export(ns, [
        "-s",
        "-o",
        "8",
        "-l",
        "2048",
        "-b",
        "16",
        "-m",
        `${hostMac},02:00:00:00:00:99`,
        "--admin",
        hostMac,
        "--control-socket",
        socket,
        "--pid-file",
        pidFile,
        "--state-directory",
        `${dir}/state/e7.3`,
        "7",
        "3",
        targetIf,
        image,
      ]);
      await exp.waitFor(/ggaoed is running/);
      assert(Deno.statSync(`${dir}/state/e7.3`).isDirectory, "the state directory was created");
      assert(!/warning/.test(exp.log), `an admin list is given: no warning\n${exp.log}`);

      // The project's initiator: Buffer Count from -b, size from -l, data at -o.
      let resent = 0; // bytes of the writes below that the initiator sent again
      const ini = Initiator.open(hostIf);
      try {
        const d = ini.find(7, 3, { waitMs: 3000 });
        assertEquals(d.bufferCount, 16);
        const id = ini.identify(d);
        assertEquals([id.sectors, id.serial], [2048, serial]);
        const data = pattern(64 * S, 9, 100);
        const retransmitted = ini.retransmits;
        ini.writeRange(d, 100, data);
        // On a busy machine the initiator may time out and send some writes again: each copy
        // that reaches the daemon is a WRITE it accepts (and counts) once more.
        resent = (ini.retransmits - retransmitted) * ini.maxSectors(d) * S;
        assertEquals(ini.readRange(d, 100, 64), data);
        assertEquals(readFileRange(image, (8 + 100) * S, data.length), data, "at -o + LBA");
        assertEquals(readFileRange(image, 0, 8 * S), before, "the sectors before -o untouched");
      } finally {
        ini.close();
      }

      // -s: the file is open with O_DSYNC.
      const pid = Number(Deno.readTextFileSync(pidFile).trim());
      assertEquals(openFlags(pid, image) & O_DSYNC, O_DSYNC);

      // aoetools: aoeping's IDENTIFY, aoecfg's config string (kept in the state directory).
      const ping = await outcome(["aoeping", "-I", "-s", "5", "7", "3", hostIf]);
      assertEquals(ping.code, 0, show(ping));
      assert(ping.stdout.includes(`serial_number: ${serial.padEnd(20)}\n`), show(ping));
      assert(ping.stdout.includes("model: GGs AoE target"), show(ping));
      const cfg = await outcome([
        "aoecfg",
        "-t",
        "2",
        "-c",
        "fset",
        "-s",
        "exported",
        "7",
        "3",
        hostIf,
      ]);
      assertEquals(cfg.stdout.trim(), "exported", show(cfg));
      const read = await outcome(["aoecfg", "-t", "2", "7", "3", hostIf]);
      assertEquals(read.stdout.trim(), "exported", show(read));
      assertEquals(Deno.statSync(`${dir}/state/e7.3/e7.3.config`).size, 1032);

      // ggaoectl through the socket the export was told to use.
      const stats = await ctl(socket, "stats");
      assertEquals(stats.code, 0, show(stats));
      assert(stats.stdout.startsWith("# Statistics for device e7.3\n"), stats.stdout);
      assert(stats.stdout.includes(`# Statistics for interface ${targetIf}\n`), stats.stdout);
      const json = JSON.parse((await ctl(socket, "--json", "stats", "e7.3")).stdout);
      const counters = json.devices[0].stats;
      assert(counters.write_cnt >= 8 && counters.read_cnt >= 8, JSON.stringify(counters));
      // Every byte written is counted, retransmitted copies too (none: exactly once).
      if (resent === 0) assertEquals(counters.write_bytes, 64 * S);
      else {
        assert(
          counters.write_bytes >= 64 * S && counters.write_bytes <= 64 * S + resent,
          `write_bytes ${counters.write_bytes}: 64 sectors written, ${resent} bytes sent again`,
        );
      }

      const status = await exp.stop();
      exp = null;
      assertEquals(status.code, 0);
      for (const gone of [socket, pidFile]) assert(!exists(gone), `${gone} is removed at exit`);
    } finally {
      await exp?.stop();
      await lab.cleanup();
      Deno.removeSync(dir, { recursive: true });
    }
  },
});

Deno.test({
  name:
    "two exports with the default file locations run side by side: sockets and pid files in /run, state under /var/lib/ggaoed/export",
  ...OPTS,
  fn: async () => {
    const lab = new NetLab();
    const dir = Deno.makeTempDirSync({ dir: "/var/tmp", prefix: "ggaoed-export-" });
    // Directories this test may create, removed afterwards when it did.
    const parents = ["/var/lib/ggaoed", "/var/lib/ggaoed/export"].filter((p) => !exists(p));
    const exports: Export[] = [];
    const stateDirs: string[] = [];
    try {
      const ns = await lab.namespace();
      const [hostIf, targetIf] = await lab.hostVethPair(ns);
      for (const slot of [1, 2]) {
        const image = `${dir}/disk${slot}.img`;
        Deno.writeFileSync(image, new Uint8Array(slot * 1024 * 1024));
        const name = `e0.${slot}-${targetIf}`;
        stateDirs.push(EXPORT_DEFAULTS.stateDirectory.replace("NAME", name));
        exports.push(new Export(ns, ["0", String(slot), targetIf, image]));
      }
      for (const e of exports) await e.waitFor(/ggaoed is running/);
      // Served to everyone without --admin: the warning names the option to give.
      assert(
        exports[0].log.includes(
          "ggaoed export: served to every host (no -m) and no admin list is set",
        ) && exports[0].log.includes("(give --admin MAC[,MAC...] to allow these edits"),
        exports[0].log,
      );

      const ini = Initiator.open(hostIf);
      const resent: number[] = []; // per export: copies of its write the initiator sent again
      try {
        assertEquals(discoverSet(ini, ["0.1", "0.2"]), ["0.1", "0.2"]);
        for (const slot of [1, 2]) {
          const d = ini.find(0, slot);
          assertEquals(ini.identify(d).sectors, slot * 2048);
          const retransmitted = ini.retransmits;
          ini.write(d, 0, pattern(S, slot));
          resent.push(ini.retransmits - retransmitted);
        }
      } finally {
        ini.close();
      }
      for (const [i, slot] of [1, 2].entries()) {
        const name = `e0.${slot}-${targetIf}`;
        const socket = EXPORT_DEFAULTS.controlSocket.replace("NAME", name);
        assert(exists(EXPORT_DEFAULTS.pidFile.replace("NAME", name)));
        assert(Deno.statSync(stateDirs[i]).isDirectory);
        const stats = JSON.parse((await ctl(socket, "--json", "stats")).stdout);
        assertEquals(stats.devices.map((d: { name: string }) => d.name), [`e0.${slot}`]);
        // Once, plus any copy the initiator sent again after a timeout (a busy machine).
        const writes = stats.devices[0].stats.write_cnt;
        assert(writes >= 1 && writes <= 1 + resent[i], `${writes} writes, ${resent[i]} resent`);
      }
      for (const e of exports.splice(0)) assertEquals((await e.stop()).code, 0);
      for (const slot of [1, 2]) {
        const name = `e0.${slot}-${targetIf}`;
        assert(!exists(EXPORT_DEFAULTS.controlSocket.replace("NAME", name)));
        assert(!exists(EXPORT_DEFAULTS.pidFile.replace("NAME", name)));
      }
    } finally {
      for (const e of exports) await e.stop();
      await lab.cleanup();
      Deno.removeSync(dir, { recursive: true });
      for (const d of stateDirs) Deno.removeSync(d, { recursive: true });
      for (const p of parents.reverse()) {
        try {
          Deno.removeSync(p); // only when empty
        } catch { /* someone else's files are there now */ }
      }
    }
  },
});

Deno.test({
  name:
    "ggaoed export: --help lists vblade's options; bad arguments are refused with what to do, creating nothing",
  ...OPTS,
  fn: async () => {
    const ggaoed = (...args: string[]) =>
      outcome([DENO, "run", ...DAEMON_FLAGS, `${REPO}ggaoed.ts`, ...args]);
    const help = await ggaoed("export", "--help");
    assertEquals(help.code, 0, show(help));
    for (const word of ["-r", "-d", "-s", "-o OFFSET", "-l LENGTH", "-m MAC", "-b BUFCOUNT"]) {
      assert(help.stdout.includes(word), `help lacks ${word}`);
    }
    for (const word of ["--control-socket", "--pid-file", "--state-directory", "--admin"]) {
      assert(help.stdout.includes(word), `help lacks ${word}`);
    }
    assert((await ggaoed("--help")).stdout.includes("ggaoed export [-r]"));
    // deno task export runs the same command.
    const task = await outcome([DENO, "task", "--cwd", REPO, "export", "--help"]);
    assertEquals([task.code, task.stdout], [0, help.stdout], show(task));

    const few = await ggaoed("export", "0", "1");
    assertEquals(few.code, 1);
    assert(few.stderr.includes("give SHELF SLOT IFACE FILE (2 of the 4 arguments given)"));
    assert(few.stderr.includes("ggaoed export --help"), few.stderr);
    const notNumber = await ggaoed("export", "-o", "1MiB", "0", "1", "lo", "/dev/null");
    assertEquals(notNumber.code, 1);
    assert(notNumber.stderr.includes("-o OFFSET: '1MiB' is not a whole number (e.g. -o 2048"));
    const unknown = await ggaoed("export", "-x", "0", "1", "lo", "/dev/null");
    assertEquals(unknown.code, 1);
    assert(/Unknown option '-x'/.test(unknown.stderr), unknown.stderr);

    // Every problem at once, each naming its option or argument and a fix.
    const dir = Deno.makeTempDirSync({ dir: "/var/tmp", prefix: "ggaoed-export-" });
    try {
      const image = `${dir}/small.img`;
      Deno.writeFileSync(image, new Uint8Array(100 * S));
      const bad = await ggaoed(
        "export",
        "-o",
        "90",
        "-l",
        "20",
        "-b",
        "0",
        "-m",
        "00:11:22,nosuchhost",
        "--state-directory",
        `${dir}/new/state`,
        "70000",
        "1",
        "nosuchif0",
        image,
      );
      assertEquals(bad.code, 1, show(bad));
      const err = bad.stderr;
      assert(err.startsWith("ggaoed export: 6 problem(s) with the arguments:\n"), err);
      for (
        const expected of [
          "  -b BUFCOUNT: 0 is out of range 1-65535\n",
          "  SHELF: 70000 is out of range 0-65534\n",
          '  -m: unknown ACL token "00:11:22": not a MAC address, and not a host name in',
          '  -m: unknown ACL token "nosuchhost"',
          `  -l LENGTH: ${image} holds 100 sectors of 512 bytes: offset 90 + length 20 = 110 is past its end\n    fix: lower -o or -l (in sectors), or grow the file\n`,
          "  IFACE: there is no network interface 'nosuchif0' here (there are: ",
        ]
      ) assert(err.includes(expected), `missing ${JSON.stringify(expected)} in\n${err}`);
      assert(!exists(`${dir}/new`), "a refused export leaves no state directory behind");
    } finally {
      Deno.removeSync(dir, { recursive: true });
    }
  },
});
