/**
 * The container image, built and run for real: podman builds the Dockerfile from the working
 * tree (base images made locally, see `helpers/podman.ts`), the container runs with nothing but
 * CAP_NET_RAW, a read-only root file system and the configuration mounted read-only, inside a
 * network namespace joined to the test by a veth pair, and serves `aoeping` and the project's
 * initiator. About 1 minute with cached base images (the first run adds debootstrap, ~30 s).
 */

import { assert, assertEquals } from "./helpers/assert.ts";
import { firstDifference, readFileRange } from "./helpers/files.ts";
import { NetLab } from "./helpers/netns.ts";
import { have, Podman, sh } from "./helpers/podman.ts";
import { Initiator } from "../src/initiator/mod.ts";
import { pattern } from "./e2e/target.ts";

const REPO = new URL("../", import.meta.url).pathname;
const CACHE = Deno.env.get("GGAOED_CONTAINER_CACHE") ?? `${REPO}.cache/container`;
const TAG = "localhost/ggaoed:test";
/** The image is Debian slim (~78 MB) + libaio + one Deno (~96 MB) + sources and npm deps. */
const MAX_IMAGE_BYTES = 200e6;

Deno.test({
  name: "the image holds one Deno, runs with CAP_NET_RAW only on a read-only root, answers " +
    "aoeping and I/O, reports stats, reloads on SIGHUP and exits 0 on stop",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    for (const tool of ["podman", "runc", "debootstrap", "aoeping", "npm"]) {
      assert(await have(tool), `${tool} is missing: run scripts/install-deps.sh --test`);
    }
    const podman = Podman.create();
    const lab = new NetLab();
    const name = `ggaoed-test-${Deno.pid}`;
    let logs = "";
    try {
      await podman.baseImages(CACHE);
      await podman.build(TAG);

      // What the image holds: its size, and Deno once (no node_modules, no npm deno package).
      const size = Number((await podman.run(["image", "inspect", TAG, "--format", "{{.Size}}"]))
        .stdout.trim());
      const ulimits = await Podman.ulimits();
      const big = (await podman.run([
        "run",
        "--rm",
        "--network",
        "none",
        ...ulimits,
        "--entrypoint",
        "/bin/sh",
        TAG,
        "-c",
        "find / -xdev -type f -size +20M; echo ==; ls -d /opt/ggaoed/* /opt/deno-dir/npm/*/*",
      ])).stdout;
      const [large, files] = big.split("==\n");
      const layers = (await podman.run(["history", TAG, "--format", "{{.Size}}\t{{.CreatedBy}}"]))
        .stdout.split("\n").map((l) => l.slice(0, 110)).join("\n");
      console.log(`image ${TAG}: ${(size / 1e6).toFixed(1)} MB\n${layers}\n${big}`);
      assert(size < MAX_IMAGE_BYTES, `image is ${size} bytes, over ${MAX_IMAGE_BYTES}`);
      assertEquals(large.trim().split("\n"), ["/usr/local/bin/deno"], "files over 20 MB");
      assert(!/node_modules|package\.json|\/deno$|@deno/m.test(files), `unexpected:\n${files}`);
      assert(/smol-toml/.test(files) && /@logtape/.test(files), `npm packages missing:\n${files}`);

      // A namespace of its own, joined to the test by a veth pair; the configuration and the
      // exported file on the host, mounted as the README says.
      const ns = await lab.namespace();
      const [hostIf, targetIf] = await lab.hostVethPair(ns);
      const etc = `${podman.work}/etc-ggaoed`;
      const state = `${podman.work}/var-ggaoed`;
      Deno.mkdirSync(etc);
      Deno.mkdirSync(state);
      Deno.writeTextFileSync(
        `${etc}/ggaoed.conf`,
        `[defaults]\ninterfaces = ["${targetIf}"]\n\n[devices.disk1]\n` +
          `path = "/var/lib/ggaoed/disk1.img"\nshelf = 0\nslot = 1\n`,
      );
      const image = `${state}/disk1.img`;
      await sh(["truncate", "-s", "64M", image]);
      await podman.run([
        "run",
        "-d",
        "--name",
        name,
        "--network",
        `ns:/run/netns/${ns}`,
        "--cap-drop",
        "ALL",
        "--cap-add",
        "NET_RAW",
        "--read-only",
        ...ulimits,
        "-v",
        `${etc}:/etc/ggaoed:ro`,
        "-v",
        `${state}:/var/lib/ggaoed`,
        TAG,
      ]);
      const deadline = Date.now() + 30_000;
      while (!/ggaoed is running/.test(logs)) {
        assert(Date.now() < deadline, `the daemon did not start within 30 s:\n${logs}`);
        const running = await podman.run(["inspect", name, "--format", "{{.State.Running}}"]);
        logs = await containerLog(podman, name);
        assert(running.stdout.trim() === "true" || /ggaoed is running/.test(logs), logs);
        await new Promise((r) => setTimeout(r, 250));
      }

      // aoetools' aoeping, then the project's initiator writing and reading back 1 MiB.
      const ping = await sh(["aoeping", "-v", "-s", "5", "-I", "0", "1", hostIf]);
      assert(/^found e0\.1 /m.test(ping.stdout), ping.stdout);
      assert(/serial_number: disk1/.test(ping.stdout), ping.stdout);
      const ini = Initiator.open(hostIf);
      try {
        const disk = ini.find(0, 1);
        const data = pattern(1 << 20, 11);
        ini.writeRange(disk, 2048, data);
        assertEquals(firstDifference(ini.readRange(disk, 2048, data.length / 512), data), -1);
        assertEquals(firstDifference(readFileRange(image, 2048 * 512, data.length), data), -1);
      } finally {
        ini.close();
      }

      // ggaoectl inside the image, reload by signal, clean stop.
      const stats = (await podman.run(["exec", name, "ggaoectl", "stats"])).stdout;
      assert(/Statistics for device disk1/.test(stats), stats);
      assert(/^write_cnt: [1-9]/m.test(stats), stats);
      assert(new RegExp(`Statistics for interface ${targetIf}`).test(stats), stats);
      await podman.run(["kill", "-s", "HUP", name]);
      const reloadBy = Date.now() + 10_000;
      while (!/configuration has been reloaded/.test(logs)) {
        assert(Date.now() < reloadBy, `no reload logged:\n${logs}`);
        await new Promise((r) => setTimeout(r, 200));
        logs = await containerLog(podman, name);
      }
      await podman.run(["stop", "-t", "10", name], { timeoutMs: 30_000 });
      const code = (await podman.run(["inspect", name, "--format", "{{.State.ExitCode}}"]))
        .stdout.trim();
      logs = await containerLog(podman, name);
      assertEquals(code, "0", `exit status after podman stop:\n${logs}`);
      assert(/SIGTERM received, shutting down/.test(logs), logs);
    } catch (e) {
      console.error(`--- container log ---\n${logs}--- end of container log ---`);
      throw e;
    } finally {
      await podman.cleanup();
      await lab.cleanup();
    }
  },
});

/** The container's stdout and stderr (the daemon logs to stderr). */
async function containerLog(podman: Podman, name: string): Promise<string> {
  const out = await podman.run(["logs", name]);
  return out.stdout + out.stderr;
}
