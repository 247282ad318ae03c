/**
 * Child process of tests/storage/file_views_test.ts: makes views of fresh MACs one after another
 * until it is killed (kill -9, at a random moment). Prints `ready` once started, then `made MAC`
 * after each view.
 *
 * Usage: file_views_child.ts GOLDEN VIEWS_DIRECTORY
 */
import { FileViewStore } from "../../src/storage/file_views.ts";

const [golden, views] = Deno.args;
const store = new FileViewStore(golden, views);
const encoder = new TextEncoder();
Deno.stdout.writeSync(encoder.encode("ready\n"));
for (;;) {
  const mac = [...crypto.getRandomValues(new Uint8Array(6))]
    .map((b) => b.toString(16).padStart(2, "0")).join("");
  await store.ensure(mac);
  Deno.stdout.writeSync(encoder.encode(`made ${mac}\n`));
}
