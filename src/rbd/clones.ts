/**
 * Per-initiator views on Ceph RBD: each host (by source MAC) gets its own clone of the
 * device's golden snapshot, `POOL/<device>-<mac>` (mac: 12 lower-case hex digits), which
 * reads the snapshot's data until the host writes its own there; nothing reaches the snapshot.
 *
 * ```
 * rbd/golden@v1                 the golden image: a protected snapshot (path = "rbd:rbd/golden@v1")
 * rbd/farm-525400123456         the view of host 52:54:00:12:34:56 (views = "rbd:rbd")
 * rbd/farm-525400abcdef.creating  a view being made (renamed into place once complete)
 * ```
 *
 * Creation is atomic: the clone is made under a temporary name and renamed to its final one
 * (rbd_rename changes the pool's directory entry in one step, the commit point), so a kill -9
 * during creation never leaves a half-made image under a final name; {@link cleanup} removes
 * what such a kill left. Every librbd call runs on a helper thread (the nonblocking symbols of
 * ffi/rbd.ts): the main thread keeps running, the data path never waits for it.
 *
 * Format 1 clones: the snapshot must be protected (`rbd snap protect`), and every client, the
 * kernel's rbd driver included, can open the views.
 *
 * @module
 */

import { type ImageSpec, type RadosCluster, SysError } from "../../ffi/mod.ts";
import type { ViewStore } from "../storage/views.ts";

/** What an {@link RbdViewStore} needs. */
export interface RbdViewStoreOptions {
  /** The device's name: its views are `<pool>/<device>-<mac>`. */
  device: string;
  /** The golden image: a snapshot, `{ pool, image, snapshot }`. */
  golden: ImageSpec;
  /** The pool that gets one clone per host. */
  pool: string;
  /**
   * The connection to the cluster, or its promise (a connection under way: the store's calls
   * wait for it). The caller closes it, after the store's calls ended.
   */
  cluster: RadosCluster | Promise<RadosCluster>;
  /**
   * How long a leftover `.creating` image that is still watched (EBUSY: the process that was
   * making it died less than `osd_client_watch_timeout`, 30 s by default, ago) is retried
   * before giving up (default {@link LEFTOVER_WAIT_MS}).
   */
  leftoverWaitMs?: number;
}

/** Default of {@link RbdViewStoreOptions.leftoverWaitMs}: the OSDs' watch timeout and margin. */
export const LEFTOVER_WAIT_MS = 45_000;
/**
 * How long {@link RbdViewStore.remove} retries a view that is still open (EBUSY): the data path
 * has closed it when remove is called, and its image closes on a helper thread meanwhile.
 */
export const REMOVE_WAIT_MS = 5_000;
const RETRY_MS = 100;

const MAC = /^[0-9a-f]{12}$/;
const CREATING = ".creating";
const ENOENT = 2;
const EBUSY = 16;
const EEXIST = 17;

/** Views of one device as clones of its golden snapshot; see the module documentation. */
export class RbdViewStore implements ViewStore {
  readonly where: string;
  readonly #device: string;
  readonly #golden: ImageSpec;
  readonly #pool: string;
  readonly #connection: RadosCluster | Promise<RadosCluster>;
  readonly #final: RegExp;
  readonly #leftover: RegExp;
  readonly #leftoverWaitMs: number;
  /** Creations under way, per MAC: a second ensure waits for the first. */
  readonly #creating = new Map<string, Promise<boolean>>();

  constructor(options: RbdViewStoreOptions) {
    if (options.golden.snapshot === undefined) {
      throw new RangeError(
        `disk/${options.device}: views of rbd:${options.golden.pool}/${options.golden.image} ` +
          "need a snapshot as the golden image: set path to rbd:POOL/IMAGE@SNAP",
      );
    }
    this.#device = options.device;
    this.#golden = options.golden;
    this.#pool = options.pool;
    this.#connection = options.cluster;
    this.#leftoverWaitMs = options.leftoverWaitMs ?? LEFTOVER_WAIT_MS;
    this.where = `${options.pool}/${options.device}-*`;
    const d = escapeRegExp(options.device);
    this.#final = new RegExp(`^${d}-([0-9a-f]{12})$`);
    this.#leftover = new RegExp(`^${d}-(?:[0-9a-f]{12}|probe-[0-9a-f]{8})\\.creating$`);
  }

  #cluster(): Promise<RadosCluster> {
    return Promise.resolve(this.#connection);
  }

  /** The image that holds the view of `mac` (`POOL/<device>-<mac>`), to open for I/O. */
  image(mac: string): ImageSpec {
    return { pool: this.#pool, image: this.#name(mac) };
  }

  #name(mac: string): string {
    if (!MAC.test(mac)) {
      throw new RangeError(`'${mac}' is not a MAC as views name them (12 lower-case hex digits)`);
    }
    return `${this.#device}-${mac}`;
  }

  get #snapshotLabel(): string {
    const g = this.#golden;
    return `${g.pool}/${g.image}@${g.snapshot}`;
  }

  /**
   * The golden snapshot exists and is protected, and a clone of it can be made in the pool
   * (a probe clone is made and removed).
   */
  async check(): Promise<void> {
    const g = this.#golden;
    const snap = this.#snapshotLabel;
    const what = `disk/${this.#device}: views of rbd:${snap} in pool '${this.#pool}'`;
    const cluster = await this.#cluster().catch((e) => {
      throw new Error(`${what}: ${message(e)}`, { cause: e });
    });
    let head;
    try {
      head = await cluster.openImage({ pool: g.pool, image: g.image, readOnly: true });
    } catch (e) {
      throw new Error(`${what}: the golden image: ${message(e)}`, { cause: e });
    }
    try {
      if (!await head.snapshotProtectedAsync(g.snapshot!)) {
        throw new Error(
          `${what}: the snapshot is not protected, and views are clones of it, which need it ` +
            `(so that it cannot be removed under them): run rbd snap protect ${snap}`,
        );
      }
    } catch (e) {
      if (e instanceof SysError) throw new Error(`${what}: ${e.message}`, { cause: e });
      throw e;
    } finally {
      await head.closeAsync().catch(() => {});
    }
    const random = crypto.getRandomValues(new Uint8Array(4));
    const probe = `${this.#device}-probe-${hex(random)}${CREATING}`;
    try {
      await cluster.cloneImageAsync(g, this.#pool, probe);
    } catch (e) {
      throw new Error(`${what}: cannot clone the snapshot: ${message(e)}`, { cause: e });
    }
    await cluster.removeImageAsync(this.#pool, probe);
  }

  /**
   * Removes every `<device>-….creating` image of the pool (creations cut short). One still
   * watched by the process that died making it is retried until the OSDs drop the watch.
   */
  async cleanup(): Promise<void> {
    const images = await (await this.#cluster()).listImagesAsync(this.#pool);
    const leftovers = images.map((i) => i.name).filter((name) => this.#leftover.test(name));
    await Promise.all(leftovers.map((name) => this.#removeLeftover(name)));
  }

  /** Removes leftover `name`, again while it is watched (EBUSY), up to the bound. */
  #removeLeftover(name: string): Promise<void> {
    return this.#removeWatched(
      name,
      this.#leftoverWaitMs,
      `left by a view creation cut short: remove it by hand: rbd rm ${this.#pool}/${name}`,
    );
  }

  /** Removes image `name`, again while it is open somewhere (EBUSY), up to `boundMs`. */
  async #removeWatched(name: string, boundMs: number, advice: string): Promise<void> {
    const cluster = await this.#cluster();
    const deadline = performance.now() + boundMs;
    for (;;) {
      try {
        await cluster.removeImageAsync(this.#pool, name);
        return;
      } catch (e) {
        if (!isErrno(e, EBUSY) || performance.now() > deadline) {
          throw new Error(
            `disk/${this.#device}: cannot remove ${this.#pool}/${name}: ${message(e)}; ${advice}`,
            { cause: e },
          );
        }
      }
      await new Promise((r) => setTimeout(r, RETRY_MS));
    }
  }

  ensure(mac: string): Promise<boolean> {
    const name = this.#name(mac);
    const under = this.#creating.get(mac);
    if (under) return under.then(() => false);
    const p = this.#create(name).finally(() => this.#creating.delete(mac));
    this.#creating.set(mac, p);
    return p;
  }

  /**
   * Clone under `<name>.creating`, then rename to `<name>`. A kill -9 inside rbd_clone3 or
   * rbd_rename may leave, besides a `.creating` image, an image id object (`rbd_id.NAME`) that
   * no directory entry names, which makes the next clone or rename to that name fail with
   * EEXIST: such an orphan is removed and the step tried once more.
   */
  async #create(name: string): Promise<boolean> {
    const cluster = await this.#cluster();
    const pool = this.#pool;
    const temporary = `${name}${CREATING}`;
    const names = new Set((await cluster.listImagesAsync(pool)).map((i) => i.name));
    if (names.has(name)) return false;
    if (names.has(temporary)) await this.#removeLeftover(temporary);
    await this.#orphanSafe(temporary, () => cluster.cloneImageAsync(this.#golden, pool, temporary));
    try {
      await this.#orphanSafe(name, () => cluster.renameImageAsync(pool, temporary, name));
    } catch (e) {
      // Made meanwhile by another daemon serving the same device: theirs stays.
      if (!isErrno(e, EEXIST)) throw e;
      await cluster.removeImageAsync(pool, temporary);
      return false;
    }
    return true;
  }

  /** Runs `step`; on EEXIST for `name` that no image holds, removes the orphan id, again. */
  async #orphanSafe(name: string, step: () => Promise<void>): Promise<void> {
    try {
      return await step();
    } catch (e) {
      if (!isErrno(e, EEXIST)) throw e;
      const cluster = await this.#cluster();
      const images = await cluster.listImagesAsync(this.#pool);
      if (images.some((i) => i.name === name)) throw e;
      await cluster.removeObjectAsync(this.#pool, `rbd_id.${name}`);
    }
    await step();
  }

  async list(): Promise<string[]> {
    const macs: string[] = [];
    for (const { name } of await (await this.#cluster()).listImagesAsync(this.#pool)) {
      const m = this.#final.exec(name);
      if (m) macs.push(m[1]);
    }
    return macs.sort();
  }

  /**
   * Removes the view of `mac`. The caller has closed it; a close still under way (its image
   * closes on a helper thread) is waited for, up to {@link REMOVE_WAIT_MS}.
   */
  remove(mac: string): Promise<void> {
    const name = this.#name(mac);
    return this.#removeWatched(
      name,
      REMOVE_WAIT_MS,
      `still open after ${REMOVE_WAIT_MS / 1000} s`,
    );
  }

  /**
   * The bytes the view of `mac` holds of its own (what the host wrote, rounded up to whole
   * objects where a write copied the snapshot's object up); 0 when it has no view.
   */
  async bytesWritten(mac: string): Promise<number> {
    const cluster = await this.#cluster();
    let image;
    try {
      image = await cluster.openImage({ ...this.image(mac), readOnly: true });
    } catch (e) {
      if (isErrno(e, ENOENT)) return 0;
      throw e;
    }
    try {
      return await image.allocatedBytesAsync();
    } finally {
      await image.closeAsync();
    }
  }
}

function isErrno(e: unknown, errno: number): boolean {
  return e instanceof SysError && e.errno === errno;
}

function hex(bytes: Uint8Array): string {
  return [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

function message(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
