import assert from "node:assert/strict";
import {
  CONFIG_FILE_SIZE,
  decodeConfigFile,
  decodeMacListFile,
  encodeConfigFile,
  encodeState,
  loadDeviceState,
  MAC_LIST_FILE_SIZE,
  writeFileAtomic,
} from "../../src/state/store.ts";
import { type DeviceState, STATE_SUFFIX, StateKind } from "../../src/state/device_state.ts";
import { parseMac } from "../../src/mac.ts";
import { chmodCreatedFile } from "../../ffi/mod.ts";

type Entry = { level: "info" | "warning" | "error"; message: string };

function withDir(fn: (dir: string, log: Entry[]) => Promise<void>): () => Promise<void> {
  return async () => {
    const dir = Deno.makeTempDirSync({ prefix: "ggaoed-state-" });
    try {
      await fn(dir, []);
    } finally {
      Deno.removeSync(dir, { recursive: true });
    }
  };
}

function logger(entries: Entry[]) {
  return (level: Entry["level"], message: string) => entries.push({ level, message });
}

/** Writes every state file of `state` as the daemon's writer does. */
async function save(dir: string, name: string, state: DeviceState): Promise<void> {
  for (const kind of [StateKind.CONFIG, StateKind.MAC_MASK, StateKind.RESERVE]) {
    await writeFileAtomic(`${dir}/${name}.${STATE_SUFFIX[kind]}`, encodeState(state, kind));
  }
}

function names(dir: string): string[] {
  return [...Deno.readDirSync(dir)].map((e) => e.name).sort();
}

const mac = (s: string) => parseMac(s)!;
const A = mac("00:1b:21:0a:aa:22");
const B = mac("00:0e:0c:3e:3b:0b");
const C = mac("fe:ff:ff:ff:ff:01");

Deno.test(
  "a new device loads empty and no file is created until something changes",
  withDir(async (dir, log) => {
    const state = await loadDeviceState(dir, "disk1", logger(log));
    assert.equal(state.configLength, 0);
    assert.deepEqual(state.macMask, []);
    assert.deepEqual(state.reserve, []);
    assert.deepEqual(names(dir), []);
    assert.deepEqual(log, []);
  }),
);

Deno.test(
  "config string, mask list and reserve list survive a save and a load, files 0600",
  withDir(async (dir, log) => {
    const s1 = await loadDeviceState(dir, "d", logger(log));
    const text = new TextEncoder().encode("host=alpha;vg=data");
    s1.setConfig(text);
    assert.equal(s1.addMask(C), "added");
    assert.equal(s1.addMask(A), "added");
    s1.commitMacMask();
    s1.setReserve([C, B, B]);
    await save(dir, "d", s1);
    const s2 = await loadDeviceState(dir, "d", logger(log));
    assert.deepEqual([...s2.config], [...text]);
    assert.deepEqual(s2.macMask, [A, C]);
    assert.deepEqual(s2.reserve, [B, C]);
    // Clearing is saved too.
    s2.setConfig(new Uint8Array(0));
    s2.clearMacMask();
    s2.setReserve([]);
    await save(dir, "d", s2);
    const s3 = await loadDeviceState(dir, "d", logger(log));
    assert.equal(s3.configLength, 0);
    assert.deepEqual(s3.macMask, []);
    assert.deepEqual(s3.reserve, []);
    assert.deepEqual(names(dir), ["d.config", "d.mac_mask", "d.reserve"]);
    for (const n of names(dir)) assert.equal(Deno.statSync(`${dir}/${n}`).mode! & 0o777, 0o600);
  }),
);

Deno.test(
  "a 1024-byte config string and a full 255-entry list round-trip",
  withDir(async (dir, log) => {
    const s1 = await loadDeviceState(dir, "full", logger(log));
    const config = new Uint8Array(1024).map((_, i) => (i * 7 + 1) & 0xff);
    s1.setConfig(config);
    const macs = Array.from({ length: 255 }, (_, i) => 0x0200_0000_0000 + i * 0x1_0001);
    s1.setReserve(macs);
    await save(dir, "full", s1);
    const s2 = await loadDeviceState(dir, "full", logger(log));
    assert.deepEqual([...s2.config], [...config]);
    assert.deepEqual(s2.reserve, macs);
  }),
);

Deno.test(
  "files are written in the original little-endian layout, entries in sorted order",
  withDir(async (dir, log) => {
    const s = await loadDeviceState(dir, "x", logger(log));
    s.addMask(C);
    s.addMask(A);
    s.commitMacMask();
    s.setConfig(new TextEncoder().encode("hi"));
    await save(dir, "x", s);
    const mask = Deno.readFileSync(`${dir}/x.mac_mask`);
    assert.deepEqual([...mask.subarray(0, 8)], [0x6b, 0x71, 0x2a, 0xe9, 2, 0, 0, 0]);
    assert.deepEqual([...mask.subarray(8, 16)], [0x00, 0x1b, 0x21, 0x0a, 0xaa, 0x22, 0, 0]);
    assert.deepEqual([...mask.subarray(16, 24)], [0xfe, 0xff, 0xff, 0xff, 0xff, 0x01, 0, 0]);
    assert.ok(mask.subarray(24).every((b) => b === 0));
    const cfg = Deno.readFileSync(`${dir}/x.config`);
    assert.deepEqual([...cfg.subarray(0, 10)], [0xae, 0xbf, 0xa0, 0x38, 2, 0, 0, 0, 0x68, 0x69]);
    assert.ok(cfg.subarray(10).every((b) => b === 0));
  }),
);

/** The C daemon's files, built byte by byte (x86 host order). */
function cConfigFile(text: string): Uint8Array {
  const bytes = new Uint8Array(1032);
  bytes.set([0xae, 0xbf, 0xa0, 0x38], 0);
  bytes.set([text.length & 0xff, text.length >> 8, 0, 0], 4);
  bytes.set(new TextEncoder().encode(text), 8);
  return bytes;
}

function cMacListFile(macs: number[][]): Uint8Array {
  const bytes = new Uint8Array(2048);
  bytes.set([0x6b, 0x71, 0x2a, 0xe9, macs.length, 0, 0, 0], 0);
  macs.forEach((m, i) => bytes.set([...m, 0, 0], 8 + i * 8));
  return bytes;
}

Deno.test(
  "state files written by the C daemon load, unsorted reserve entries folded into order",
  withDir(async (dir, log) => {
    Deno.writeFileSync(`${dir}/legacy.config`, cConfigFile("cluster-7"));
    Deno.writeFileSync(
      `${dir}/legacy.mac_mask`,
      cMacListFile([[0x00, 0x0e, 0x0c, 0x3e, 0x3b, 0x0b], [0x00, 0x1b, 0x21, 0x0a, 0xaa, 0x22]]),
    );
    // The C daemon appended reserve entries in request order, duplicates possible.
    Deno.writeFileSync(
      `${dir}/legacy.reserve`,
      cMacListFile([
        [0xfe, 0xff, 0xff, 0xff, 0xff, 0x01],
        [0x00, 0x1b, 0x21, 0x0a, 0xaa, 0x22],
        [0xfe, 0xff, 0xff, 0xff, 0xff, 0x01],
      ]),
    );
    const s = await loadDeviceState(dir, "legacy", logger(log));
    assert.equal(new TextDecoder().decode(s.config), "cluster-7");
    assert.deepEqual(s.macMask, [B, A]);
    assert.deepEqual(s.reserve, [A, C]);
    assert.deepEqual(log, []);
    assert.deepEqual(names(dir), ["legacy.config", "legacy.mac_mask", "legacy.reserve"]);
  }),
);

function damagedCase(
  title: string,
  file: string,
  bytes: Uint8Array,
  reason: RegExp,
): void {
  Deno.test(
    `a damaged ${file} (${title}) is reported, moved aside and reset`,
    withDir(async (dir, log) => {
      // Good content in the other files must survive the repair of this one.
      Deno.writeFileSync(`${dir}/d.config`, cConfigFile("keep"));
      Deno.writeFileSync(`${dir}/d.mac_mask`, cMacListFile([[0, 0x1b, 0x21, 0x0a, 0xaa, 0x22]]));
      Deno.writeFileSync(`${dir}/d.reserve`, cMacListFile([[0, 0x1b, 0x21, 0x0a, 0xaa, 0x22]]));
      Deno.writeFileSync(`${dir}/d.${file}`, bytes);
      const s = await loadDeviceState(dir, "d", logger(log));
      const warnings = log.filter((e) => e.level === "warning");
      assert.equal(warnings.length, 1);
      assert.match(warnings[0].message, new RegExp(`d\\.${file}`));
      assert.match(warnings[0].message, reason);
      const aside = names(dir).filter((n) => n.startsWith(`d.${file}.damaged-`));
      assert.equal(aside.length, 1);
      assert.match(aside[0], /\.damaged-\d{8}T\d{6}Z$/);
      assert.deepEqual(Deno.readFileSync(`${dir}/${aside[0]}`), bytes);
      const fresh = Deno.readFileSync(`${dir}/d.${file}`);
      if (file === "config") {
        assert.equal(s.configLength, 0);
        assert.deepEqual(decodeConfigFile(fresh), new Uint8Array(0));
        assert.deepEqual(s.macMask, [A]);
      } else {
        assert.deepEqual(decodeMacListFile(fresh), []);
        assert.equal(new TextDecoder().decode(s.config), "keep");
        assert.deepEqual(file === "reserve" ? s.reserve : s.macMask, []);
        assert.deepEqual(file === "reserve" ? s.macMask : s.reserve, [A]);
      }
      assert.equal(Deno.statSync(`${dir}/d.${file}`).mode! & 0o777, 0o600);
    }),
  );
}

{
  const badMagic = cConfigFile("x");
  badMagic[0] ^= 0xff;
  damagedCase("bad magic", "config", badMagic, /bad magic/);
  const badLength = cConfigFile("x");
  badLength.set([0x01, 0x04, 0, 0], 4); // 1025
  damagedCase("length above 1024", "config", badLength, /length 1025/);
  damagedCase("truncated", "config", cConfigFile("x").subarray(0, 500), /size is 500 bytes/);
  const maskMagic = cMacListFile([]);
  maskMagic[3] = 0;
  damagedCase("bad magic", "mac_mask", maskMagic, /bad magic/);
  const maskCount = cMacListFile([]);
  maskCount[4] = 0;
  maskCount[5] = 1; // 256 entries
  damagedCase("256 entries", "mac_mask", maskCount, /count 256/);
  damagedCase("truncated", "reserve", cMacListFile([]).subarray(0, 2047), /size is 2047/);
  const longer = new Uint8Array(4096);
  longer.set(cMacListFile([]));
  damagedCase("too long", "reserve", longer, /size is 4096/);
  damagedCase("empty", "reserve", new Uint8Array(0), /size is 0 bytes/);
}

Deno.test(
  "a crash between write and rename loads the old state and removes the temp file",
  withDir(async (dir, log) => {
    const s1 = await loadDeviceState(dir, "c", logger(log));
    s1.setReserve([A]);
    s1.setConfig(new TextEncoder().encode("old"));
    await save(dir, "c", s1);
    // What a crash leaves: the new content complete in a temp file, the target untouched.
    Deno.writeFileSync(
      `${dir}/c.reserve.tmp-99999`,
      cMacListFile([[0xfe, 0xff, 0xff, 0xff, 0xff, 1]]),
    );
    Deno.writeFileSync(`${dir}/c.config.tmp-4242`, cConfigFile("new"));
    log.length = 0;
    const s2 = await loadDeviceState(dir, "c", logger(log));
    assert.deepEqual(s2.reserve, [A]);
    assert.equal(new TextDecoder().decode(s2.config), "old");
    assert.deepEqual(names(dir), ["c.config", "c.mac_mask", "c.reserve"]);
    assert.equal(log.length, 2);
    assert.ok(log.every((e) => e.level === "info" && /interrupted write/.test(e.message)));
    assert.ok(log.some((e) => e.message.includes("c.reserve.tmp-99999")));
  }),
);

Deno.test(
  "writeFileAtomic replaces the whole file, leaves no temp file, and sets mode 0600",
  withDir(async (dir) => {
    const path = `${dir}/f`;
    Deno.writeFileSync(path, new Uint8Array(5000).fill(1), { mode: 0o644 });
    await writeFileAtomic(path, new Uint8Array([1, 2, 3]));
    assert.deepEqual(Deno.readFileSync(path), new Uint8Array([1, 2, 3]));
    assert.equal(Deno.statSync(path).mode! & 0o777, 0o600);
    assert.deepEqual(names(dir), ["f"]);
  }),
);

Deno.test(
  "a failed rename throws, leaves what is at the path as it was, and removes the temp file",
  withDir(async (dir) => {
    // The rename cannot replace a non-empty directory: the write fails after the temp file.
    Deno.mkdirSync(`${dir}/sub/d`, { recursive: true });
    Deno.writeFileSync(`${dir}/sub/d/x`, new Uint8Array([1]));
    await assert.rejects(() => writeFileAtomic(`${dir}/sub/d`, new Uint8Array([1])));
    assert.deepEqual(names(`${dir}/sub`), ["d"]);
    assert.deepEqual(names(`${dir}/sub/d`), ["x"]);
    assert.deepEqual(Deno.readFileSync(`${dir}/sub/d/x`), new Uint8Array([1]));
  }),
);

/** Runs `body` on a fresh tmpfs of `bytes`, unmounted afterwards. Needs root. */
async function withTinyTmpfs(bytes: number, body: (dir: string) => Promise<void>): Promise<void> {
  const dir = Deno.makeTempDirSync({ prefix: "ggaoed-tinyfs-" });
  const mount = await new Deno.Command("mount", {
    args: ["-t", "tmpfs", "-o", `size=${bytes},mode=0700`, "tmpfs", dir],
    stderr: "piped",
  }).output();
  assert.ok(mount.success, new TextDecoder().decode(mount.stderr));
  try {
    await body(dir);
  } finally {
    await new Deno.Command("umount", { args: [dir] }).output();
    Deno.removeSync(dir, { recursive: true });
  }
}

/** Fills the file system of `dir` to the last byte with `dir/filler`. */
function fillUp(dir: string): void {
  const f = Deno.openSync(`${dir}/filler`, { create: true, write: true });
  try {
    for (const size of [65536, 4096, 512, 1]) {
      const chunk = new Uint8Array(size).fill(1);
      try {
        for (;;) f.writeSync(chunk);
      } catch (e) {
        if (!(e instanceof Error) || !/No space left/.test(e.message)) throw e;
      }
    }
  } finally {
    f.close();
  }
}

Deno.test(
  "a write that fails on a full file system throws and leaves the old file whole, no temp file",
  () =>
    withTinyTmpfs(256 * 1024, async (dir) => {
      // A state file: the same size again; a longer file: the new contents would not all fit.
      const path = `${dir}/d.config`;
      const old = encodeConfigFile(new TextEncoder().encode("old"));
      await writeFileAtomic(path, old);
      const big = `${dir}/big`;
      const bigOld = new Uint8Array(16384).fill(0xaa);
      await writeFileAtomic(big, bigOld);
      fillUp(dir);
      await assert.rejects(
        () => writeFileAtomic(path, encodeConfigFile(new TextEncoder().encode("new"))),
        /No space left/,
      );
      assert.deepEqual(Deno.readFileSync(path), old);
      await assert.rejects(
        () => writeFileAtomic(big, new Uint8Array(65536).fill(0x55)),
        /No space left/,
      );
      assert.deepEqual(Deno.readFileSync(big), bigOld);
      assert.deepEqual(names(dir), ["big", "d.config", "filler"]);
      // Room again: the same writes go through.
      Deno.removeSync(`${dir}/filler`);
      await writeFileAtomic(path, encodeConfigFile(new TextEncoder().encode("new")));
      assert.equal(
        new TextDecoder().decode(decodeConfigFile(Deno.readFileSync(path)) as Uint8Array),
        "new",
      );
    }),
);

Deno.test(
  "a symlink planted at the temp file's name is never followed",
  withDir(async (dir) => {
    const victim = `${dir}/victim`;
    Deno.writeFileSync(victim, new Uint8Array([7, 7, 7]));
    Deno.symlinkSync(victim, `${dir}/f.tmp-${Deno.pid}`);
    await writeFileAtomic(`${dir}/f`, new Uint8Array([1, 2]));
    assert.deepEqual(Deno.readFileSync(victim), new Uint8Array([7, 7, 7]));
    assert.deepEqual(Deno.readFileSync(`${dir}/f`), new Uint8Array([1, 2]));
    assert.equal(Deno.lstatSync(`${dir}/f`).isFile, true);
  }),
);

Deno.test(
  "a state file that is a symlink is refused, not read",
  withDir(async (dir, log) => {
    Deno.writeFileSync(`${dir}/elsewhere`, cConfigFile("x"));
    Deno.symlinkSync(`${dir}/elsewhere`, `${dir}/s.config`);
    await assert.rejects(() => loadDeviceState(dir, "s", logger(log)), /not a regular file/);
  }),
);

Deno.test("file sizes match the original's", () => {
  assert.equal(CONFIG_FILE_SIZE, 1032);
  assert.equal(MAC_LIST_FILE_SIZE, 2048);
});

Deno.test(
  "a device name that is not a file name is refused",
  withDir(async (dir, log) => {
    await assert.rejects(() => loadDeviceState(dir, "../x", logger(log)), RangeError);
    await assert.rejects(() => loadDeviceState(dir, "", logger(log)), RangeError);
  }),
);

Deno.test(
  "an oversized state file is moved aside by its size, without being read",
  withDir(async (dir, log) => {
    // 1 GiB, sparse: reading it would cost a second and a gigabyte of memory.
    const path = `${dir}/big.config`;
    const f = Deno.openSync(path, { create: true, write: true });
    f.truncateSync(1 << 30);
    f.close();
    const rssBefore = Deno.memoryUsage().rss;
    const t0 = performance.now();
    const state = await loadDeviceState(dir, "big", logger(log));
    const ms = performance.now() - t0;
    const grown = Deno.memoryUsage().rss - rssBefore;
    assert.equal(state.config.length, 0);
    assert.ok(grown < 64 * 1024 * 1024, `memory grew by ${grown} bytes: the file was read`);
    assert.ok(ms < 5000, `${ms} ms`);
    const aside = names(dir).find((n) => n.startsWith("big.config.damaged-"))!;
    assert.equal(Deno.statSync(`${dir}/${aside}`).size, 1 << 30, "moved aside as it was");
    assert.equal(Deno.statSync(path).size, CONFIG_FILE_SIZE, "reset to an empty file");
    assert.ok(log.some((e) => e.level === "warning" && /size is 1073741824 bytes/.test(e.message)));
  }),
);

Deno.test(
  "a directory named like a temp file is reported and left alone; the state loads",
  withDir(async (dir, log) => {
    await writeFileAtomic(`${dir}/t.config`, encodeConfigFile(new TextEncoder().encode("kept")));
    Deno.mkdirSync(`${dir}/t.config.tmp-4242/inner`, { recursive: true });
    Deno.writeFileSync(`${dir}/t.config.tmp-4242/inner/x`, new Uint8Array([1]));
    Deno.mkdirSync(`${dir}/t.reserve.tmp-1`);
    Deno.writeFileSync(`${dir}/t.mac_mask.tmp-7`, new Uint8Array([1])); // a real leftover
    const state = await loadDeviceState(dir, "t", logger(log));
    assert.equal(new TextDecoder().decode(state.config), "kept");
    assert.deepEqual(Deno.readFileSync(`${dir}/t.config.tmp-4242/inner/x`), new Uint8Array([1]));
    assert.ok(Deno.statSync(`${dir}/t.reserve.tmp-1`).isDirectory);
    assert.ok(!names(dir).includes("t.mac_mask.tmp-7"), "the leftover file is removed");
    const warned = log.filter((e) => e.level === "warning").map((e) => e.message);
    assert.equal(warned.length, 2, JSON.stringify(log));
    assert.ok(
      warned.some((m) => /t\.config\.tmp-4242 is named like a temp file.*not a file/.test(m)),
    );
  }),
);

Deno.test(
  "the mode is set through the descriptor: exact under any umask, never through a symlink",
  withDir(async (dir) => {
    const old = Deno.umask(0o277);
    try {
      await writeFileAtomic(`${dir}/f`, new Uint8Array([1]));
    } finally {
      Deno.umask(old);
    }
    assert.equal(Deno.statSync(`${dir}/f`).mode! & 0o777, 0o600);
    // A file created here, then replaced by a symlink before its mode is set: refused, and the
    // symlink's target keeps its mode.
    const victim = `${dir}/victim`;
    Deno.writeFileSync(victim, new Uint8Array([7]), { mode: 0o644 });
    Deno.chmodSync(victim, 0o644);
    const tmp = `${dir}/g.tmp`;
    Deno.writeFileSync(tmp, new Uint8Array([1]));
    const created = Deno.lstatSync(tmp);
    Deno.removeSync(tmp);
    Deno.symlinkSync(victim, tmp);
    assert.throws(() => chmodCreatedFile(tmp, 0o600, created.dev, created.ino!), /symlink/);
    assert.equal(Deno.statSync(victim).mode! & 0o777, 0o644);
    // Replaced by another file: refused too.
    Deno.removeSync(tmp);
    Deno.writeFileSync(tmp, new Uint8Array([2]), { mode: 0o644 });
    Deno.chmodSync(tmp, 0o644);
    assert.throws(() => chmodCreatedFile(tmp, 0o600, created.dev, created.ino! + 1), /replaced/);
    assert.equal(Deno.statSync(tmp).mode! & 0o777, 0o644);
  }),
);
