/**
 * The main thread's side of per-initiator views (src/storage/views.ts): the {@link ViewStore} of
 * every device with views, checked (and cleared of cut-short creations) at start and on reload;
 * the views the data path asks for, made off the data path; the hosts' last-seen times, kept in
 * the state directory (`<device>.views-seen`, JSON of MAC to Unix seconds) so that
 * `reset-on-discover` knows after a restart how long a host was quiet; and the control
 * interface's listing, reset and removal of views.
 *
 * Operations on one device's views run one after the other (a reset never races the host's
 * next view being made).
 *
 * @module
 */

import { matchesAny } from "../config/glob.ts";
import type { DeviceConfig } from "../config/types.ts";
import type { ViewInfo } from "../control/types.ts";
import type { HostViewInfo, ToWorker, ViewOpen, ViewsSeen } from "../engine/messages.ts";
import { writeFileAtomic } from "../state/store.ts";
import { isViewMac, type ViewStore, viewStoreFor } from "../storage/views.ts";

type Log = (level: "debug" | "info" | "warning" | "error", message: string) => void;

/** Last-seen times are written at most this often per device, ms. */
const SEEN_WRITE_MS = 5000;

interface DeviceViews {
  config: DeviceConfig;
  store: ViewStore;
  /** MAC to Unix seconds. */
  seen: Map<string, number>;
  seenDirty: boolean;
  seenTimer: ReturnType<typeof setTimeout> | null;
  /** The tail of its operations (run one after the other). */
  tail: Promise<unknown>;
}

export interface ViewManagerOptions {
  log: Log;
  /** Posts an answer to the data path. */
  post: (m: ToWorker) => void;
  /** The state directory now (`state-directory`). */
  stateDirectory: () => string;
  /** The store of RBD clones of a device with `views = "rbd:POOL"` (RbdImages.viewStore). */
  rbdViews: (device: DeviceConfig, pool: string) => ViewStore;
}

export class ViewManager {
  readonly #log: Log;
  readonly #post: (m: ToWorker) => void;
  readonly #stateDirectory: () => string;
  readonly #rbdViews: (device: DeviceConfig, pool: string) => ViewStore;
  readonly #devices = new Map<string, DeviceViews>();

  constructor(options: ViewManagerOptions) {
    this.#log = options.log;
    this.#post = options.post;
    this.#stateDirectory = options.stateDirectory;
    this.#rbdViews = options.rbdViews;
  }

  /**
   * Takes the devices of a (new) configuration: checks that the views of each device with
   * views can be made, and removes what creations cut short left. Returns, by device name, why
   * a device cannot be served (it is not exported).
   */
  async configure(devices: readonly DeviceConfig[]): Promise<Map<string, string>> {
    const refused = new Map<string, string>();
    const kept = new Set<string>();
    for (const d of devices) {
      if (!d.views) continue;
      const old = this.#devices.get(d.name);
      if (old) kept.add(d.name); // a device that serves on if the new settings are refused
      const prepare = async () => {
        const store = viewStoreFor(d, this.#rbdViews);
        await store.check();
        await store.cleanup();
        return store;
      };
      try {
        if (old) {
          // After the operations under way: a cleanup must not take a view being made.
          old.store = await this.#serial(old, prepare);
          old.config = d;
          continue;
        }
        const store = await prepare();
        this.#devices.set(d.name, {
          config: d,
          store,
          seen: await this.#loadSeen(d.name),
          seenDirty: false,
          seenTimer: null,
          tail: Promise.resolve(),
        });
        kept.add(d.name);
      } catch (e) {
        refused.set(d.name, `views = "${d.views.location}": ${(e as Error).message}`);
      }
    }
    for (const [name, v] of this.#devices) {
      if (kept.has(name)) continue;
      if (v.seenTimer !== null) clearTimeout(v.seenTimer);
      this.#devices.delete(name);
    }
    return refused;
  }

  /** Runs `op` on `device`'s views after the operations before it. */
  #serial<T>(v: DeviceViews, op: () => Promise<T>): Promise<T> {
    const run = v.tail.then(op, op);
    v.tail = run.catch(() => {});
    return run;
  }

  /** The data path asks for the view of a host (see ViewOpen); answers with view-ready. */
  open(m: ViewOpen): void {
    const v = this.#devices.get(m.device.name);
    if (!v) {
      const message = "its views are not configured (reload in progress?)";
      this.#post({ type: "view-ready", id: m.id, ok: false, limit: false, message });
      return;
    }
    this.#serial(v, async (): Promise<{ made: boolean } | { limit: true; message: string }> => {
      const { store, config } = v;
      const views = config.views!;
      const last = v.seen.get(m.mac);
      const quiet = last === undefined || Date.now() / 1000 - last > views.quiet;
      if (m.reset || (m.boot && views.lifecycle === "reset-on-discover" && quiet)) {
        const existed = (await store.list()).includes(m.mac);
        await store.remove(m.mac);
        if (existed && !m.reset) {
          this.#log(
            "info",
            `disk/${config.name}: host ${m.mac} booted (a Query Config, last seen ${
              last === undefined ? "never" : `${Math.round(Date.now() / 1000 - last)} s ago`
            }): its view starts again from the golden image (views-lifecycle = "reset-on-discover")`,
          );
        }
      }
      const macs = await store.list();
      if (!macs.includes(m.mac) && macs.length >= views.maxViews) {
        return { limit: true, message: `max-views = ${views.maxViews} reached` };
      }
      const made = await store.ensure(m.mac);
      if (made) this.#log("info", `disk/${config.name}: made the view of host ${m.mac}`);
      this.#touch(v, [m.mac]);
      return { made };
    }).then(
      (r) => {
        if ("limit" in r) {
          this.#post({ type: "view-ready", id: m.id, ok: false, limit: true, message: r.message });
        } else this.#post({ type: "view-ready", id: m.id, ok: true, made: r.made });
      },
      (e) => {
        const message = (e as Error).message;
        this.#post({ type: "view-ready", id: m.id, ok: false, limit: false, message });
      },
    );
  }

  /** Hosts seen lately by the data path. */
  seen(m: ViewsSeen): void {
    const v = this.#devices.get(m.device);
    if (v) this.#touch(v, m.macs, m.ages);
  }

  /** Hosts `macs` were seen `ages` seconds ago (none: now). */
  #touch(v: DeviceViews, macs: string[], ages: number[] = []): void {
    const now = Date.now() / 1000;
    macs.forEach((mac, i) => v.seen.set(mac, Math.round(now - (ages[i] ?? 0))));
    v.seenDirty = true;
    if (v.seenTimer === null) {
      v.seenTimer = setTimeout(() => {
        v.seenTimer = null;
        void this.#saveSeen(v);
      }, SEEN_WRITE_MS);
    }
  }

  #seenPath(name: string): string {
    return `${this.#stateDirectory()}/${name}.views-seen`;
  }

  async #loadSeen(name: string): Promise<Map<string, number>> {
    const seen = new Map<string, number>();
    let text: string;
    try {
      text = await Deno.readTextFile(this.#seenPath(name));
    } catch {
      return seen; // none yet
    }
    try {
      const data = JSON.parse(text) as Record<string, unknown>;
      for (const [mac, t] of Object.entries(data)) {
        if (isViewMac(mac) && typeof t === "number") seen.set(mac, t);
      }
    } catch (e) {
      this.#log(
        "warning",
        `disk/${name}: ${this.#seenPath(name)} cannot be read (${
          (e as Error).message
        }): every host counts as quiet for views-lifecycle`,
      );
    }
    return seen;
  }

  async #saveSeen(v: DeviceViews): Promise<void> {
    if (!v.seenDirty) return;
    v.seenDirty = false;
    const bytes = new TextEncoder().encode(JSON.stringify(Object.fromEntries(v.seen)) + "\n");
    try {
      await writeFileAtomic(this.#seenPath(v.config.name), bytes);
    } catch (e) {
      v.seenDirty = true;
      this.#log(
        "warning",
        `disk/${v.config.name}: cannot save when its hosts were last seen: ${
          (e as Error).message
        } (tried again later)`,
      );
    }
  }

  /** Writes what is not saved yet (shutdown). */
  async close(): Promise<void> {
    for (const v of this.#devices.values()) {
      if (v.seenTimer !== null) clearTimeout(v.seenTimer);
      v.seenTimer = null;
      await v.tail;
      await this.#saveSeen(v);
    }
  }

  /**
   * Every view of the devices with views whose name matches one of `patterns` (null: every
   * device), with what the data path knows of its host (`hosts`). Only the matching devices'
   * stores are listed.
   */
  async list(patterns: readonly string[] | null, hosts: HostViewInfo[]): Promise<ViewInfo[]> {
    const out: ViewInfo[] = [];
    for (const [name, v] of this.#devices) {
      if (!matchesAny(patterns, name)) continue;
      const onDisk = new Set(await v.store.list());
      const known = new Map(hosts.filter((h) => h.device === name).map((h) => [h.mac, h]));
      const macs = new Set([
        ...onDisk,
        ...[...known.values()].filter((h) => h.status === "open").map((h) => h.mac),
      ]);
      for (const mac of [...macs].sort()) {
        const h = known.get(mac);
        out.push({
          device: name,
          mac,
          exists: onDisk.has(mac),
          open: h?.status === "open",
          written: h?.written ?? 0,
          lastSeen: v.seen.get(mac) ?? null,
        });
      }
    }
    return out;
  }

  /** Names of the devices with views. */
  get names(): string[] {
    return [...this.#devices.keys()];
  }

  /**
   * Drops the view of `mac` of `device`: `close` closes it in the data path (resolving once it
   * is closed), then it is removed from the store; `recreate` makes it again at once, fresh
   * from the golden image (reset-view; remove-view leaves it to the host's next contact).
   * Returns whether a view existed.
   */
  drop(
    device: string,
    mac: string,
    recreate: boolean,
    close: () => Promise<void>,
  ): Promise<boolean> {
    const v = this.#devices.get(device);
    if (!v) {
      return Promise.reject(
        new Error(
          `${device} is not a device with views (${
            this.names.length ? `those are: ${this.names.join(", ")}` : "there is none"
          })`,
        ),
      );
    }
    return this.#serial(v, async () => {
      await close();
      const existed = (await v.store.list()).includes(mac);
      await v.store.remove(mac);
      if (recreate) await v.store.ensure(mac);
      else v.seen.delete(mac);
      this.#log(
        "info",
        `disk/${device}: the view of host ${mac} was ${
          recreate ? "reset to the golden image" : "removed"
        } (ggaoectl)`,
      );
      return existed;
    });
  }
}
