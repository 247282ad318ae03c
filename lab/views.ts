/**
 * Per-host views in tests: a golden image and a views directory on a fresh XFS made for the test
 * (reflinks need XFS or btrfs), and the golden image's digest, to show it was never written.
 *
 * @module
 */

import { have } from "./command.ts";
import { withScratchFileSystem } from "./files.ts";
import { pattern } from "./target.ts";

/** mkfs.xfs is there: the views tests can run (they say so and are skipped otherwise). */
export const HAVE_XFS = await have("mkfs.xfs");
if (!HAVE_XFS) {
  console.error("mkfs.xfs is missing (Debian: xfsprogs): the tests of per-host views are skipped");
}

/** Size of the golden image the tests make. */
export const GOLDEN_MIB = 16;

/** A golden image and a views directory for a device with views. */
export interface ViewsFiles {
  golden: string;
  views: string;
  /** What the golden image holds: a known pattern over all of it. */
  data: Uint8Array;
}

/**
 * Runs `body` with a golden image of {@link GOLDEN_MIB} MiB (a pattern) and an empty views
 * directory on a fresh 1 GiB XFS; everything is removed afterwards.
 */
export function withViewsFiles(body: (files: ViewsFiles) => Promise<void>): Promise<void> {
  return withScratchFileSystem("xfs", "views", 1024, async (dir) => {
    const golden = `${dir}/golden.img`;
    const views = `${dir}/views`;
    Deno.mkdirSync(views);
    const data = pattern(GOLDEN_MIB * 1024 * 1024, 777);
    Deno.writeFileSync(golden, data);
    await body({ golden, views, data });
  });
}

/** SHA-256 (hex) of the file at `path`. */
export async function fileDigest(path: string): Promise<string> {
  const bytes = await crypto.subtle.digest("SHA-256", Deno.readFileSync(path));
  return Array.from(new Uint8Array(bytes), (b) => b.toString(16).padStart(2, "0")).join("");
}
