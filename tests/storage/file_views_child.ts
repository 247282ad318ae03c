/**
 * Child process of tests/storage/file_views_test.ts: makes views of fresh MACs until it is killed
 * (lab/view_creator.ts).
 *
 * Usage: file_views_child.ts GOLDEN VIEWS_DIRECTORY
 */
import { FileViewStore } from "../../src/storage/file_views.ts";
import { makeViewsForever } from "../../lab/view_creator.ts";

const [golden, views] = Deno.args;
await makeViewsForever(new FileViewStore(golden, views));
