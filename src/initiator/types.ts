/**
 * What the initiator hands out and takes in: targets found by Query Config, IDENTIFY results,
 * raw ATA requests and replies, options.
 *
 * @module
 */

import type { MaskDirective } from "../protocol/macmask.ts";

export type { MaskDirective };

/** A target as its Query Config reply describes it. */
export interface TargetInfo {
  /** The target's MAC (48-bit number, `src/mac.ts`): requests go there, replies must come from it. */
  mac: number;
  shelf: number;
  slot: number;
  /** Buffer Count: requests the target says it can hold. */
  bufferCount: number;
  /** Firmware Version field as read big-endian. */
  firmware: number;
  /** Sector Count: most sectors per ATA request the target accepts on this link. */
  maxSectors: number;
  /** AoE version nibble of the reply (1). */
  aoeVersion: number;
  /** Config string, decoded as Latin-1 so that every byte survives. */
  config: string;
  /** Config string bytes as sent. */
  configBytes: Uint8Array;
}

/** A Query Config reply: the target's numbers plus the CCmd it answers. */
export interface ConfigReply extends TargetInfo {
  ccmd: number;
}

/** IDENTIFY DEVICE, decoded. */
export interface IdentifyInfo {
  model: string;
  serial: string;
  firmware: string;
  /** Capacity in 512-byte sectors: LBA48 words 100..103 when LBA48 is supported, else 60..61. */
  sectors: number;
  /** Word 83 bit 10: the target takes 48-bit LBAs. */
  lba48: boolean;
  /** Words 60..61. */
  lba28Sectors: number;
  /** The 512-byte page (a copy). */
  raw: Uint8Array;
}

/** A raw ATA request (see {@link Initiator.ata}). */
export interface AtaRequest {
  /** ATA opcode (`ATA_CMD_*`). */
  cmd: number;
  lba?: number;
  /** Sector Count byte (0..255). */
  count?: number;
  /** Set the AFlags E bit (LBA48). Default: true for the EXT opcodes 0x24/0x34, else false. */
  ext?: boolean;
  /** Data to send (writes). Sets AFlags W. */
  data?: Uint8Array;
  /** Feature byte. */
  feature?: number;
  /** AFlags to send instead of the computed ones. */
  aflags?: number;
}

/** A raw ATA reply. */
export interface AtaReply {
  /** ATA status (0x40 DRDY; 0x01 ERR). */
  status: number;
  /** ATA error register. */
  error: number;
  /** Sector Count byte of the reply. */
  sectorCount: number;
  /** AFlags of the reply. */
  aflags: number;
  /** LBA field of the reply (48 bits as on the wire). */
  lba: number;
  /** Data after the 36-byte header, padding included (a copy). */
  data: Uint8Array;
}

/** A Mac Mask List reply. */
export interface MaskReply {
  /** MError: 0, 1 unspecified, 2 bad directive, 3 list full. */
  merror: number;
  /** Dir Count: list length, or with an MError the failing directive's index. */
  dirCount: number;
  /** The list (DCmd 0) or, with an MError, the directives before the failing one. */
  directives: MaskDirective[];
}

/** Options of {@link Initiator.open}. */
export interface InitiatorOptions {
  /**
   * Bytes of TPACKET ring memory, RX + TX (default 4 MiB). 0 uses recvfrom/sendto instead of
   * rings.
   */
  ringBytes?: number;
  /**
   * Retransmit timeout in ms (default 200): the first request's timeout and the ceiling of the
   * adaptive one (smoothed round-trip time + 4 deviations, see `minTimeoutMs`).
   */
  timeoutMs?: number;
  /** Floor of the adaptive retransmit timeout in ms (default 20: above scheduling and GC hiccups
   * of a busy host, which would otherwise cause spurious retransmissions). */
  minTimeoutMs?: number;
  /** Use the measured round-trip time (default true); false retransmits after `timeoutMs`. */
  adaptive?: boolean;
  /** Retransmissions of one request before giving up (default 8: about 7 s with the default
   * timeout and backoff). */
  retries?: number;
  /** Most requests outstanding in pipelined transfers (default 32, at most 1023). */
  window?: number;
  /**
   * Halve the effective window when a request times out and grow it back by one per window of
   * answered requests, as the Linux aoe driver does (default true). False keeps `window`
   * requests outstanding whatever the target drops.
   */
  congestionControl?: boolean;
  /** Send reads and writes as LBA48 (AFlags E, opcodes 0x24/0x34); default true. False uses
   * LBA28 opcodes below sector 2^28. */
  lba48?: boolean;
  /** Socket send / receive buffer sizes (bytes), passed to PacketSocket. */
  sendBuffer?: number;
  receiveBuffer?: number;
}

/** Per-call options of the pipelined transfers. */
export interface TransferOptions {
  /** Outstanding requests (default: the initiator's window). */
  window?: number;
  /** Sectors per request (default and ceiling: the target's maxSectors for this link). */
  sectorsPerRequest?: number;
}

/** Kinds of {@link WorkloadOptions}. */
export type WorkloadKind = "seq-read" | "seq-write" | "rand-read" | "mixed";

/** What {@link Initiator.runWorkload} runs. */
export interface WorkloadOptions {
  target: TargetInfo;
  kind: WorkloadKind;
  /** Bytes per I/O: a multiple of 512 (default: one request of the target's maxSectors). An I/O
   * larger than one request is split into requests of maxSectors, like the kernel splits a bio. */
  ioBytes?: number;
  /** Outstanding requests (default: the initiator's window). */
  window?: number;
  /** Stop issuing after this long (ms). Default 5000 unless `totalBytes` is given. */
  durationMs?: number;
  /** Stop issuing after this many bytes. */
  totalBytes?: number;
  /** Reads in percent for "mixed" (default 70). */
  readPercent?: number;
  /** PRNG seed for random offsets and write data (default 1). */
  seed?: number;
  /** Sectors of the device the workload covers, from sector 0 (default: IDENTIFY capacity). */
  regionSectors?: number;
  /** Most latency samples kept (default 1 << 20); later I/Os overwrite the oldest. */
  maxSamples?: number;
}

/** What a workload measured. */
export interface WorkloadResult {
  kind: WorkloadKind;
  /** Completed I/Os. */
  ios: number;
  /** Bytes transferred by completed I/Os. */
  bytes: number;
  seconds: number;
  /** Bytes / seconds / 1e6. */
  mbPerSec: number;
  iops: number;
  /** Per-I/O latency in ms (first send to last reply). */
  latency: { p50: number; p99: number; max: number; mean: number };
  retransmits: number;
  /** Requests that failed (AoE error, ATA error, or no reply after all retries). */
  errors: number;
  /** Late or duplicate replies dropped. */
  stale: number;
  /** Smallest effective window reached by congestion control. */
  minWindow: number;
  /** Message of the first failed request, or null. */
  firstError: string | null;
}
