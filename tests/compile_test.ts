/**
 * What `deno task compile` puts into the single binaries, without downloading Deno's runtime:
 * with `DENORT_BIN` pointing at any existing file (here the npm package's `deno`), `deno
 * compile` prints the tree of embedded files and writes `DENORT_BIN` + that payload (an output
 * that runs as plain `deno`, not as ggaoed). The tree and the payload's size are what a real
 * build ships on top of `denort`. The commands are the task's own, from deno.json, with only
 * the output paths moved to a temporary directory.
 */

import { assert, assertEquals } from "./helpers/assert.ts";
import { CTL_FLAGS, DAEMON_FLAGS } from "../src/permissions.ts";

const REPO = new URL("../", import.meta.url).pathname;
const DENO = Deno.execPath();
/** The sources, the worker and two small npm packages are ~2.5 MB; V8's code cache adds some. */
const MAX_PAYLOAD_BYTES = 8e6;

/** The compile task's commands, each as argv. */
function compileCommands(): string[][] {
  const task = JSON.parse(Deno.readTextFileSync(`${REPO}deno.json`)).tasks.compile as string;
  return task.split("&&").map((c) => c.trim().split(/\s+/));
}

Deno.test("the compile task gives each binary the permissions the README documents", () => {
  const [daemon, ctl] = compileCommands();
  const flags = (argv: string[]) => argv.filter((a) => a.startsWith("--allow-")).sort();
  assertEquals(flags(daemon), [...DAEMON_FLAGS].sort());
  assertEquals(flags(ctl), [...CTL_FLAGS].sort());
  assertEquals(daemon.at(-1), "ggaoed.ts");
  assertEquals(ctl.at(-1), "ggaoectl.ts");
});

Deno.test({
  name: "deno task compile embeds the sources and the data-path worker, and no npm Deno",
  sanitizeResources: false,
  fn: async () => {
    const denort = Deno.realPathSync(`${REPO}node_modules/.bin/deno`);
    const base = Deno.statSync(denort).size;
    const out = Deno.makeTempDirSync({ dir: "/var/tmp", prefix: "ggaoed-compile-" });
    try {
      for (const argv of compileCommands()) {
        const o = argv.indexOf("-o");
        const name = argv[o + 1];
        const args = [...argv.slice(1, o), "-o", `${out}/${name}`, ...argv.slice(o + 2)];
        const result = await new Deno.Command(DENO, {
          args,
          cwd: REPO,
          env: { DENORT_BIN: denort, NO_COLOR: "1" },
          stdout: "piped",
          stderr: "piped",
          signal: AbortSignal.timeout(240_000),
        }).output();
        const text = new TextDecoder().decode(result.stdout) +
          new TextDecoder().decode(result.stderr);
        assertEquals(result.code, 0, text);
        const tree = text.slice(text.indexOf("Embedded Files"));
        const payload = Deno.statSync(`${out}/${name}`).size - base;
        console.log(`${name}: ${(payload / 1e6).toFixed(2)} MB on top of denort\n${tree}`);

        assert(!/@deno\/|linux-x64|deno\/\d/.test(tree), `the npm Deno is embedded:\n${tree}`);
        // Only the npm packages each program imports (ggaoectl does no logging of its own).
        assert(/smol-toml/.test(tree), `smol-toml missing:\n${tree}`);
        assertEquals(/@logtape/.test(tree), name === "ggaoed", `logtape:\n${tree}`);
        assert(new RegExp(`${argv.at(-1)!.replace(".", "\\.")} `).test(tree), tree);
        assert(/├─┬ src|└─┬ src/.test(tree) && /ffi/.test(tree), `sources missing:\n${tree}`);
        if (name === "ggaoed") assert(/worker\.ts/.test(tree), `no data-path worker:\n${tree}`);
        assert(payload > 0 && payload < MAX_PAYLOAD_BYTES, `payload ${payload} bytes`);
      }
    } finally {
      Deno.removeSync(out, { recursive: true });
    }
  },
});
