/**
 * Kernel AIO on a block device or file: O_DIRECT devices (`direct-io = true`, the default), and
 * buffered files too when GGAOED_BUFFERED_AIO=1 (src/engine/tuning.ts). Up to 32 iocbs per
 * io_submit, completions on the device's eventfd; FLUSH is an AIO FDSYNC iocb, or fdatasync(2)
 * where the kernel refuses that (ffi/aio.ts).
 *
 * @module
 */

import { DeviceConfig } from "../config/types.ts";
import { TUNING } from "../engine/tuning.ts";
import type { Backend, BackendFeatures, BackendModule, OpenContext } from "./backend.ts";
import { FileBackend } from "./file.ts";

export class AioFile extends FileBackend implements Backend {
  readonly features: BackendFeatures;
  readonly how: string;
  readonly #finish: (slot: number, result: number) => void;

  constructor(context: OpenContext) {
    super(context);
    const config = context.config;
    this.#finish = context.io.finish;
    this.how = config.directIo ? ", using direct I/O" : "";
    this.features = {
      direct: config.directIo,
      synchronous: false,
      mappedReads: false,
      flush: true,
      resize: "reread",
      readOnly: config.readOnly,
      sharedState: false,
      fencing: false,
    };
  }

  /** A transfer now (preadv/pwritev), finished at once. */
  transfer(slot: number): void {
    this.#finish(slot, this.transferNow(slot));
  }

  /** Nothing is queued: transfers finish at once. */
  finishQueued(): void {}

  /** Nothing is mapped. */
  setExportEnd(_end: number): void {}
}

export const aioFiles: BackendModule = {
  name: "aio",
  lent: false,
  serves: (config: DeviceConfig) => config.rbd === null && (config.directIo || TUNING.bufferedAio),
  open: (context: OpenContext) => new AioFile(context),
};
