/**
 * ggaoed: an ATA-over-Ethernet target for Linux, on Deno — the public API.
 *
 * - {@link runDaemon} runs the daemon (what `ggaoed.ts` does);
 * - {@link loadConfig} / {@link parseConfigText} read and validate a configuration (TOML, or the
 *   original's INI), {@link convertIniToToml} converts an old file;
 * - {@link DataPlane} is the data path itself (interfaces, devices, AIO), for embedding;
 * - {@link Initiator} is an AoE initiator over packet rings (discovery, IDENTIFY, pipelined
 *   reads and writes, config strings, mask and reserve lists, workloads);
 * - `src/protocol/` builders and parsers for every AoE frame are re-exported under `protocol`.
 *
 * ```ts
 * import { Initiator } from "./mod.ts";
 * const ini = Initiator.open("eth1");
 * for (const t of ini.discover()) console.log(t.shelf, t.slot, ini.identify(t).model);
 * ```
 *
 * @module
 */

export { runDaemon } from "./src/daemon.ts";
export type { DaemonOptions } from "./src/daemon.ts";
export { loadConfig, parseConfigText } from "./src/config/load.ts";
export type { LoadOptions } from "./src/config/load.ts";
export { convertIniToToml } from "./src/config/convert.ts";
export { ConfigError, DEFAULTS } from "./src/config/types.ts";
export type {
  Config,
  ConfigIssue,
  DeviceConfig,
  GlobalConfig,
  InterfaceConfig,
} from "./src/config/types.ts";
export { DataPlane } from "./src/engine/dataplane.ts";
export type { DataPlaneOptions } from "./src/engine/dataplane.ts";
export { DeviceState } from "./src/state/device_state.ts";
export { loadDeviceState } from "./src/state/store.ts";
export { StateWriter } from "./src/state/writer.ts";
export {
  AoeError,
  AoeProtocolError,
  AoeTimeoutError,
  AtaError,
  Initiator,
} from "./src/initiator/mod.ts";
export type {
  IdentifyInfo,
  InitiatorOptions,
  TargetInfo,
  WorkloadOptions,
  WorkloadResult,
} from "./src/initiator/types.ts";
export { ControlClient } from "./src/control/client.ts";
export { DEVICE_STAT_FIELDS, IFACE_STAT_FIELDS } from "./src/stats.ts";
export { formatMac, parseMac } from "./src/mac.ts";
export { FIRMWARE_VERSION, VERSION } from "./src/version.ts";
export * as protocol from "./src/protocol/mod.ts";
