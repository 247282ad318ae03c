/// <reference lib="deno.worker" />
/**
 * The data-path worker: owns the {@link DataPlane} and loops over epoll_wait. Commands from the
 * main thread arrive as messages announced through a wake eventfd (see `messages.ts` for why).
 *
 * @module
 */

import { EventFd } from "../../ffi/mod.ts";
import { matchesAny } from "../config/glob.ts";
import { openDeviceState } from "../state/store.ts";
import { DataPlane, type LogFn } from "./dataplane.ts";
import type { FromWorker, StateSnapshot, ToWorker } from "./messages.ts";

/** Longest wait in epoll_wait when idle, ms (the hotplug rescan runs at least this often). */
const IDLE_WAIT_MS = 1000;

const inbox: ToWorker[] = [];
let arrived: (() => void) | null = null;

self.onmessage = (e: MessageEvent<ToWorker>) => {
  inbox.push(e.data);
  arrived?.();
};

function post(m: FromWorker): void {
  self.postMessage(m);
}

const log: LogFn = (level, message) => post({ type: "log", level, message });

async function take(n: number): Promise<ToWorker[]> {
  while (inbox.length < n) await new Promise<void>((r) => (arrived = r));
  arrived = null;
  return inbox.splice(0, n);
}

function counters(plane: DataPlane): FromWorker {
  const c = plane.counters();
  return { type: "counters", devices: c.devices, interfaces: c.interfaces };
}

/** Handles one command; returns false when the worker should stop. */
function handle(plane: DataPlane, m: ToWorker): boolean {
  switch (m.type) {
    case "reload":
      try {
        plane.reload(m.config);
        post(counters(plane));
        post({ type: "reply", id: m.id, ok: true });
      } catch (e) {
        post({ type: "reply", id: m.id, ok: false, message: (e as Error).message });
      }
      return true;
    case "states": {
      const data: StateSnapshot[] = plane.deviceStates().map(({ name, state }) => ({
        name,
        config: state.config.slice(),
        macMask: [...state.macMask],
        reserve: [...state.reserve],
      }));
      post({ type: "reply", id: m.id, ok: true, data });
      return true;
    }
    case "clear": {
      const cleared: string[] = [];
      for (const { name, state } of plane.deviceStates()) {
        if (!matchesAny(m.names, name)) continue;
        if (m.what === "config") state.setConfig(new Uint8Array(0));
        else if (m.what === "macmask") state.clearMacMask();
        else state.setReserve([]);
        cleared.push(name);
      }
      post({ type: "reply", id: m.id, ok: true, data: cleared });
      return true;
    }
    case "clear-stats": {
      const { devices, interfaces } = plane.counters();
      for (const c of [...devices, ...interfaces]) {
        if (m.patterns === null || matchesAny(m.patterns, c.name)) c.stats.fill(0);
      }
      post({ type: "reply", id: m.id, ok: true });
      return true;
    }
    case "stop":
      return false;
    case "start":
      return true;
  }
}

async function main(): Promise<void> {
  const [start] = await take(1);
  if (start.type !== "start") throw new Error("the first message must be 'start'");
  const wake = EventFd.adopt(start.wakeFd);
  let plane: DataPlane;
  try {
    plane = new DataPlane({
      config: start.config,
      log,
      wake,
      openState: (dir, name) =>
        openDeviceState(
          dir,
          name,
          (level, message) => log(level, `disk/${name}: ${message}`),
        ),
    });
    plane.start();
  } catch (e) {
    post({ type: "failed", message: (e as Error).message });
    return;
  }
  const c = plane.counters();
  post({ type: "started", devices: c.devices, interfaces: c.interfaces });

  let stop: Extract<ToWorker, { type: "stop" }> | null = null;
  while (stop === null) {
    plane.runOnce(IDLE_WAIT_MS);
    if (!plane.woken) continue;
    const n = wake.drain();
    for (const m of await take(n)) {
      if (!handle(plane, m)) stop = m as Extract<ToWorker, { type: "stop" }>;
    }
  }

  // Shutdown: take no new requests; let what is in flight finish and be answered (bounded).
  plane.stopAccepting();
  const deadline = performance.now() + stop.graceMs;
  while (plane.busy && performance.now() < deadline) plane.runOnce(5);
  const left = plane.inFlight;
  plane.close();
  post({ type: "reply", id: stop.id, ok: true });
  post({ type: "stopped", inFlight: left });
  self.close();
}

main().catch((e) => {
  post({ type: "failed", message: `data path crashed: ${(e as Error).stack ?? e}` });
});
