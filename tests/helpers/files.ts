/**
 * Files seen from outside the target: reading exported files to compare with what went over the
 * wire, and whether a path (a pid file, a socket, a directory a test made) is there.
 *
 * @module
 */

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
