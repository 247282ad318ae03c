/**
 * The repository stands on its own: what the code relies on is written in it (docs/), every
 * citation of docs/decisions.md names a section that exists, and ffi/ (the bottom layer) imports
 * nothing from the layers above it.
 */

import { assert, assertEquals } from "./helpers/assert.ts";

const REPO = new URL("../", import.meta.url).pathname;
const SKIP = new Set([".git", "node_modules", ".cache"]);

/** Every text file of the tree (by extension), relative to the repository. */
function files(dir = "", out: string[] = []): string[] {
  for (const e of Deno.readDirSync(REPO + dir)) {
    if (SKIP.has(e.name) || e.isSymlink) continue;
    const rel = dir + e.name;
    if (e.isDirectory) files(rel + "/", out);
    else if (/\.(ts|md|json|toml|dist|sh|c|h|service|txt)$|^Dockerfile$/.test(e.name)) {
      out.push(rel);
    }
  }
  return out;
}

Deno.test("no file of the repository cites a document that is not in it", () => {
  // Built from parts so that this file does not match itself.
  const outside = new RegExp(
    ["REFER" + "ENCE\\.md", "\\.\\./" + "shared", "/work/" + "shared"].join("|"),
  );
  const hits = files().filter((f) => outside.test(Deno.readTextFileSync(REPO + f)));
  assertEquals(hits, []);
});

Deno.test("every citation of docs/decisions.md names one of its sections", () => {
  const page = Deno.readTextFileSync(`${REPO}docs/decisions.md`);
  const sections = new Set([...page.matchAll(/^#{2,3} (\d+(?:\.\d+)?)\.? /gm)].map((m) => m[1]));
  assert(sections.has("1.4") && sections.has("6"), [...sections].join(" "));
  const cited: string[] = [];
  for (const f of files()) {
    const text = Deno.readTextFileSync(REPO + f).replace(/\n\s*\*\s*/g, " ");
    for (const m of text.matchAll(/docs\/decisions\.md §(\d+(?:\.\d+)?)/g)) {
      cited.push(m[1]);
      assert(sections.has(m[1]), `${f} cites docs/decisions.md §${m[1]}, which does not exist`);
    }
  }
  assert(cited.length >= 15, `only ${cited.length} citations found`);
});

Deno.test("ffi/ imports nothing from src/", () => {
  const up = files("ffi/").filter((f) => /from "\.\.\/src\//.test(Deno.readTextFileSync(REPO + f)));
  assertEquals(up, []);
});
