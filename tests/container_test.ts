/**
 * The container image and the systemd unit, built and run for real: podman builds the
 * Dockerfile from the working tree (base images made locally, see `helpers/podman.ts`); the
 * container runs as the README says with nothing but CAP_NET_RAW and a read-only root, inside
 * a network namespace joined to the test by a veth pair, and serves `aoeping` and the project's
 * initiator; then the same image with systemd added boots systemd, which runs
 * `contrib/ggaoed.service` as it is (Type=notify, its own user, the whole sandbox), with the
 * metrics endpoint on 127.0.0.1 and then on [::1], scraped from outside the unit. The image also
 * serves a Ceph RBD image of a one-node cluster through its librbd. About 2.5 minutes with cached
 * base images (the first run adds debootstrap, ~30 s).
 */

import { assert, assertEquals } from "./helpers/assert.ts";
import { NetLab } from "../lab/netns.ts";
import { have, run } from "../lab/command.ts";
import { Podman } from "./helpers/podman.ts";
import { Initiator } from "../src/initiator/mod.ts";
import { withCephCluster } from "../lab/ceph.ts";
import { assertRoundTrip, DAEMON_FLAGS, firstDifference, pattern } from "../lab/target.ts";

const REPO = new URL("../", import.meta.url).pathname;
const CACHE = Deno.env.get("GGAOED_CONTAINER_CACHE") ?? `${REPO}.cache/container`;
const TAG = "localhost/ggaoed:test";
/** The image is Debian slim (~78 MB) + libaio + librbd and its libraries + one Deno (~96 MB) +
 * sources and npm deps. */
const MAX_IMAGE_BYTES = 280e6;

Deno.test({
  name: "the container image and the systemd unit, built and run for real",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async (t) => {
    for (const tool of ["podman", "runc", "debootstrap", "aoeping", "npm"]) {
      assert(await have(tool), `${tool} is missing: run scripts/install-deps.sh --test`);
    }
    const podman = Podman.create();
    const lab = new NetLab();
    try {
      await podman.baseImages(CACHE);
      await podman.build(TAG);
      const ulimits = await Podman.ulimits();

      await t.step(
        "the image holds one Deno, no npm tree, and the program's npm packages",
        async () => {
          const size = Number(
            (await podman.run(["image", "inspect", TAG, "--format", "{{.Size}}"])).stdout.trim(),
          );
          const listing = (await podman.run([
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
          const [large, files] = listing.split("==\n");
          const layers =
            (await podman.run(["history", TAG, "--format", "{{.Size}}\t{{.CreatedBy}}"]))
              .stdout.split("\n").map((l) => l.slice(0, 110)).join("\n");
          console.log(`image ${TAG}: ${(size / 1e6).toFixed(1)} MB\n${layers}\n${listing}`);
          assert(size < MAX_IMAGE_BYTES, `image is ${size} bytes, over ${MAX_IMAGE_BYTES}`);
          assertEquals(large.trim().split("\n"), ["/usr/local/bin/deno"], "files over 20 MB");
          assert(!/node_modules|package\.json|\/deno$|@deno/m.test(files), `unexpected:\n${files}`);
          assert(
            /smol-toml/.test(files) && /@logtape/.test(files),
            `npm packages missing:\n${files}`,
          );
        },
      );

      await t.step(
        "run as the README says, with CAP_NET_RAW only on a read-only root: aoeping, I/O, " +
          "ggaoectl, reload on SIGHUP, exit 0 on stop",
        () => dockerRun(podman, lab, ulimits),
      );

      await t.step(
        "without CAP_NET_RAW the container exits 1 and says what to grant, never that it runs",
        () => withoutNetRaw(podman, lab, ulimits),
      );

      await t.step(
        "an RBD image of a one-node Ceph cluster served from the container: bytes verified " +
          "against rbd export",
        () => rbdImage(podman, lab, ulimits),
      );

      await t.step(
        "contrib/ggaoed.service under systemd: ready when serving, its own user with " +
          "CAP_NET_RAW only, watchdog, reload, refused reload, clean stop, verify, metrics on " +
          "127.0.0.1 and [::1]",
        () => systemdUnit(podman, lab, ulimits),
      );
    } finally {
      await podman.cleanup();
      await lab.cleanup();
    }
  },
});

/** The image run without NET_RAW: no packet socket can be opened, so it must not run. */
async function withoutNetRaw(podman: Podman, lab: NetLab, ulimits: string[]): Promise<void> {
  const name = `ggaoed-noraw-${Deno.pid}`;
  const setup = await readmeSetup(podman, lab, "noraw", "1M");
  await readmeRun(podman, name, setup, ulimits, []);
  const deadline = Date.now() + 30_000;
  while (await containerState(podman, name, "Running") === "true") {
    assert(Date.now() < deadline, "the daemon kept running without CAP_NET_RAW");
    await new Promise((r) => setTimeout(r, 250));
  }
  const code = await containerState(podman, name, "ExitCode");
  const logs = await containerLog(podman, name);
  assertEquals(code, "1", logs);
  assert(/no packet socket could be opened: .*CAP_NET_RAW/.test(logs), logs);
  assert(!/ggaoed is running/.test(logs), logs);
}

/** The container as the README runs it (`docker run ...`). */
async function dockerRun(podman: Podman, lab: NetLab, ulimits: string[]): Promise<void> {
  const name = `ggaoed-test-${Deno.pid}`;
  const { hostIf, targetIf, image, ...setup } = await readmeSetup(podman, lab, "ggaoed", "64M");
  let logs = "";
  try {
    await readmeRun(podman, name, setup, ulimits, ["NET_RAW"]);
    const deadline = Date.now() + 30_000;
    while (!/ggaoed is running/.test(logs)) {
      assert(Date.now() < deadline, "the daemon did not start within 30 s");
      const running = await containerState(podman, name, "Running");
      logs = await containerLog(podman, name);
      assert(running === "true" || /ggaoed is running/.test(logs), "exited");
      await new Promise((r) => setTimeout(r, 250));
    }

    await serves(hostIf, image);

    // ggaoectl inside the image, reload by signal, clean stop.
    const stats = (await podman.run(["exec", name, "ggaoectl", "stats"])).stdout;
    assert(/Statistics for device disk1/.test(stats), stats);
    assert(/^write_cnt: [1-9]/m.test(stats), stats);
    assert(new RegExp(`Statistics for interface ${targetIf}`).test(stats), stats);
    await podman.run(["kill", "-s", "HUP", name]);
    const reloadBy = Date.now() + 10_000;
    while (!/configuration has been reloaded/.test(logs)) {
      assert(Date.now() < reloadBy, "no reload logged");
      await new Promise((r) => setTimeout(r, 200));
      logs = await containerLog(podman, name);
    }
    await podman.run(["stop", "-t", "10", name], { timeoutMs: 30_000 });
    const code = await containerState(podman, name, "ExitCode");
    logs = await containerLog(podman, name);
    assertEquals(code, "0", "exit status after podman stop");
    assert(/SIGTERM received, shutting down/.test(logs), logs);
  } catch (e) {
    console.error(`--- container log ---\n${logs}--- end of container log ---`);
    throw e;
  } finally {
    await podman.run(["rm", "-f", "-t", "2", name], { check: false });
  }
}

/**
 * What the README's `docker run` needs: a namespace `ns` joined to the host by a veth pair, and
 * the two volumes, `etc` with a configuration serving disk1 on the namespace's end and `state`
 * holding its sparse image of `size`.
 */
async function readmeSetup(podman: Podman, lab: NetLab, suffix: string, size: string) {
  const ns = await lab.namespace();
  const [hostIf, targetIf] = await lab.hostVethPair(ns);
  const etc = `${podman.work}/etc-${suffix}`;
  const state = `${podman.work}/var-${suffix}`;
  Deno.mkdirSync(etc);
  Deno.mkdirSync(state);
  Deno.writeTextFileSync(
    `${etc}/ggaoed.conf`,
    `[defaults]\ninterfaces = ["${targetIf}"]\n\n[devices.disk1]\n` +
      `path = "/var/lib/ggaoed/disk1.img"\nshelf = 0\nslot = 1\n`,
  );
  const image = `${state}/disk1.img`;
  await run(["truncate", "-s", size, image]);
  return { ns, hostIf, targetIf, etc, state, image };
}

/**
 * Starts the image as the README runs it (`docker run -d`): every capability dropped but
 * `caps`, a read-only root, the configuration volume read-only.
 */
async function readmeRun(
  podman: Podman,
  name: string,
  setup: { ns: string; etc: string; state: string },
  ulimits: string[],
  caps: string[],
): Promise<void> {
  await podman.run([
    "run",
    "-d",
    "--name",
    name,
    "--network",
    `ns:/run/netns/${setup.ns}`,
    "--cap-drop",
    "ALL",
    ...caps.flatMap((cap) => ["--cap-add", cap]),
    "--read-only",
    "--tmpfs",
    "/run",
    ...ulimits,
    "-v",
    `${setup.etc}:/etc/ggaoed:ro`,
    "-v",
    `${setup.state}:/var/lib/ggaoed`,
    TAG,
  ]);
}

/** A field of the container's state (`podman inspect`: Running, ExitCode, ...). */
async function containerState(podman: Podman, name: string, field: string): Promise<string> {
  return (await podman.run(["inspect", name, "--format", `{{.State.${field}}}`])).stdout.trim();
}

/** aoeping answers, and the initiator writes and reads back 1 MiB that lands in `image`. */
async function serves(hostIf: string, image: string): Promise<void> {
  const ping = await run(["aoeping", "-v", "-s", "5", "-I", "0", "1", hostIf]);
  assert(/^found e0\.1 /m.test(ping.stdout), ping.stdout);
  assert(/serial_number: 0\.1:/.test(ping.stdout), ping.stdout); // shelf.slot:hostname
  const ini = Initiator.open(hostIf);
  try {
    assertRoundTrip(ini, ini.find(0, 1), image);
  } finally {
    ini.close();
  }
}

/**
 * The image as the README runs it, serving `rbd:rbd/disk` of a one-node cluster running in the
 * container's network namespace (the host's network, for the container), its configuration and
 * keyring mounted read-only: 1 MiB written through AoE and flushed is what `rbd export` reads.
 */
async function rbdImage(podman: Podman, lab: NetLab, ulimits: string[]): Promise<void> {
  const ns = await lab.namespace();
  const [hostIf, targetIf] = await lab.hostVethPair(ns);
  await withCephCluster({ netns: ns }, async (cluster) => {
    await cluster.createImage("disk", { sizeBytes: 64 << 20 });
    const etc = `${podman.work}/etc-rbd`;
    const state = `${podman.work}/var-rbd`;
    Deno.mkdirSync(etc);
    Deno.mkdirSync(state);
    Deno.writeTextFileSync(
      `${etc}/ggaoed.conf`,
      `[defaults]\ninterfaces = ["${targetIf}"]\nceph-conf = "${cluster.conf}"\n` +
        `ceph-user = "${cluster.user}"\n\n[devices.disk1]\npath = "rbd:${cluster.pool}/disk"\n` +
        `shelf = 0\nslot = 1\n`,
    );
    const name = `ggaoed-rbd-${Deno.pid}`;
    let logs = "";
    try {
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
        "--tmpfs",
        "/run",
        ...ulimits,
        "-v",
        `${etc}:/etc/ggaoed:ro`,
        "-v",
        `${state}:/var/lib/ggaoed`,
        "-v",
        `${cluster.dir}:${cluster.dir}:ro`,
        TAG,
      ]);
      const deadline = Date.now() + 60_000;
      while (!/ggaoed is running/.test(logs)) {
        assert(Date.now() < deadline, "the daemon did not start within 60 s");
        logs = await containerLog(podman, name);
        const running = await containerState(podman, name, "Running");
        assert(running === "true" || /ggaoed is running/.test(logs), "exited");
        await new Promise((r) => setTimeout(r, 250));
      }
      assert(!/NOT exported/.test(logs), logs);
      const ini = Initiator.open(hostIf);
      const data = pattern(1 << 20, 23);
      try {
        const disk = ini.find(0, 1, { waitMs: 10_000 });
        assertEquals(ini.identify(disk).sectors, (64 << 20) / 512);
        ini.writeRange(disk, 2048, data);
        assertEquals(firstDifference(ini.readRange(disk, 2048, data.length / 512), data), -1);
        ini.flush(disk);
      } finally {
        ini.close();
      }
      await podman.run(["stop", "-t", "10", name], { timeoutMs: 30_000 });
      assertEquals(await containerState(podman, name, "ExitCode"), "0");
      const exported = `${podman.work}/rbd-export.raw`;
      await cluster.exportImage("disk", exported);
      const bytes = Deno.readFileSync(exported);
      assertEquals(bytes.length, 64 << 20);
      assertEquals(firstDifference(bytes.subarray(2048 * 512, 2048 * 512 + data.length), data), -1);
      assert(bytes.subarray(0, 2048 * 512).every((b) => b === 0), "bytes before the write");
    } catch (e) {
      console.error(
        `--- container log ---\n${await containerLog(podman, name).catch(() => logs)}` +
          "--- end of container log ---",
      );
      throw e;
    } finally {
      await podman.run(["rm", "-f", "-t", "2", name], { check: false });
    }
  });
}

/** The service user of the systemd image (any free system uid; fixed so files can be chowned). */
const SERVICE_UID = 990;

/**
 * The image plus systemd, the unit from contrib/ as it is, a `ggaoed` user, and the daemon
 * installed at the unit's path as the script its comment shows. A drop-in adds what a site adds:
 * the exported files' directory, and a short watchdog so that the test sees it work.
 */
async function systemdUnit(podman: Podman, lab: NetLab, ulimits: string[]): Promise<void> {
  const ctx = `${podman.work}/systemd-image`;
  Deno.mkdirSync(ctx);
  Deno.copyFileSync(`${REPO}contrib/ggaoed.service`, `${ctx}/ggaoed.service`);
  Deno.writeTextFileSync(`${ctx}/site.conf`, "[Service]\nReadWritePaths=/srv/aoe\nWatchdogSec=2\n");
  const script = `#!/bin/sh\nexec env DENO_DIR=/opt/deno-dir DENO_NO_UPDATE_CHECK=1 ` +
    `/usr/local/bin/deno run --cached-only ${DAEMON_FLAGS.join(" ")} /opt/ggaoed/ggaoed.ts "$@"\n`;
  Deno.writeTextFileSync(`${ctx}/ggaoed`, script);
  Deno.writeTextFileSync(
    `${ctx}/Containerfile`,
    `FROM ${TAG}
RUN apt-get update && apt-get install -y --no-install-recommends systemd \\
 && rm -rf /var/lib/apt/lists/* \\
 && useradd --system --uid ${SERVICE_UID} --home-dir /var/lib/ggaoed --shell /usr/sbin/nologin ggaoed
COPY --chmod=755 ggaoed /usr/local/sbin/ggaoed
RUN ln -s /usr/local/bin/ggaoectl /usr/local/sbin/ggaoectl
COPY ggaoed.service /etc/systemd/system/ggaoed.service
COPY site.conf /etc/systemd/system/ggaoed.service.d/site.conf
ENTRYPOINT ["/lib/systemd/systemd"]
CMD []
`,
  );
  const tag = "localhost/ggaoed-systemd:test";
  await podman.run(["build", "--pull=never", "--network", "host", "-t", tag, ctx], {
    timeoutMs: 600_000,
  });

  const ns = await lab.namespace();
  const [hostIf, targetIf] = await lab.hostVethPair(ns);
  const etc = `${podman.work}/systemd-etc`;
  const srv = `${podman.work}/systemd-srv`;
  Deno.mkdirSync(etc);
  Deno.mkdirSync(srv);
  // The unit's user cannot write /run itself: pid file and socket go to its RuntimeDirectory.
  const configWith = (metrics: string) =>
    `[defaults]\ninterfaces = ["${targetIf}"]\n` +
    `pid-file = "/run/ggaoed/ggaoed.pid"\ncontrol-socket = "/run/ggaoed/ggaoed.sock"\n` +
    `metrics-listen = "${metrics}"\n\n` +
    `[devices.disk1]\npath = "/srv/aoe/disk1.img"\nshelf = 0\nslot = 1\n`;
  const config = configWith("127.0.0.1:9642");
  Deno.writeTextFileSync(`${etc}/ggaoed.conf`, config);
  const image = `${srv}/disk1.img`;
  await run(["truncate", "-s", "64M", image]);
  Deno.chownSync(srv, SERVICE_UID, SERVICE_UID);
  Deno.chownSync(image, SERVICE_UID, SERVICE_UID);

  const name = `ggaoed-systemd-${Deno.pid}`;
  const exec = (...args: string[]) =>
    podman.run(["exec", name, ...args], { check: false, timeoutMs: 90_000 });
  const show = async (...props: string[]) => {
    const out = (await exec("systemctl", "show", "ggaoed", ...props.map((p) => `-p${p}`))).stdout;
    return Object.fromEntries(out.trim().split("\n").map((l) => l.split(/=(.*)/s).slice(0, 2)));
  };
  const journal = async () => (await exec("journalctl", "-u", "ggaoed", "--no-pager")).stdout;
  try {
    // systemd needs CAP_SYS_ADMIN in the container to build the unit's sandbox (mount
    // namespaces); the unit then keeps CAP_NET_RAW alone.
    await podman.run([
      "run",
      "-d",
      "--name",
      name,
      "--systemd=always",
      "--network",
      `ns:/run/netns/${ns}`,
      "--cap-add",
      "SYS_ADMIN,NET_RAW",
      ...ulimits,
      "-v",
      `${etc}:/etc/ggaoed`,
      "-v",
      `${srv}:/srv/aoe`,
      tag,
    ]);
    const booted = Date.now() + 60_000;
    for (;;) {
      const state = (await exec("systemctl", "is-system-running")).stdout.trim();
      if (state === "running" || state === "degraded") break;
      assert(Date.now() < booted, `systemd did not finish booting: ${state}`);
      await new Promise((r) => setTimeout(r, 250));
    }

    // Type=notify: `systemctl start` returns once ggaoed said READY=1, and it is serving then.
    const start = await exec("systemctl", "start", "ggaoed");
    assertEquals(start.code, 0, start.stderr + (await journal()));
    const up = await show("ActiveState", "SubState", "StatusText", "MainPID", "WatchdogUSec");
    assertEquals([up.ActiveState, up.SubState], ["active", "running"]);
    assertEquals(up.StatusText, "serving 1 device(s) on 1 interface(s)");
    assertEquals(up.WatchdogUSec, "2s");
    await serves(hostIf, image);
    // The metrics endpoint on loopback answers a scraper outside the unit (IPAddressAllow).
    await scrapes(lab, ns, "http://127.0.0.1:9642/metrics");

    // The process: the unit's user, CAP_NET_RAW alone, no new privileges, a seccomp filter.
    const status = (await exec("cat", `/proc/${up.MainPID}/status`)).stdout;
    const field = (k: string) => status.match(new RegExp(`^${k}:\\s*(.*)$`, "m"))?.[1].trim();
    assertEquals(field("Uid")?.split(/\s+/)[0], String(SERVICE_UID));
    assertEquals(field("CapEff"), "0000000000002000");
    assertEquals(field("CapBnd"), "0000000000002000");
    assertEquals(field("NoNewPrivs"), "1");
    assertEquals(field("Seccomp"), "2");

    // ggaoectl finds the socket through the configuration file at the default path.
    const stats = await exec("ggaoectl", "stats", "disk1");
    assert(/^write_cnt: [1-9]/m.test(stats.stdout), stats.stdout + stats.stderr);

    // The watchdog is fed (WatchdogSec=2: a ping about every second) and never fires.
    const fed = Number((await show("WatchdogTimestampMonotonic")).WatchdogTimestampMonotonic);
    await new Promise((r) => setTimeout(r, 2500));
    const later = await show("WatchdogTimestampMonotonic", "NRestarts", "ActiveState");
    assert(Number(later.WatchdogTimestampMonotonic) > fed, "no WATCHDOG=1 reached systemd");
    assertEquals([later.NRestarts, later.ActiveState], ["0", "active"]);

    // Reload through ggaoectl; a broken file fails the reload and changes nothing.
    const reload = await exec("systemctl", "reload", "ggaoed");
    assertEquals(reload.code, 0, reload.stderr);
    assert(/configuration has been reloaded/.test(await journal()));
    Deno.writeTextFileSync(`${etc}/ggaoed.conf`, "[defaults\n");
    const refused = await exec("systemctl", "reload", "ggaoed");
    assert(refused.code !== 0, "a broken configuration was reloaded");
    Deno.writeTextFileSync(`${etc}/ggaoed.conf`, config);
    assertEquals((await show("ActiveState")).ActiveState, "active");
    await serves(hostIf, image);

    // On IPv6 loopback (AF_INET6, ::1 allowed): metrics-listen is read at start, so restart.
    Deno.writeTextFileSync(`${etc}/ggaoed.conf`, configWith("[::1]:9642"));
    const restart = await exec("systemctl", "restart", "ggaoed");
    assertEquals(restart.code, 0, restart.stderr + (await journal()));
    await scrapes(lab, ns, "http://[::1]:9642/metrics");
    await serves(hostIf, image);

    // SIGTERM: a clean stop, exit status 0.
    const stop = await exec("systemctl", "stop", "ggaoed");
    assertEquals(stop.code, 0, stop.stderr);
    const stopped = await show("Result", "ExecMainStatus", "ActiveState");
    assertEquals([stopped.Result, stopped.ExecMainStatus, stopped.ActiveState], [
      "success",
      "0",
      "inactive",
    ]);
    assert(/SIGTERM received, shutting down/.test(await journal()));

    // Why MemoryDenyWriteExecute stays off: with it, V8 cannot start.
    await exec(
      "sh",
      "-c",
      "printf '[Service]\\nMemoryDenyWriteExecute=yes\\n' > " +
        "/etc/systemd/system/ggaoed.service.d/mdwe.conf && systemctl daemon-reload",
    );
    assert((await exec("systemctl", "start", "ggaoed")).code !== 0, "started with MDWE");
    assert(/Check failed/.test(await journal()), "V8's failure is not in the journal");
    await exec(
      "sh",
      "-c",
      "rm /etc/systemd/system/ggaoed.service.d/mdwe.conf && " +
        "systemctl daemon-reload && systemctl reset-failed ggaoed",
    );

    // systemd-analyze verify, with the unit's commands present, and the exposure score.
    const verify = await exec("systemd-analyze", "verify", "/etc/systemd/system/ggaoed.service");
    assertEquals(verify.code, 0, verify.stderr);
    assert(!/ggaoed\.service/.test(verify.stderr), verify.stderr);
    const security = await exec("systemd-analyze", "security", "--no-pager", "ggaoed.service");
    const score = security.stdout.match(/Overall exposure level for ggaoed\.service: ([\d.]+)/);
    console.log(`systemd-analyze security ggaoed.service (running unit): ${score?.[1]}`);
    assert(score && Number(score[1]) <= 2.0, security.stdout.slice(-500));
  } catch (e) {
    console.error(`--- journal ---\n${await journal()}--- end of journal ---`);
    throw e;
  } finally {
    await podman.run(["rm", "-f", "-t", "2", name], { check: false, timeoutMs: 60_000 });
  }
}

/** A scrape of `url` from namespace `ns` (outside the container) is answered with metrics. */
async function scrapes(lab: NetLab, ns: string, url: string): Promise<void> {
  const r = await lab.exec(ns, [
    Deno.execPath(),
    "run",
    "--allow-net",
    `${REPO}tests/e2e/fixtures/scrape.ts`,
    "get",
    url,
  ], { check: true, timeoutMs: 60_000 });
  const answer = JSON.parse(r.stdout);
  assertEquals(answer.status, 200, `${url}: ${r.stdout}`);
  assert(/^ggaoed_up 1$/m.test(answer.body), answer.body);
}

/** The container's stdout and stderr (the daemon logs to stderr). */
async function containerLog(podman: Podman, name: string): Promise<string> {
  const out = await podman.run(["logs", name]);
  return out.stdout + out.stderr;
}
