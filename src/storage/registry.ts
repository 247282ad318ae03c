/**
 * The storage backends, and the one place that picks which serves a device: the first whose
 * `serves` accepts its configuration. A new backend is a module of this folder and one line in
 * {@link BACKENDS} (see docs/storage.md).
 *
 * @module
 */

import type { DeviceConfig } from "../config/types.ts";
import { aioFiles } from "./aio.ts";
import type { BackendModule } from "./backend.ts";
import { bufferedFiles } from "./buffered.ts";
import { rbdImages } from "./rbd.ts";

/** Every backend, in the order they are asked. */
const BACKENDS: readonly BackendModule[] = [
  rbdImages,
  aioFiles,
  bufferedFiles,
];

/** The backend that serves device `config`. */
export function backendFor(config: DeviceConfig): BackendModule {
  const module = BACKENDS.find((b) => b.serves(config));
  if (!module) throw new Error(`no storage backend serves '${config.path}'`);
  return module;
}
