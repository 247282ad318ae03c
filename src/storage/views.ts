/**
 * Per-initiator copy-on-write views of a device (`views = ...` in its configuration): every host,
 * by source MAC, reads and writes its own view of the golden image; the golden image is never
 * written. A view is made by the storage itself (a reflinked copy of a file on XFS or btrfs, an
 * RBD clone of a protected snapshot): no on-disk format of ours, and the crash safety of the copy
 * is the file system's or Ceph's.
 *
 * Views are made, listed and removed on the main thread ({@link ViewStore}, one per device);
 * the data path opens a view like any device's storage, through the backend that serves its
 * path ({@link viewPath}).
 *
 * @module
 */

import { type DeviceConfig, RBD_PATH_PREFIX } from "../config/types.ts";
import { FileViewStore } from "./file_views.ts";

/** The main thread's interface to where a device's views live (one per device). */
export interface ViewStore {
  /** Where views live, for logs: "/srv/aoe/views/farm" or "rbd/farm-*". */
  readonly where: string;
  /**
   * Checks that views can be made (reflinks supported / snapshot protected, writable...);
   * throws an Error that says what is wrong and what to do. Called at start and reload.
   */
  check(): Promise<void>;
  /** Removes leftovers of creations cut short (kill -9 during ensure). */
  cleanup(): Promise<void>;
  /**
   * Makes the view of `mac` (12 lower-case hex digits) unless it exists; atomic (never half
   * made; durable before it resolves). Resolves true if it was made now.
   */
  ensure(mac: string): Promise<boolean>;
  /** The MACs that have a view. */
  list(): Promise<string[]>;
  /** Removes the view of `mac` (nothing if none). The caller makes sure it is not open. */
  remove(mac: string): Promise<void>;
}

/** A MAC as views name it: 12 lower-case hex digits, no separators. */
export function viewMac(mac: number): string {
  return mac.toString(16).padStart(12, "0");
}

/** Whether `text` is a MAC as views name it ({@link viewMac}). */
export function isViewMac(text: string): boolean {
  return /^[0-9a-f]{12}$/.test(text);
}

/** Whether a device's views are RBD clones (`views = "rbd:POOL"`). */
export function rbdViews(device: DeviceConfig): boolean {
  return device.views?.location.startsWith(RBD_PATH_PREFIX) ?? false;
}

/**
 * The storage path of the view of `mac` of `device`, as its backend opens it: the file
 * `<views>/<mac>.img`, or the RBD image `rbd:<pool>/<device>-<mac>`.
 */
export function viewPath(device: DeviceConfig, mac: string): string {
  const location = device.views!.location;
  if (rbdViews(device)) return `${location}/${device.name}-${mac}`;
  return `${location}/${mac}.img`;
}

/**
 * The configuration a view of `device` is opened with: the device's own settings over the
 * view's storage, writable, and without views of its own.
 */
export function viewConfig(device: DeviceConfig, mac: string): DeviceConfig {
  const path = viewPath(device, mac);
  let rbd = device.rbd;
  if (rbd && rbdViews(device)) {
    rbd = { ...rbd, pool: device.views!.location.slice(RBD_PATH_PREFIX.length) };
    rbd = { ...rbd, image: `${device.name}-${mac}`, snapshot: null };
  }
  return { ...device, name: `${device.name}/${mac}`, path, readOnly: false, rbd, views: null };
}

/**
 * The store of `device`'s views. RBD clones plug in here: `if (rbdViews(device)) return new
 * RbdViewStore(device, ...)`.
 */
export function viewStoreFor(device: DeviceConfig): ViewStore {
  if (rbdViews(device)) {
    throw new Error(
      `views = "${device.views!.location}": RBD clones as views are not part of this build; ` +
        "put the golden image and the views on XFS or btrfs",
    );
  }
  return new FileViewStore(device.path, device.views!.location);
}
