/**
 * Child process of tests/rbd/clones_test.ts: makes views of fresh MACs until it is killed
 * (lab/view_creator.ts).
 *
 * Usage: views_child.ts CONF USER DEVICE POOL GOLDEN_POOL/IMAGE@SNAP
 */
import { parseImageSpec, RadosCluster } from "../../ffi/rbd.ts";
import { RbdViewStore } from "../../src/rbd/clones.ts";
import { makeViewsForever } from "../../lab/view_creator.ts";

const [conf, user, device, pool, golden] = Deno.args;
const cluster = await RadosCluster.connect({ conf, user });
await makeViewsForever(new RbdViewStore({ device, golden: parseImageSpec(golden), pool, cluster }));
