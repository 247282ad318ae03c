/**
 * The Dockerfile, read (tests/container_test.ts builds and runs it): everything it copies exists,
 * the daemon runs with the permission flags the README documents and the default configuration
 * path, the image keeps its configuration and state in volumes, nothing is fetched at run time,
 * and nothing in it names one CPU architecture.
 */

import { assert, assertEquals } from "./helpers/assert.ts";
import { exists } from "../lab/files.ts";
import { DAEMON_FLAGS } from "../lab/target.ts";
import { DEFAULTS } from "../src/config/types.ts";

const ROOT = new URL("../", import.meta.url).pathname;
const text = Deno.readTextFileSync(`${ROOT}Dockerfile`);
/** Instructions with continuation lines joined. */
const instructions = text.replace(/\\\n/g, " ").split("\n").map((l) => l.trim()).filter((l) =>
  l && !l.startsWith("#")
);

Deno.test("every file the Dockerfile copies from the build context exists", () => {
  const copies = instructions.filter((l) => /^COPY /.test(l) && !/--from=/.test(l));
  assert(copies.length > 0);
  for (const line of copies) {
    const parts = line.split(/\s+/).slice(1);
    for (const source of parts.slice(0, -1)) {
      assert(exists(`${ROOT}${source}`), `${line}: ${source} is missing`);
    }
  }
});

Deno.test("the image runs ggaoed with the documented flags, cached dependencies only", () => {
  const entry = instructions.find((l) => l.startsWith("ENTRYPOINT "));
  assert(entry, "no ENTRYPOINT");
  const argv = JSON.parse(entry!.slice("ENTRYPOINT ".length)) as string[];
  assertEquals(argv.slice(0, 3), ["deno", "run", "--cached-only"]);
  assertEquals(argv.slice(3, -1).sort(), [...DAEMON_FLAGS].sort());
  assertEquals(argv.at(-1), "/opt/ggaoed/ggaoed.ts");
  const readme = Deno.readTextFileSync(`${ROOT}README.md`);
  assert(readme.includes(`deno run ${DAEMON_FLAGS.join(" ")} ggaoed.ts`), "README flags differ");
});

Deno.test("configuration and state are volumes; the base images are pinned to a release", () => {
  const volume = instructions.find((l) => l.startsWith("VOLUME "));
  assertEquals(JSON.parse(volume!.slice("VOLUME ".length)), ["/etc/ggaoed", "/var/lib/ggaoed"]);
  for (const from of instructions.filter((l) => l.startsWith("FROM "))) {
    assert(/:[a-z0-9.-]+(\s|$)/.test(from) && !/:latest/.test(from), `unpinned: ${from}`);
  }
  assert(instructions.some((l) => /apt-get install .*libaio1/.test(l)), "libaio1 not installed");
  assert(instructions.some((l) => /apt-get install .*librbd1/.test(l)), "librbd1 not installed");
  assert(instructions.some((l) => l === `CMD ["-c", "${DEFAULTS.configPath}"]`));
});

Deno.test("the Dockerfile builds on any architecture npm has a Deno for", () => {
  for (const l of instructions) {
    assert(!/x64|x86_64|amd64|arm64|aarch64/.test(l), `architecture-specific: ${l}`);
  }
});
