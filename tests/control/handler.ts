/**
 * A small but real {@link ControlHandler} for tests: real counter arrays, real `DeviceState`s
 * (in memory), glob matching as the daemon does it, and a clock tests can drive.
 *
 * @module
 */

import { matchesAny } from "../../src/config/glob.ts";
import type { ControlHandler, RbdDeviceInfo, ViewInfo } from "../../src/control/types.ts";
import { DeviceState } from "../../src/state/device_state.ts";
import { newDeviceStats, newIfaceStats } from "../../src/stats.ts";

/** A device as the test handler keeps it. */
export interface TestDevice {
  name: string;
  stats: Float64Array;
  state: DeviceState;
}

/** A ControlHandler over in-memory devices and interfaces. */
export class TestHandler implements ControlHandler {
  readonly devices: TestDevice[];
  readonly interfaces: { name: string; stats: Float64Array }[];
  /** What `uptime()` answers; tests move it. */
  clock = 0;
  /** Called before each `stats()` answer (tests advance counters and the clock there). */
  onStats: (() => void) | null = null;
  /** What `reload()` answers. */
  reloadResult = { ok: true, message: "The configuration has been reloaded" };
  reloads = 0;
  /** What `rbdDevices()` answers. */
  rbd: RbdDeviceInfo[] = [];

  constructor(deviceNames: string[], interfaceNames: string[]) {
    this.devices = deviceNames.map((name) => ({
      name,
      stats: newDeviceStats(),
      state: new DeviceState(null),
    }));
    this.interfaces = interfaceNames.map((name) => ({ name, stats: newIfaceStats() }));
  }

  /** The device called `name`. */
  device(name: string): TestDevice {
    const d = this.devices.find((x) => x.name === name);
    if (!d) throw new Error(`no device ${name}`);
    return d;
  }

  uptime(): number {
    return this.clock;
  }

  stats(): Promise<{
    devices: { name: string; stats: Float64Array }[];
    interfaces: { name: string; stats: Float64Array }[];
  }> {
    this.onStats?.();
    return Promise.resolve({
      devices: this.devices.map((d) => ({ name: d.name, stats: d.stats.slice() })),
      interfaces: this.interfaces.map((i) => ({ name: i.name, stats: i.stats.slice() })),
    });
  }

  reload(): Promise<{ ok: boolean; message: string }> {
    this.reloads++;
    return Promise.resolve(this.reloadResult);
  }

  deviceStates(): Promise<
    { name: string; config: Uint8Array; macMask: number[]; reserve: number[] }[]
  > {
    return Promise.resolve(this.devices.map((d) => ({
      name: d.name,
      config: d.state.config.slice(),
      macMask: [...d.state.macMask],
      reserve: [...d.state.reserve],
    })));
  }

  clearStats(patterns: string[] | null): Promise<void> {
    for (const x of [...this.devices, ...this.interfaces]) {
      if (matchesAny(patterns, x.name)) x.stats.fill(0);
    }
    return Promise.resolve();
  }

  rbdDevices(): Promise<RbdDeviceInfo[]> {
    return Promise.resolve(this.rbd);
  }

  clearConfig(names: string[]): Promise<string[]> {
    return Promise.resolve(this.#each(names, (s) => s.setConfig(new Uint8Array(0))));
  }

  clearMacMask(names: string[]): Promise<string[]> {
    return Promise.resolve(this.#each(names, (s) => s.clearMacMask()));
  }

  clearReserve(names: string[]): Promise<string[]> {
    return Promise.resolve(this.#each(names, (s) => s.setReserve([])));
  }

  views(): Promise<ViewInfo[]> {
    return Promise.resolve([]);
  }

  dropView(device: string): Promise<boolean> {
    return Promise.reject(new Error(`${device} is not a device with views`));
  }

  #each(patterns: string[], fn: (s: DeviceState) => void): string[] {
    const hit = this.devices.filter((d) => matchesAny(patterns, d.name));
    for (const d of hit) fn(d.state);
    return hit.map((d) => d.name);
  }
}
