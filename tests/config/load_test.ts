import assert from "node:assert/strict";
import { loadConfig, type LoadOptions, parseConfigText } from "../../src/config/load.ts";
import {
  type Config,
  ConfigError,
  exportedSectors,
  interfaceConfig,
} from "../../src/config/types.ts";
import { parseMac } from "../../src/mac.ts";

/** A scratch environment: state directory, a disk image, an ethers file, a by-uuid directory. */
interface Env {
  dir: string;
  state: string;
  disk: string;
  options: LoadOptions;
}

function withEnv(fn: (env: Env) => void): () => void {
  return () => {
    const dir = Deno.makeTempDirSync({ prefix: "ggaoed-config-" });
    try {
      const state = `${dir}/state`;
      Deno.mkdirSync(state);
      const disk = `${dir}/disk.img`;
      Deno.writeFileSync(disk, new Uint8Array(4096));
      Deno.writeTextFileSync(
        `${dir}/ethers`,
        "# hosts\n00:11:22:33:44:55 host1\n02:00:00:00:00:09  Printer  # office\nbogus line\n",
      );
      Deno.mkdirSync(`${dir}/by-uuid`);
      Deno.symlinkSync(disk, `${dir}/by-uuid/0a1b2c3d-1111-2222-3333-444455556666`);
      Deno.symlinkSync(disk, `${dir}/by-uuid/ABCD-1234`);
      fn({
        dir,
        state,
        disk,
        options: {
          ethersFile: `${dir}/ethers`,
          uuidDirectory: `${dir}/by-uuid`,
          hostname: "storage1",
        },
      });
    } finally {
      Deno.removeSync(dir, { recursive: true });
    }
  };
}

function load(env: Env, body: string, options: LoadOptions = {}): Config {
  const text = `[defaults]\nstate-directory = "${env.state}"\n${body}`;
  return parseConfigText(text, "test.conf", { ...env.options, ...options });
}

function issuesOf(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (e) {
    if (e instanceof ConfigError) return e;
    throw e;
  }
  assert.fail("expected a ConfigError");
}

const mac = (s: string) => parseMac(s)!;

Deno.test(
  "a minimal TOML file gets every built-in default",
  withEnv((env) => {
    const c = parseConfigText(
      `[devices.disk1]\npath = "${env.disk}"\nshelf = 1\nslot = 2\n`,
      "min.toml",
      { ...env.options, checkFilesystem: false },
    );
    assert.equal(c.format, "toml");
    assert.equal(c.file, "min.toml");
    assert.deepEqual(c.warnings, [
      'min.toml: devices.disk1: served to every host (no accept list) and no admin list is set: any of them may edit the MAC Mask List or take or force a reservation, which locks the others out and persists across restarts (set admin = ["MAC", ...] in [devices.disk1] or [defaults] to allow these edits only from the hosts listed)',
    ]);
    assert.deepEqual(c.global, {
      interfaces: null,
      pidFile: "/run/ggaoed/ggaoed.pid",
      controlSocket: "/run/ggaoed/ggaoed.sock",
      stateDirectory: "/var/lib/ggaoed",
      logTarget: "stderr",
      logLevel: "info",
      metricsListen: null,
      metricsMaxConnections: 16,
      workers: null,
    });
    assert.deepEqual(c.interfaceDefaults, {
      mtu: 0,
      ringBufferSize: 4096 * 1024,
      sendBufferSize: 0,
      receiveBufferSize: 0,
    });
    assert.deepEqual(c.devices, [{
      name: "disk1",
      path: env.disk,
      shelf: 1,
      slot: 2,
      queueLength: 64,
      directIo: true,
      traceIo: false,
      readOnly: false,
      broadcast: false,
      maxDelay: 0.001,
      mergeDelay: 0,
      maxRequestAge: 2,
      maxStall: 2,
      interfaces: null,
      accept: null,
      deny: null,
      admin: null,
      adminConfigString: true,
      offsetSectors: 0,
      lengthSectors: null,
      syncWrites: false,
      serial: "1.2:storage1",
      rbd: null,
      views: null,
    }]);
    assert.equal(c.interfaces.size, 0);
    assert.equal(c.acls.size, 0);
  }),
);

Deno.test(
  "every key is read; sizes in KiB become bytes; defaults mtu applies to every interface",
  withEnv((env) => {
    const c = load(
      env,
      `queue-length = 32
interfaces = ["eth*", " bond? "]
direct-io = false
trace-io = true
pid-file = "/tmp/x.pid"
control-socket = "/tmp/x.sock"
mtu = 9000
ring-buffer-size = 1024
send-buffer-size = 256
receive-buffer-size = 512
max-delay = 0.002
merge-delay = 0.0005
log-target = "syslog"
log-level = "debug"
metrics-listen = "[::1]:9100"
metrics-max-connections = 4
sync-writes = true
admin = ["02:00:00:00:00:0a"]
admin-config-string = false

[interfaces.eth1]
mtu = 1500
ring-buffer-size = 0

[devices.d1]
path = "${env.disk}"
shelf = 65534
slot = 254
queue-length = 128
direct-io = true
trace-io = false
read-only = true
broadcast = true
max-delay = 0.5
merge-delay = 0
interfaces = "eth0, eth1"
accept = ["00:11:22:33:44:55"]
deny = "02:00:00:00:00:01"
admin = ["00:11:22:33:44:55", "host1"]
admin-config-string = true
offset = 2
length = 6
sync-writes = false
serial = "SN 0042"

[devices.d2]
path = "${env.disk}"
shelf = 0
slot = 0
`,
    );
    assert.deepEqual(c.global, {
      interfaces: ["eth*", "bond?"],
      pidFile: "/tmp/x.pid",
      controlSocket: "/tmp/x.sock",
      stateDirectory: env.state,
      logTarget: "syslog",
      logLevel: "debug",
      metricsListen: { text: "[::1]:9100", hostname: "::1", port: 9100 },
      metricsMaxConnections: 4,
      workers: null,
    });
    assert.deepEqual(c.interfaceDefaults, {
      mtu: 9000,
      ringBufferSize: 1024 * 1024,
      sendBufferSize: 256 * 1024,
      receiveBufferSize: 512 * 1024,
    });
    assert.deepEqual(interfaceConfig(c, "eth1"), {
      mtu: 1500,
      ringBufferSize: 0,
      sendBufferSize: 256 * 1024,
      receiveBufferSize: 512 * 1024,
    });
    // The original's bug 3: an interface without its own table ignored the defaults' mtu.
    assert.equal(interfaceConfig(c, "eth7").mtu, 9000);
    const [d1, d2] = c.devices;
    assert.deepEqual(d1, {
      name: "d1",
      path: env.disk,
      shelf: 65534,
      slot: 254,
      queueLength: 128,
      directIo: true,
      traceIo: false,
      readOnly: true,
      broadcast: true,
      maxDelay: 0.5,
      mergeDelay: 0,
      maxRequestAge: 2,
      maxStall: 2,
      interfaces: ["eth0", "eth1"],
      accept: [mac("00:11:22:33:44:55")],
      deny: [mac("02:00:00:00:00:01")],
      admin: [mac("00:11:22:33:44:55")], // host1 is that MAC in the ethers file
      adminConfigString: true,
      offsetSectors: 2,
      lengthSectors: 6,
      syncWrites: false,
      serial: "SN 0042",
      rbd: null,
      views: null,
    });
    // A device's admin replaces the defaults' list; sync-writes comes from [defaults].
    assert.deepEqual(d2.admin, [mac("02:00:00:00:00:0a")]);
    assert.equal(d2.syncWrites, true);
    assert.equal(d2.adminConfigString, false, "from [defaults]");
    assert.equal(d2.serial, "0.0:storage1");
    assert.deepEqual(c.warnings, [], "every device has an admin list");
    // Device defaults come from [defaults].
    assert.equal(d2.queueLength, 32);
    assert.equal(d2.directIo, false);
    assert.equal(d2.traceIo, true);
    assert.equal(d2.maxDelay, 0.002);
    assert.equal(d2.mergeDelay, 0.0005);
  }),
);

Deno.test(
  "every problem is reported at once, each with file, key and fix",
  withEnv((env) => {
    const e = issuesOf(() =>
      load(
        env,
        `queue-length = 0
mtu = 1000
ring-buffer-size = 70000
max-delay = 0
max-request-age = 0.05
max-stall = -1
[interfaces.eth0]
mtu = 20000
send-buffer-size = -1
[devices.disk1]
path = "${env.disk}"
shelf = 70000
slot = 255
max-delay = 1
merge-delay = 1.5
queue-length = 65536
max-request-age = 4000
max-stall = "2"
`,
      )
    );
    const keys = e.issues.map((i) => i.key).sort();
    assert.deepEqual(keys, [
      "defaults.max-delay",
      "defaults.max-request-age",
      "defaults.max-stall",
      "defaults.mtu",
      "defaults.queue-length",
      "defaults.ring-buffer-size",
      "devices.disk1.max-delay",
      "devices.disk1.max-request-age",
      "devices.disk1.max-stall",
      "devices.disk1.merge-delay",
      "devices.disk1.queue-length",
      "devices.disk1.shelf",
      "devices.disk1.slot",
      "interfaces.eth0.mtu",
      "interfaces.eth0.send-buffer-size",
    ]);
    assert.ok(e.issues.every((i) => i.file === "test.conf" && i.fix.length > 0));
    assert.match(
      e.message,
      /^test\.conf: devices\.disk1\.shelf: 70000 is out of range 0-65534 \(use a shelf number from 0 to 65534; 65535 is the broadcast address\)$/m,
    );
    assert.match(e.message, /devices\.disk1\.slot: 255 is out of range 0-254/);
  }),
);

Deno.test(
  "a value of the wrong type is an error that says what was found",
  withEnv((env) => {
    const e = issuesOf(() =>
      load(
        env,
        `[devices.d]\npath = "${env.disk}"\nshelf = "1"\nslot = 1.5\nread-only = "true"\n` +
          `max-delay = "fast"\ninterfaces = [1, 2]\n`,
      )
    );
    const by = new Map(e.issues.map((i) => [i.key, i]));
    assert.equal(by.get("devices.d.shelf")!.message, 'expected a whole number, got the string "1"');
    assert.equal(by.get("devices.d.shelf")!.fix, "remove the quotes: shelf = 1");
    assert.match(by.get("devices.d.slot")!.message, /whole number, got the number 1.5/);
    assert.equal(by.get("devices.d.read-only")!.fix, "remove the quotes: read-only = true");
    assert.match(by.get("devices.d.max-delay")!.message, /number of seconds, got the string/);
    assert.match(by.get("devices.d.interfaces")!.message, /non-string items/);
  }),
);

Deno.test(
  "unknown keys and tables are errors with a did-you-mean suggestion",
  withEnv((env) => {
    const e = issuesOf(() =>
      load(
        env,
        `queue_length = 8\nmut = 9000\nfrobnicate = 1\n[acl]\nx = "00:11:22:33:44:55"\n` +
          `[devices.d]\npath = "${env.disk}"\nshelf = 1\nslot = 1\nread_only = true\n` +
          `[disk9]\nshelf = 3\n`,
      )
    );
    const fixes = Object.fromEntries(e.issues.map((i) => [i.key, i.fix]));
    assert.equal(fixes["defaults.queue_length"], "did you mean queue-length?");
    assert.equal(fixes["defaults.mut"], "did you mean mtu?");
    assert.match(fixes["defaults.frobnicate"], /^known keys: queue-length, /);
    assert.equal(fixes["acl"], "did you mean [acls]?");
    assert.equal(fixes["devices.d.read_only"], "did you mean read-only?");
    assert.equal(fixes["disk9"], "device tables are written [devices.disk9]");
  }),
);

Deno.test(
  "metrics-listen takes HOST:PORT with IPv4, a host name or bracketed IPv6",
  withEnv((env) => {
    const listen = (v: string) => load(env, `metrics-listen = "${v}"\n`).global.metricsListen;
    assert.deepEqual(listen("127.0.0.1:9642"), {
      text: "127.0.0.1:9642",
      hostname: "127.0.0.1",
      port: 9642,
    });
    assert.deepEqual(listen("0.0.0.0:1"), { text: "0.0.0.0:1", hostname: "0.0.0.0", port: 1 });
    assert.deepEqual(listen("[::]:65535"), { text: "[::]:65535", hostname: "::", port: 65535 });
    assert.deepEqual(listen("[fe80::1:2]:9642")?.hostname, "fe80::1:2");
    assert.deepEqual(listen("localhost:9642")?.hostname, "localhost");
  }),
);

Deno.test(
  "a bad metrics-listen is an error naming the file, the key and how to write it, with the others",
  withEnv((env) => {
    const cases: [string, RegExp, RegExp][] = [
      ["9642", /"9642" is not HOST:PORT/, /metrics-listen = "127\.0\.0\.1:9642"/],
      [":9642", /has no host/, /"0\.0\.0\.0:9642"/],
      ["127.0.0.1", /is not HOST:PORT/, /127\.0\.0\.1:9642/],
      ["127.0.0.1:0", /port "0" is not a number 1-65535/, /"127\.0\.0\.1:9642"/],
      ["127.0.0.1:70000", /port "70000" is not a number 1-65535/, /9642/],
      ["127.0.0.1:http", /port "http" is not a number/, /9642/],
      ["256.0.0.1:9642", /"256\.0\.0\.1" is not an IPv4 address/, /0-255/],
      ["::1:9642", /IPv6 address .* is not in brackets/, /metrics-listen = "\[::1\]:9642"/],
      ["[::1]", /has no port/, /\[::1\]:9642/],
      ["[1::2::3]:9642", /"1::2::3" is not an IPv6 address/, /brackets/],
      ["[::1]:99999", /port "99999"/, /"\[::1\]:9642"/],
      ["host name:9642", /not an IP address or host name/, /127\.0\.0\.1:9642/],
    ];
    for (const [value, message, fix] of cases) {
      const e = issuesOf(() => load(env, `metrics-listen = "${value}"\nqueue-length = 0\n`));
      const issue = e.issues.find((i) => i.key === "defaults.metrics-listen");
      assert.ok(issue, `${value}: ${JSON.stringify(e.issues)}`);
      assert.equal(issue.file, "test.conf");
      assert.match(issue.message, message, value);
      assert.match(issue.fix, fix, value);
      // Every error at once: the bad queue-length is reported too.
      assert.ok(e.issues.some((i) => i.key === "defaults.queue-length"), value);
    }
    const typed = issuesOf(() => load(env, `metrics-listen = 9642\n`));
    assert.match(typed.issues[0].message, /expected a string/);
    for (const max of ["0", "4097", "1.5", '"16"']) {
      const bad = issuesOf(() => load(env, `metrics-max-connections = ${max}\nqueue-length = 0\n`));
      const issue = bad.issues.find((i) => i.key === "defaults.metrics-max-connections");
      assert.ok(issue, `${max}: ${JSON.stringify(bad.issues)}`);
      assert.equal(issue.file, "test.conf");
      assert.ok(bad.issues.some((i) => i.key === "defaults.queue-length"), max);
    }
  }),
);

Deno.test(
  "list items are trimmed, whether written as an array or a comma-separated string",
  withEnv((env) => {
    const c = load(
      env,
      `interfaces = " eth0 ,eth1,, "\n[acls]\nx = " 00:11:22:33:44:55 , 02:00:00:00:00:01,"\n`,
      { checkFilesystem: false },
    );
    assert.deepEqual(c.global.interfaces, ["eth0", "eth1"]);
    assert.deepEqual(c.acls.get("x"), [mac("00:11:22:33:44:55"), mac("02:00:00:00:00:01")]);
  }),
);

Deno.test(
  "an empty interfaces list means every interface, with a warning",
  withEnv((env) => {
    const c = load(env, `interfaces = []\n`);
    assert.equal(c.global.interfaces, null);
    assert.ok(c.warnings.some((w) => /defaults\.interfaces: empty list/.test(w)));
  }),
);

Deno.test(
  "buffers is accepted with a warning pointing to ring-buffer-size",
  withEnv((env) => {
    const c = load(env, `buffers = 128\n[interfaces.eth0]\nbuffers = 4\n`);
    const w = c.warnings.filter((x) => /buffers is obsolete/.test(x));
    assert.equal(w.length, 2);
    assert.match(w[0], /test\.conf: defaults\.buffers: .*use ring-buffer-size instead/);
  }),
);

Deno.test(
  "a device needs exactly one of path and uuid, and both shelf and slot",
  withEnv((env) => {
    const e = issuesOf(() =>
      load(
        env,
        `[devices.a]\nshelf = 1\nslot = 1\n` +
          `[devices.b]\npath = "${env.disk}"\nuuid = "ABCD-1234"\nshelf = 1\nslot = 2\n` +
          `[devices.c]\npath = "${env.disk}"\n`,
      )
    );
    const msgs = e.issues.map((i) => `${i.key}: ${i.message}`);
    assert.deepEqual(msgs.sort(), [
      "devices.a.path: missing",
      "devices.b: both path and uuid are given",
      "devices.c.shelf: missing",
      "devices.c.slot: missing",
    ]);
  }),
);

Deno.test(
  "a uuid is resolved through the by-uuid link to the device node",
  withEnv((env) => {
    const c = load(
      env,
      `[devices.a]\nuuid = "0A1B2C3D-1111-2222-3333-444455556666"\nshelf = 1\nslot = 1\n` +
        `[devices.b]\nuuid = "abcd-1234"\nshelf = 1\nslot = 2\n`,
    );
    assert.equal(c.devices[0].path, env.disk);
    assert.equal(c.devices[1].path, env.disk);
    const e = issuesOf(() =>
      load(env, `[devices.a]\nuuid = "ffff-0000"\nshelf = 1\nslot = 1\n`, {
        checkFilesystem: false,
      })
    );
    assert.equal(e.issues.length, 1);
    assert.equal(e.issues[0].key, "devices.a.uuid");
    assert.match(e.issues[0].message, /UUID ffff-0000 does not match any known device/);
  }),
);

Deno.test(
  "a duplicate shelf/slot is an error naming both devices",
  withEnv((env) => {
    const e = issuesOf(() =>
      load(
        env,
        `[devices.first]\npath = "${env.disk}"\nshelf = 3\nslot = 4\n` +
          `[devices.second]\npath = "${env.disk}"\nshelf = 3\nslot = 4\n`,
      )
    );
    assert.equal(e.issues.length, 1);
    assert.equal(e.issues[0].key, "devices.second");
    assert.match(e.issues[0].message, /shelf 3, slot 4 is already used by device first/);
    assert.match(e.issues[0].fix, /second or first/);
  }),
);

Deno.test(
  "device names must be file names; long names are fine (the serial is shelf.slot:host)",
  withEnv((env) => {
    const e = issuesOf(() =>
      load(env, `[devices."bad/name"]\npath = "${env.disk}"\nshelf = 1\nslot = 1\n`)
    );
    assert.match(e.issues[0].message, /cannot name its state files/);
    const c = load(
      env,
      `[devices.a-very-long-device-name-indeed]\npath = "${env.disk}"\nshelf = 1\nslot = 1\n`,
    );
    assert.ok(!c.warnings.some((w) => /characters/.test(w)), c.warnings.join("\n"));
    assert.equal(c.devices[0].serial, "1.1:storage1");
  }),
);

Deno.test(
  "devices keep file order even with numeric names",
  withEnv((env) => {
    const c = load(
      env,
      `[devices.zeta]\npath = "${env.disk}"\nshelf = 1\nslot = 1\n` +
        `[devices.10]\npath = "${env.disk}"\nshelf = 1\nslot = 2\n` +
        `[devices."2"]\npath = "${env.disk}"\nshelf = 1\nslot = 3\n`,
    );
    assert.deepEqual(c.devices.map((d) => d.name), ["zeta", "10", "2"]);
  }),
);

Deno.test(
  "the filesystem is checked: state directory, device paths",
  withEnv((env) => {
    Deno.writeFileSync(`${env.dir}/plain`, new Uint8Array(0));
    const e = issuesOf(() =>
      parseConfigText(
        `[defaults]\nstate-directory = "${env.dir}/plain"\n` +
          `[devices.a]\npath = "${env.dir}/missing"\nshelf = 1\nslot = 1\n` +
          `[devices.b]\npath = "/dev/null"\nshelf = 1\nslot = 2\n` +
          `[devices.c]\npath = "${env.dir}"\nshelf = 1\nslot = 3\n`,
        "fs.conf",
        env.options,
      )
    );
    const msgs = Object.fromEntries(e.issues.map((i) => [i.key, i.message]));
    assert.match(msgs["defaults.state-directory"], /is not a directory/);
    assert.match(msgs["devices.a.path"], /missing: no such file/);
    assert.match(msgs["devices.b.path"], /\/dev\/null is not a block device or regular file/);
    assert.match(msgs["devices.c.path"], /is not a block device or regular file/);
    const missing = issuesOf(() =>
      parseConfigText(`[defaults]\nstate-directory = "${env.dir}/nope"\n`, "fs.conf", env.options)
    );
    assert.match(missing.issues[0].message, /no such file/);
    // No probe file is left behind by the writability check.
    load(env, "");
    assert.deepEqual([...Deno.readDirSync(env.state)], []);
  }),
);

Deno.test(
  "a state directory others may write is refused with the fix: world-writable, or writable by a group not the daemon's",
  withEnv((env) => {
    const text = `[defaults]\nstate-directory = "${env.state}"\n`;
    const check = () => {
      try {
        parseConfigText(text, "perm.conf", env.options);
        return [];
      } catch (e) {
        if (!(e instanceof ConfigError)) throw e;
        return e.issues;
      }
    };
    Deno.chmodSync(env.state, 0o777);
    let issues = check();
    assert.match(issues[0].message, /writable by every user/);
    assert.match(issues[0].fix!, /chmod o-w/);
    // Group-writable, the group not ours: refused, the fix names chmod g-w and the chown.
    const ours = Deno.statSync(env.state).gid!;
    Deno.chmodSync(env.state, 0o770);
    Deno.chownSync(env.state, null, ours + 4242);
    issues = check();
    assert.equal(issues.length, 1, JSON.stringify(issues));
    assert.match(issues[0].message, new RegExp(`writable by group ${ours + 4242}, which is not`));
    assert.match(issues[0].fix!, /chmod g-w .*chown :/);
    // The same group without write, or our own group with write: accepted.
    Deno.chmodSync(env.state, 0o750);
    assert.deepEqual(check(), []);
    Deno.chownSync(env.state, null, ours);
    Deno.chmodSync(env.state, 0o770);
    assert.deepEqual(check(), []);
  }),
);

Deno.test(
  "a read-only state directory is refused",
  withEnv((env) => {
    // Root ignores mode bits; a read-only bind mount is the honest test, but needs a mount
    // namespace. Use a directory whose write fails for everyone: /proc.
    const e = issuesOf(() =>
      parseConfigText(`[defaults]\nstate-directory = "/proc"\n`, "ro.conf", env.options)
    );
    assert.match(e.issues[0].message, /state directory \/proc is not writable/);
  }),
);

Deno.test(
  "ACL tokens: MAC spellings, ACL names in any order, ethers host names; sorted, de-duplicated",
  withEnv((env) => {
    const c = load(
      env,
      `[acls]
all = ["office", "servers", "HOST1"]
servers = ["001b.210a.aa22", "00-1B-21-0A-AA-22", "0:e:c:3e:3b:b"]
office = ["printer", "servers"]
[devices.d]
path = "${env.disk}"
shelf = 1
slot = 1
accept = ["all", "02:00:00:00:00:09"]
deny = "servers"
`,
    );
    const servers = [mac("00:0e:0c:3e:3b:0b"), mac("00:1b:21:0a:aa:22")];
    assert.deepEqual(c.acls.get("servers"), servers);
    assert.deepEqual(c.acls.get("office"), [...servers, mac("02:00:00:00:00:09")]);
    assert.deepEqual(c.acls.get("all"), [
      mac("00:0e:0c:3e:3b:0b"),
      mac("00:11:22:33:44:55"),
      mac("00:1b:21:0a:aa:22"),
      mac("02:00:00:00:00:09"),
    ]);
    assert.deepEqual(c.devices[0].accept, c.acls.get("all"));
    assert.deepEqual(c.devices[0].deny, servers);
  }),
);

Deno.test(
  "ACL cycles and unknown tokens are errors naming them",
  withEnv((env) => {
    const e = issuesOf(() =>
      load(
        env,
        `[acls]\na = ["b"]\nb = ["c", "00:11:22:33:44:55"]\nc = ["a"]\nd = ["nosuchhost"]\n` +
          `[devices.x]\npath = "${env.disk}"\nshelf = 1\nslot = 1\naccept = ["ghost"]\n`,
      )
    );
    const msgs = e.issues.map((i) => `${i.key}: ${i.message}`);
    assert.ok(msgs.some((m) => /^acls\.a: ACL cycle: a -> b -> c -> a$/.test(m)), msgs.join("\n"));
    assert.ok(msgs.some((m) => /^acls\.d: unknown ACL token "nosuchhost": .*ethers/.test(m)));
    assert.ok(msgs.some((m) => /^devices\.x\.accept: unknown ACL token "ghost"/.test(m)));
  }),
);

Deno.test(
  "an unreadable ethers file is named in the error of a host-name token",
  withEnv((env) => {
    const e = issuesOf(() =>
      load(env, `[acls]\na = ["host1"]\n`, { ethersFile: `${env.dir}/no-ethers` })
    );
    assert.match(e.issues[0].message, /no-ethers \(cannot read it: no such file\)/);
  }),
);

Deno.test(
  "an ACL of more than 255 addresses is an error",
  withEnv((env) => {
    const many = Array.from(
      { length: 256 },
      (_, i) => `"02:00:00:00:${(i >> 8).toString(16)}:${(i & 0xff).toString(16)}"`,
    );
    const e = issuesOf(() => load(env, `[acls]\nbig = [${many.join(", ")}]\n`));
    assert.equal(e.issues[0].key, "acls.big");
    assert.match(e.issues[0].message, /256 addresses, more than 255/);
    const ok = load(env, `[acls]\nbig = [${many.slice(1).join(", ")}, ${many[1]}]\n`);
    assert.equal(ok.acls.get("big")!.length, 255);
  }),
);

Deno.test(
  "an accept list that resolves to no address fails closed",
  withEnv((env) => {
    const e = issuesOf(() =>
      load(
        env,
        `[acls]\nnobody = []\n[devices.d]\npath = "${env.disk}"\nshelf = 1\nslot = 1\n` +
          `accept = ["nobody"]\n[devices.e]\npath = "${env.disk}"\nshelf = 1\nslot = 2\n` +
          `accept = []\ndeny = ["nobody"]\n`,
      )
    );
    assert.deepEqual(e.issues.map((i) => i.key), ["devices.d.accept", "devices.e.accept"]);
    assert.match(e.issues[0].message, /resolves to no address \(nobody\)/);
    assert.match(e.issues[1].message, /resolves to no address \(empty list\)/);
  }),
);

Deno.test(
  "log-target and log-level accept only their values",
  withEnv((env) => {
    const e = issuesOf(() => load(env, `log-target = "journal"\nlog-level = "warn"\n`));
    const by = Object.fromEntries(e.issues.map((i) => [i.key, i]));
    assert.match(by["defaults.log-target"].message, /"journal" is not one of stderr, syslog/);
    assert.equal(by["defaults.log-level"].fix, 'write log-level = "warning"');
  }),
);

Deno.test(
  "tx-ring-bug (a Linux 2.6.31 workaround) is accepted and ignored with a warning, TOML and INI",
  withEnv((env) => {
    const ring = (c: Config) => c.warnings.filter((w) => w.includes("tx-ring-bug"));
    const toml = load(env, "tx-ring-bug = true\n");
    assert.deepEqual(ring(toml), [
      "test.conf: defaults.tx-ring-bug: tx-ring-bug is obsolete and ignored (remove it: it worked around a TX ring bug of Linux 2.6.31, which no supported kernel has)",
    ]);
    assert.equal("txRingBug" in toml.global, false);
    const ini = parseConfigText(
      `[defaults]\nstate-directory = ${env.state}\ninterfaces = eth0, eth1\ntx-ring-bug = true\n`,
      "test.conf",
      env.options,
    );
    assert.equal(ini.format, "ini");
    assert.equal(ring(ini).length, 1);
    assert.match(ring(ini)[0], /tx-ring-bug is obsolete and ignored \(remove it: /);
  }),
);

Deno.test(
  "an unreadable file is a ConfigError saying what to do",
  withEnv((env) => {
    const e = issuesOf(() => loadConfig(`${env.dir}/ggaoed.conf`, env.options));
    assert.equal(
      e.message,
      `${env.dir}/ggaoed.conf: cannot read ${env.dir}/ggaoed.conf: no such file ` +
        "(create it from ggaoed.conf.dist, or pass -c FILE)",
    );
    Deno.writeFileSync(`${env.dir}/bin.conf`, new Uint8Array([0x5b, 0xff, 0x5d]));
    assert.match(issuesOf(() => loadConfig(`${env.dir}/bin.conf`)).message, /not valid UTF-8/);
  }),
);

Deno.test(
  "loadConfig reads a TOML file from disk",
  withEnv((env) => {
    Deno.writeTextFileSync(
      `${env.dir}/g.toml`,
      `[defaults]\nstate-directory = "${env.state}"\n[devices.d]\npath = "${env.disk}"\n` +
        "shelf = 9\nslot = 9\n",
    );
    const c = loadConfig(`${env.dir}/g.toml`, env.options);
    assert.equal(c.file, `${env.dir}/g.toml`);
    assert.equal(c.devices[0].shelf, 9);
  }),
);

Deno.test(
  "TOML syntax errors are reported with line and column",
  withEnv((env) => {
    const e = issuesOf(() =>
      parseConfigText(`[devices.d]\npath = "/x\nshelf = 1\n`, "bad.toml", env.options)
    );
    assert.equal(e.issues.length, 1);
    assert.match(e.issues[0].message, /^not valid TOML: line 2, column \d+: /);
  }),
);

// ---- the original's INI format ----

Deno.test(
  "an INI file is detected, read with GKeyFile rules and our decisions, and warned about",
  withEnv((env) => {
    const c = parseConfigText(
      `[defaults]
state-directory = ${env.state}
interfaces = eth0, eth1
mtu = 9000
[acls]
mine = 00:11:22:33:44:55, host1,02:00:00:00:00:01
[eth1]
ring-buffer-size = 0
[disk]
shelf = 1
slot = 2
path = ${env.disk}
accept = mine
read-only = 1
`,
      "old.conf",
      env.options,
    );
    assert.equal(c.format, "ini");
    assert.match(
      c.warnings[0],
      /^old\.conf: .*original ggaoed INI format.*convert-config old\.conf/,
    );
    assert.deepEqual(c.global.interfaces, ["eth0", "eth1"]);
    assert.deepEqual(c.acls.get("mine"), [mac("00:11:22:33:44:55"), mac("02:00:00:00:00:01")]);
    assert.deepEqual(interfaceConfig(c, "eth1"), {
      mtu: 9000,
      ringBufferSize: 0,
      sendBufferSize: 0,
      receiveBufferSize: 0,
    });
    assert.equal(c.devices[0].name, "disk");
    assert.equal(c.devices[0].readOnly, true);
    assert.equal(c.devices[0].queueLength, 64); // built-in default without it in [defaults]
  }),
);

Deno.test(
  "INI: unknown keys are warnings, a group without shelf is interface settings",
  withEnv((env) => {
    const c = parseConfigText(
      `[defaults]\nstate-directory = ${env.state}\nfancy = 1\n[disk]\npath = ${env.disk}\nslot = 1\n`,
      "old.conf",
      env.options,
    );
    assert.equal(c.devices.length, 0);
    assert.ok(c.interfaces.has("disk"));
    assert.ok(c.warnings.some((w) => /defaults\.fancy: unknown key, ignored/.test(w)));
    assert.ok(c.warnings.some((w) => /disk\.path: .*no shelf key/.test(w)));
  }),
);

Deno.test(
  "INI: ; lines and inline comments are errors, every one reported",
  withEnv((env) => {
    const e = issuesOf(() =>
      parseConfigText(
        `[defaults]\n; comment?\nmtu = 9000 # jumbo\nstate-directory = ${env.state}\nnonsense\n`,
        "old.conf",
        env.options,
      )
    );
    assert.deepEqual(e.issues.map((i) => i.message), [
      'line 2: "; comment?" is not a key-value pair, group, or comment (only lines starting with # are comments)',
      'line 5: "nonsense" is not a key-value pair, group, or comment (only lines starting with # are comments)',
    ]);
    const e2 = issuesOf(() =>
      parseConfigText(
        `[defaults]\nmtu = 9000 # jumbo\nstate-directory = ${env.state}\n`,
        "old.conf",
        env.options,
      )
    );
    assert.equal(e2.issues[0].key, "defaults.mtu");
    assert.match(e2.issues[0].message, /line 2: value "9000 # jumbo" cannot be interpreted/);
  }),
);

Deno.test(
  "format detection: TOML typos stay TOML errors; INI-only tables make an INI file",
  withEnv((env) => {
    const e = issuesOf(() =>
      parseConfigText(`[device.disk]\npath = "/x"\nshelf = 1\n`, "t.conf", env.options)
    );
    assert.equal(e.issues[0].key, "device");
    assert.equal(e.issues[0].fix, "did you mean [devices]?");
    const e2 = issuesOf(() => parseConfigText(`[default]\nmtu = 9000\n`, "t.conf", env.options));
    assert.equal(e2.issues[0].fix, "did you mean [defaults]?");
    // Valid TOML, but [eth1] is only meaningful as an original INI interface group.
    const c = parseConfigText(`[defaults]\nqueue-length = 8\n[eth1]\nmtu = 9000\n`, "t.conf", {
      ...env.options,
      checkFilesystem: false,
    });
    assert.equal(c.format, "ini");
    assert.equal(interfaceConfig(c, "eth1").mtu, 9000);
  }),
);

Deno.test(
  "admin resolves like accept, in [defaults] and per device; an empty list is allowed",
  withEnv((env) => {
    const c = load(
      env,
      `admin = ["ops"]
[acls]
ops = ["host1", "02:00:00:00:00:02"]
[devices.a]
path = "${env.disk}"
shelf = 1
slot = 1
[devices.b]
path = "${env.disk}"
shelf = 1
slot = 2
admin = []
`,
    );
    assert.deepEqual(c.devices[0].admin, [mac("00:11:22:33:44:55"), mac("02:00:00:00:00:02")]);
    assert.deepEqual(c.devices[1].admin, [], "nobody may edit over the network");
    assert.deepEqual(c.warnings, []);
    const e = issuesOf(() =>
      load(
        env,
        `admin = ["nosuchhost"]\n[devices.a]\npath = "${env.disk}"\nshelf = 1\nslot = 1\nadmin = "00:11:22:33:44"\n`,
      )
    );
    assert.deepEqual(e.issues.map((i) => i.key), ["defaults.admin", "devices.a.admin"]);
    assert.match(e.issues[0].message, /unknown ACL token "nosuchhost"/);
  }),
);

Deno.test(
  "without admin, a device served to more than one host is warned about, naming the key",
  withEnv((env) => {
    const dev = (name: string, slot: number, extra: string) =>
      `[devices.${name}]\npath = "${env.disk}"\nshelf = 1\nslot = ${slot}\n${extra}\n`;
    const c = load(
      env,
      dev("everyone", 1, "") +
        dev("two", 2, `accept = ["00:11:22:33:44:55", "02:00:00:00:00:09"]`) +
        dev("one", 3, `accept = ["00:11:22:33:44:55"]`) +
        dev("guarded", 4, `admin = ["00:11:22:33:44:55"]`),
    );
    assert.equal(c.warnings.length, 2, c.warnings.join("\n"));
    assert.match(c.warnings[0], /^test\.conf: devices\.everyone: served to every host \(no accept/);
    assert.match(c.warnings[1], /^test\.conf: devices\.two: served to 2 hosts \(its accept list\)/);
    for (const w of c.warnings) {
      assert.match(w, /MAC Mask List or take or force a reservation/);
      assert.match(w, /set admin = \["MAC", \.\.\.\] in \[devices\.\w+\] or \[defaults\]/);
    }
  }),
);

Deno.test(
  "without admin, more than three devices served to several hosts are summed up in one warning",
  withEnv((env) => {
    const dev = (i: number) =>
      `[devices.d${i}]\npath = "${env.disk}"\nshelf = ${1 + (i >> 7)}\nslot = ${i & 127}\n`;
    const c = load(env, Array.from({ length: 256 }, (_, i) => dev(i)).join(""));
    assert.equal(c.warnings.length, 1, c.warnings.join("\n"));
    assert.match(
      c.warnings[0],
      /^test\.conf: 256 devices \(devices\.d0, devices\.d1, devices\.d2 and 253 more\) are served to more than one host and no admin list is set: .*MAC Mask List/,
    );
    assert.match(c.warnings[0], /set admin = \["MAC", \.\.\.\] in \[defaults\]/);
    const guarded = load(
      env,
      `admin = ["00:11:22:33:44:55"]\n` + Array.from({ length: 256 }, (_, i) => dev(i)).join(""),
    );
    assert.deepEqual(guarded.warnings, []);
  }),
);

Deno.test(
  "offset and length must lie within a regular file; sync-writes and serial are read",
  withEnv((env) => {
    // env.disk holds 8 sectors.
    const dev = (extra: string) =>
      load(env, `[devices.d]\npath = "${env.disk}"\nshelf = 1\nslot = 1\n${extra}\n`).devices[0];
    assert.deepEqual([dev("offset = 2").offsetSectors, dev("offset = 2").lengthSectors], [2, null]);
    assert.equal(dev("offset = 7\nlength = 1").lengthSectors, 1);
    assert.equal(dev("sync-writes = true").syncWrites, true);
    assert.equal(dev(`serial = "twenty-characters-xx"`).serial, "twenty-characters-xx");
    const e = issuesOf(() =>
      load(
        env,
        `[devices.a]\npath = "${env.disk}"\nshelf = 1\nslot = 1\noffset = 8\n` +
          `[devices.b]\npath = "${env.disk}"\nshelf = 1\nslot = 2\noffset = 4\nlength = 5\n` +
          `[devices.c]\npath = "${env.disk}"\nshelf = 1\nslot = 3\nlength = 0\noffset = -1\n` +
          `[devices.d]\npath = "${env.disk}"\nshelf = 1\nslot = 4\nserial = "twenty-one-characters"\n` +
          `[devices.e]\npath = "${env.disk}"\nshelf = 1\nslot = 5\nserial = "dïsk"\n` +
          `[devices.f]\npath = "/dev/null"\nshelf = 1\nslot = 6\noffset = 17592186044415\nlength = 2\n`,
        { checkFilesystem: true },
      )
    );
    const byKey = new Map(e.issues.map((i) => [i.key, i]));
    assert.match(
      byKey.get("devices.a.offset")!.message,
      new RegExp(`${env.disk} holds 8 sectors of 512 bytes: offset 8 is at or past its end`),
    );
    assert.match(byKey.get("devices.a.offset")!.fix, /lower offset \(in sectors\), or grow/);
    assert.match(
      byKey.get("devices.b.length")!.message,
      /holds 8 sectors of 512 bytes: offset 4 \+ length 5 = 9 is past its end/,
    );
    assert.match(byKey.get("devices.c.length")!.message, /0 is out of range 1 to 2\^44 sectors/);
    assert.match(byKey.get("devices.c.offset")!.message, /-1 is out of range 0 to 2\^44-1/);
    assert.match(byKey.get("devices.d.serial")!.message, /cannot be an IDENTIFY serial number/);
    assert.match(byKey.get("devices.d.serial")!.fix, /at most 20 printable ASCII characters/);
    assert.ok(byKey.has("devices.e.serial"));
    assert.match(byKey.get("devices.f.length")!.message, /past 2\^44/);
  }),
);

Deno.test("exportedSectors: length, or the rest after offset; a range past the end throws", () => {
  const d = (offsetSectors: number, lengthSectors: number | null) =>
    ({ path: "/x.img", offsetSectors, lengthSectors }) as Parameters<typeof exportedSectors>[0];
  assert.equal(exportedSectors(d(0, null), 100 * 512 + 100), 100);
  assert.equal(exportedSectors(d(10, null), 100 * 512), 90);
  assert.equal(exportedSectors(d(10, 90), 100 * 512), 90);
  assert.equal(exportedSectors(d(0, null), 0), 0, "an empty file exports nothing, as before");
  assert.throws(() => exportedSectors(d(10, 91), 100 * 512), /offset 10 \+ length 91 = 101/);
  assert.throws(() => exportedSectors(d(100, null), 100 * 512), /offset 100 is at or past/);
});

Deno.test(
  "max-request-age and max-stall: [defaults] for every device, a device's own, 0 turns them off",
  withEnv((env) => {
    const c = load(
      env,
      `max-request-age = 5
max-stall = 0
[devices.d1]
path = "${env.disk}"
shelf = 1
slot = 1
[devices.d2]
path = "${env.disk}"
shelf = 1
slot = 2
max-request-age = 0
max-stall = 0.5
`,
    );
    const [d1, d2] = c.devices;
    assert.deepEqual([d1.maxRequestAge, d1.maxStall], [5, 0]);
    assert.deepEqual([d2.maxRequestAge, d2.maxStall], [0, 0.5]);
  }),
);

Deno.test(
  "workers: a whole number 1-1024 (unset: null, the daemon picks); a bad one names the file, the key and the fix",
  withEnv((env) => {
    assert.equal(load(env, "").global.workers, null);
    assert.equal(load(env, "workers = 1\n").global.workers, 1);
    assert.equal(load(env, "workers = 8\n").global.workers, 8);
    const cases: [string, RegExp][] = [
      ["0", /0 is out of range 1-1024/],
      ["1025", /out of range 1-1024/],
      ["-2", /out of range 1-1024/],
      ['"x"', /expected an integer|not an integer|expected a whole number/],
      ["1.5", /integer|whole/],
    ];
    for (const [value, message] of cases) {
      const e = issuesOf(() => load(env, `workers = ${value}\n`));
      const issue = e.issues.find((i) => i.key === "defaults.workers");
      assert.ok(issue, `${value}: ${JSON.stringify(e.issues)}`);
      assert.equal(issue.file, "test.conf");
      assert.match(issue.message, message, value);
      assert.match(issue.fix, /whole number|integer/, value);
    }
    // The INI format takes it too.
    const ini = parseConfigText(
      `[defaults]\nstate-directory = ${env.state}\nworkers = 2\n`,
      "test.ini",
      env.options,
    );
    assert.equal(ini.global.workers, 2);
  }),
);
