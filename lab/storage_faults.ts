/**
 * Storage faults for the fault-injection suite: an exported file with bad sectors, and one whose
 * writes run out of space. The kernel here has no device-mapper (no dm-error, dm-flakey), so:
 *
 * - {@link withFaultyFile}: a FUSE file system (`fixtures/faultfs.c`, compiled with gcc against
 *   libfuse3 on first use and cached) exposes `disk`, a file backed byte for byte by an image;
 *   a read or write that touches a bad sector range fails as a whole with EIO, everything else
 *   passes through. Bad ranges change at run time through a control file in the mount, and
 *   counters tell what the file system saw.
 * - {@link withFillingFile}: a tmpfs of a few pages holding a sparse file larger than itself:
 *   writes into holes need new pages and fail with ENOSPC once the tmpfs is full, writes over
 *   allocated pages keep working. A filler file makes it full (or frees it) while I/O runs.
 *
 * ```ts
 * await withFaultyFile({ sizeBytes: 1 << 20, bad: [{ sector: 100, count: 8 }] }, async (f) => {
 *   await withTarget({ devices: [{ name: "disk1", path: f.path }] }, async (t) => {
 *     ...                                   // reads of sectors 100..107 answer ATA UNC
 *     f.setBad([]);                         // healed
 *     f.setBad([{ sector: 7, count: 1 }], { read: false, write: true });
 *     assertEquals(f.counters().writeErrors, 1);
 *   });
 * });
 * ```
 *
 * Everything is undone afterwards, also when the body throws: the file system is unmounted
 * (fusermount3 -u, then umount -l), its process stopped by PID, the tmpfs unmounted, the
 * temporary directories removed. Needs root (mount), /dev/fuse, gcc, pkg-config, libfuse3-dev
 * and fuse3 (`scripts/install-deps.sh --test`).
 *
 * Why the FUSE file bypasses the page cache (FOPEN_DIRECT_IO on every open, also without
 * O_DIRECT): a cached sector is never read from the file system again, so a fault injected
 * after the first read would stay hidden, and a one-sector read would fail or succeed by whole
 * pages and read-ahead windows. With it, every read and write of the daemon reaches the fixture
 * with its own offset and length, for `direct-io = true` (O_DIRECT, kernel AIO) and `false`
 * (preadv/pwritev) alike. `pageCache: true` turns it off, to show exactly that.
 *
 * @module
 */

import { exists } from "./files.ts";

const SECTOR = 512;

// ---- the FUSE fixture -------------------------------------------------------------------------

/** A range of 512-byte sectors. */
export interface BadRange {
  /** First sector. */
  sector: number;
  /** Sectors (>= 1). */
  count: number;
}

/** Which directions a bad range fails (default: both). */
export interface FaultDirections {
  read?: boolean;
  write?: boolean;
}

/** What the FUSE fixture counted since it started (or since {@link FaultyFile.resetCounters}). */
export interface FaultCounters {
  /** Opens of the exported file, and how many of them with O_DIRECT. */
  opens: number;
  directOpens: number;
  /** Read and write requests that reached the file system (one per chunk the kernel sends). */
  reads: number;
  writes: number;
  /** Requests failed with EIO because they touched a bad range. */
  readErrors: number;
  writeErrors: number;
  bytesRead: number;
  bytesWritten: number;
  /** Largest read and write request seen, in bytes. */
  maxRead: number;
  maxWrite: number;
  fsyncs: number;
  /** pread/pwrite/fsync of the image itself failed (the errno was passed on). */
  imageErrors: number;
  /** Reads and writes sleeping in the delay {@link FaultyFile.setDelay} set, now. */
  delayed: number;
  /** The bad ranges now in force. */
  bad: (BadRange & { read: boolean; write: boolean })[];
}

export interface FaultyFileOptions {
  /** Size of the exported file (a multiple of 512). */
  sizeBytes: number;
  /** Bad from the start (default none). */
  bad?: BadRange[];
  /** Directions the initial `bad` ranges fail (default both). */
  badFor?: FaultDirections;
  /** Let the kernel cache the file (default false; see the module comment). */
  pageCache?: boolean;
  /** Most time to wait for the mount (default 10 s). */
  startTimeoutMs?: number;
}

/** A mounted FUSE fixture. */
export class FaultyFile {
  /** The file to export (`<mount>/disk`). */
  readonly path: string;
  /** Its backing image: read or write it directly to see or set what is "on the platters". */
  readonly imagePath: string;
  /** Where the file system is mounted. */
  readonly mountpoint: string;
  readonly controlPath: string;
  /** PID of the FUSE process. */
  readonly pid: number;
  /** Milliseconds from spawning the FUSE process to the mounted file answering stat(2). */
  readonly startupMs: number;
  readonly #output: Output;

  constructor(dir: string, pid: number, startupMs: number, output: Output) {
    this.mountpoint = `${dir}/mnt`;
    this.path = `${dir}/mnt/disk`;
    this.controlPath = `${dir}/mnt/control`;
    this.imagePath = `${dir}/image`;
    this.pid = pid;
    this.startupMs = startupMs;
    this.#output = output;
  }

  /** What the FUSE process printed so far. */
  get log(): string {
    return this.#output.text;
  }

  /**
   * Replaces every bad range: from the moment this returns, requests touching `ranges` fail
   * with EIO in the directions `on` says (default both); `[]` heals the file.
   */
  setBad(ranges: BadRange[], on: FaultDirections = {}): void {
    const dir = (on.read ?? true ? "r" : "") + (on.write ?? true ? "w" : "");
    const lines = ["clear"];
    for (const r of ranges) {
      if (!Number.isSafeInteger(r.sector) || r.sector < 0 || !Number.isSafeInteger(r.count)) {
        throw new RangeError(`bad range ${JSON.stringify(r)}: sector and count must be integers`);
      }
      if (r.count < 1) throw new RangeError(`bad range ${JSON.stringify(r)}: count < 1`);
      if (dir !== "") lines.push(`bad ${dir} ${r.sector} ${r.count}`);
    }
    this.#control(lines.join("\n") + "\n");
  }

  /** The counters and the bad ranges in force. */
  counters(): FaultCounters {
    const j = JSON.parse(Deno.readTextFileSync(this.controlPath));
    return {
      opens: j.opens,
      directOpens: j.direct_opens,
      reads: j.reads,
      writes: j.writes,
      readErrors: j.read_errors,
      writeErrors: j.write_errors,
      bytesRead: j.bytes_read,
      bytesWritten: j.bytes_written,
      maxRead: j.max_read,
      maxWrite: j.max_write,
      fsyncs: j.fsyncs,
      imageErrors: j.image_errors,
      delayed: j.delayed,
      bad: j.bad.map((b: { first: number; count: number; read: boolean; write: boolean }) => ({
        sector: b.first,
        count: b.count,
        read: b.read,
        write: b.write,
      })),
    };
  }

  /**
   * Makes every read and write of the file take at least `ms` milliseconds from its start, also
   * those sleeping already: a long delay holds requests until a shorter one (0: none) lets them
   * go.
   */
  setDelay(ms: number): void {
    if (!Number.isInteger(ms) || ms < 0) throw new RangeError(`bad delay ${ms}`);
    this.#control(`delay ${ms}\n`);
  }

  /** Zeroes the counters (the bad ranges stay). */
  resetCounters(): void {
    this.#control("reset\n");
  }

  #control(text: string): void {
    const f = Deno.openSync(this.controlPath, { write: true });
    try {
      const bytes = new TextEncoder().encode(text);
      const n = f.writeSync(bytes);
      if (n !== bytes.length) throw new Error(`${this.controlPath}: short write ${n}`);
    } finally {
      f.close();
    }
  }
}

/** Collected stdout and stderr of a child process. */
class Output {
  text = "";
  done: Promise<void>;
  constructor(child: Deno.ChildProcess) {
    const collect = async (stream: ReadableStream<Uint8Array>) => {
      const decoder = new TextDecoder();
      for await (const chunk of stream) this.text += decoder.decode(chunk, { stream: true });
    };
    this.done = Promise.all([collect(child.stdout), collect(child.stderr)]).then(() => {});
  }
}

/**
 * Mounts a fresh FUSE fixture exporting a zero-filled file of `sizeBytes`, runs `body`, and
 * undoes everything (also when `body` throws). The FUSE process's output is printed when the
 * body fails.
 */
export async function withFaultyFile<T>(
  options: FaultyFileOptions,
  body: (f: FaultyFile) => Promise<T> | T,
): Promise<T> {
  if (!Number.isSafeInteger(options.sizeBytes) || options.sizeBytes % SECTOR !== 0) {
    throw new RangeError(`sizeBytes must be a multiple of 512, got ${options.sizeBytes}`);
  }
  const binary = await faultfsBinary();
  const dir = Deno.makeTempDirSync({ dir: "/var/tmp", prefix: "ggaoed-faultfs-" });
  let child: Deno.ChildProcess | null = null;
  let output: Output | null = null;
  try {
    Deno.mkdirSync(`${dir}/mnt`);
    const image = Deno.openSync(`${dir}/image`, { create: true, write: true });
    image.truncateSync(options.sizeBytes);
    image.close();
    const started = performance.now();
    child = new Deno.Command(binary, {
      args: [
        `${dir}/image`,
        `${dir}/mnt`,
        ...(options.pageCache ? ["--page-cache"] : []),
        "-f",
        "-o",
        "fsname=ggaoed-faultfs,subtype=faultfs",
      ],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    output = new Output(child);
    await waitForMount(child, output, `${dir}/mnt`, options.startTimeoutMs ?? 10000);
    const size = Deno.statSync(`${dir}/mnt/disk`).size;
    if (size !== options.sizeBytes) throw new Error(`the mounted file has ${size} bytes`);
    const f = new FaultyFile(dir, child.pid, performance.now() - started, output);
    if (options.bad?.length) f.setBad(options.bad, options.badFor);
    try {
      return await body(f);
    } catch (e) {
      console.error(`--- faultfs output ---\n${output.text}--- end of faultfs output ---`);
      throw e;
    }
  } finally {
    if (child) await stopFuse(child, `${dir}/mnt`);
    await output?.done;
    Deno.removeSync(dir, { recursive: true });
  }
}

/** Waits until the FUSE process says it is mounted and the file answers stat(2). */
async function waitForMount(
  child: Deno.ChildProcess,
  output: Output,
  mountpoint: string,
  timeoutMs: number,
): Promise<void> {
  const state: { exited: Deno.CommandStatus | null } = { exited: null };
  child.status.then((s) => state.exited = s);
  const deadline = performance.now() + timeoutMs;
  while (!output.text.includes("faultfs: ready")) {
    if (state.exited) {
      throw new Error(
        `faultfs exited with status ${state.exited.code} before mounting ${mountpoint}:\n${output.text}\n` +
          "(is /dev/fuse there, and are we root?)",
      );
    }
    if (performance.now() > deadline) {
      throw new Error(
        `faultfs did not mount ${mountpoint} within ${timeoutMs} ms:\n${output.text}`,
      );
    }
    await new Promise((r) => setTimeout(r, 2));
  }
  Deno.statSync(`${mountpoint}/disk`); // waits for FUSE_INIT
}

/**
 * Unmounts (fusermount3 -u -z: the process then leaves its loop and exits), waits for the
 * process, escalating to SIGTERM and SIGKILL by PID, and finally detaches a mount a killed
 * process left behind (umount -l).
 */
async function stopFuse(child: Deno.ChildProcess, mountpoint: string): Promise<void> {
  let exited = false;
  child.status.then(() => exited = true);
  const waitExit = async (ms: number) => {
    const deadline = performance.now() + ms;
    while (!exited && performance.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    return exited;
  };
  if (isMounted(mountpoint)) await run("fusermount3", ["-u", "-z", mountpoint]);
  for (const signal of ["SIGTERM", "SIGKILL"] as const) {
    if (await waitExit(3000)) break;
    try {
      child.kill(signal);
    } catch { /* exited meanwhile */ }
  }
  await child.status;
  if (isMounted(mountpoint)) await run("umount", ["-l", mountpoint]);
  if (isMounted(mountpoint)) throw new Error(`${mountpoint} is still mounted`);
}

/** Whether `path` is a mount point in this process's mount namespace. */
export function isMounted(path: string): boolean {
  const escaped = path.replace(
    /[ \t\n\\]/g,
    (c) => `\\${c.charCodeAt(0).toString(8).padStart(3, "0")}`,
  );
  return Deno.readTextFileSync("/proc/self/mountinfo").split("\n")
    .some((line) => line.split(" ")[4] === escaped);
}

/** Runs a command (bounded to 10 s); a command that cannot be started exits -1. */
async function run(command: string, args: string[]): Promise<{ code: number; stderr: string }> {
  try {
    const out = await new Deno.Command(command, {
      args,
      stdin: "null",
      stdout: "null",
      stderr: "piped",
      signal: AbortSignal.timeout(10000),
    }).output();
    return { code: out.code, stderr: new TextDecoder().decode(out.stderr) };
  } catch (e) {
    return { code: -1, stderr: `${command}: ${(e as Error).message}` };
  }
}

/**
 * The compiled fixture: `fixtures/faultfs.c` built once per source version into
 * `$GGAOED_TEST_CACHE` (default /var/tmp/ggaoed-test-cache) as faultfs-<hash of the source>.
 */
export async function faultfsBinary(): Promise<string> {
  const source = new URL("./fixtures/faultfs.c", import.meta.url).pathname;
  const text = Deno.readFileSync(source);
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", text));
  const hash = Array.from(digest.subarray(0, 8), (b) => b.toString(16).padStart(2, "0")).join("");
  const cache = Deno.env.get("GGAOED_TEST_CACHE") ?? "/var/tmp/ggaoed-test-cache";
  const binary = `${cache}/faultfs-${hash}`;
  try {
    Deno.statSync(binary);
    return binary;
  } catch { /* not built yet */ }
  if (!exists("/dev/fuse")) {
    throw new Error("/dev/fuse is missing: load the fuse module (modprobe fuse)");
  }
  if ((await run("pkg-config", ["--exists", "fuse3"])).code !== 0) {
    throw new Error(
      "the FUSE fixture needs gcc, pkg-config and libfuse3-dev (and fuse3 for fusermount3): " +
        "run scripts/install-deps.sh --test",
    );
  }
  const cflags = await capture("pkg-config", ["--cflags", "--libs", "fuse3"]);
  Deno.mkdirSync(cache, { recursive: true });
  const temporary = `${binary}.${Deno.pid}.tmp`;
  const gcc = await new Deno.Command("gcc", {
    args: ["-O2", "-Wall", "-Wextra", "-o", temporary, source, ...cflags.trim().split(/\s+/)],
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(60000),
  }).output();
  if (!gcc.success) {
    throw new Error(`gcc could not build ${source}:\n${new TextDecoder().decode(gcc.stderr)}`);
  }
  Deno.renameSync(temporary, binary); // atomic: concurrent test runs may build it too
  return binary;
}

async function capture(command: string, args: string[]): Promise<string> {
  const out = await new Deno.Command(command, { args, stdout: "piped", stderr: "piped" }).output();
  if (!out.success) {
    throw new Error(`${command} ${args.join(" ")}: ${new TextDecoder().decode(out.stderr)}`);
  }
  return new TextDecoder().decode(out.stdout);
}

// ---- the filling tmpfs ------------------------------------------------------------------------

export interface FillingFileOptions {
  /** Size of the tmpfs (rounded up to whole 4 KiB pages by the kernel). */
  tmpfsBytes: number;
  /** Size of the sparse file in it (a multiple of 512; may be far larger than the tmpfs). */
  fileBytes: number;
}

/** Space on the tmpfs, in bytes (statfs). */
export interface TmpfsUsage {
  size: number;
  free: number;
}

/** A sparse file on a small tmpfs. */
export class FillingFile {
  /** The file to export. */
  readonly path: string;
  /** Where the tmpfs is mounted. */
  readonly mountpoint: string;
  /** A file that takes the space {@link fill} claims. */
  readonly fillerPath: string;

  constructor(mountpoint: string) {
    this.mountpoint = mountpoint;
    this.path = `${mountpoint}/disk.img`;
    this.fillerPath = `${mountpoint}/filler`;
  }

  /**
   * Claims `bytes` of free space (default: all of it) with the filler file; returns the bytes
   * it got. Once it returns with the tmpfs full, writes into holes of the file fail with ENOSPC.
   */
  fill(bytes = Infinity): number {
    const f = Deno.openSync(this.fillerPath, { create: true, append: true });
    const chunk = new Uint8Array(4096).fill(0xfe);
    let got = 0;
    try {
      while (got < bytes) {
        const want = Math.min(chunk.length, bytes - got);
        let n: number;
        try {
          n = f.writeSync(chunk.subarray(0, want));
        } catch (e) {
          if (isNoSpace(e)) break;
          throw e;
        }
        if (n === 0) break;
        got += n;
      }
    } finally {
      f.close();
    }
    return got;
  }

  /** Gives back `bytes` (default: all) of what {@link fill} claimed; returns the bytes freed. */
  free(bytes = Infinity): number {
    let size: number;
    try {
      size = Deno.statSync(this.fillerPath).size;
    } catch {
      return 0;
    }
    const freed = Math.min(size, bytes);
    Deno.truncateSync(this.fillerPath, size - freed);
    return freed;
  }

  /** Size and free space of the tmpfs. */
  usage(): TmpfsUsage {
    const out = new Deno.Command("stat", {
      args: ["-f", "-c", "%S %b %f", this.mountpoint],
      stdout: "piped",
      stderr: "piped",
    }).outputSync();
    if (!out.success) {
      throw new Error(`stat -f ${this.mountpoint}: ${new TextDecoder().decode(out.stderr)}`);
    }
    const [block, blocks, free] = new TextDecoder().decode(out.stdout).trim().split(" ").map(
      Number,
    );
    return { size: block * blocks, free: block * free };
  }

  /** Bytes of the exported file that have pages (st_blocks). */
  allocatedBytes(): number {
    return (Deno.statSync(this.path).blocks ?? 0) * 512;
  }
}

/** Whether an error from Deno's file API is ENOSPC. */
export function isNoSpace(e: unknown): boolean {
  return (e as { code?: string }).code === "ENOSPC" ||
    /No space left on device|ENOSPC/.test(String((e as Error).message));
}

/**
 * Mounts a tmpfs of `tmpfsBytes` in a temporary directory, creates a sparse file of
 * `fileBytes` in it, runs `body`, then unmounts it and removes the directory (also when `body`
 * throws).
 */
export async function withFillingFile<T>(
  options: FillingFileOptions,
  body: (f: FillingFile) => Promise<T> | T,
): Promise<T> {
  if (!Number.isSafeInteger(options.fileBytes) || options.fileBytes % SECTOR !== 0) {
    throw new RangeError(`fileBytes must be a multiple of 512, got ${options.fileBytes}`);
  }
  if (!Number.isSafeInteger(options.tmpfsBytes) || options.tmpfsBytes <= 0) {
    throw new RangeError(`tmpfsBytes must be a positive integer, got ${options.tmpfsBytes}`);
  }
  const dir = Deno.makeTempDirSync({ dir: "/var/tmp", prefix: "ggaoed-tmpfs-" });
  try {
    const mount = await run("mount", [
      "-t",
      "tmpfs",
      "-o",
      `size=${options.tmpfsBytes},mode=0700,huge=never`,
      "ggaoed-filling",
      dir,
    ]);
    if (mount.code !== 0) throw new Error(`mount -t tmpfs on ${dir}: ${mount.stderr} (root?)`);
    try {
      const f = new FillingFile(dir);
      const file = Deno.openSync(f.path, { create: true, write: true });
      file.truncateSync(options.fileBytes);
      file.close();
      return await body(f);
    } finally {
      await unmountTmpfs(dir);
    }
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
}

/** umount, or if the tmpfs is busy, umount -l; throws if it is still mounted. */
async function unmountTmpfs(dir: string): Promise<void> {
  if ((await run("umount", [dir])).code !== 0) await run("umount", ["-l", dir]);
  if (isMounted(dir)) throw new Error(`${dir} is still mounted`);
}
