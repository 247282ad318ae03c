/**
 * aoe.ts, the initiator CLI, run as a separate process against vblade: what a person typing
 * the commands sees.
 */

import { fileURLToPath } from "node:url";
import { assert, assertEquals } from "../helpers/assert.ts";
import { pattern, readFileAt, vbladeRigUnavailable, withVblade } from "./vblade_lab.ts";

const skip = vbladeRigUnavailable();
const CLI = fileURLToPath(new URL("../../aoe.ts", import.meta.url));

async function aoe(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-ffi", "--allow-read", "--allow-write", CLI, ...args],
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(30_000),
  }).output();
  const decode = (b: Uint8Array) => new TextDecoder().decode(b);
  return { code: out.code, stdout: decode(out.stdout), stderr: decode(out.stderr) };
}

Deno.test({
  name: "aoe.ts discovers, identifies, writes, reads, sets the config string and benchmarks",
  ignore: skip !== null,
  sanitizeResources: false,
  fn: async () => {
    await withVblade({ mtu: 9000 }, async (rig) => {
      const dir = await Deno.makeTempDir({ prefix: "ggaoed-aoe-cli-" });
      try {
        const ifname = rig.ifname;
        const discover = await aoe(["discover", ifname, "--wait", "300"]);
        assertEquals(discover.code, 0, discover.stderr);
        assert.match(discover.stdout, /^e0\.1 {2}[0-9a-f:]{17} {2}buffers 16 .*max 17 sectors/);

        const identify = await aoe(["identify", ifname, "0", "1"]);
        assertEquals(identify.code, 0, identify.stderr);
        assert.match(identify.stdout, /model +Coraid EtherDrive vblade/);
        assert.match(identify.stdout, /capacity +131072 sectors \(64\.0 MiB\), LBA48/);

        const data = pattern(300, 40, 9);
        await Deno.writeFile(`${dir}/in.bin`, data);
        const write = await aoe(["write", ifname, "0", "1", "300", `${dir}/in.bin`]);
        assertEquals(write.code, 0, write.stderr);
        assertEquals(readFileAt(rig.file, 300 * 512, data.length), data);
        const read = await aoe(["read", ifname, "0", "1", "300", "40", "-o", `${dir}/out.bin`]);
        assertEquals(read.code, 0, read.stderr);
        assertEquals(await Deno.readFile(`${dir}/out.bin`), data);
        const dump = await aoe(["read", ifname, "0", "1", "300", "1"]);
        assert.match(dump.stdout, /^00025800 {2}2c 01 00 00 09 00 00 00/, dump.stdout);

        const set = await aoe(["config", ifname, "0", "1", "--set", "rack 4"]);
        assertEquals([set.code, set.stdout], [0, "rack 4\n"], set.stderr);
        const get = await aoe(["config", ifname, "0", "1"]);
        assertEquals(get.stdout, "rack 4\n");

        const bench = await aoe(["bench", ifname, "0", "1", "--seconds", "0.3", "--json"]);
        assertEquals(bench.code, 0, bench.stderr);
        const r = JSON.parse(bench.stdout);
        assert.ok(r.ios > 0 && r.mbPerSec > 0 && r.errors === 0, bench.stdout);
        const text = await aoe([
          "bench",
          ifname,
          "0",
          "1",
          "--seconds",
          "0.2",
          "--io-bytes",
          "4096",
        ]);
        assert.match(text.stdout, /seq-read e0\.1 on .*MB\/s, \d+ IOPS, latency p50 .* ms p99/);
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    });
  },
});

Deno.test({
  name: "aoe.ts explains a silent target, a bad argument and a file that is not whole sectors",
  ignore: skip !== null,
  sanitizeResources: false,
  fn: async () => {
    await withVblade({}, async (rig) => {
      const silent = await aoe(["identify", rig.ifname, "9", "9", "--wait", "200"]);
      assertEquals(silent.code, 1);
      assertEquals(
        silent.stderr.trim(),
        `aoe: no AoE target e9.9 answered on ${rig.ifname} within 200 ms`,
      );
      const bad = await aoe(["read", rig.ifname, "0", "1", "x", "1"]);
      assertEquals(bad.code, 2);
      assert.match(bad.stderr, /LBA must be an integer/);
      const odd = await Deno.makeTempFile();
      try {
        await Deno.writeFile(odd, new Uint8Array(700));
        const write = await aoe(["write", rig.ifname, "0", "1", "0", odd]);
        assertEquals(write.code, 1);
        assert.match(write.stderr, /700 bytes: AoE writes whole 512-byte sectors/);
      } finally {
        await Deno.remove(odd);
      }
    });
  },
});
