/**
 * The TypeScript AoE initiator: finds targets, sends every AoE command, and moves data with a
 * window of outstanding requests. Synchronous: each call blocks the calling thread until the
 * target answers (it runs in another process) or the retransmit budget runs out.
 *
 * ```ts
 * const ini = Initiator.open("veth0");
 * const t = ini.find(0, 1);                 // Query Config broadcast for e0.1
 * const id = ini.identify(t);               // model, serial, capacity
 * ini.writeRange(t, 0, data);               // pipelined, window 32
 * const back = ini.readRange(t, 0, data.length / 512);
 * ini.close();
 * ```
 *
 * @module
 */

import { macAt } from "../mac.ts";
import {
  AOE_AFL_EXT,
  AOE_AFL_WRITE,
  AOE_ATA_HDR_LEN,
  AOE_CFG_READ,
  AOE_CFG_TEST,
  AOE_CFG_TEST_PREFIX,
  AOE_CMD_ATA,
  AOE_CMD_CFG,
  AOE_CMD_MASK,
  AOE_CMD_RESERVE,
  AOE_FL_ERROR,
  AOE_MCMD_EDIT,
  AOE_MCMD_READ,
  AOE_RCMD_FORCE_SET,
  AOE_RCMD_READ,
  AOE_RCMD_SET,
  AOE_SHELF_BROADCAST,
  AOE_SLOT_BROADCAST,
  ATA_CMD_CHK_POWER,
  ATA_CMD_FLUSH,
  ATA_CMD_FLUSH_EXT,
  ATA_CMD_ID_ATA,
  ATA_CMD_READ_EXT,
  ATA_CMD_WRITE_EXT,
  ATA_ERR,
  ETH_HLEN,
  ETH_P_AOE,
  SECTOR_SIZE,
} from "../protocol/constants.ts";
import { buildAtaRequest, parseAtaResponse } from "../protocol/ata.ts";
import { buildConfigRequest, parseConfigResponse } from "../protocol/config.ts";
import {
  type AoeEnvelope,
  frameCommand,
  frameEthertype,
  frameShelf,
  frameSlot,
  frameTag,
  OFF_ERROR,
  OFF_SRC,
  OFF_VER_FLAGS,
} from "../protocol/header.ts";
import { IDENTIFY_SIZE, parseIdentify } from "../protocol/identify.ts";
import { buildMaskRequest, type MaskDirective, parseMaskResponse } from "../protocol/macmask.ts";
import { buildReserveRequest, parseReserveResponse } from "../protocol/reserve.ts";
import { AoeError, AoeProtocolError, AoeTimeoutError, AtaError } from "./errors.ts";
import { Link } from "./link.ts";
import {
  type Counters,
  describe,
  MAX_WINDOW,
  Pipeline,
  type PipelinePolicy,
  type PipelineSource,
  SINGLE_SLOT,
} from "./pipeline.ts";
import type {
  AtaReply,
  AtaRequest,
  ConfigReply,
  IdentifyInfo,
  InitiatorOptions,
  MaskReply,
  TargetInfo,
  TransferOptions,
  WorkloadOptions,
  WorkloadResult,
} from "./types.ts";
import { runWorkload } from "./workload.ts";

/** Byte 14 of a version-1 response (R flag; E may be added). */
const VER1_RESPONSE = 0x18;
/** Word 83 bit 10: 48-bit address feature set. */
const IDENTIFY_LBA48_BIT = 0x0400;

/** Where a single command goes. */
interface Destination {
  mac: number;
  shelf: number;
  slot: number;
}

/** One single-command exchange. */
interface Exchange {
  to: Destination;
  command: number;
  /** For messages: "IDENTIFY", "Query Config read", ... */
  what: string;
  /** Writes the request into `out` (header included) and returns its length. */
  build(out: Uint8Array, env: AoeEnvelope): number;
  /** Retransmissions before giving up (default: the initiator's). */
  retries?: number;
  /** Fixed wait per try (default: the adaptive retransmit timeout with backoff). */
  waitMs?: number;
}

/** Sectors of a request that fit in one frame on a link of `mtu` (36-byte header + data). */
export function linkMaxSectors(mtu: number): number {
  return Math.min(255, Math.floor((mtu + ETH_HLEN - AOE_ATA_HDR_LEN) / SECTOR_SIZE));
}

/** An AoE initiator on one network interface. */
export class Initiator {
  /** Interface name. */
  readonly ifname: string;
  /** Default window of pipelined transfers. */
  readonly window: number;
  readonly #link: Link;
  readonly #policy: PipelinePolicy;
  readonly #counters: Counters = { retransmits: 0, timeouts: 0, stale: 0, ignored: 0 };
  readonly #pipeline: Pipeline;
  readonly #range = new RangeSource();

  private constructor(link: Link, window: number, policy: PipelinePolicy) {
    this.ifname = link.ifname;
    this.#link = link;
    this.window = window;
    this.#policy = policy;
    this.#pipeline = new Pipeline(link, MAX_WINDOW, policy, this.#counters);
  }

  /**
   * Opens a raw AoE socket on `ifname` (needs root or CAP_NET_RAW). TPACKET rings by default;
   * `ringBytes: 0` uses recvfrom/sendto.
   */
  static open(ifname: string, options: InitiatorOptions = {}): Initiator {
    const window = options.window ?? 32;
    if (!Number.isInteger(window) || window < 1 || window > MAX_WINDOW) {
      throw new RangeError(`window must be an integer in 1..${MAX_WINDOW}, got ${window}`);
    }
    const policy: PipelinePolicy = {
      timeoutMs: positive(options.timeoutMs ?? 200, "timeoutMs"),
      minTimeoutMs: positive(options.minTimeoutMs ?? 20, "minTimeoutMs"),
      adaptive: options.adaptive ?? true,
      retries: Math.min(255, Math.max(0, Math.floor(options.retries ?? 8))),
      congestionControl: options.congestionControl ?? true,
      lba48: options.lba48 ?? true,
    };
    policy.minTimeoutMs = Math.min(policy.minTimeoutMs, policy.timeoutMs);
    const link = Link.open(ifname, {
      ringBytes: options.ringBytes,
      sendBuffer: options.sendBuffer,
      receiveBuffer: options.receiveBuffer,
    });
    return new Initiator(link, window, policy);
  }

  /** Our MAC (source of every request). */
  get mac(): number {
    return this.#link.mac;
  }

  /** The interface MTU. */
  get mtu(): number {
    return this.#link.mtu;
  }

  /** Requests sent again after a timeout (pipelined and single commands). */
  get retransmits(): number {
    return this.#counters.retransmits;
  }

  /** Timeouts seen (each leads to a retransmission or, after the last, to a failure). */
  get timeouts(): number {
    return this.#counters.timeouts;
  }

  /** Late or duplicate replies dropped (tag not outstanding). */
  get stale(): number {
    return this.#counters.stale;
  }

  /** Frames dropped because they were not a reply from the addressed target. */
  get ignored(): number {
    return this.#counters.ignored;
  }

  /** Current retransmit timeout (ms) before backoff. */
  get rto(): number {
    return this.#pipeline.rto;
  }

  /** Smoothed round-trip time (ms); 0 before the first answer. */
  get srtt(): number {
    return this.#pipeline.srtt;
  }

  /** Sets every counter back to 0. */
  resetCounters(): void {
    this.#counters.retransmits = 0;
    this.#counters.timeouts = 0;
    this.#counters.stale = 0;
    this.#counters.ignored = 0;
  }

  /** Closes the socket. */
  close(): void {
    this.#link.close();
  }

  // --- Discovery and Query Config ------------------------------------------------------------

  /**
   * Broadcasts a Query Config read to `shelf`.`slot` (default: every target) and collects the
   * answers for `waitMs` (default 1000). One entry per (MAC, shelf, slot), sorted by shelf,
   * slot, MAC.
   */
  discover(
    options: { shelf?: number; slot?: number; waitMs?: number; first?: boolean } = {},
  ): TargetInfo[] {
    const shelf = options.shelf ?? AOE_SHELF_BROADCAST;
    const slot = options.slot ?? AOE_SLOT_BROADCAST;
    const waitMs = options.waitMs ?? 1000;
    const socket = this.#link.socket;
    const tag = this.#pipeline.newTag(SINGLE_SLOT);
    this.#sendFrame((out) =>
      buildConfigRequest(
        out,
        { dst: 0xffffffffffff, src: this.#link.mac, shelf, slot, tag },
        AOE_CFG_READ,
      )
    );
    const found = new Map<string, TargetInfo>();
    const deadline = performance.now() + waitMs;
    for (;;) {
      // Checked on every frame: other traffic on the link may never let the socket run dry.
      if (performance.now() > deadline) break;
      const f = socket.receive();
      if (f !== null) {
        try {
          const length = socket.rxLength;
          // Answers to this query, and unsolicited advertisements (tag 0), both describe a target.
          if (
            isResponse(f, length, AOE_CMD_CFG) && (f[OFF_VER_FLAGS] & AOE_FL_ERROR) === 0 &&
            (shelf === AOE_SHELF_BROADCAST || frameShelf(f) === shelf) &&
            (slot === AOE_SLOT_BROADCAST || frameSlot(f) === slot)
          ) {
            const info = toTargetInfo(f, length);
            found.set(`${info.mac}/${info.shelf}/${info.slot}`, info);
            if (options.first) break;
          } else {
            this.#counters.ignored++;
          }
        } finally {
          socket.release();
        }
        continue;
      }
      const left = deadline - performance.now();
      if (left <= 0) break;
      this.#link.wait(left);
    }
    return [...found.values()].sort((a, b) =>
      a.shelf - b.shelf || a.slot - b.slot || a.mac - b.mac
    );
  }

  /**
   * The target at `shelf`.`slot`: the first answer to a Query Config broadcast. Throws
   * {@link AoeTimeoutError} when none answers within `waitMs` (default 1000).
   */
  find(shelf: number, slot: number, options: { waitMs?: number } = {}): TargetInfo {
    const waitMs = options.waitMs ?? 1000;
    const [t] = this.discover({ shelf, slot, waitMs, first: true });
    if (t === undefined) {
      throw new AoeTimeoutError(
        `no AoE target e${shelf}.${slot} answered on ${this.ifname} within ${seconds(waitMs)}`,
      );
    }
    return t;
  }

  /**
   * Query Config `ccmd` (`AOE_CFG_*`) with `config` (string or bytes). Returns the reply, or
   * null when the target stays silent (test and test-prefix mismatches are answered by
   * silence). Throws {@link AoeError} on an error reply (4: a different config string is set).
   * Test commands wait for two retransmit timeouts, other commands for the full budget.
   */
  queryConfig(
    t: TargetInfo,
    ccmd: number,
    config: string | Uint8Array = "",
    options: { waitMs?: number; retries?: number } = {},
  ): ConfigReply | null {
    const bytes = typeof config === "string" ? latin1Bytes(config) : config;
    const silentOk = ccmd === AOE_CFG_TEST || ccmd === AOE_CFG_TEST_PREFIX;
    const reply = this.#exchange({
      to: t,
      command: AOE_CMD_CFG,
      what: `Query Config ${ccmd}`,
      build: (out, env) => buildConfigRequest(out, env, ccmd, bytes),
      retries: options.retries ?? (silentOk ? 1 : undefined),
      waitMs: options.waitMs,
    });
    if (reply === null) return null;
    this.#throwOnAoeError(reply, t, `Query Config ${ccmd}`, AOE_CMD_CFG);
    return { ...toTargetInfo(reply, reply.length), ccmd: parseConfigResponse(reply).ccmd };
  }

  // --- ATA ----------------------------------------------------------------------------------

  /**
   * Sends one ATA command and returns the reply as it is, ATA errors included (for error-path
   * tests). Throws {@link AoeError} on an AoE error reply, {@link AoeTimeoutError} on silence.
   */
  ata(t: TargetInfo, request: AtaRequest): AtaReply {
    const ext = request.ext ??
      (request.cmd === ATA_CMD_READ_EXT || request.cmd === ATA_CMD_WRITE_EXT);
    const aflags = request.aflags ??
      ((ext ? AOE_AFL_EXT : 0) | (request.data !== undefined ? AOE_AFL_WRITE : 0));
    const what = `ATA command 0x${request.cmd.toString(16)} at LBA ${request.lba ?? 0}`;
    const reply = this.#exchange({
      to: t,
      command: AOE_CMD_ATA,
      what,
      build: (out, env) =>
        buildAtaRequest(out, env, {
          aflags,
          errFeature: request.feature ?? 0,
          sectorCount: request.count ?? 0,
          cmdStatus: request.cmd,
          lba: request.lba ?? 0,
        }, request.data),
    });
    if (reply === null) throw this.#silence(t, what);
    this.#throwOnAoeError(reply, t, what, AOE_CMD_ATA);
    const a = parseAtaResponse(reply);
    return {
      status: a.cmdStatus,
      error: a.errFeature,
      sectorCount: a.sectorCount,
      aflags: a.aflags,
      lba: a.lba,
      data: a.data,
    };
  }

  /** IDENTIFY DEVICE. Throws {@link AtaError} if the target refuses it. */
  identify(t: TargetInfo): IdentifyInfo {
    const r = this.#checked(t, { cmd: ATA_CMD_ID_ATA, count: 1 });
    if (r.data.length < IDENTIFY_SIZE) {
      throw new AoeProtocolError(`${describe(t)}: IDENTIFY reply carries ${r.data.length} bytes`);
    }
    const raw = r.data.slice(0, IDENTIFY_SIZE);
    const id = parseIdentify(raw);
    const lba48 = (id.commandSetSupported & IDENTIFY_LBA48_BIT) !== 0;
    return {
      model: id.model,
      serial: id.serial,
      firmware: id.firmware,
      sectors: lba48 ? id.sectors : id.lba28Sectors,
      lba48,
      lba28Sectors: id.lba28Sectors,
      raw,
    };
  }

  /** Reads `count` sectors at `lba` (pipelined when more than one request is needed). */
  read(t: TargetInfo, lba: number, count: number): Uint8Array {
    return this.readRange(t, lba, count);
  }

  /** Writes `data` (a multiple of 512 bytes) at `lba`. */
  write(t: TargetInfo, lba: number, data: Uint8Array): void {
    this.writeRange(t, lba, data);
  }

  /**
   * FLUSH CACHE (0xE7), or FLUSH CACHE EXT (0xEA) with `ext`. Returns the ATA status; throws
   * {@link AtaError} when ERR is set.
   */
  flush(t: TargetInfo, options: { ext?: boolean } = {}): number {
    return this.#checked(t, { cmd: options.ext ? ATA_CMD_FLUSH_EXT : ATA_CMD_FLUSH }).status;
  }

  /** CHECK POWER MODE: the Sector Count of the reply (0xFF = active or idle). */
  checkPower(t: TargetInfo): number {
    return this.#checked(t, { cmd: ATA_CMD_CHK_POWER }).sectorCount;
  }

  /**
   * Reads `sectors` sectors from `lba` into `into` (default: a new buffer) with up to `window`
   * requests of the target's maxSectors outstanding. Throws on the first failed request.
   */
  readRange(
    t: TargetInfo,
    lba: number,
    sectors: number,
    into?: Uint8Array,
    options: TransferOptions = {},
  ): Uint8Array {
    checkRange(lba, sectors);
    const buf = into ?? new Uint8Array(sectors * SECTOR_SIZE);
    if (buf.length < sectors * SECTOR_SIZE) {
      throw new RangeError(`readRange: buffer of ${buf.length} bytes holds < ${sectors} sectors`);
    }
    this.#transfer(t, lba, sectors, buf, false, options);
    return buf;
  }

  /** Writes `data` (a multiple of 512 bytes) at `lba`, pipelined like {@link readRange}. */
  writeRange(t: TargetInfo, lba: number, data: Uint8Array, options: TransferOptions = {}): void {
    if (data.length % SECTOR_SIZE !== 0) {
      throw new RangeError(`writeRange: ${data.length} bytes is not a multiple of 512`);
    }
    const sectors = data.length / SECTOR_SIZE;
    checkRange(lba, sectors);
    this.#transfer(t, lba, sectors, data, true, options);
  }

  /** Runs a timed or sized workload and measures it; see {@link WorkloadOptions}. */
  runWorkload(options: WorkloadOptions): WorkloadResult {
    const t = options.target;
    const regionSectors = options.regionSectors ?? this.identify(t).sectors;
    const before = { ...this.#counters };
    const result = runWorkload(this.#pipeline, options, {
      regionSectors,
      perRequest: this.maxSectors(t),
      window: options.window ?? this.window,
    });
    result.retransmits = this.#counters.retransmits - before.retransmits;
    result.stale = this.#counters.stale - before.stale;
    return result;
  }

  /** Sectors per request toward `t` on this link: its advertised maximum, capped by our MTU. */
  maxSectors(t: TargetInfo): number {
    const n = Math.min(t.maxSectors, linkMaxSectors(this.#link.mtu));
    if (n < 1) {
      throw new RangeError(
        `${
          describe(t)
        } advertises ${t.maxSectors} sectors per request (MTU ${this.#link.mtu} on ${this.ifname}): cannot transfer data`,
      );
    }
    return n;
  }

  // --- Mac Mask List and Reserve/Release ---------------------------------------------------

  /** Mac Mask List read. */
  macMaskRead(t: TargetInfo): MaskReply {
    return this.#mask(t, AOE_MCMD_READ, []);
  }

  /** Mac Mask List edit with `directives` ({dcmd: AOE_DCMD_ADD | DELETE | NONE, mac}). */
  macMaskEdit(t: TargetInfo, directives: MaskDirective[]): MaskReply {
    return this.#mask(t, AOE_MCMD_EDIT, directives);
  }

  /** Reserve/Release read: the reserve list. */
  reserveRead(t: TargetInfo): number[] {
    return this.#reserve(t, AOE_RCMD_READ, []);
  }

  /** Reserve/Release set: the list becomes `macs` (refused with AoE error 6 unless we hold it). */
  reserveSet(t: TargetInfo, macs: number[]): number[] {
    return this.#reserve(t, AOE_RCMD_SET, macs);
  }

  /** Reserve/Release force set (`[]` releases). */
  reserveForceSet(t: TargetInfo, macs: number[]): number[] {
    return this.#reserve(t, AOE_RCMD_FORCE_SET, macs);
  }

  // --- Raw frames --------------------------------------------------------------------------

  /** Sends `frame` as is (padded to 60 bytes), for malformed-frame tests. */
  sendRaw(frame: Uint8Array): void {
    this.#sendFrame((out) => {
      out.set(frame, 0);
      return frame.length;
    });
  }

  /** The next AoE response frame (a copy), or null after `timeoutMs`. */
  receiveRaw(timeoutMs: number): Uint8Array | null {
    const socket = this.#link.socket;
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      const f = socket.receive();
      if (f !== null) {
        const copy = f.slice(0, socket.rxLength);
        socket.release();
        return copy;
      }
      const left = deadline - performance.now();
      if (left <= 0) return null;
      this.#link.wait(left);
    }
  }

  // --- Internals ---------------------------------------------------------------------------

  #transfer(
    t: TargetInfo,
    lba: number,
    sectors: number,
    buf: Uint8Array,
    write: boolean,
    options: TransferOptions,
  ): void {
    if (sectors === 0) return;
    let per = this.maxSectors(t);
    if (options.sectorsPerRequest !== undefined) {
      per = Math.max(1, Math.min(per, Math.floor(options.sectorsPerRequest)));
    }
    const window = options.window ?? this.window;
    this.#range.reset(buf, lba, sectors, per, write);
    try {
      this.#pipeline.run(t, this.#range, window);
    } finally {
      this.#range.reset(EMPTY, 0, 0, 1, false);
    }
  }

  /** An ATA command whose ERR status raises {@link AtaError}. */
  #checked(t: TargetInfo, request: AtaRequest): AtaReply {
    const r = this.ata(t, request);
    if ((r.status & ATA_ERR) !== 0) {
      throw new AtaError(describe(t), request.cmd, request.lba ?? 0, r.status, r.error);
    }
    return r;
  }

  #mask(t: TargetInfo, mcmd: number, directives: MaskDirective[]): MaskReply {
    const what = mcmd === AOE_MCMD_READ ? "Mac Mask read" : "Mac Mask edit";
    const reply = this.#exchange({
      to: t,
      command: AOE_CMD_MASK,
      what,
      build: (out, env) => buildMaskRequest(out, env, mcmd, directives),
    });
    if (reply === null) throw this.#silence(t, what);
    this.#throwOnAoeError(reply, t, what, AOE_CMD_MASK);
    const m = parseMaskResponse(reply);
    return { merror: m.merror, dirCount: m.dirCount, directives: m.directives };
  }

  #reserve(t: TargetInfo, rcmd: number, macs: number[]): number[] {
    const what = ["Reserve read", "Reserve set", "Reserve force set"][rcmd] ?? `Reserve ${rcmd}`;
    const reply = this.#exchange({
      to: t,
      command: AOE_CMD_RESERVE,
      what,
      build: (out, env) => buildReserveRequest(out, env, rcmd, macs),
    });
    if (reply === null) throw this.#silence(t, what);
    this.#throwOnAoeError(reply, t, what, AOE_CMD_RESERVE);
    return parseReserveResponse(reply).macs;
  }

  #throwOnAoeError(reply: Uint8Array, t: TargetInfo, what: string, command: number): void {
    if ((reply[OFF_VER_FLAGS] & AOE_FL_ERROR) !== 0) {
      throw new AoeError(describe(t), what, reply[OFF_ERROR], command);
    }
  }

  #silence(t: TargetInfo, what: string): AoeTimeoutError {
    return new AoeTimeoutError(
      `${describe(t)} on ${this.ifname}: no answer to ${what} after ${
        this.#policy.retries + 1
      } tries`,
    );
  }

  /** Builds one frame with `build` into a TX slot and sends it now. */
  #sendFrame(build: (out: Uint8Array) => number): void {
    const socket = this.#link.socket;
    const deadline = performance.now() + this.#policy.timeoutMs;
    for (;;) {
      const out = socket.txBuffer();
      if (out !== null) {
        if (socket.commit(build(out))) {
          socket.flush();
          return;
        }
      }
      socket.flush();
      const left = deadline - performance.now();
      if (left <= 0) {
        throw new AoeTimeoutError(`${this.ifname}: cannot send: the TX queue stays full`);
      }
      this.#link.wait(Math.min(left, 10), true);
    }
  }

  /**
   * Sends one request and waits for the reply with the same tag, command, and target address;
   * retransmits on timeout. Returns a copy of the reply, or null when the target stayed silent.
   */
  #exchange(x: Exchange): Uint8Array | null {
    const socket = this.#link.socket;
    const pipeline = this.#pipeline;
    const tag = pipeline.newTag(SINGLE_SLOT);
    const env: AoeEnvelope = {
      dst: x.to.mac,
      src: this.#link.mac,
      shelf: x.to.shelf,
      slot: x.to.slot,
      tag,
    };
    const retries = x.retries ?? this.#policy.retries;
    for (let attempt = 0; attempt <= retries; attempt++) {
      if (attempt > 0) {
        this.#counters.retransmits++;
      }
      const sentAt = performance.now();
      this.#sendFrame((out) => x.build(out, env));
      const deadline = sentAt + (x.waitMs ?? pipeline.timeoutFor(attempt));
      for (;;) {
        const f = socket.receive();
        if (f !== null) {
          let reply: Uint8Array | null = null;
          try {
            const length = socket.rxLength;
            if (!isResponse(f, length, x.command) || !from(f, x.to)) {
              this.#counters.ignored++;
            } else if (frameTag(f) !== tag) {
              this.#counters.stale++;
            } else {
              reply = f.slice(0, length);
            }
          } finally {
            socket.release();
          }
          if (reply !== null) {
            if (attempt === 0) pipeline.sampleRtt(performance.now() - sentAt);
            return reply;
          }
          continue;
        }
        const left = deadline - performance.now();
        if (left <= 0) break;
        this.#link.wait(left);
      }
      this.#counters.timeouts++;
    }
    return null;
  }
}

/** Feeds a contiguous range to the pipeline; any failure aborts the transfer. */
class RangeSource implements PipelineSource {
  #buf: Uint8Array = EMPTY;
  #lba = 0;
  #sectors = 0;
  #issued = 0;
  #per = 1;
  #write = 0;

  reset(buf: Uint8Array, lba: number, sectors: number, per: number, write: boolean): void {
    this.#buf = buf;
    this.#lba = lba;
    this.#sectors = sectors;
    this.#issued = 0;
    this.#per = per;
    this.#write = write ? 1 : 0;
  }

  next(p: Pipeline, s: number): boolean {
    const left = this.#sectors - this.#issued;
    if (left <= 0) return false;
    const n = left < this.#per ? left : this.#per;
    p.lba[s] = this.#lba + this.#issued;
    p.count[s] = n;
    p.write[s] = this.#write;
    p.buf[s] = this.#buf;
    p.bufOff[s] = this.#issued * SECTOR_SIZE;
    this.#issued += n;
    return true;
  }

  done(): void {}

  failed(_p: Pipeline, _s: number, error: Error): void {
    throw error;
  }
}

const EMPTY = new Uint8Array(0);

/** A version-1 AoE response of `command`, long enough for its header. */
function isResponse(f: Uint8Array, length: number, command: number): boolean {
  return length >= 24 && frameEthertype(f) === ETH_P_AOE &&
    (f[OFF_VER_FLAGS] & 0xf8) === VER1_RESPONSE && frameCommand(f) === command;
}

/** Sent by `to` (its MAC and address; a broadcast address matches any). */
function from(f: Uint8Array, to: Destination): boolean {
  return (to.mac === 0xffffffffffff || macAt(f, OFF_SRC) === to.mac) &&
    (to.shelf === AOE_SHELF_BROADCAST || frameShelf(f) === to.shelf) &&
    (to.slot === AOE_SLOT_BROADCAST || frameSlot(f) === to.slot);
}

function toTargetInfo(f: Uint8Array, length: number): TargetInfo {
  const c = parseConfigResponse(f, length);
  const configBytes = c.config.slice();
  return {
    mac: c.header.src,
    shelf: c.header.shelf,
    slot: c.header.slot,
    bufferCount: c.bufferCount,
    firmware: c.firmware,
    maxSectors: c.sectorCount,
    aoeVersion: c.aoeVersion,
    config: latin1String(configBytes),
    configBytes,
  };
}

/** Latin-1 keeps every byte of a config string (they need not be UTF-8). */
export function latin1String(bytes: Uint8Array): string {
  let s = "";
  for (const b of bytes) s += String.fromCharCode(b);
  return s;
}

/** Inverse of {@link latin1String}; characters above U+00FF are refused. */
export function latin1Bytes(text: string): Uint8Array {
  const out = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c > 0xff) {
      throw new RangeError(`config string: character U+${c.toString(16)} is not Latin-1`);
    }
    out[i] = c;
  }
  return out;
}

function checkRange(lba: number, sectors: number): void {
  if (!Number.isSafeInteger(lba) || lba < 0 || lba >= 2 ** 48) {
    throw new RangeError(`LBA ${lba} is not a 48-bit sector number`);
  }
  if (!Number.isSafeInteger(sectors) || sectors < 0) {
    throw new RangeError(`sector count ${sectors} is not a non-negative integer`);
  }
}

function positive(n: number, name: string): number {
  if (!(n > 0) || !Number.isFinite(n)) throw new RangeError(`${name} must be > 0, got ${n}`);
  return n;
}

function seconds(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000} s` : `${ms} ms`;
}
