import assert from "node:assert/strict";
import { withNetLab } from "../../lab/netns.ts";
import { formatMac } from "../../src/mac.ts";

const PROBE = `
import { interfaceInfo, listInterfaces } from "${
  new URL("../../ffi/netif.ts", import.meta.url).pathname
}";
const names = listInterfaces();
console.log(JSON.stringify({ names, infos: names.map((n) => interfaceInfo(n)) }));
try { interfaceInfo("nosuchif0"); } catch (e) { console.log(JSON.stringify({ error: e.message, code: e.code })); }
`;

Deno.test("interfaceInfo reports a veth's index, MTU, MAC and flags as ip link does, ENODEV for no such interface", async () => {
  await withNetLab(async (lab) => {
    const [a, b] = [await lab.namespace(), await lab.namespace()];
    const [ifA] = await lab.vethPair(a, b, { mtu: 4321 });
    await lab.exec(a, ["ip", "link", "set", ifA, "address", "02:12:34:56:78:9a"], { check: true });
    const ip = JSON.parse(
      (await lab.exec(a, ["ip", "-j", "link", "show"], { check: true })).stdout,
    );
    const out = await lab.exec(a, [Deno.execPath(), "eval", PROBE], { check: true });
    const [listing, failure] = out.stdout.trim().split("\n").map((l) => JSON.parse(l));
    assert.deepEqual(listing.names, [ifA, "lo"].sort());
    const veth = listing.infos[listing.names.indexOf(ifA)];
    const ipVeth = ip.find((l: { ifname: string }) => l.ifname === ifA);
    assert.equal(veth.index, ipVeth.ifindex);
    assert.equal(veth.mtu, 4321);
    assert.equal(formatMac(veth.mac), "02:12:34:56:78:9a");
    assert.deepEqual([veth.up, veth.loopback, veth.ethernet], [true, false, true]);
    const lo = listing.infos[listing.names.indexOf("lo")];
    assert.deepEqual([lo.up, lo.loopback, lo.ethernet, lo.mac], [true, true, false, 0]);
    assert.equal(failure.code, "ENODEV");
    assert.match(
      failure.error,
      /^ioctl\(nosuchif0, SIOCGIFINDEX\): ENODEV .*no such network interface/,
    );
  });
});
