/**
 * Child process of tests/rbd/clones_test.ts: makes views of fresh MACs one after another until
 * it is killed (kill -9, at a random moment). Prints `ready` once connected, then `made MAC`
 * after each view.
 *
 * Usage: views_child.ts CONF USER DEVICE POOL GOLDEN_POOL/IMAGE@SNAP
 */
import { parseImageSpec, RadosCluster } from "../../ffi/rbd.ts";
import { RbdViewStore } from "../../src/rbd/clones.ts";

const [conf, user, device, pool, golden] = Deno.args;
const cluster = await RadosCluster.connect({ conf, user });
const store = new RbdViewStore({ device, golden: parseImageSpec(golden), pool, cluster });
const encoder = new TextEncoder();
Deno.stdout.writeSync(encoder.encode("ready\n"));
for (;;) {
  const mac = [...crypto.getRandomValues(new Uint8Array(6))]
    .map((b) => b.toString(16).padStart(2, "0")).join("");
  await store.ensure(mac);
  Deno.stdout.writeSync(encoder.encode(`made ${mac}\n`));
}
