import assert from "node:assert/strict";
import { EXPORT_SOURCE, parseExportArgs } from "../../src/config/export.ts";
import { parseConfigText } from "../../src/config/load.ts";
import { ConfigError } from "../../src/config/types.ts";

const OPTIONS = { checkFilesystem: false, hostname: "storage1" };

function plan(args: string[]) {
  const p = parseExportArgs(args);
  assert.equal(p.kind, "plan", JSON.stringify(p));
  return p as Extract<typeof p, { kind: "plan" }>;
}

Deno.test("ggaoed export builds the Config that the equivalent configuration file loads to", () => {
  const p = plan([
    "-r",
    "-d",
    "-s",
    "-o",
    "2048",
    "-l",
    "4096",
    "-m",
    "00:1b:21:0a:aa:22, 00:1b:21:0a:aa:23",
    "-b",
    "16",
    "--admin",
    "00:1b:21:0a:aa:22",
    "3",
    "7",
    "lo",
    "/srv/disk.img",
  ]);
  const fromArgs = p.build(OPTIONS);
  const fromFile = parseConfigText(
    `[defaults]
interfaces = ["lo"]
control-socket = "/run/ggaoed-e3.7-lo.sock"
pid-file = "/run/ggaoed-e3.7-lo.pid"
state-directory = "/var/lib/ggaoed/export/e3.7-lo"
direct-io = true
sync-writes = true
queue-length = 16

[devices."e3.7"]
path = "/srv/disk.img"
shelf = 3
slot = 7
read-only = true
offset = 2048
length = 4096
accept = ["00:1b:21:0a:aa:22", "00:1b:21:0a:aa:23"]
admin = ["00:1b:21:0a:aa:22"]
`,
    "equivalent.toml",
    OPTIONS,
  );
  assert.equal(fromArgs.file, EXPORT_SOURCE);
  assert.deepEqual(fromArgs.warnings, []);
  const { file: _a, warnings: _b, ...args } = fromArgs;
  const { file: _c, warnings: _d, ...file } = fromFile;
  assert.deepEqual(args, file);
  assert.equal(p.stateDirectory, "/var/lib/ggaoed/export/e3.7-lo");
  assert.equal(p.debug, false);
});

Deno.test("ggaoed export defaults: buffered, not synchronous, every host served (with a warning)", () => {
  const config = plan(["0", "1", "lo", "/srv/disk.img"]).build(OPTIONS);
  const [d] = config.devices;
  assert.deepEqual(
    [d.name, d.directIo, d.syncWrites, d.readOnly, d.accept, d.admin, d.queueLength],
    ["e0.1", false, false, false, null, null, 64],
  );
  assert.deepEqual([d.offsetSectors, d.lengthSectors, d.serial], [0, null, "0.1:storage1"]);
  assert.deepEqual(config.warnings, [
    "ggaoed export: served to every host (no -m) and no admin list is set: any of them may edit the MAC Mask List or take or force a reservation, which locks the others out and persists across restarts (give --admin MAC[,MAC...] to allow these edits only from the hosts listed)",
  ]);
});

Deno.test("ggaoed export: problems name the option or argument, not a configuration key", () => {
  const p = plan(["-l", "0", "-b", "70000", "1", "255", "lo", "/srv/disk.img"]);
  try {
    p.build(OPTIONS);
    assert.fail("expected a ConfigError");
  } catch (e) {
    assert.ok(e instanceof ConfigError);
    assert.deepEqual(e.issues.map((i) => [i.key, i.message]), [
      ["-b BUFCOUNT", "70000 is out of range 1-65535"],
      ["SLOT", "255 is out of range 0-254"],
      ["-l LENGTH", "0 is out of range 1 to 2^44 sectors"],
    ]);
    assert.match(e.issues[2].fix, /leave out -l to export the rest/);
  }
  for (
    const [args, message] of [
      [["0", "1", "lo"], "give SHELF SLOT IFACE FILE (3 of the 4 arguments given)"],
      [["0", "1", "lo", "f", "g"], "unexpected argument 'g' after SHELF SLOT IFACE FILE"],
      [["x", "1", "lo", "f"], "SHELF: 'x' is not a whole number (e.g. 0)"],
      [["-m", "a,,b", "0", "1", "lo", "f"], "-m: an empty address in 'a,,b'"],
    ] as const
  ) {
    const r = parseExportArgs([...args]);
    assert.equal(r.kind, "usage");
    assert.ok((r as { message: string }).message.startsWith(message), JSON.stringify(r));
  }
  assert.equal(parseExportArgs(["--help"]).kind, "help");
});
