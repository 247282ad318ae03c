/**
 * Switches for measuring the data path's mechanisms one at a time (`deno task bench
 * --mechanisms`). Read once from the environment at start; the defaults are what the daemon
 * uses, and what the measurements in the README chose. Not configuration: a production daemon
 * has no reason to set them.
 *
 * | variable | default | effect |
 * |---|---|---|
 * | GGAOED_MAX_MERGE | 32 | most contiguous requests merged into one iocb (1 = no merging) |
 * | GGAOED_SUBMIT_BATCH | 32 | most iocbs per io_submit (1 = one system call per iocb) |
 * | GGAOED_BUFFERED_AIO | 0 | 1 = kernel AIO also for buffered files (default: preadv/pwritev) |
 * | GGAOED_TX_KICK_EACH | 0 | 1 = kick the TX ring after every reply (default: once per turn) |
 * | GGAOED_READ_IN_RING | 1 | 0 = buffered reads land in the request's slot and are copied into the TX frame (default: read straight into the TX frame) |
 * | GGAOED_MAP_READS | 1 | 0 = buffered reads use preadv (default: copies out of a read-only mapping of the file, one call per turn) |
 * | GGAOED_ADDRESS_FILTER | 0 | 1 = the address filter of workers 1 … N-1 (docs/workers.md) also with one worker, which then leaves broadcasts, runts and link failures uncounted (default: with several only) |
 *
 * @module
 */

function env(name: string): string | undefined {
  try {
    return Deno.env.get(name);
  } catch {
    return undefined; // no --allow-env: the defaults
  }
}

function int(name: string, fallback: number, min: number, max: number): number {
  const v = Number(env(name));
  return Number.isInteger(v) && v >= min && v <= max ? v : fallback;
}

/** The data path's mechanism switches. */
export const TUNING = {
  maxMerge: int("GGAOED_MAX_MERGE", 32, 1, 32),
  submitBatch: int("GGAOED_SUBMIT_BATCH", 32, 1, 32),
  bufferedAio: env("GGAOED_BUFFERED_AIO") === "1",
  txKickEach: env("GGAOED_TX_KICK_EACH") === "1",
  readInRing: env("GGAOED_READ_IN_RING") !== "0",
  mapReads: env("GGAOED_MAP_READS") !== "0",
  addressFilter: env("GGAOED_ADDRESS_FILTER") === "1",
} as const;
