/**
 * contrib/ggaoed.service, checked by systemd's own tools without booting systemd (Debian's
 * `systemd` package provides `systemd-analyze`): `verify` parses every directive, and `security
 * --offline` scores the sandbox; the README quotes that score. tests/container_test.ts runs the
 * unit under a real systemd.
 */

import { assert, assertEquals } from "./helpers/assert.ts";
import { have, run } from "../lab/command.ts";
import { DEFAULTS } from "../src/config/types.ts";

const REPO = new URL("../", import.meta.url).pathname;
const UNIT = `${REPO}contrib/ggaoed.service`;
const text = Deno.readTextFileSync(UNIT);
/** `Key=value` settings of the unit (comments and sections dropped), in order. */
const settings = text.split("\n").filter((l) => /^[A-Za-z]+=/.test(l)).map((l) => {
  const eq = l.indexOf("=");
  return [l.slice(0, eq), l.slice(eq + 1)] as const;
});
const values = (key: string) => settings.filter(([k]) => k === key).map(([, v]) => v);

Deno.test("systemd-analyze verify accepts the unit", async () => {
  assert(await have("systemd-analyze"), "install systemd: scripts/install-deps.sh --test");
  // verify also checks that the commands exist: put the programs the unit names (installed in
  // /usr/local/sbin, which this machine need not have) at a temporary path; nothing else changes.
  const dir = Deno.makeTempDirSync({ prefix: "ggaoed-unit-" });
  try {
    for (const program of ["ggaoed", "ggaoectl"]) {
      Deno.writeTextFileSync(`${dir}/${program}`, "#!/bin/sh\n");
      Deno.chmodSync(`${dir}/${program}`, 0o755);
    }
    Deno.writeTextFileSync(`${dir}/ggaoed.service`, text.replaceAll("/usr/local/sbin", dir));
    const out = await run(["systemd-analyze", "verify", `${dir}/ggaoed.service`], {
      check: false,
    });
    assertEquals(out.code, 0, out.stderr);
    assertEquals(out.stderr.split("\n").filter((l) => l.includes("ggaoed.service")), []);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("the sandbox scores 'OK' (at most 2.0) in systemd-analyze security, as the README says", async () => {
  const out = await run([
    "systemd-analyze",
    "security",
    "--offline=true",
    "--threshold=20",
    "--no-pager",
    UNIT,
  ], { check: false });
  const score = out.stdout.match(/Overall exposure level for ggaoed\.service: ([\d.]+)/)?.[1];
  assertEquals(out.code, 0, `exposure ${score} is over 2.0:\n${out.stdout}`);
  const readme = Deno.readTextFileSync(`${REPO}README.md`);
  assert(
    readme.includes(`systemd-analyze security\` scores it ${score}`),
    `README does not quote the score ${score}`,
  );
});

Deno.test("the unit is Type=notify, runs as its own user with CAP_NET_RAW alone, and keeps what Deno needs", () => {
  assertEquals(values("Type"), ["notify"]);
  assertEquals(values("User"), ["ggaoed"]);
  assertEquals(values("AmbientCapabilities"), ["CAP_NET_RAW"]);
  assertEquals(values("CapabilityBoundingSet"), ["CAP_NET_RAW"]);
  assertEquals(values("NoNewPrivileges"), ["yes"]);
  assertEquals(values("ProtectSystem"), ["strict"]);
  // V8 writes and then executes machine code; capabilities in a user namespace open no packet
  // socket of the host; the interfaces are the host's.
  assertEquals(values("MemoryDenyWriteExecute"), ["no"]);
  for (const key of ["PrivateUsers", "PrivateNetwork", "PrivateDevices"]) {
    assertEquals(values(key), [], key);
  }
  // The programs read the default configuration path: no -c in the unit.
  for (const command of [...values("ExecStart"), ...values("ExecStartPre")]) {
    assert(!/ -c /.test(command), `${command}: the default is ${DEFAULTS.configPath}`);
  }
  assert(text.includes(DEFAULTS.configPath), "the unit's comments name the configuration path");
});
