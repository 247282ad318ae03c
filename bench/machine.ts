/**
 * The machine a bench ran on, as every results file records it: the CPU (`lscpu`: model name,
 * vendor, family/model/stepping, MHz when known), its speculative-execution mitigations (every
 * file of /sys/devices/system/cpu/vulnerabilities, name: content) and the kernel release. The
 * same figures differ between CPUs (the cost of a system call above all), so a table without its
 * CPU cannot be compared with another.
 *
 * @module
 */

import { command } from "./common.ts";
import type { CpuInfo } from "./report.ts";

const VULNERABILITIES = "/sys/devices/system/cpu/vulnerabilities";

/** `Key: value` lines of `lscpu` (or of /proc/cpuinfo's first processor) as a map. */
export function parseFields(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of text.split("\n")) {
    if (line.trim() === "" && out.size) break; // /proc/cpuinfo: the first processor only
    const i = line.indexOf(":");
    if (i <= 0) continue;
    const key = line.slice(0, i).trim().toLowerCase();
    if (!out.has(key)) out.set(key, line.slice(i + 1).trim());
  }
  return out;
}

/**
 * The CPU from `lscpu` and `/proc/cpuinfo` texts (either may be empty) and the vulnerabilities
 * directory's files; fields neither names are null.
 */
export function cpuFrom(
  lscpu: string,
  cpuinfo: string,
  vulnerabilities: Record<string, string>,
): CpuInfo {
  const l = parseFields(lscpu);
  const c = parseFields(cpuinfo);
  const num = (...vs: (string | undefined)[]) => {
    for (const v of vs) {
      const n = v === undefined ? NaN : Number(v.replace(",", "."));
      if (v !== undefined && v !== "" && Number.isFinite(n)) return n;
    }
    return null;
  };
  return {
    model: l.get("model name") ?? c.get("model name") ?? "unknown",
    vendor: l.get("vendor id") ?? c.get("vendor_id") ?? null,
    family: num(l.get("cpu family"), c.get("cpu family")),
    modelNumber: num(l.get("model"), c.get("model")),
    stepping: num(l.get("stepping"), c.get("stepping")),
    mhz: num(l.get("cpu mhz"), c.get("cpu mhz"), l.get("cpu max mhz")),
    vulnerabilities,
  };
}

function readText(path: string): string {
  try {
    return Deno.readTextFileSync(path);
  } catch {
    return "";
  }
}

/** Every file of /sys/devices/system/cpu/vulnerabilities, name: content (sorted by name). */
export function vulnerabilities(dir = VULNERABILITIES): Record<string, string> {
  const names: string[] = [];
  try {
    for (const e of Deno.readDirSync(dir)) if (e.isFile) names.push(e.name);
  } catch {
    return {};
  }
  names.sort();
  return Object.fromEntries(names.map((n) => [n, readText(`${dir}/${n}`).trim()]));
}

/** This machine's CPU. */
export function cpuInfo(): CpuInfo {
  const lscpu = command("lscpu");
  return cpuFrom(lscpu.ok ? lscpu.out : "", readText("/proc/cpuinfo"), vulnerabilities());
}
