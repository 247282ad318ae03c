/**
 * The AoE state of an RBD device as image metadata (src/rbd/state.ts): values people can read
 * with `rbd image-meta list`, every byte of a config string kept, damage reported.
 */

import assert from "node:assert/strict";
import {
  decodeConfigValue,
  decodeMacsValue,
  encodeConfigValue,
  encodeMacsValue,
  encodeStateValue,
  hostKey,
  hostsFromMetadata,
  metadataPrefix,
  stateFromMetadata,
  stateKey,
} from "../../src/rbd/state.ts";
import { DeviceState, StateKind } from "../../src/state/device_state.ts";
import { encodeConfigFile, encodeMacListFile } from "../../src/state/store.ts";

Deno.test("metadata keys: ggaoed.* for the image, ggaoed@SNAP.* for a snapshot export", () => {
  assert.equal(stateKey(metadataPrefix(null), StateKind.CONFIG), "ggaoed.config");
  assert.equal(stateKey(metadataPrefix(null), StateKind.MAC_MASK), "ggaoed.mac_mask");
  assert.equal(stateKey(metadataPrefix("s1"), StateKind.RESERVE), "ggaoed@s1.reserve");
  assert.equal(hostKey("ggaoed.", "storage1"), "ggaoed.host.storage1");
});

Deno.test("a config string keeps every byte: printable ASCII as is, the rest and '%' escaped", () => {
  assert.equal(encodeConfigValue(new TextEncoder().encode("rack 7, 100%")), "rack 7, 100%25");
  const all = Uint8Array.from({ length: 256 }, (_, i) => i);
  const value = encodeConfigValue(all);
  assert.match(value, /^[\x20-\x7e]*$/);
  assert.deepEqual(decodeConfigValue(value), all);
  assert.deepEqual(decodeConfigValue(""), new Uint8Array(0));
  assert.equal(decodeConfigValue("bad %G1"), "bad escape at character 4");
  assert.equal(decodeConfigValue("x".repeat(1025)), "1025 bytes, more than 1024");
  assert.equal(decodeConfigValue("tab\there"), "character 3 is not printable ASCII");
});

Deno.test("MAC lists are lower-case colon MACs, space-separated, ascending", () => {
  assert.equal(
    encodeMacsValue([0x001b210aaa23, 0x001b210aaa22]),
    "00:1b:21:0a:aa:22 00:1b:21:0a:aa:23",
  );
  assert.equal(encodeMacsValue([]), "");
  assert.deepEqual(decodeMacsValue(" 00-1B-21-0A-AA-22  001b.210a.aa23 "), [
    0x001b210aaa22,
    0x001b210aaa23,
  ]);
  assert.equal(decodeMacsValue("00:1b:21:0a:aa"), "'00:1b:21:0a:aa' is not a MAC address");
});

Deno.test("the data path's state file contents become metadata values", () => {
  const state = new DeviceState(null, {
    config: new TextEncoder().encode("abc"),
    macMask: [2, 1],
  });
  assert.equal(encodeStateValue(StateKind.CONFIG, encodeConfigFile(state.config)), "abc");
  assert.equal(
    encodeStateValue(StateKind.MAC_MASK, encodeMacListFile(state.macMask)),
    "00:00:00:00:00:01 00:00:00:00:00:02",
  );
  assert.throws(() => encodeStateValue(StateKind.CONFIG, new Uint8Array(3)), /bad state/);
});

Deno.test("state from metadata: missing keys are empty parts; a damaged part is empty and named", () => {
  const meta = new Map([
    ["ggaoed.config", "hello"],
    ["ggaoed.reserve", "00:00:00:00:00:05"],
    ["ggaoed@s1.config", "snap"],
    ["other.key", "x"],
  ]);
  assert.deepEqual(stateFromMetadata("d", meta, "ggaoed."), {
    state: { name: "d", config: new TextEncoder().encode("hello"), macMask: [], reserve: [5] },
    problems: [],
  });
  assert.deepEqual(stateFromMetadata("s", meta, "ggaoed@s1.").state, {
    name: "s",
    config: new TextEncoder().encode("snap"),
    macMask: [],
    reserve: [],
  });
  meta.set("ggaoed.mac_mask", "zz");
  const damaged = stateFromMetadata("d", meta, "ggaoed.");
  assert.deepEqual(damaged.state.macMask, []);
  assert.deepEqual(damaged.state.reserve, [5]);
  assert.deepEqual(damaged.problems, ["ggaoed.mac_mask: 'zz' is not a MAC address"]);
});

Deno.test("host records are read from their keys; unreadable ones are left out", () => {
  const record = {
    host: "storage1",
    pid: 42,
    device: "vm1",
    target: "e1.1",
    interfaces: [{ name: "eth1", mac: "02:00:00:00:00:01" }],
    seen: 1700000000,
    readOnly: false,
    version: "2.0.0",
  };
  const hosts = hostsFromMetadata(
    new Map([
      ["ggaoed.host.storage1", JSON.stringify(record)],
      ["ggaoed.host.broken", "{"],
      ["ggaoed@s1.host.storage2", JSON.stringify({ ...record, host: "storage2" })],
    ]),
    "ggaoed.",
  );
  assert.deepEqual([...hosts.keys()], ["storage1"]);
  assert.deepEqual(hosts.get("storage1"), record);
});

Deno.test("DeviceState.replace takes another writer's contents without counting a change", () => {
  const changes: number[] = [];
  const state = new DeviceState({ changed: (k) => changes.push(k) });
  state.setConfig(new TextEncoder().encode("mine"));
  assert.equal(state.seq(StateKind.CONFIG), 1);
  state.replace(StateKind.CONFIG, { config: new TextEncoder().encode("theirs") });
  state.replace(StateKind.MAC_MASK, { macMask: [3, 1, 3] });
  state.replace(StateKind.RESERVE, { reserve: [9] });
  assert.equal(new TextDecoder().decode(state.config), "theirs");
  assert.deepEqual(state.macMask, [1, 3]);
  assert.equal(state.maskAllows(3), true);
  assert.equal(state.maskAllows(2), false);
  assert.deepEqual(state.reserve, [9]);
  assert.deepEqual(changes, [StateKind.CONFIG], "only the local change was counted");
  assert.equal(state.seq(StateKind.CONFIG), 1);
  assert.equal(state.seq(StateKind.MAC_MASK), 0);
});
