/**
 * What every part of the benchmark shares: the fixed settings (image size, window, the targets'
 * addresses), cleanup on exit or Ctrl-C, and small helpers (commands, CPU accounting, medians).
 *
 * @module
 */

import type { TargetName } from "./report.ts";

export const REPO = new URL("../", import.meta.url).pathname;
export const DENO = Deno.execPath();
export const IMAGE_BYTES = 64 * 1024 * 1024;
export const WINDOW = 32;
export const SHELF = 0;
export const SLOTS: Record<TargetName, number> = {
  ggaoed: 1,
  vblade: 2,
  echo: 3,
  "ggaoed-c": 4,
  "echo-ts": 5,
  "echo-frame": 6,
};

/**
 * The slot of device `i` (0-based) of `target` when each initiator of a many-initiator row has
 * its own device: the target's slot for the first, then 16 apart (at most 15 initiators).
 */
export const deviceSlot = (target: TargetName, i: number): number => SLOTS[target] + 16 * i;
/** The original C ggaoed's binary, from the environment (never built by this repository). */
export const GGAOED_C = Deno.env.get("GGAOED_C") || null;

// --- Cleanup ---------------------------------------------------------------------------------

export const cleanups: (() => void | Promise<void>)[] = [];
let cleaning: Promise<void> | null = null;
let interruptedFlag = false;

/** Whether Ctrl-C (or SIGTERM) has asked the bench to stop. */
export const interrupted = (): boolean => interruptedFlag;

/** On SIGINT and SIGTERM: stop measuring, clean up, exit 130. */
export function exitCleanlyOnSignals(): void {
  const onSignal = () => {
    if (interruptedFlag) return;
    interruptedFlag = true;
    console.log("\ninterrupted: cleaning up");
    cleanup().then(() => Deno.exit(130));
  };
  Deno.addSignalListener("SIGINT", onSignal);
  Deno.addSignalListener("SIGTERM", onSignal);
}

export function cleanup(): Promise<void> {
  cleaning ??= (async () => {
    while (cleanups.length) {
      try {
        await cleanups.pop()!();
      } catch (e) {
        console.error(`cleanup: ${e instanceof Error ? e.message : e}`);
      }
    }
  })();
  return cleaning;
}

// --- Small helpers ---------------------------------------------------------------------------

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export function command(cmd: string, ...args: string[]): { ok: boolean; out: string; err: string } {
  try {
    const o = new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).outputSync();
    const d = new TextDecoder();
    return { ok: o.success, out: d.decode(o.stdout).trim(), err: d.decode(o.stderr).trim() };
  } catch (e) {
    return { ok: false, out: "", err: e instanceof Error ? e.message : String(e) };
  }
}

export const CLK_TCK = Number(command("getconf", "CLK_TCK").out) || 100;

/** Busy CPU seconds of the whole machine (every core; /proc/stat minus idle and iowait). */
export function machineBusySeconds(): number {
  const line = Deno.readTextFileSync("/proc/stat").split("\n")[0];
  const v = line.trim().split(/\s+/).slice(1, 9).map(Number);
  const total = v.reduce((a, b) => a + b, 0);
  return (total - v[3] - v[4]) / CLK_TCK;
}

/**
 * Extra Deno flags for the daemon from GGAOED_DENO_FLAGS (space-separated), e.g.
 * `--v8-flags=--perf-basic-prof` so that `perf report` names its JIT-compiled functions.
 */
export function extraDenoFlags(): string[] {
  return (Deno.env.get("GGAOED_DENO_FLAGS") ?? "").split(" ").filter(Boolean);
}

/** Another process using more than this many cores during a run is reported in its note. */
export const BUSY_CORES = 0.25;
/** Measurements repeated at most this often when the machine was busy. */
export const BUSY_RETRIES = 2;

/** VmRSS of `pid` in KiB. */
export function rssKiB(pid: number): number {
  const m = Deno.readTextFileSync(`/proc/${pid}/status`).match(/^VmRSS:\s+(\d+)\s+kB/m);
  if (!m) throw new Error(`no VmRSS in /proc/${pid}/status`);
  return Number(m[1]);
}

export function message(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

export const median = <T>(xs: T[], key: (x: T) => number): T => {
  const s = [...xs].sort((a, b) => key(a) - key(b));
  return s[(s.length - 1) >> 1];
};

let seed = 1;

/** A fresh seed for each workload run, so that no two runs issue the same requests. */
export const nextSeed = (): number => seed++;
