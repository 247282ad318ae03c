/**
 * Files seen from outside the target: reading exported files to compare with what went over the
 * wire, whether a path (a pid file, a socket, a directory a test made) is there, and a loop
 * device over a file, to export a block device.
 *
 * @module
 */

import { run } from "./command.ts";

/** Whether anything is at `path` (a symbolic link counts, dangling or not). */
export function exists(path: string): boolean {
  try {
    Deno.lstatSync(path);
    return true;
  } catch {
    return false;
  }
}

/** Reads `length` bytes at byte `offset` of a file (fewer only at end of file). */
export function readFileRange(path: string, offset: number, length: number): Uint8Array {
  const f = Deno.openSync(path, { read: true });
  try {
    const out = new Uint8Array(length);
    f.seekSync(offset, Deno.SeekMode.Start);
    let got = 0;
    while (got < length) {
      const n = f.readSync(out.subarray(got));
      if (n === null) break;
      got += n;
    }
    return out;
  } finally {
    f.close();
  }
}

/** Index of the first differing byte, or -1 when equal. */
export function firstDifference(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return i;
  return a.length === b.length ? -1 : n;
}

/**
 * Runs `body` with a loop device over the file at `path` (`losetup --find --show`), detached
 * afterwards. The tests run as root on a host with loop devices: not getting one fails the test
 * (a test that skipped itself here would pass without having looked at a block device).
 */
export async function withLoopDevice(
  path: string,
  body: (device: string) => void | Promise<void>,
): Promise<void> {
  const setup = await run(["losetup", "--find", "--show", path], { check: false })
    .catch((e) => ({ code: -1, stdout: "", stderr: e instanceof Error ? e.message : String(e) }));
  if (setup.code !== 0) {
    throw new Error(
      `losetup --find --show ${path} failed (exit ${setup.code}: ${setup.stderr.trim()}) — ` +
        "run the tests as root on a host with loop devices (modprobe loop; util-linux)",
    );
  }
  const device = setup.stdout.trim();
  try {
    await body(device);
  } finally {
    await run(["losetup", "-d", device], { check: false });
  }
}

/**
 * Runs `body` with a fresh file system of `kind` (`mkfs.xfs -m reflink=1`, or ext4) of
 * `sizeMiB` on a loop device over a sparse file in /var/tmp, mounted on a temporary directory;
 * unmounted, detached and removed afterwards. `name` goes into the temporary names.
 */
export async function withScratchFileSystem(
  kind: "xfs" | "ext4",
  name: string,
  sizeMiB: number,
  body: (dir: string) => Promise<void>,
): Promise<void> {
  const work = Deno.makeTempDirSync({ dir: "/var/tmp", prefix: `ggaoed-${name}-` });
  const image = `${work}/fs.img`;
  const mountpoint = `${work}/mnt`;
  try {
    Deno.mkdirSync(mountpoint);
    const f = Deno.openSync(image, { create: true, write: true });
    f.truncateSync(sizeMiB * 1024 * 1024);
    f.close();
    const mkfs = kind === "xfs"
      ? ["mkfs.xfs", "-q", "-m", "reflink=1", image]
      : ["mkfs.ext4", "-q", "-F", image];
    await run(mkfs);
    await withLoopDevice(image, async (device) => {
      await run(["mount", device, mountpoint]);
      try {
        await body(mountpoint);
      } finally {
        await run(["umount", mountpoint], { check: false });
      }
    });
  } finally {
    Deno.removeSync(work, { recursive: true });
  }
}
