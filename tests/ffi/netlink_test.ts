import assert from "node:assert/strict";
import { type NetLab, withNetLab } from "../../lab/netns.ts";
import { formatMac, parseMac } from "../../src/mac.ts";
import { JsonAgent } from "./fixtures/json_agent.ts";

const AGENT = new URL("./fixtures/link_agent.ts", import.meta.url).pathname;
/** Bound on the wait for each event (they arrive in about a millisecond on an idle machine). */
const EVENT_TIMEOUT_MS = 3000;
const ARPHRD_ETHER = 1;

interface IpLink {
  ifindex: number;
  ifname: string;
  flags: string[];
  mtu: number;
  link_type: string;
  address: string;
}

/** A namespace with a link agent in it, its monitor open. */
async function monitored(lab: NetLab, receiveBuffer?: number) {
  const ns = await lab.namespace();
  const agent = JsonAgent.start(lab, ns, AGENT);
  const opened = await agent.call({ op: "open", receiveBuffer });
  const ip = async (...args: string[]) => {
    const started = performance.timeOrigin + performance.now();
    await lab.exec(ns, ["ip", ...args], { check: true });
    return { started, finished: performance.timeOrigin + performance.now() };
  };
  const links = async (): Promise<IpLink[]> =>
    JSON.parse((await lab.exec(ns, ["ip", "-j", "link", "show"], { check: true })).stdout);
  const expect = async (match: Record<string, unknown>) =>
    (await agent.call({ op: "await", match, timeoutMs: EVENT_TIMEOUT_MS })).event;
  /** Runs `ip args` while the agent already waits in epoll_wait (to measure the latency). */
  const expectDuring = async (match: Record<string, unknown>, ...args: string[]) => {
    const answer = agent.call({ op: "await", match, timeoutMs: EVENT_TIMEOUT_MS });
    await new Promise((resolve) => setTimeout(resolve, 100));
    const times = await ip(...args);
    return { ...times, event: (await answer).event };
  };
  return { ns, agent, opened, ip, links, expect, expectDuring };
}

Deno.test("link monitor: a veth's creation, up, carrier, down, rename, MTU and MAC changes and deletion each arrive as an event", async () => {
  await withNetLab(async (lab) => {
    const { opened, ip, links, expect, expectDuring } = await monitored(lab);
    // The default 4 MiB request (SO_RCVBUFFORCE as root), doubled by the kernel.
    assert.ok(opened.receiveBufferSize >= 4 << 20, `receive buffer ${opened.receiveBufferSize}`);

    await ip("link", "add", "v0", "mtu", "1400", "address", "02:00:00:00:00:01", "type", "veth");
    const index = (await links()).find((l) => l.ifname === "v0")!.ifindex;
    const created = await expect({ kind: "new", name: "v0" });
    assert.equal(created.index, index);
    assert.equal(created.mtu, 1400);
    assert.equal(formatMac(created.mac), "02:00:00:00:00:01");
    assert.equal(created.type, ARPHRD_ETHER);
    assert.deepEqual(
      [created.ethernet, created.up, created.running, created.lowerUp, created.loopback],
      [true, false, false, false, false],
    );

    const up = await expectDuring({ kind: "new", index, up: true }, "link", "set", "v0", "up");
    const upEvent = up.event;
    assert.equal(upEvent.name, "v0");
    assert.equal(upEvent.flags & 0x1, 0x1, "IFF_UP");
    assert.equal(upEvent.change & 0x1, 0x1, "ifi_change says IFF_UP changed");

    // The veth has carrier once its peer is up: IFF_LOWER_UP, then IFF_RUNNING.
    const peer = (await links()).find((l) => l.ifindex !== index && l.ifname !== "lo")!.ifname;
    await ip("link", "set", peer, "up");
    const carrier = await expect({ kind: "new", index, lowerUp: true, running: true });
    assert.equal(carrier.flags & 0x10040, 0x10040, "IFF_LOWER_UP | IFF_RUNNING");

    const down = await expectDuring({ kind: "new", index, up: false }, "link", "set", "v0", "down");
    const downEvent = down.event;
    assert.equal(downEvent.running, false);
    // The notification is sent while ip's request is processed, before ip exits; ip's own
    // start-up (fork, exec, netns switch) is most of the time from its start.
    const ms = (t: number) => `${t >= 0 ? "+" : ""}${t.toFixed(1)} ms`;
    console.log(
      `link event latency: down read ${ms(downEvent.at - down.started)} from ip's start, ` +
        `${ms(downEvent.at - down.finished)} from its exit; up read ` +
        `${ms(upEvent.at - up.started)} / ${ms(upEvent.at - up.finished)}`,
    );

    await ip("link", "set", "v0", "name", "v0renamed");
    const renamed = await expect({ kind: "new", index, name: "v0renamed" });
    assert.equal(renamed.mtu, 1400);

    await ip("link", "set", "v0renamed", "mtu", "9000");
    const mtu = await expect({ kind: "new", index, mtu: 9000 });
    assert.equal(mtu.name, "v0renamed");

    const mac = parseMac("02:aa:bb:cc:dd:ee")!;
    await ip("link", "set", "v0renamed", "address", formatMac(mac));
    const macEvent = await expect({ kind: "new", index, mac });
    assert.equal(macEvent.ethernet, true);

    await ip("link", "del", "v0renamed");
    const deleted = await expect({ kind: "del", index });
    assert.equal(deleted.name, "v0renamed");
    // Deleting one end of a veth deletes the other.
    await expect({ kind: "del", name: peer });
  });
});

Deno.test("link monitor: a burst that overruns a tiny receive buffer is reported as an overrun, and the monitor keeps working", async () => {
  await withNetLab(async (lab) => {
    const { ns, agent, opened, ip, expect } = await monitored(lab, 1);
    assert.ok(opened.receiveBufferSize < 16384, `receive buffer ${opened.receiveBufferSize}`);
    // 20 veth pairs (each end at least one RTM_NEWLINK) while nobody reads.
    const batch = await Deno.makeTempFile({ prefix: "ggaoed-netlink-", suffix: ".batch" });
    try {
      const lines = Array.from(
        { length: 20 },
        (_, i) => `link add b${i} type veth peer name c${i}`,
      );
      await Deno.writeTextFile(batch, lines.join("\n") + "\n");
      await lab.exec(ns, ["ip", "-batch", batch], { check: true });
    } finally {
      await Deno.remove(batch);
    }
    const drained = await agent.call({ op: "drain" });
    assert.equal(drained.result, "overrun");
    assert.ok(drained.overruns >= 1);
    assert.ok(drained.events.length < 40, `${drained.events.length} events survived`);
    // What the kernel did queue is still delivered, and the next change arrives normally.
    const again = await agent.call({ op: "drain" });
    assert.equal(again.result, "ok");
    await ip("link", "set", "b7", "up");
    const event = await expect({ kind: "new", name: "b7", up: true });
    assert.equal(event.ethernet, true);
  });
});

Deno.test("dumpLinks lists lo and the veths with the fields ip link shows and interfaceInfo reads", async () => {
  await withNetLab(async (lab) => {
    const { agent, ip, links } = await monitored(lab);
    await ip("link", "add", "d0", "mtu", "9000", "type", "veth", "peer", "name", "d1");
    await ip("link", "set", "d0", "address", "02:12:34:56:78:9a");
    await ip("link", "set", "d0", "up"); // d1 stays down: d0 has no carrier
    const dumped = await agent.call({ op: "dump" });
    const expected = await links();
    assert.deepEqual(
      dumped.links.map((l: { name: string }) => l.name),
      expected.map((l) => l.ifname),
    );
    expected.forEach((ipLink, i) => {
      const link = dumped.links[i];
      const name = ipLink.ifname;
      assert.equal(link.index, ipLink.ifindex, `${name} index`);
      assert.equal(link.mtu, ipLink.mtu, `${name} mtu`);
      assert.equal(link.up, ipLink.flags.includes("UP"), `${name} up`);
      assert.equal(link.lowerUp, ipLink.flags.includes("LOWER_UP"), `${name} lower up`);
      assert.equal(link.loopback, ipLink.flags.includes("LOOPBACK"), `${name} loopback`);
      assert.equal(link.ethernet, ipLink.link_type === "ether", `${name} ethernet`);
      if (link.ethernet) assert.equal(formatMac(link.mac), ipLink.address, `${name} mac`);
      // What the ioctls of ffi/netif.ts read for the same interface.
      const info = dumped.infos[i];
      assert.deepEqual(
        [link.index, link.mtu, link.mac, link.up, link.loopback, link.ethernet],
        [info.index, info.mtu, info.mac, info.up, info.loopback, info.ethernet],
        `${name} as interfaceInfo reads it`,
      );
    });
    const byName = Object.fromEntries(
      dumped.links.map((l: { name: string }) => [l.name, l]),
    );
    assert.deepEqual(
      [byName.lo.loopback, byName.lo.ethernet, byName.lo.up, byName.lo.mac],
      [true, false, true, 0],
    );
    assert.deepEqual(
      [byName.d0.mtu, formatMac(byName.d0.mac), byName.d0.up, byName.d0.running],
      [9000, "02:12:34:56:78:9a", true, false],
    );
    assert.deepEqual([byName.d1.up, byName.d1.ethernet, byName.d1.mtu], [false, true, 1500]);
  });
});

Deno.test("link monitor: draining with nothing pending returns ok without events; close is idempotent", async () => {
  await withNetLab(async (lab) => {
    const { agent } = await monitored(lab);
    for (let i = 0; i < 3; i++) {
      const drained = await agent.call({ op: "drain" });
      assert.deepEqual([drained.result, drained.events, drained.overruns], ["ok", [], 0]);
    }
    const closed = await agent.call({ op: "close" });
    assert.equal(closed.closed, true);
    assert.match(closed.drainAfterClose, /monitor is closed/);
  });
});
