/**
 * Shared fixtures for the protocol tests: a port, a target with in-memory state, Work buffers,
 * and request frames built with the protocol's own request builders.
 *
 * @module
 */

import { macBytes } from "../../src/mac.ts";
import { maxSectorsForMtu } from "../../src/protocol/engine.ts";
import type { AoeEnvelope } from "../../src/protocol/header.ts";
import { type Port, type Target, Work, WORK_FRAME_SIZE } from "../../src/protocol/types.ts";
import { DeviceState, StateKind, type StateListener } from "../../src/state/device_state.ts";
import { newDeviceStats } from "../../src/stats.ts";

/** The target interface's MAC. */
export const PORT_MAC = 0x02_00_00_00_00_01;
/** The initiator's MAC. */
export const HOST_MAC = 0x00_1b_21_0a_aa_22;
/** Another initiator. */
export const OTHER_MAC = 0x00_1b_21_0a_aa_33;

export function makePort(mtu = 1500, mac = PORT_MAC): Port {
  return { mac: macBytes(mac), mtu, maxSectors: maxSectorsForMtu(mtu) };
}

export interface TargetOptions {
  name?: string;
  shelf?: number;
  slot?: number;
  sectors?: number;
  readOnly?: boolean;
  bufferCount?: number;
  accept?: number[] | null;
  deny?: number[] | null;
  admin?: number[] | null;
  /** `admin-config-string` (default true). */
  adminConfigString?: boolean;
  /** Byte offset of sector 0 (the `offset` setting × 512). */
  base?: number;
  serial?: string;
  state?: DeviceState;
}

export function makeTarget(o: TargetOptions = {}): Target {
  return {
    name: o.name ?? "disk1",
    shelf: o.shelf ?? 7,
    slot: o.slot ?? 3,
    sectors: o.sectors ?? 2048,
    readOnly: o.readOnly ?? false,
    bufferCount: o.bufferCount ?? 64,
    accept: o.accept ? new Set(o.accept) : null,
    deny: o.deny ? new Set(o.deny) : null,
    admin: o.admin ? new Set(o.admin) : null,
    configAdmin: o.admin && o.adminConfigString !== false ? new Set(o.admin) : null,
    base: o.base ?? 0,
    serial: o.serial ?? `${o.shelf ?? 7}.${o.slot ?? 3}:testhost`,
    state: o.state ?? new DeviceState(),
    stats: newDeviceStats(),
  };
}

export function makeWork(): Work {
  return new Work(new Uint8Array(WORK_FRAME_SIZE));
}

/** Envelope of a request from HOST_MAC to the default target. */
export function env(over: Partial<AoeEnvelope> = {}): AoeEnvelope {
  return { dst: PORT_MAC, src: HOST_MAC, shelf: 7, slot: 3, tag: 0x11223344, ...over };
}

/** A request frame buffer (room for the largest frame). */
export function frameBuffer(): Uint8Array {
  return new Uint8Array(WORK_FRAME_SIZE);
}

/** Counts the changes a DeviceState reports, per kind. */
export class CountingListener implements StateListener {
  config = 0;
  mask = 0;
  reserve = 0;
  changed(kind: StateKind): void {
    if (kind === StateKind.CONFIG) this.config++;
    else if (kind === StateKind.MAC_MASK) this.mask++;
    else this.reserve++;
  }
}
