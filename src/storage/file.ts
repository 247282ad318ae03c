/**
 * What the two file backends (`aio.ts`, `buffered.ts`) share: opening a block device or regular
 * file for export (or taking over the descriptor of the device it replaces), its size, and a
 * kernel AIO context, which both use (the buffered one for flushes and as the table of its
 * prepared vectors).
 *
 * @module
 */

import {
  AioContext,
  closeFd,
  dupStorage,
  fdatasync,
  IOCB_CMD_PREADV,
  IOCB_CMD_PWRITEV,
  type Memory,
  openStorage,
  pathIdentity,
  type Storage,
  storageSize,
} from "../../ffi/mod.ts";
import type { DeviceConfig } from "../config/types.ts";
import type { OpenContext } from "./backend.ts";

const EINVAL = 22;

/**
 * Opens `config.path` for export; a reload that changes a device's settings but not its storage
 * or access mode takes over the previous device's descriptor instead (O_EXCL would refuse a
 * second open of a block device while the old one is open).
 */
function openFile(config: DeviceConfig, previous: FileBackend | null): Storage {
  try {
    if (
      previous && previous.storage.readOnly === config.readOnly &&
      previous.config.syncWrites === config.syncWrites
    ) {
      let same = false;
      try {
        same = pathIdentity(config.path) === previous.storage.identity;
      } catch { /* the open below reports it */ }
      if (same) return dupStorage(previous.storage, config.path, config.directIo);
    }
    return openStorage(config.path, {
      readOnly: config.readOnly,
      direct: config.directIo,
      exclusive: true,
      sync: config.syncWrites,
    });
  } catch (e) {
    if (previous?.storage.blockDevice && (e as { code?: string }).code === "EBUSY") {
      (e as Error).message +=
        ` (it is open read-${previous.storage.readOnly ? "only" : "write"} for the running ` +
        "export: to change read-only, remove the device, reload, then add it back and reload)";
    }
    throw e;
  }
}

/** A block device or file with a kernel AIO context: the state of both file backends. */
export abstract class FileBackend {
  readonly config: DeviceConfig;
  readonly storage: Storage;
  readonly aio: AioContext;
  size: number;

  constructor(context: OpenContext) {
    this.config = context.config;
    const previous = context.previous instanceof FileBackend ? context.previous : null;
    const storage = openFile(context.config, previous);
    try {
      this.aio = AioContext.open(context.io.slots, context.io.events);
    } catch (e) {
      closeFd(storage.fd);
      throw e;
    }
    this.storage = storage;
    this.size = storage.size;
  }

  get identity(): string {
    return this.storage.identity;
  }

  prepare(slot: number, write: boolean, offset: number, count: number): void {
    const opcode = write ? IOCB_CMD_PWRITEV : IOCB_CMD_PREADV;
    this.aio.prepareVector(slot, opcode, this.storage.fd, offset, count);
  }

  setIovec(slot: number, index: number, memory: Memory, offset: number, length: number): void {
    this.aio.setIovec(slot, index, memory, offset, length);
  }

  /** An AIO FDSYNC iocb; where the kernel refuses it, {@link flushNow} (fdatasync). */
  prepareFlush(slot: number): void {
    this.aio.prepareSync(slot, this.storage.fd, true);
  }

  submit(slots: Int32Array, count: number): number {
    return this.aio.submit(slots, count);
  }

  reap(max: number): number {
    return this.aio.reap(max);
  }

  eventSlot(i: number): number {
    return this.aio.eventSlot(i);
  }

  eventResult(i: number): number {
    return this.aio.eventResult(i);
  }

  /** preadv/pwritev of the vector prepared in `slot`. */
  transferNow(slot: number): number {
    return this.aio.runVectorNow(slot);
  }

  flushNow(): number {
    try {
      fdatasync(this.storage.fd);
      return 0;
    } catch (e) {
      return -((e as { errno?: number }).errno ?? EINVAL);
    }
  }

  /** Files are never fenced. */
  fenced(_result: number): boolean {
    return false;
  }

  refreshSize(): number {
    this.size = storageSize(this.storage, this.config.path);
    return this.size;
  }

  /** A file's size is measured here ({@link refreshSize}). */
  setSize(bytes: number): void {
    this.size = bytes;
  }

  close(): void {
    try {
      this.aio.close();
    } finally {
      closeFd(this.storage.fd);
    }
  }
}
