/**
 * The ggaoed command line: help, version, check-config and convert-config, run as the real
 * program.
 */

import { assert, assertEquals } from "./helpers/assert.ts";
import { parseConfigText } from "../src/config/load.ts";
import { DAEMON_FLAGS, DENO, REPO } from "../lab/target.ts";
import { VERSION } from "../src/version.ts";

async function ggaoed(...args: string[]): Promise<{ code: number; out: string; err: string }> {
  const o = await new Deno.Command(DENO, {
    args: ["run", ...DAEMON_FLAGS, `${REPO}ggaoed.ts`, ...args],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const d = new TextDecoder();
  return { code: o.code, out: d.decode(o.stdout), err: d.decode(o.stderr) };
}

Deno.test("ggaoed --help lists every option and command with examples; -V prints the version", async () => {
  const help = await ggaoed("--help");
  assertEquals(help.code, 0);
  for (
    const word of ["--config", "--debug", "--nofork", "check-config", "convert-config", "SIGHUP"]
  ) {
    assert(help.out.includes(word), `help lacks ${word}`);
  }
  const version = await ggaoed("-V");
  assertEquals(version.out.trim(), `ggaoed ${VERSION}`);
  const bad = await ggaoed("--frobnicate");
  assertEquals(bad.code, 1);
  assert(bad.err.includes("Usage:"));
  const unknown = await ggaoed("frob");
  assertEquals(unknown.code, 1);
  assert(unknown.err.includes("unknown command 'frob'"));
});

Deno.test("convert-config turns the original's sample into TOML that loads to the same devices", async () => {
  const fixture = `${REPO}tests/config/fixtures/original-ggaoed.conf`;
  const r = await ggaoed("convert-config", fixture);
  assertEquals(r.code, 0, r.err);
  const dir = Deno.makeTempDirSync();
  Deno.writeTextFileSync(`${dir}/ethers`, "00:11:22:33:44:55 host1\n"); // the sample names host1
  const opts = { checkFilesystem: false, ethersFile: `${dir}/ethers` };
  const fromToml = parseConfigText(r.out, "converted.toml", opts);
  const fromIni = parseConfigText(Deno.readTextFileSync(fixture), fixture, opts);
  assertEquals(fromToml.format, "toml");
  assertEquals(fromIni.format, "ini");
  assertEquals(fromToml.devices, fromIni.devices);
  assertEquals(fromToml.global, fromIni.global);
  Deno.removeSync(dir, { recursive: true });
  const missing = await ggaoed("convert-config", "/nonexistent.conf");
  assertEquals(missing.code, 1);
  assert(missing.err.includes("cannot read /nonexistent.conf"), missing.err);
});

Deno.test("check-config lists what would be exported, or every error", async () => {
  const dir = Deno.makeTempDirSync({ dir: "/var/tmp" });
  try {
    Deno.writeFileSync(`${dir}/d.img`, new Uint8Array(4096));
    const conf = `${dir}/ok.toml`;
    Deno.writeTextFileSync(
      conf,
      `[defaults]\nstate-directory = "${dir}"\n[devices.d1]\npath = "${dir}/d.img"\nshelf = 3\nslot = 4\nread-only = true\n` +
        `offset = 2\nlength = 4\nadmin = ["00:11:22:33:44:55"]\n`,
    );
    const ok = await ggaoed("check-config", "-c", conf);
    assertEquals(ok.code, 0, ok.err);
    assert(
      /OK \(toml\)/.test(ok.out) &&
        /e3\.4\s+d1\s+.*d\.img \[sectors 2\+4\] \(read-only\), admin 00:11:22:33:44:55/.test(
          ok.out,
        ),
      ok.out,
    );
    Deno.writeTextFileSync(conf, `[devices.d1]\npath = "${dir}/d.img"\nshelf = -1\n`);
    const bad = await ggaoed("check-config", "-c", conf);
    assertEquals(bad.code, 1);
    assert(/devices\.d1\.shelf/.test(bad.err) && /devices\.d1\.slot/.test(bad.err), bad.err);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});
