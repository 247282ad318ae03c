/**
 * Summarises V8 CPU profiles (`deno run --cpu-prof`, e.g. from `deno task bench --profile DIR`):
 * self time per function, and inclusive time of the functions that matter most.
 *
 * ```sh
 * deno run --allow-read bench/profile.ts DIR/*.worker-1.cpuprofile [--top N]
 * ```
 *
 * @module
 */

interface Node {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

interface Profile {
  nodes: Node[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

function name(n: Node): string {
  const f = n.callFrame;
  const file = f.url.replace(/^.*\/(src|ffi|bench)\//, "$1/").replace(/^file:\/\//, "");
  return `${f.functionName || "(anonymous)"} ${file ? `${file}:${f.lineNumber + 1}` : ""}`.trim();
}

/** Self and inclusive milliseconds per function name, and the total. */
export function summarise(p: Profile): {
  totalMs: number;
  self: Map<string, number>;
  total: Map<string, number>;
} {
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const selfUs = new Map<number, number>();
  for (let i = 0; i < p.samples.length; i++) {
    const dt = p.timeDeltas[i + 1] ?? 0;
    selfUs.set(p.samples[i], (selfUs.get(p.samples[i]) ?? 0) + dt);
  }
  const self = new Map<string, number>();
  const total = new Map<string, number>();
  let totalMs = 0;
  for (const [id, us] of selfUs) {
    const ms = us / 1000;
    totalMs += ms;
    const n = byId.get(id)!;
    self.set(name(n), (self.get(name(n)) ?? 0) + ms);
    const seen = new Set<string>();
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const k = name(byId.get(cur)!);
      if (seen.has(k)) continue; // recursion: count once
      seen.add(k);
      total.set(k, (total.get(k) ?? 0) + ms);
    }
  }
  return { totalMs, self, total };
}

if (import.meta.main) {
  const files = Deno.args.filter((a) => !a.startsWith("--") && !/^\d+$/.test(a));
  const topAt = Deno.args.indexOf("--top");
  const top = topAt >= 0 ? Number(Deno.args[topAt + 1]) : 25;
  if (files.length === 0) {
    console.error("usage: profile.ts FILE.cpuprofile... [--top N]");
    Deno.exit(2);
  }
  for (const file of files) {
    const s = summarise(JSON.parse(Deno.readTextFileSync(file)));
    const pct = (ms: number) => `${(ms / s.totalMs * 100).toFixed(1).padStart(5)} %`;
    console.log(`\n${file}: ${(s.totalMs / 1000).toFixed(2)} s sampled`);
    console.log("  self time:");
    for (const [k, ms] of [...s.self].sort((a, b) => b[1] - a[1]).slice(0, top)) {
      console.log(`  ${pct(ms)}  ${k}`);
    }
    console.log("  inclusive time:");
    for (const [k, ms] of [...s.total].sort((a, b) => b[1] - a[1]).slice(0, top)) {
      console.log(`  ${pct(ms)}  ${k}`);
    }
  }
}
