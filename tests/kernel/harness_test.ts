/**
 * Tests of the kernel-initiator harness itself: marker parsing and cpio building run anywhere;
 * namespace cleanup and the timeout kill need root (and the prepared guest for the latter).
 */
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { join } from "node:path";
import {
  buildCpio,
  hostHas,
  kernelHarnessUnavailable,
  parseMarkers,
  runGuest,
  withTapNamespace,
} from "./harness.ts";

Deno.test("parseMarkers reads results, errors and exit code only from whole marker lines", () => {
  const out = [
    "[    1.0] virtio_net virtio0 eth0: renamed",
    "@@READY 6.1.0-56-amd64 mtu=1500\r",
    "@@RESULT md5 0123abcd\r",
    "@@RESULT note two words here",
    "@@RESULT md5 ffff",
    "echo @@RESULT fake 1",
    "@@GUEST-ERROR insmod aoe failed",
    "@@EXIT 3\r",
  ].join("\n");
  const m = parseMarkers(out);
  assert.equal(m.ready, true);
  assert.equal(m.exitCode, 3);
  assert.equal(m.results.get("md5"), "ffff", "a repeated key keeps its last value");
  assert.equal(m.results.get("note"), "two words here");
  assert.equal(m.results.has("fake"), false);
  assert.deepEqual(m.guestErrors, ["insmod aoe failed"]);
});

Deno.test("parseMarkers reports a null exit code when the guest never finished", () => {
  const m = parseMarkers("[ 0.5] Linux version 6.1\n@@READY x mtu=9000\n");
  assert.equal(m.exitCode, null);
  assert.equal(m.ready, true);
});

Deno.test({
  name: "buildCpio writes a newc archive that busybox cpio extracts byte-exact",
  ignore: !hostHas("busybox"),
  fn: async () => {
    const binary = new Uint8Array(1031).map((_, i) => (i * 7) & 0xff);
    const archive = buildCpio({
      "/guest/script.sh": "echo hi\n",
      "/guest/data/blob.bin": binary,
      "/etc/x": "",
    });
    assert.equal(archive.length % 4, 0, "archives must stay 4-byte aligned for concatenation");
    const dir = await Deno.makeTempDir({ prefix: "ggaoed-cpio-" });
    try {
      const cpio = new Deno.Command("busybox", {
        args: ["cpio", "-i", "-d"],
        cwd: dir,
        stdin: "piped",
        stderr: "piped",
      }).spawn();
      const w = cpio.stdin.getWriter();
      await w.write(archive);
      await w.close();
      const res = await cpio.output();
      assert.equal(res.code, 0, new TextDecoder().decode(res.stderr));
      assert.equal(await Deno.readTextFile(join(dir, "guest/script.sh")), "echo hi\n");
      assert.equal((await Deno.stat(join(dir, "guest/script.sh"))).mode! & 0o777, 0o755);
      assert.deepEqual(await Deno.readFile(join(dir, "guest/data/blob.bin")), binary);
      assert.equal(await Deno.readTextFile(join(dir, "etc/x")), "");
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("buildCpio refuses paths that climb out of the archive root", () => {
  assert.throws(() => buildCpio({ "/guest/../etc/passwd": "x" }), /bad path/);
});

const rootSkip = Deno.uid() !== 0 || !hostHas("ip") ? "needs root and ip" : null;

Deno.test({
  name: "withTapNamespace removes its namespace and tap even when the body throws",
  ignore: rootSkip !== null,
  fn: async () => {
    let seen = "";
    await assert.rejects(
      withTapNamespace(1500, async (ns) => {
        seen = ns.netns;
        assert.ok(existsSync(`/run/netns/${ns.netns}`));
        const link = await new Deno.Command("ip", {
          args: ["-n", ns.netns, "-o", "link", "show", ns.tap],
        }).output();
        assert.match(new TextDecoder().decode(link.stdout), /mtu 1500 .*state (UP|DOWN)/);
        throw new Error("body failed");
      }),
      /body failed/,
    );
    assert.ok(seen.length > 0 && seen.length <= 15);
    assert.equal(existsSync(`/run/netns/${seen}`), false);
  },
});

const guestSkip = kernelHarnessUnavailable();

Deno.test({
  name: "runGuest kills qemu and reports a timeout when the guest script overruns its budget",
  ignore: guestSkip !== null,
  fn: async () => {
    await withTapNamespace(1500, async (ns) => {
      const run = await runGuest({
        netns: ns.netns,
        tap: ns.tap,
        mtu: 1500,
        guestScript: "result started yes\nsleep 600\n",
        timeoutMs: 15_000,
      });
      assert.equal(run.timedOut, true);
      assert.equal(run.exitCode, null);
      assert.equal(run.ready, true, run.output);
      assert.equal(run.results.get("started"), "yes", run.output);
      assert.ok(run.durationMs < 20_000, `took ${run.durationMs} ms`);
    });
  },
});

Deno.test({
  name: "runGuest's onStart types lines on the guest console, and wait_host waits for its word",
  ignore: guestSkip !== null,
  fn: async () => {
    await withTapNamespace(1500, async (ns) => {
      let send: ((line: string) => Promise<void>) | null = null;
      let told = false;
      let serial = "";
      const run = await runGuest({
        netns: ns.netns,
        tap: ns.tap,
        mtu: 1500,
        // Another word first: wait_host must read past it (and not stop at it, or the second
        // wait_host would get "hello" and, with the check inverted, stop there).
        guestScript: "result waiting yes\nwait_host hello 60 || exit 3\nresult heard yes\n" +
          "wait_host other 3 && exit 4\nexit 0\n",
        timeoutMs: 90_000,
        onStart: (s) => (send = s),
        onOutput: (text) => {
          serial += text;
          if (told || !/^@@RESULT waiting yes/m.test(serial)) return;
          told = true;
          send!("other").then(() => send!("hello"));
        },
      });
      assert.equal(run.timedOut, false, run.output);
      assert.equal(run.results.get("heard"), "yes", run.output);
      assert.equal(run.exitCode, 0, run.output);
    });
  },
});
