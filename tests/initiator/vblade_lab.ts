/**
 * A vblade target in a throw-away namespace, reached from the test process over a veth pair
 * whose other end stays in the root namespace: the initiator runs in-process on that end.
 *
 * Built on {@link NetLab} (namespace lifecycle, spawn and kill by PID). The veth pair is created
 * here because NetLab puts both ends in namespaces; deleting the namespace deletes the peer, and
 * with it the root-side end.
 *
 * @module
 */

import { readFileRange } from "../../lab/files.ts";
import { NetLab } from "../../lab/netns.ts";
import { Initiator } from "../../src/initiator/mod.ts";
import type { InitiatorOptions, TargetInfo } from "../../src/initiator/mod.ts";

/** What a test gets: the initiator on the root-side end, the target, the backing file. */
export interface VbladeRig {
  initiator: Initiator;
  target: TargetInfo;
  /** Backing file of the device (read it from the host to check what was written). */
  file: string;
  /** Device size in bytes. */
  bytes: number;
  /** Root-side interface name. */
  ifname: string;
  /** vblade's namespace. */
  netns: string;
  shelf: number;
  slot: number;
}

/** How {@link withVblade} sets the rig up. */
export interface VbladeRigOptions {
  mtu?: number;
  /** Device size in bytes (sparse file); default 64 MiB. */
  bytes?: number;
  /** vblade -b (advertised buffer count, and socket buffers of bufcnt × MTU). */
  bufferCount?: number;
  shelf?: number;
  slot?: number;
  initiator?: InitiatorOptions;
}

/** Whether this host can run the rig: root, ip and vblade. Null when it can, else why not. */
export function vbladeRigUnavailable(): string | null {
  if (Deno.uid?.() !== 0) return "needs root (network namespaces, raw sockets)";
  for (const tool of ["/usr/sbin/ip", "/usr/sbin/vblade"]) {
    try {
      Deno.statSync(tool);
    } catch {
      if (!which(tool.split("/").pop()!)) return `${tool.split("/").pop()} is not installed`;
    }
  }
  return null;
}

function which(command: string): boolean {
  const dirs = (Deno.env.get("PATH") ?? "/usr/bin:/bin").split(":");
  return dirs.some((d) => {
    try {
      return Deno.statSync(`${d}/${command}`).isFile;
    } catch {
      return false;
    }
  });
}

async function ip(args: string[]): Promise<void> {
  const out = await new Deno.Command("ip", {
    args,
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(10_000),
  }).output();
  if (out.code !== 0) {
    throw new Error(`ip ${args.join(" ")}: ${new TextDecoder().decode(out.stderr).trim()}`);
  }
}

/**
 * Runs `body` against a vblade serving a fresh sparse file at `shelf`.`slot` (default 0.1) over
 * a veth pair at `mtu` (default 1500), and removes everything afterwards.
 */
export async function withVblade<T>(
  options: VbladeRigOptions,
  body: (rig: VbladeRig) => Promise<T> | T,
): Promise<T> {
  const lab = new NetLab();
  const dir = await Deno.makeTempDir({ prefix: "ggaoed-initiator-" });
  let initiator: Initiator | null = null;
  try {
    const mtu = options.mtu ?? 1500;
    const bytes = options.bytes ?? 64 * 1024 * 1024;
    const shelf = options.shelf ?? 0;
    const slot = options.slot ?? 1;
    const netns = await lab.namespace();
    const ifname = `${lab.id}r`;
    const peer = `${lab.id}t`;
    await ip(["link", "add", ifname, "type", "veth", "peer", "name", peer, "netns", netns]);
    await ip(["link", "set", ifname, "mtu", String(mtu), "up"]);
    await lab.exec(netns, ["ip", "link", "set", peer, "mtu", String(mtu), "up"], { check: true });

    const file = `${dir}/disk.img`;
    const f = await Deno.open(file, { create: true, write: true, truncate: true });
    await f.truncate(bytes);
    f.close();

    const vblade = lab.spawn(netns, [
      "vblade",
      "-b",
      String(options.bufferCount ?? 16),
      String(shelf),
      String(slot),
      peer,
      file,
    ]);
    // vblade prints one line at start; drain stdout so it can never block on a full pipe.
    vblade.stdout.pipeTo(new WritableStream()).catch(() => {});

    initiator = Initiator.open(ifname, options.initiator);
    let target: TargetInfo | null = null;
    const deadline = Date.now() + 5000;
    while (target === null && Date.now() < deadline) {
      target = initiator.discover({ shelf, slot, waitMs: 100, first: true })[0] ?? null;
      if (target === null) await new Promise((r) => setTimeout(r, 50));
    }
    if (target === null) throw new Error(`vblade e${shelf}.${slot} did not answer within 5 s`);
    return await body({ initiator, target, file, bytes, ifname, netns, shelf, slot });
  } finally {
    initiator?.close();
    await lab.cleanup();
    await Deno.remove(dir, { recursive: true });
  }
}

/** A deterministic pattern: each 512-byte sector starts with its LBA and `salt`, then noise. */
export function pattern(lba: number, sectors: number, salt: number): Uint8Array {
  const out = new Uint8Array(sectors * 512);
  const view = new DataView(out.buffer);
  let x = (salt * 2654435761) >>> 0 || 1;
  for (let s = 0; s < sectors; s++) {
    const base = s * 512;
    view.setUint32(base, lba + s, true);
    view.setUint32(base + 4, salt, true);
    for (let i = 8; i < 512; i += 4) {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      view.setUint32(base + i, x >>> 0, true);
    }
  }
  return out;
}

/** Bytes of `file` at byte offset `offset` (read from outside the target). */
export const readFileAt = readFileRange;
