import assert from "node:assert/strict";
import { parseConfigText } from "../../src/config/load.ts";
import { DEFAULTS_KEYS, DEVICE_KEYS, INTERFACE_KEYS } from "../../src/config/schema.ts";
import { DEFAULTS } from "../../src/config/types.ts";

const DIST = Deno.readTextFileSync(new URL("../../ggaoed.conf.dist", import.meta.url));
const DOCS = Deno.readTextFileSync(new URL("../../docs/configuration.md", import.meta.url));
const OPTIONS = { checkFilesystem: false };

/** The sample with every example uncommented (path kept: path and uuid exclude each other). */
function uncommented(): string {
  return DIST.replace(/^#(\[interfaces\.[^\]]+\]|[a-z-]+ = .*)$/gm, "$1")
    .replace(/^uuid = .*$/m, "");
}

Deno.test("ggaoed.conf.dist loads as shipped, with the built-in defaults", () => {
  const c = parseConfigText(DIST, "ggaoed.conf.dist", OPTIONS);
  assert.equal(c.format, "toml");
  // The demo device is served to every host and has no admin list: that is said, and only that.
  assert.equal(c.warnings.length, 1, c.warnings.join("\n"));
  assert.match(c.warnings[0], /devices\.demo: served to every host .*\(set admin = /);
  assert.equal(c.global.stateDirectory, DEFAULTS.stateDirectory);
  assert.equal(c.interfaceDefaults.ringBufferSize, DEFAULTS.ringBufferSizeKiB * 1024);
  assert.deepEqual(c.devices.map((d) => [d.name, d.shelf, d.slot]), [["demo", 0, 1]]);
  assert.equal(c.devices[0].queueLength, DEFAULTS.queueLength);
});

Deno.test("ggaoed.conf.dist documents every key, and loads with every example enabled", () => {
  const text = uncommented();
  const documented = (section: string) => {
    const start = text.indexOf(section);
    assert.ok(start >= 0, section);
    const end = text.indexOf("\n[", start + 1);
    return new Set(
      [...text.slice(start, end < 0 ? undefined : end).matchAll(/^([a-z-]+) = /gm)].map((m) =>
        m[1]
      ),
    );
  };
  const obsolete = (k: { kind: string }) => k.kind !== "obsolete";
  for (const k of DEFAULTS_KEYS.filter(obsolete)) {
    assert.ok(documented("[defaults]").has(k.key), k.key);
  }
  for (const k of INTERFACE_KEYS.filter(obsolete)) {
    assert.ok(documented("[interfaces.eth1]").has(k.key), k.key);
  }
  for (const k of DEVICE_KEYS) {
    assert.ok(DIST.includes(`${k.key} = `), k.key); // uuid stays commented: path is used
  }
  const dir = Deno.makeTempDirSync({ prefix: "ggaoed-dist-" });
  try {
    Deno.writeTextFileSync(`${dir}/ethers`, "00:30:48:69:41:3a backup-host\n");
    const c = parseConfigText(text, "dist", { ...OPTIONS, ethersFile: `${dir}/ethers` });
    assert.equal(c.interfaces.get("eth1")!.mtu, 9000);
    assert.deepEqual(c.devices[0].interfaces, ["eth0"]);
    assert.equal(c.devices[0].accept!.length, 2);
    assert.equal(c.acls.get("all-hosts")!.length, 3);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("docs/configuration.md has a row for every key", () => {
  for (const k of [...DEFAULTS_KEYS, ...INTERFACE_KEYS, ...DEVICE_KEYS]) {
    assert.match(DOCS, new RegExp(`^\\| \`${k.key}\` +\\|`, "m"), k.key);
  }
});
