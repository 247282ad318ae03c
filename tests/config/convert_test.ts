import assert from "node:assert/strict";
import { parse as parseToml } from "smol-toml";
import { convertIniToToml } from "../../src/config/convert.ts";
import { parseKeyFile } from "../../src/config/gkeyfile.ts";
import { type LoadOptions, parseConfigText } from "../../src/config/load.ts";
import { type Config, ConfigError } from "../../src/config/types.ts";

const ORIGINAL = Deno.readTextFileSync(
  new URL("./fixtures/original-ggaoed.conf", import.meta.url),
);

function withEthers(fn: (options: LoadOptions) => void): () => void {
  return () => {
    const dir = Deno.makeTempDirSync({ prefix: "ggaoed-convert-" });
    try {
      Deno.writeTextFileSync(`${dir}/ethers`, "00:11:22:33:44:55 host1\n");
      fn({ ethersFile: `${dir}/ethers`, checkFilesystem: false });
    } finally {
      Deno.removeSync(dir, { recursive: true });
    }
  };
}

/** smol-toml tables have a null prototype; compare their content. */
const plain = (v: unknown) => JSON.parse(JSON.stringify(v));

/** Everything of a Config but how it was written. */
function meaning(c: Config): Omit<Config, "format" | "warnings" | "file"> {
  const { format: _f, warnings: _w, file: _file, ...rest } = c;
  return rest;
}

Deno.test("the original sample reads with GKeyFile rules: list elements are not trimmed", () => {
  const { keyFile, errors } = parseKeyFile(ORIGINAL);
  assert.deepEqual(errors, []);
  assert.deepEqual([...keyFile.groups.keys()], ["defaults", "acls", "eth1", "testdev"]);
  const acls = keyFile.groups.get("acls")!;
  assert.equal(acls.entries.get("foo")!.value, "00:C0:4F:A1:66:94, 00:1B:21:0A:AA:22");
  const device = keyFile.groups.get("testdev")!;
  assert.equal(device.entries.get("accept")!.value, "bar, 00:30:48:69:41:3A");
  assert.deepEqual([...device.entries.keys()], [
    "path",
    "shelf",
    "slot",
    "direct-io",
    "queue-length",
    "interfaces",
    "trace-io",
    "max-delay",
    "merge-delay",
    "broadcast",
    "read-only",
    "accept",
    "deny",
  ]);
});

Deno.test("the original sample converts key by key to TOML, in the original order", () => {
  const toml = convertIniToToml(ORIGINAL, "/etc/ggaoed.conf");
  assert.match(
    toml,
    /^# ggaoed configuration \(TOML\), converted from the original INI file \/etc\/ggaoed\.conf\n/,
  );
  const doc = parseToml(toml) as Record<string, Record<string, unknown>>;
  assert.deepEqual(Object.keys(doc), ["defaults", "acls", "interfaces", "devices"]);
  const defaults = doc.defaults;
  assert.deepEqual(Object.entries(defaults), [
    ["queue-length", 16],
    ["interfaces", ["eth0"]],
    ["direct-io", true],
    ["trace-io", false],
    ["pid-file", "/home/vladislav/ggaoed.pid"],
    ["control-socket", "/home/vladislav/ggaoed.sock"],
    ["state-directory", "/home/vladislav/ggaoed"],
    ["ring-buffer-size", 4096],
    ["send-buffer-size", 256],
    ["receive-buffer-size", 256],
    ["max-delay", 0.001],
    ["merge-delay", 0],
  ]);
  // The original's `a, b` lists: every element trimmed (our decision 4).
  assert.deepEqual(Object.entries(doc.acls), [
    ["foo", ["00:C0:4F:A1:66:94", "00:1B:21:0A:AA:22"]],
    ["bar", ["foo", "host1", "00:0E:0C:3E:3B:0B"]],
  ]);
  assert.deepEqual(plain(doc.interfaces), {
    eth1: {
      mtu: 9000,
      "ring-buffer-size": 4096,
      "send-buffer-size": 256,
      "receive-buffer-size": 256,
    },
  });
  assert.deepEqual(Object.entries((doc.devices as Record<string, object>).testdev), [
    ["path", "/dev/sdb"],
    ["shelf", 1],
    ["slot", 2],
    ["direct-io", true],
    ["queue-length", 128],
    ["interfaces", ["eth0"]],
    ["trace-io", false],
    ["max-delay", 0.001],
    ["merge-delay", 0],
    ["broadcast", true],
    ["read-only", true],
    ["accept", ["bar", "00:30:48:69:41:3A"]],
    ["deny", ["foo"]],
  ]);
  // Comments are carried over, next to the key they describe.
  assert.match(toml, /# Lenght of the I\/O queue\nqueue-length = 128\n/);
  assert.match(toml, /# Sample disk device specification\n\[devices\.testdev\]\n/);
  assert.match(toml, /# Force MTU, disable auto-detection\nmtu = 9000\n/);
  assert.match(toml, /merge-delay = 0\.0\n/);
});

Deno.test(
  "the converted original sample loads to the same configuration as the INI file",
  withEthers((options) => {
    const ini = parseConfigText(ORIGINAL, "orig.conf", options);
    const toml = parseConfigText(convertIniToToml(ORIGINAL, "orig.conf"), "new.toml", options);
    assert.equal(ini.format, "ini");
    assert.equal(toml.format, "toml");
    // The sample's device is served to five hosts without an admin list: only that warning.
    assert.equal(toml.warnings.length, 1, toml.warnings.join("\n"));
    assert.match(toml.warnings[0], /devices\.testdev: served to 5 hosts .* no admin list/);
    assert.match(ini.warnings[1], /testdev: served to 5 hosts .* in \[testdev\] or \[defaults\]/);
    assert.deepEqual(meaning(toml), meaning(ini));
    // And the sample means what it says.
    assert.equal(ini.devices[0].accept!.length, 5);
    assert.equal(ini.interfaces.get("eth1")!.mtu, 9000);
  }),
);

const TRICKY = `# leading comment

[defaults]
# list with an escaped comma and untrimmed items
interfaces = eth0 ,  bond\\,0,
log-level = warning
buffers = 64
unknown-thing = yes
pid-file = /run/with\\sspace.pid   

[acls]
a = 00:11:22:33:44:55,b
b = host1 , 02:00:00:00:00:01

[not an interface]
mtu = 1500

[lo]
mtu = 1500
[disk.one]
shelf = 7
slot = 3
path = /srv/disk.img
max-delay = 1e-3
merge-delay = 0
accept = a
read-only = 1
[lo]
ring-buffer-size = 0
# trailing comment
`;

Deno.test(
  "GKeyFile features convert faithfully and round-trip: escapes, merged groups, ignored keys",
  withEthers((options) => {
    const toml = convertIniToToml(TRICKY, "tricky.conf");
    const doc = parseToml(toml) as Record<string, Record<string, unknown>>;
    assert.deepEqual(doc.defaults.interfaces, ["eth0", "bond,0"]);
    assert.equal(doc.defaults["pid-file"], "/run/with space.pid");
    assert.deepEqual(plain(doc.interfaces), { lo: { mtu: 1500, "ring-buffer-size": 0 } });
    assert.deepEqual(Object.keys(doc.devices), ["disk.one"]);
    assert.match(toml, /^\[devices\."disk\.one"\]$/m);
    assert.match(toml, /^# obsolete, ignored: buffers = 64$/m);
    assert.match(toml, /^# unknown key, ignored: unknown-thing = yes$/m);
    assert.match(toml, /^# \[not an interface\] \(ignored: .*\)\n# mtu = 1500$/m);
    assert.match(toml, /# trailing comment\n$/);
    const ini = parseConfigText(TRICKY, "tricky.conf", options);
    const back = parseConfigText(toml, "tricky.toml", options);
    assert.deepEqual(meaning(back), meaning(ini));
    assert.deepEqual(ini.devices[0].accept, back.devices[0].accept);
    assert.equal(ini.devices[0].maxDelay, 0.001);
    assert.ok(ini.warnings.some((w) => /unknown-thing: unknown key, ignored/.test(w)));
    assert.ok(
      ini.warnings.some((w) => /not an interface.*cannot be a network interface name/.test(w)),
    );
  }),
);

Deno.test("conversion refuses what the INI reader refuses, listing every problem", () => {
  const bad =
    "[defaults]\n; semicolon\nmtu = 9000 # jumbo\ndirect-io = yes\n[d]\nshelf = 1\npath = a\\,b\n";
  try {
    convertIniToToml(bad, "bad.conf");
    assert.fail("expected a ConfigError");
  } catch (e) {
    assert.ok(e instanceof ConfigError);
    assert.deepEqual(e.issues.map((i) => i.key), [
      "",
      "defaults.mtu",
      "defaults.direct-io",
      "d.path",
    ]);
    assert.match(e.issues[0].message, /line 2: "; semicolon" is not a key-value pair/);
    assert.match(e.issues[3].message, /invalid escape sequence "\\,"/);
  }
});

Deno.test("values that need quoting in TOML are escaped", () => {
  const toml = convertIniToToml('[defaults]\npid-file = /tmp/"q"\\\\x\\tz\n', "q.conf");
  const doc = parseToml(toml) as Record<string, Record<string, unknown>>;
  assert.equal(doc.defaults["pid-file"], '/tmp/"q"\\x\tz');
});
