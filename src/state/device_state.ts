/**
 * The per-device state that AoE initiators can change and that survives restarts: the Query
 * Config string, the MAC Mask List and the Reserve list.
 *
 * This class holds the semantics (limits, ordering, set behaviour) and counts changes; it does no
 * I/O. Every mutation that changes something bumps that kind's change number ({@link seq}) and
 * tells the {@link StateListener} once. Writing the files is someone else's business (the data
 * path posts the new contents to the main thread, which writes them atomically and reports back
 * with {@link markDurable}); a reply that acknowledges a change waits until {@link isDurable}.
 * A mutation that changes nothing (the same config string set again, a reserve list set to
 * what it is) neither bumps the number nor calls the listener: nothing is written.
 *
 * MACs are numbers (see `src/mac.ts`). Both lists are kept sorted ascending and free of
 * duplicates (the original kept the reserve list unsorted and then binary-searched it).
 *
 * @module
 */

/** Longest Query Config string (AoE r11). */
export const MAX_CONFIG_LENGTH = 1024;
/** Most entries of the MAC Mask List and of the Reserve list. */
export const MAX_MAC_LIST = 255;

/** The three persistent parts, numbered (also the suffixes of the state files). */
export const StateKind = { CONFIG: 0, MAC_MASK: 1, RESERVE: 2 } as const;
export type StateKind = typeof StateKind[keyof typeof StateKind];
/** File suffix of each kind: `<name>.config`, `<name>.mac_mask`, `<name>.reserve`. */
export const STATE_SUFFIX = ["config", "mac_mask", "reserve"] as const;

/** Told of every change (after it is made in memory). */
export interface StateListener {
  changed(kind: StateKind): void;
}

/** Outcome of adding one MAC to the mask list. */
export type MaskAddResult = "added" | "present" | "full";

function sortedUnique(macs: Iterable<number>): number[] {
  return [...new Set(macs)].sort((a, b) => a - b);
}

export class DeviceState {
  readonly #config = new Uint8Array(MAX_CONFIG_LENGTH);
  #configLength = 0;
  #mask: number[] = [];
  #maskSet = new Set<number>();
  #reserve: number[] = [];
  #reserveSet = new Set<number>();
  readonly #seq = [0, 0, 0];
  readonly #durable = [0, 0, 0];
  /** Told of each change; the data plane sets it when it takes the state over. */
  listener: StateListener | null;

  /** A state with `initial` contents (counted as durable: it came from the files). */
  constructor(
    listener: StateListener | null = null,
    initial?: { config?: Uint8Array; macMask?: Iterable<number>; reserve?: Iterable<number> },
  ) {
    this.listener = listener;
    if (initial?.config) {
      if (initial.config.length > MAX_CONFIG_LENGTH) throw new RangeError("config string too long");
      this.#config.set(initial.config);
      this.#configLength = initial.config.length;
    }
    if (initial?.macMask) this.#setMask(sortedUnique(initial.macMask));
    if (initial?.reserve) this.#setReserve(sortedUnique(initial.reserve));
  }

  // ---- Query Config string ----

  /** Length of the stored config string. */
  get configLength(): number {
    return this.#configLength;
  }

  /** The stored config string (a view: copy it if you keep it). */
  get config(): Uint8Array {
    return this.#config.subarray(0, this.#configLength);
  }

  /** Copies the stored string to `dst[offset..]`; returns its length. */
  copyConfigTo(dst: Uint8Array, offset: number): number {
    dst.set(this.#config.subarray(0, this.#configLength), offset);
    return this.#configLength;
  }

  /** True if `src[offset..offset+length]` equals the stored string exactly. */
  configEquals(src: Uint8Array, offset: number, length: number): boolean {
    return length === this.#configLength && this.configHasPrefix(src, offset, length);
  }

  /** True if `src[offset..offset+length]` is a prefix of the stored string. */
  configHasPrefix(src: Uint8Array, offset: number, length: number): boolean {
    if (length > this.#configLength) return false;
    for (let i = 0; i < length; i++) {
      if (src[offset + i] !== this.#config[i]) return false;
    }
    return true;
  }

  /** Stores `src[offset..offset+length]` (length 0 clears); a change is counted. */
  setConfig(src: Uint8Array, offset = 0, length = src.length - offset): void {
    if (length > MAX_CONFIG_LENGTH) throw new RangeError("config string too long");
    if (this.configEquals(src, offset, length)) return;
    this.#config.fill(0);
    this.#config.set(src.subarray(offset, offset + length));
    this.#configLength = length;
    this.#changed(StateKind.CONFIG);
  }

  // ---- MAC Mask List ----

  /** The mask list, sorted ascending. */
  get macMask(): readonly number[] {
    return this.#mask;
  }

  /** True when the list is empty (everyone allowed) or holds `mac`. */
  maskAllows(mac: number): boolean {
    return this.#mask.length === 0 || this.#maskSet.has(mac);
  }

  /**
   * Adds one MAC without counting a change (a Mac Mask edit applies several directives and then
   * calls {@link commitMacMask} once).
   */
  addMask(mac: number): MaskAddResult {
    if (this.#maskSet.has(mac)) return "present";
    if (this.#mask.length >= MAX_MAC_LIST) return "full";
    this.#setMask(sortedUnique([...this.#mask, mac]));
    return "added";
  }

  /** Removes one MAC without counting a change; true if it was there. */
  deleteMask(mac: number): boolean {
    if (!this.#maskSet.has(mac)) return false;
    this.#setMask(this.#mask.filter((m) => m !== mac));
    return true;
  }

  /** Counts the change made by {@link addMask}/{@link deleteMask} calls. */
  commitMacMask(): void {
    this.#changed(StateKind.MAC_MASK);
  }

  /** Empties the mask list (a change, if it was not empty). */
  clearMacMask(): void {
    if (this.#mask.length === 0) return;
    this.#setMask([]);
    this.commitMacMask();
  }

  #setMask(list: number[]): void {
    this.#mask = list;
    this.#maskSet = new Set(list);
  }

  // ---- Reserve list ----

  /** The reserve list, sorted ascending. */
  get reserve(): readonly number[] {
    return this.#reserve;
  }

  /** True when nothing is reserved or `mac` holds the reservation. */
  reserveAllows(mac: number): boolean {
    return this.#reserve.length === 0 || this.#reserveSet.has(mac);
  }

  /** Replaces the reserve list (duplicates folded; at most 255 by the wire format). */
  setReserve(macs: Iterable<number>): void {
    const list = sortedUnique(macs);
    if (list.length > MAX_MAC_LIST) throw new RangeError("reserve list too long");
    if (list.length === this.#reserve.length && list.every((m, i) => m === this.#reserve[i])) {
      return;
    }
    this.#setReserve(list);
    this.#changed(StateKind.RESERVE);
  }

  #setReserve(list: number[]): void {
    this.#reserve = list;
    this.#reserveSet = new Set(list);
  }

  /**
   * Replaces the contents of `kind` with what another writer stored (an RBD image's metadata,
   * written by another host serving it): no change is counted, nothing is written back, and
   * the listener is not told. Values as the constructor takes them.
   */
  replace(
    kind: StateKind,
    value: { config?: Uint8Array; macMask?: Iterable<number>; reserve?: Iterable<number> },
  ): void {
    if (kind === StateKind.CONFIG) {
      const config = value.config ?? new Uint8Array(0);
      if (config.length > MAX_CONFIG_LENGTH) throw new RangeError("config string too long");
      this.#config.fill(0);
      this.#config.set(config);
      this.#configLength = config.length;
    } else if (kind === StateKind.MAC_MASK) {
      this.#setMask(sortedUnique(value.macMask ?? []).slice(0, MAX_MAC_LIST));
    } else {
      this.#setReserve(sortedUnique(value.reserve ?? []).slice(0, MAX_MAC_LIST));
    }
  }

  // ---- durability ----

  /** Change number of `kind`: how many changes it has seen. */
  seq(kind: StateKind): number {
    return this.#seq[kind];
  }

  /** The highest change number of `kind` known to be on disk. */
  durableSeq(kind: StateKind): number {
    return this.#durable[kind];
  }

  /** True when change `seq` of `kind` (default: the latest) is on disk. */
  isDurable(kind: StateKind, seq = this.#seq[kind]): boolean {
    return this.#durable[kind] >= seq;
  }

  /** Records that the contents of `kind` as of change `seq` are on disk. */
  markDurable(kind: StateKind, seq: number): void {
    if (seq > this.#durable[kind]) this.#durable[kind] = seq;
  }

  #changed(kind: StateKind): void {
    this.#seq[kind]++;
    this.listener?.changed(kind);
  }
}
