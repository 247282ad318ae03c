/**
 * Which costs less per reply: the TPACKET_V2 TX ring the daemon uses, or sendmmsg? Sends frames
 * of the reply sizes of the benchmark's rows over a veth pair both ways (bench/txmode.c, built
 * with gcc), interleaved rounds, and prints the sender's CPU time per frame (medians).
 *
 *     sudo npx deno task bench-txmode [--rounds N] [--frames N] [--json FILE]
 *
 * @module
 */

import { parseArgs } from "node:util";
import { withNetLab } from "../lab/netns.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    rounds: { type: "string", default: "3" },
    frames: { type: "string", default: "200000" },
    json: { type: "string" },
    help: { type: "boolean", short: "h" },
  },
});
if (values.help) {
  console.log(
    "Usage: deno task bench-txmode [--rounds N] [--frames N] [--json FILE]\n\n" +
      "The sender's CPU time per reply frame with a TPACKET_V2 TX ring (one kick per 32 frames)\n" +
      "and with sendmmsg (32 per call), over a veth pair at the benchmark's reply sizes. Needs\n" +
      "root and gcc.",
  );
  Deno.exit(0);
}
const rounds = Number(values.rounds);
const frames = Number(values.frames);

const here = new URL(".", import.meta.url).pathname;
const binDir = `${here}../.cache/bench`;
Deno.mkdirSync(binDir, { recursive: true });
const bin = `${binDir}/txmode`;
const cc = await new Deno.Command("gcc", {
  args: ["-O2", "-Wall", "-Wextra", "-o", bin, `${here}txmode.c`],
}).output();
if (!cc.success) throw new Error(new TextDecoder().decode(cc.stderr));

/** Reply sizes: a 1 KiB read at MTU 1500, a 4 KiB read, a 17-sector read at MTU 9000. */
const SIZES = [36 + 1024, 36 + 4096, 36 + 8704];
const results: { mode: string; size: number; cpuUsPerFrame: number[] }[] = [];

await withNetLab(async (lab) => {
  const ns = await lab.namespace();
  const [here, there] = await lab.hostVethPair(ns, { mtu: 9000 });
  for (let round = 0; round < rounds; round++) {
    for (const size of SIZES) {
      for (const mode of ["ring", "mmsg"]) {
        const receiver = lab.spawn(ns, [bin, "recv", there]);
        await new Promise((r) => setTimeout(r, 200));
        const out = await new Deno.Command(bin, {
          args: ["send", mode, here, String(frames), String(size)],
          stdout: "piped",
        }).output();
        await receiver.status;
        const r = JSON.parse(new TextDecoder().decode(out.stdout));
        let row = results.find((x) => x.mode === r.mode && x.size === size);
        if (!row) results.push(row = { mode: r.mode, size, cpuUsPerFrame: [] });
        row.cpuUsPerFrame.push(r.cpuUsPerFrame);
      }
    }
  }
});

const median = (v: number[]) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)];
console.log("| reply bytes | TX ring µs/frame | sendmmsg µs/frame | sendmmsg ÷ ring |");
console.log("| ----------: | ---------------: | ----------------: | --------------: |");
for (const size of SIZES) {
  const ring = median(results.find((r) => r.mode === "ring" && r.size === size)!.cpuUsPerFrame);
  const mmsg = median(
    results.find((r) => r.mode === "sendmmsg" && r.size === size)!.cpuUsPerFrame,
  );
  console.log(
    `| ${size} | ${ring.toFixed(2)} | ${mmsg.toFixed(2)} | ${(mmsg / ring).toFixed(2)} |`,
  );
}
if (values.json) {
  Deno.writeTextFileSync(values.json, JSON.stringify({ rounds, frames, results }, null, 2) + "\n");
}
