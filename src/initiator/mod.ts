/**
 * The TypeScript AoE initiator: used by the end-to-end tests, `deno task demo`, the benchmark
 * and the `aoe.ts` CLI. See {@link Initiator}.
 *
 * @module
 */

export { Initiator, latin1Bytes, latin1String, linkMaxSectors } from "./initiator.ts";
export { AoeError, aoeErrorText, AoeProtocolError, AoeTimeoutError, AtaError } from "./errors.ts";
export { DEFAULT_RING_BYTES } from "./link.ts";
export { percentile, Prng } from "./workload.ts";
export type {
  AtaReply,
  AtaRequest,
  ConfigReply,
  IdentifyInfo,
  InitiatorOptions,
  MaskDirective,
  MaskReply,
  TargetInfo,
  TransferOptions,
  WorkloadKind,
  WorkloadOptions,
  WorkloadResult,
} from "./types.ts";
