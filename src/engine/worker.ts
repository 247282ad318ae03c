/// <reference lib="deno.worker" />
/**
 * The data-path worker: owns the {@link DataPlane} and loops over epoll_wait. Commands from the
 * main thread arrive as messages announced through a wake eventfd (see `messages.ts` for why).
 *
 * @module
 */

import { EventFd } from "../../ffi/mod.ts";
import { matchesAny } from "../config/glob.ts";
import { DataPlane, type LogFn } from "./dataplane.ts";
import { TUNING } from "./tuning.ts";
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

/**
 * A reload whose answer waits for the storage it has the main thread open (RBD images; the loop
 * keeps serving meanwhile).
 */
let reloading: { id: number; problems: string[] } | null = null;

/** Answers the reload once no open by the main thread is pending. */
function answerReload(plane: DataPlane): void {
  if (reloading === null || plane.opening) return;
  const problems = [...reloading.problems, ...plane.takeOpenProblems()];
  post(counters(plane));
  post({
    type: "reply",
    id: reloading.id,
    ok: problems.length === 0,
    message: problems.join("; "),
  });
  reloading = null;
}

/** Handles one command; returns false when the worker should stop. */
function handle(plane: DataPlane, m: ToWorker): boolean {
  switch (m.type) {
    case "reload": {
      plane.takeOpenProblems();
      reloading = { id: m.id, problems: plane.reload(m.config, m.states, m.others) };
      answerReload(plane);
      return true;
    }
    case "storage-opened":
      plane.storageOpened(m);
      post(counters(plane));
      answerReload(plane);
      return true;
    case "shared-state":
      plane.sharedStateChanged(m);
      return true;
    case "storage-size":
      plane.storageSizeChanged(m);
      return true;
    case "storage-fence":
      plane.storageFence(m);
      return true;
    case "view-ready":
      plane.viewReady(m);
      return true;
    case "view-drop":
      plane.dropView(m.device, m.mac, (open) => {
        post({ type: "reply", id: m.id, ok: true, data: { open } });
      });
      return true;
    case "views":
      post({ type: "reply", id: m.id, ok: true, data: plane.viewHosts() });
      return true;
    case "persisted":
      plane.persisted(m);
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
    case "clear":
      // The writes are posted before this reply: the main thread waits for their outcome.
      post({ type: "reply", id: m.id, ok: true, data: plane.clearState(m.what, m.names) });
      return true;
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
      states: start.states,
      persist: post,
      lend: post,
      filterAddresses: start.multi || TUNING.addressFilter,
      // One worker is the catch-all (docs/workers.md); GGAOED_ADDRESS_FILTER alone measures
      // the filter of the others.
      catchAll: start.multi ? start.others !== null : !TUNING.addressFilter,
      others: start.others ?? [],
    });
    plane.start(start.multi);
  } catch (e) {
    post({ type: "failed", message: (e as Error).message });
    return;
  }

  let started = false;
  let stop: Extract<ToWorker, { type: "stop" }> | null = null;
  while (stop === null) {
    // Started once the main thread's opens of the configuration are done (or failed); the devices
    // opened already serve meanwhile.
    if (!started && !plane.opening) {
      started = true;
      if (plane.devices.length === 0 && !start.multi) {
        plane.close();
        post({
          type: "failed",
          message: "no valid devices: every device failed to open (see the errors above)",
        });
        return;
      }
      const c = plane.counters();
      post({
        type: "started",
        devices: c.devices,
        interfaces: c.interfaces,
        failed: plane.failedDevices,
      });
    }
    plane.runOnce(IDLE_WAIT_MS);
    if (!plane.woken) continue;
    const n = wake.drain();
    for (const m of await take(n)) {
      let go = true;
      try {
        go = handle(plane, m);
      } catch (e) {
        // A command that fails must not take the data path with it.
        log("error", `command ${m.type} failed: ${(e as Error).stack ?? e}`);
        if ("id" in m) post({ type: "reply", id: m.id, ok: false, message: (e as Error).message });
      }
      if (!go) stop = m as Extract<ToWorker, { type: "stop" }>;
    }
    plane.flushPersist();
  }

  // Shutdown: take no new requests; let what is in flight finish and be answered (bounded).
  plane.stopAccepting();
  const deadline = performance.now() + stop.graceMs;
  while (plane.busy && performance.now() < deadline) {
    plane.runOnce(5);
    if (!plane.woken) continue;
    // Only the outcomes of state writes matter now: replies may wait for them.
    for (const m of await take(wake.drain())) {
      if (m.type === "persisted") plane.persisted(m);
      else if (m.type === "storage-opened") plane.storageOpened(m); // not wanted now: given back
      else if (
        m.type === "shared-state" || m.type === "storage-size" || m.type === "storage-fence" ||
        m.type === "view-ready"
      ) {
        continue;
      } else if ("id" in m) post({ type: "reply", id: m.id, ok: false, message: "stopping" });
    }
  }
  const left = plane.inFlight;
  plane.reportViews(); // the hosts' last contact, for reset-on-discover after the restart
  plane.close();
  post({ type: "reply", id: stop.id, ok: true });
  post({ type: "stopped", inFlight: left });
  self.close();
}

main().catch((e) => {
  post({ type: "failed", message: `data path crashed: ${(e as Error).stack ?? e}` });
});
