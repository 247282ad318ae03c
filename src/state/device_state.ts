/**
 * The per-device state that AoE initiators can change and that survives restarts: the Query
 * Config string, the MAC Mask List and the Reserve list.
 *
 * This class holds the semantics (limits, ordering, set behaviour); where the bytes live on disk
 * is the business of a {@link StatePersistence} (see `store.ts`). Every mutation that changes
 * something calls the matching `save*` hook once, synchronously, before returning, so that a
 * reply is only sent after the new state is durable.
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

/** Where state changes are written. Implementations must be durable when they return. */
export interface StatePersistence {
  saveConfig(config: Uint8Array): void;
  saveMacMask(macs: readonly number[]): void;
  saveReserve(macs: readonly number[]): void;
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
  readonly #persist: StatePersistence | null;

  /** A state with nothing stored; `persist` null keeps it in memory only. */
  constructor(
    persist: StatePersistence | null = null,
    initial?: { config?: Uint8Array; macMask?: Iterable<number>; reserve?: Iterable<number> },
  ) {
    this.#persist = persist;
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

  /** Stores `src[offset..offset+length]` (length 0 clears) and persists it. */
  setConfig(src: Uint8Array, offset = 0, length = src.length - offset): void {
    if (length > MAX_CONFIG_LENGTH) throw new RangeError("config string too long");
    this.#config.fill(0);
    this.#config.set(src.subarray(offset, offset + length));
    this.#configLength = length;
    this.#persist?.saveConfig(this.config);
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
   * Adds one MAC without persisting (a Mac Mask edit applies several directives and then calls
   * {@link commitMacMask} once).
   */
  addMask(mac: number): MaskAddResult {
    if (this.#maskSet.has(mac)) return "present";
    if (this.#mask.length >= MAX_MAC_LIST) return "full";
    this.#setMask(sortedUnique([...this.#mask, mac]));
    return "added";
  }

  /** Removes one MAC without persisting; true if it was there. */
  deleteMask(mac: number): boolean {
    if (!this.#maskSet.has(mac)) return false;
    this.#setMask(this.#mask.filter((m) => m !== mac));
    return true;
  }

  /** Persists the mask list after {@link addMask}/{@link deleteMask} calls. */
  commitMacMask(): void {
    this.#persist?.saveMacMask(this.#mask);
  }

  /** Empties the mask list and persists it. */
  clearMacMask(): void {
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

  /** Replaces the reserve list (duplicates folded; at most 255 by the wire format) and persists. */
  setReserve(macs: Iterable<number>): void {
    const list = sortedUnique(macs);
    if (list.length > MAX_MAC_LIST) throw new RangeError("reserve list too long");
    this.#setReserve(list);
    this.#persist?.saveReserve(this.#reserve);
  }

  #setReserve(list: number[]): void {
    this.#reserve = list;
    this.#reserveSet = new Set(list);
  }
}
