/**
 * No Docker engine runs here, so the Dockerfile is checked by reading it: everything it copies
 * exists, the daemon runs with the permission flags the README documents, the image keeps its
 * configuration and state in volumes, and nothing is fetched at run time.
 */

import { assert, assertEquals } from "./helpers/assert.ts";
import { DAEMON_FLAGS } from "./e2e/target.ts";

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
  assert(instructions.some((l) => l === 'CMD ["-c", "/etc/ggaoed/ggaoed.conf"]'));
});

function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}
