/**
 * The data path's side of per-initiator views (`views = ...`, see src/storage/views.ts): a
 * device with views answers every host at one address, with one identity (Query Config,
 * IDENTIFY, size), and sends each host's reads, writes and flushes to that host's own view, a
 * child {@link Device} with its own queue, flush ordering and backend, sharing its parent's
 * request pool, statistics and AoE state.
 *
 * A host without an open view has one made and opened off the data path: its first frame (its
 * Query Config, as a rule) asks the main thread ({@link ViewSet.contact}); its ATA requests are
 * dropped and counted meanwhile (`view_wait_drop`; its initiator sends them again), and past
 * `max-views` answered with ATA ABRT (`view_limit`, one log line per host).
 *
 * @module
 */

import type { ViewsConfig } from "../config/types.ts";
import { viewMac } from "../storage/views.ts";
import type { Device } from "./device.ts";

/** Where a host's view is. */
export const ViewStatus = {
  /** None asked for yet (or dropped). */
  NONE: 0,
  /** The main thread makes it, or the data path opens it: its requests are dropped. */
  OPENING: 1,
  OPEN: 2,
  /** The device has max-views: its requests are answered ATA ABRT. */
  LIMIT: 3,
  /** Making or opening it failed: its requests are dropped; asked again after a pause. */
  FAILED: 4,
} as const;
export type ViewStatus = typeof ViewStatus[keyof typeof ViewStatus];

const STATUS_NAMES = ["none", "opening", "open", "limit", "failed"];

/** Hosts a device with views keeps track of, per view it may have. */
export const MAX_HOSTS_PER_VIEW = 4;

/** After a failure or the limit, the next contact asks again this many seconds later. */
export const VIEW_RETRY_SECONDS = 5;

/** One host of a device with views. */
export class HostView {
  readonly mac: number;
  /** 12 lower-case hex digits, as views are named. */
  readonly hex: string;
  status: ViewStatus = ViewStatus.NONE;
  /** Its view, while open. */
  child: Device | null = null;
  /** Monotonic seconds of its last frame. */
  lastSeen = -Infinity;
  /** A frame since the last report to the main thread (which keeps last-seen times on disk). */
  seenUnreported = false;
  /** Bytes written through its view since the daemon started. */
  written = 0;
  /** When a failed or refused view may be asked for again (monotonic seconds). */
  retryAt = 0;
  /** The limit was logged for it. */
  limitLogged = false;

  constructor(mac: number) {
    this.mac = mac;
    this.hex = viewMac(mac);
  }

  get statusName(): string {
    return STATUS_NAMES[this.status];
  }

  /**
   * Its view could not be made or opened (`status` FAILED), or the device is at max-views
   * (LIMIT): asked again at its first contact {@link VIEW_RETRY_SECONDS} after `now`.
   */
  refuse(status: typeof ViewStatus.FAILED | typeof ViewStatus.LIMIT, now: number): void {
    this.status = status;
    this.retryAt = now + VIEW_RETRY_SECONDS;
  }
}

/** What {@link ViewSet.contact} wants done. */
export const ViewAsk = { NOTHING: 0, OPEN: 1, BOOT: 2, RESET: 3 } as const;
export type ViewAsk = typeof ViewAsk[keyof typeof ViewAsk];

/** The hosts of one device with views. */
export class ViewSet {
  readonly config: ViewsConfig;
  readonly hosts = new Map<number, HostView>();

  constructor(config: ViewsConfig) {
    this.config = config;
  }

  /**
   * The host of `mac` (made on its first frame), or null when the device knows so many hosts
   * already ({@link MAX_HOSTS_PER_VIEW}) that a flood of made-up source MACs must not grow the
   * table further: such a host is answered as past max-views.
   */
  host(mac: number): HostView | null {
    let h = this.hosts.get(mac);
    if (h === undefined) {
      if (this.hosts.size >= this.config.maxViews * MAX_HOSTS_PER_VIEW) return null;
      h = new HostView(mac);
      this.hosts.set(mac, h);
    }
    return h;
  }

  /**
   * A frame from `h` at `now` (monotonic seconds); `queryConfig`: it is a Query Config. Says
   * whether its view must be asked for: OPEN, BOOT (its first frame since the start is a Query
   * Config: the main thread decides from the last-seen time on disk whether it booted), or
   * RESET (a Query Config after views-quiet seconds of silence, reset-on-discover: its open
   * view must be closed and dropped, which the caller does).
   */
  contact(h: HostView, now: number, queryConfig: boolean): ViewAsk {
    const first = h.lastSeen === -Infinity;
    const quiet = now - h.lastSeen > this.config.quiet;
    h.lastSeen = now;
    h.seenUnreported = true;
    const resets = queryConfig && this.config.lifecycle === "reset-on-discover";
    if (resets && !first && quiet && h.status !== ViewStatus.OPENING) return ViewAsk.RESET;
    switch (h.status) {
      case ViewStatus.NONE:
        return resets && first ? ViewAsk.BOOT : ViewAsk.OPEN;
      case ViewStatus.LIMIT:
      case ViewStatus.FAILED:
        return now >= h.retryAt ? ViewAsk.OPEN : ViewAsk.NOTHING;
      default:
        return ViewAsk.NOTHING;
    }
  }

  /** Views open now. */
  get open(): number {
    let n = 0;
    for (const h of this.hosts.values()) if (h.status === ViewStatus.OPEN) n++;
    return n;
  }
}
