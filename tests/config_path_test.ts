/**
 * One configuration path: /etc/ggaoed/ggaoed.conf. People coming from the original ggaoed have
 * /etc/ggaoed.conf; ggaoed tells them so instead of saying only "no such file". Each case runs
 * the real CLI in a private mount namespace whose /etc is an overlay (the machine's /etc is not
 * touched).
 */

import { assert, assertEquals } from "./helpers/assert.ts";
import { run } from "../lab/command.ts";
import { DEFAULTS } from "../src/config/types.ts";
import { CTL_FLAGS, DAEMON_FLAGS } from "../src/permissions.ts";

const REPO = new URL("../", import.meta.url).pathname;
/** A state directory of the tests' own (mode 0700: a world-writable one is refused). */
const STATE = Deno.makeTempDirSync({ dir: "/var/tmp", prefix: "ggaoed-state-" });
globalThis.addEventListener("unload", () => Deno.removeSync(STATE, { recursive: true }));
const TOML = `[defaults]\ninterfaces = ["eth9"]\nstate-directory = "${STATE}"\n` +
  `control-socket = "/run/ggaoed-x.sock"\n`;

/** Runs `command` (a shell line) with /etc overlaid; `files` are written into /etc first. */
async function withEtc(files: Record<string, string>, command: string) {
  const dir = Deno.makeTempDirSync({ dir: "/var/tmp", prefix: "ggaoed-etc-" });
  try {
    Deno.mkdirSync(`${dir}/upper`);
    Deno.mkdirSync(`${dir}/work`);
    for (const [path, text] of Object.entries(files)) {
      Deno.mkdirSync(`${dir}/upper${path.slice(4, path.lastIndexOf("/"))}`, { recursive: true });
      Deno.writeTextFileSync(`${dir}/upper${path.slice(4)}`, text);
    }
    return await run([
      "unshare",
      "--mount",
      "--propagation",
      "private",
      "sh",
      "-c",
      `mount -t overlay overlay -o lowerdir=/etc,upperdir=${dir}/upper,workdir=${dir}/work /etc` +
      ` && ${command}`,
    ], { check: false });
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
}

const ggaoed = (args: string) =>
  `${Deno.execPath()} run ${DAEMON_FLAGS.join(" ")} ${REPO}ggaoed.ts ${args}`;
const ggaoectl = (args: string) =>
  `${Deno.execPath()} run ${CTL_FLAGS.join(" ")} ${REPO}ggaoectl.ts ${args}`;

Deno.test("the default configuration is /etc/ggaoed/ggaoed.conf, for ggaoed and ggaoectl", async () => {
  assertEquals(DEFAULTS.configPath, "/etc/ggaoed/ggaoed.conf");
  const out = await withEtc(
    { "/etc/ggaoed/ggaoed.conf": TOML },
    `${ggaoed("check-config")} && ${ggaoectl("--json stats")}`,
  );
  assert(out.stdout.includes("/etc/ggaoed/ggaoed.conf: OK (toml)"), out.stdout + out.stderr);
  // ggaoectl read control-socket from the default file.
  assert(/\/run\/ggaoed-x\.sock/.test(out.stdout + out.stderr), out.stdout + out.stderr);
});

Deno.test("only the original's /etc/ggaoed.conf exists: ggaoed says where it looks and how to move it", async () => {
  const out = await withEtc({ "/etc/ggaoed.conf": TOML }, ggaoed("check-config"));
  assertEquals(out.code, 1);
  assert(
    out.stderr.includes(
      "ggaoed: /etc/ggaoed/ggaoed.conf does not exist, but /etc/ggaoed.conf (the original " +
        "ggaoed's path) does. Move it: mkdir -p /etc/ggaoed && mv /etc/ggaoed.conf " +
        "/etc/ggaoed/ggaoed.conf",
    ),
    out.stderr,
  );
  assert(out.stderr.includes("-c /etc/ggaoed.conf"), out.stderr);
  // The daemon itself stops there too (before it touches anything).
  const daemon = await withEtc({ "/etc/ggaoed.conf": TOML }, ggaoed(""));
  assertEquals(daemon.code, 1);
  assert(daemon.stderr.includes("(the original ggaoed's path)"), daemon.stderr);
  // Asked for explicitly, the old file is used.
  const explicit = await withEtc(
    { "/etc/ggaoed.conf": TOML },
    ggaoed("check-config -c /etc/ggaoed.conf"),
  );
  assert(
    explicit.stdout.includes("/etc/ggaoed.conf: OK (toml)"),
    explicit.stdout + explicit.stderr,
  );
});

Deno.test("neither file exists: the usual error names the default path", async () => {
  const out = await withEtc({}, ggaoed("check-config"));
  assertEquals(out.code, 1);
  assert(
    out.stderr.includes("cannot read /etc/ggaoed/ggaoed.conf: no such file"),
    out.stderr,
  );
  assert(!out.stderr.includes("original"), out.stderr);
});
