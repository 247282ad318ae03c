/**
 * Views as files: the view of a host is `<dir>/<mac>.img`, a reflinked copy of the golden image
 * (ioctl FICLONE: the copy shares the golden's extents, and the file system copies a block only
 * when one of them writes it). Made under a temporary name, `.<mac>.img.creating`, fsynced,
 * renamed into place and the directory fsynced: a kill (or a crash) during the copy never leaves
 * a half-made view under the final name, and {@link FileViewStore.cleanup} removes what it left.
 *
 * Runs on the main thread (a clone is a metadata operation of the file system: milliseconds for
 * an image of a few extents, longer for a very fragmented one).
 *
 * @module
 */

import { cloneFile, fsyncPath } from "../../ffi/mod.ts";
import type { ViewStore } from "./views.ts";

const VIEW_NAME = /^([0-9a-f]{12})\.img$/;
const CREATING = /^\..*\.creating$/;

/** What to do when the file system cannot share extents. */
export const REFLINK_FIX =
  "put the golden image and the views on XFS or btrfs (mkfs.xfs -m reflink=1), or serve an RBD snapshot";

export class FileViewStore implements ViewStore {
  readonly where: string;
  readonly #golden: string;
  readonly #dir: string;

  constructor(golden: string, dir: string) {
    this.#golden = golden;
    this.#dir = dir;
    this.where = dir;
  }

  /** A real clone of the golden image into the directory, removed again. */
  check(): Promise<void> {
    const probe = `${this.#dir}/.probe-${Deno.pid}.img.creating`;
    try {
      Deno.removeSync(probe);
    } catch { /* none */ }
    try {
      cloneFile(this.#golden, probe);
    } catch (e) {
      const code = (e as { code?: string }).code;
      if (code === "EOPNOTSUPP" || code === "EINVAL" || code === "ENOTTY") {
        throw new Error(
          `the file system of ${this.#dir} cannot share extents (reflinks: ${
            (e as Error).message
          }), so views of ${this.#golden} cannot be made there; ext4 has no reflinks: ${REFLINK_FIX}`,
        );
      }
      if (code === "EXDEV") {
        throw new Error(
          `${this.#dir} is on another file system than ${this.#golden}: ${
            (e as Error).message
          }; ${REFLINK_FIX}, both on one file system`,
        );
      }
      throw new Error(`cannot make a view in ${this.#dir}: ${(e as Error).message}`);
    }
    Deno.removeSync(probe);
    return Promise.resolve();
  }

  async cleanup(): Promise<void> {
    let removed = 0;
    for await (const entry of Deno.readDir(this.#dir)) {
      if (!entry.isFile || !CREATING.test(entry.name)) continue;
      await Deno.remove(`${this.#dir}/${entry.name}`);
      removed++;
    }
    if (removed > 0) fsyncPath(this.#dir);
  }

  async ensure(mac: string): Promise<boolean> {
    const path = `${this.#dir}/${mac}.img`;
    try {
      await Deno.lstat(path);
      return false;
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
    const temporary = `${this.#dir}/.${mac}.img.creating`;
    try {
      await Deno.remove(temporary);
    } catch { /* none */ }
    cloneFile(this.#golden, temporary); // fsynced
    await Deno.rename(temporary, path);
    fsyncPath(this.#dir); // the new name survives a crash
    return true;
  }

  async list(): Promise<string[]> {
    const macs: string[] = [];
    for await (const entry of Deno.readDir(this.#dir)) {
      const m = VIEW_NAME.exec(entry.name);
      if (m && entry.isFile) macs.push(m[1]);
    }
    return macs.sort();
  }

  async remove(mac: string): Promise<void> {
    try {
      await Deno.remove(`${this.#dir}/${mac}.img`);
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) return;
      throw e;
    }
    fsyncPath(this.#dir);
  }
}
