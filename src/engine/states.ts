/**
 * The devices' persistent AoE state on the data path (config string, MAC Mask List, reserve
 * list), kept per device name across reopens and removal, and the traffic with whoever writes it
 * (the main thread, `src/state/writer.ts`): every change is posted, one write per state file at a
 * time, and a reply that acknowledges a change waits here until its write is reported (or goes
 * out as AoE error 3 if the write failed). The worker never writes a file itself.
 *
 * @module
 */

import { matchesAny } from "../config/glob.ts";
import { failStateReply } from "../protocol/engine.ts";
import { DeviceState, type StateKind, type StateListener } from "../state/device_state.ts";
import { encodeState } from "../state/store.ts";
import { DS } from "../stats.ts";
import type { Device } from "./device.ts";
import type { PersistAck, PersistRequest, SharedStateChanged, StateSnapshot } from "./messages.ts";
import type { Request } from "./pool.ts";

/** What {@link DeviceStates.clear} did to one device. */
export interface ClearedState {
  name: string;
  kind: StateKind;
  /** The change number that must be durable. */
  seq: number;
}

/** The state of one device name and its pending writes. */
class StateRecord implements StateListener {
  readonly name: string;
  readonly state: DeviceState;
  /** Change numbers handed to the writer, per StateKind. */
  readonly posted = [0, 0, 0];
  /** A write of that kind is with the writer, its outcome not yet known. */
  readonly outstanding = [false, false, false];
  /** Requests whose replies wait for a state change to be durable. */
  readonly waiters: Request[] = [];
  readonly #dirty: Set<StateRecord>;

  constructor(name: string, state: DeviceState, dirty: Set<StateRecord>) {
    this.name = name;
    this.state = state;
    this.#dirty = dirty;
    state.listener = this;
  }

  changed(_kind: StateKind): void {
    this.#dirty.add(this);
  }
}

export interface DeviceStatesOptions {
  /**
   * Hands the new contents of a state file to its writer; the outcome comes back through
   * {@link DeviceStates.persisted}. Null: state lives in memory only, every change counts as
   * durable at once.
   */
  persist: ((m: PersistRequest) => void) | null;
  /** Sends a reply that waited for its state change. */
  reply: (r: Request) => void;
  /** The counters of a device name (state_writes, state_errors), if it has any. */
  counters: (name: string) => Float64Array | undefined;
  log: (level: "debug", message: string) => void;
}

export class DeviceStates {
  readonly #options: DeviceStatesOptions;
  readonly #records = new Map<string, StateRecord>();
  /** Devices whose state could not be loaded, and why (they are not opened). */
  readonly #loadErrors = new Map<string, string>();
  readonly #dirty = new Set<StateRecord>();

  constructor(options: DeviceStatesOptions) {
    this.#options = options;
  }

  /**
   * Takes the states the main thread loaded: for names seen for the first time (the state in
   * memory is newer than the files for the others), and the load errors.
   */
  take(states: ReadonlyMap<string, StateSnapshot> | undefined): void {
    for (const [name, snapshot] of states ?? []) {
      if (snapshot.error !== undefined) this.#loadErrors.set(name, snapshot.error);
      else {
        this.#loadErrors.delete(name);
        this.#record(name, snapshot);
      }
    }
  }

  /** Why the state of `name` could not be loaded, when this side has none of it; else undefined. */
  loadError(name: string): string | undefined {
    return this.#records.has(name) ? undefined : this.#loadErrors.get(name);
  }

  /** The state of device `name` (created empty the first time). */
  of(name: string): DeviceState {
    return this.#record(name).state;
  }

  /** How many replies of device `name` wait for a state change to be written. */
  held(name: string): number {
    return this.#records.get(name)?.waiters.length ?? 0;
  }

  /**
   * Holds reply `r`, which acknowledges change `seq` of state `kind` of `dev`, until that change
   * is on disk.
   */
  hold(dev: Device, r: Request, kind: StateKind): void {
    r.persistKind = kind;
    r.persistSeq = dev.state.seq(kind);
    this.#record(dev.name).waiters.push(r);
  }

  /**
   * Empties the config string, mask list or reserve list of the `devices` matching `patterns`
   * (ggaoectl clear-*); returns each one's name and the change number whose write makes it
   * durable (already durable when nothing changed).
   */
  clear(
    devices: Device[],
    what: "config" | "macmask" | "reserve",
    patterns: string[],
  ): ClearedState[] {
    const cleared: ClearedState[] = [];
    for (const dev of devices) {
      if (!matchesAny(patterns, dev.name)) continue;
      const state = dev.state;
      if (what === "config") state.setConfig(new Uint8Array(0));
      else if (what === "macmask") state.clearMacMask();
      else state.setReserve([]);
      const kind: StateKind = what === "config" ? 0 : what === "macmask" ? 1 : 2;
      cleared.push({ name: dev.name, kind, seq: state.seq(kind) });
    }
    this.flush();
    return cleared;
  }

  /** Hands every changed state file to the writer, one write per file at a time. */
  flush(): void {
    if (this.#dirty.size === 0) return;
    const persist = this.#options.persist;
    for (const rec of this.#dirty) {
      const state = rec.state;
      for (let kind = 0 as StateKind; kind < 3; kind++) {
        const seq = state.seq(kind);
        if (seq <= rec.posted[kind] || rec.outstanding[kind]) continue;
        rec.posted[kind] = seq;
        if (persist === null) {
          state.markDurable(kind, seq);
          this.#release(rec, kind, seq, true);
          continue;
        }
        rec.outstanding[kind] = true;
        persist({ type: "persist", device: rec.name, kind, seq, bytes: encodeState(state, kind) });
      }
    }
    this.#dirty.clear();
  }

  /** The writer's outcome for a state file: replies that waited for it go out. */
  persisted(ack: PersistAck): void {
    const rec = this.#records.get(ack.device);
    if (!rec) return;
    const kind = ack.kind as StateKind;
    rec.outstanding[kind] = false;
    if (ack.ok) rec.state.markDurable(kind, ack.seq);
    const stats = this.#options.counters(ack.device);
    if (stats) stats[ack.ok ? DS.state_writes : DS.state_errors]++;
    this.#release(rec, kind, ack.seq, ack.ok);
    if (rec.state.seq(kind) > rec.posted[kind]) this.#dirty.add(rec);
    this.flush();
  }

  /** State kept with the storage (an RBD image's metadata): the shared truth, unless changed here. */
  takeShared(name: string, snapshot: StateSnapshot): void {
    const rec = this.#records.get(name);
    if (!rec) {
      this.#record(name, snapshot);
      return;
    }
    const state = rec.state;
    for (let kind = 0 as StateKind; kind < 3; kind++) {
      if (state.isDurable(kind) && !rec.outstanding[kind]) state.replace(kind, snapshot);
    }
  }

  /**
   * Another host changed state `kind` of a device whose state is kept with its storage (the main thread read it from the
   * image's metadata): taken unless this side changed it since (then that change, being
   * written, wins).
   */
  sharedChanged(m: SharedStateChanged): void {
    const rec = this.#records.get(m.device);
    if (!rec) return;
    const kind = m.kind as StateKind;
    if (rec.state.seq(kind) !== m.seq || rec.outstanding[kind]) return;
    rec.state.replace(kind, { config: m.config, macMask: m.macs, reserve: m.macs });
    this.#options.log("debug", `disk/${m.device}: state changed by another host, taken`);
  }

  #release(rec: StateRecord, kind: StateKind, seq: number, ok: boolean): void {
    const waiters = rec.waiters;
    for (let i = 0; i < waiters.length;) {
      const r = waiters[i];
      if (r.persistKind !== kind || r.persistSeq > seq) {
        i++;
        continue;
      }
      waiters.splice(i, 1);
      if (!ok) failStateReply(r, r.dev.stats);
      this.#options.reply(r);
    }
  }

  /** The record of `name`, created from `snapshot` (or empty) the first time. */
  #record(name: string, snapshot?: StateSnapshot): StateRecord {
    let rec = this.#records.get(name);
    if (!rec) {
      rec = new StateRecord(name, new DeviceState(null, snapshot), this.#dirty);
      this.#records.set(name, rec);
    }
    return rec;
  }
}
