/**
 * The bench's report formatting: the CPU named in every heading (bench/machine.ts reads it, report.ts
 * prints it), the ceiling as the better of the two echoes per row, p99 against vblade's, and the
 * many-initiator table's layouts and workers. Pure formatting: no timing.
 */

import { assert, assertEquals } from "../helpers/assert.ts";
import {
  ceiling,
  cpuHeading,
  type ManyRow,
  manyTable,
  type Row,
  table,
  type TargetName,
} from "../../bench/report.ts";
import { cpuFrom, vulnerabilities } from "../../bench/machine.ts";

const LSCPU = `Architecture:                            x86_64
Vendor ID:                               GenuineIntel
Model name:                              Intel(R) Xeon(R) Platinum 8488C
CPU family:                              6
Model:                                   143
Stepping:                                8
CPU(s):                                  2
CPU MHz:                                 2400.000
Vulnerability Meltdown:                  Not affected
`;

const CPUINFO = `processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 26
model\t\t: 2
model name\t: AMD EPYC
stepping\t: 1
cpu MHz\t\t: 2096.060

processor\t: 1
model name\t: something else
`;

Deno.test("bench CPU: lscpu's fields, /proc/cpuinfo when lscpu lacks them, every vulnerability", () => {
  const v = { meltdown: "Not affected", spectre_v2: "Mitigation: Retpolines; STIBP: disabled" };
  const c = cpuFrom(LSCPU, CPUINFO, v);
  assertEquals(c, {
    model: "Intel(R) Xeon(R) Platinum 8488C",
    vendor: "GenuineIntel",
    family: 6,
    modelNumber: 143,
    stepping: 8,
    mhz: 2400,
    vulnerabilities: v,
  });
  // No lscpu: the first processor of /proc/cpuinfo.
  const amd = cpuFrom("", CPUINFO, {});
  assertEquals(
    [amd.model, amd.vendor, amd.family, amd.modelNumber, amd.stepping, amd.mhz],
    ["AMD EPYC", "AuthenticAMD", 26, 2, 1, 2096.06],
  );
  // Neither: unknown model, the rest null.
  assertEquals(cpuFrom("", "", {}).model, "unknown");
  assertEquals(cpuFrom("", "", {}).mhz, null);

  const dir = Deno.makeTempDirSync();
  try {
    Deno.writeTextFileSync(`${dir}/spectre_v1`, "Mitigation: usercopy/swapgs barriers\n");
    Deno.writeTextFileSync(`${dir}/l1tf`, "Not affected\n");
    assertEquals(vulnerabilities(dir), {
      l1tf: "Not affected",
      spectre_v1: "Mitigation: usercopy/swapgs barriers",
    });
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
  assertEquals(vulnerabilities(`${dir}/gone`), {});
});

Deno.test("bench CPU heading: model, identification, cores, kernel, the mitigations in force", () => {
  const cpuInfo = cpuFrom(LSCPU, "", {
    meltdown: "Not affected",
    spectre_v2: "Mitigation: Enhanced IBRS",
  });
  assertEquals(
    cpuHeading({ cpu: cpuInfo.model, cpuInfo, cores: 2, kernel: "6.18.0" }),
    "CPU: Intel(R) Xeon(R) Platinum 8488C (GenuineIntel, family 6, model 143, stepping 8, " +
      "2400 MHz), 2 cores, Linux 6.18.0; mitigations: spectre_v2: Mitigation: Enhanced IBRS",
  );
  const none = cpuFrom("", CPUINFO, { meltdown: "Not affected" });
  assert(
    cpuHeading({ cpu: "AMD EPYC", cpuInfo: none }).endsWith(
      "; mitigations: none needed (not affected)",
    ),
  );
  assert(cpuHeading({ cpu: "AMD EPYC", cpuInfo: cpuFrom("", CPUINFO, {}) }).endsWith("unknown"));
  // A results file from before: the model name only.
  assertEquals(cpuHeading({ cpu: "AMD EPYC", kernel: "6.1" }), "CPU: AMD EPYC, Linux 6.1");
});

function row(target: TargetName, value: number | null, p99Ms: number, runs?: number[]): Row {
  return {
    series: "kinit",
    mtu: 1500,
    workload: "rand_read_4k",
    target,
    value,
    unit: "IOPS",
    p99Ms,
    ...(runs ? { runs } : {}),
  } as Row;
}

/** The cells of `table`'s line for `target` (first column MTU). */
function cells(text: string, label: string): Record<string, string> {
  const lines = text.split("\n");
  const head = lines[0].split("|").map((c) => c.trim());
  const line = lines.find((l) => l.split("|")[3]?.trim() === label);
  assert(line, `no line for ${label} in\n${text}`);
  const c = line.split("|").map((x) => x.trim());
  return Object.fromEntries(head.map((h, i) => [h, c[i]]));
}

Deno.test("bench table: × ceiling is the better echo of the row, p99 × vblade", () => {
  const rows = [
    { ...row("ggaoed", 300_000, 0.3), cpuCores: 0.9, initiatorCores: 0.8 },
    row("vblade", 400_000, 0.2),
    row("echo", 500_000, 0.1),
    row("echo-frame", 600_000, 0.15),
  ];
  let t = table(rows);
  assertEquals(cells(t, "ggaoed")["× ceiling"], "0.50", "300k over the frame-by-frame echo's 600k");
  assertEquals(cells(t, "ggaoed")["p99 × vblade"], "1.50");
  assertEquals(cells(t, "ggaoed")["× vblade"], "0.75");
  assertEquals(cells(t, "vblade")["× ceiling"], "0.67");
  assertEquals(cells(t, "vblade")["p99 × vblade"], "");
  assertEquals(cells(t, "echo")["× ceiling"], "", "the echoes are the ceiling");
  assertEquals(cells(t, "echo 1/turn")["× ceiling"], "");
  assertEquals(cells(t, "ggaoed")["busy cores"], "1.70", "the target's 0.9 + the initiator's 0.8");
  assertEquals(cells(t, "vblade")["busy cores"], "-", "no CPU figures");
  // The batched echo better: it is the ceiling.
  rows[3] = row("echo-frame", 250_000, 0.3);
  t = table(rows);
  assertEquals(cells(t, "ggaoed")["× ceiling"], "0.60");
  // Only one echo measured, or one failed: that one.
  t = table([row("ggaoed", 300_000, 0.3), row("echo-frame", 600_000, 0.1), row("echo", null, 0)]);
  assertEquals(cells(t, "ggaoed")["× ceiling"], "0.50");
  assertEquals(cells(t, "ggaoed")["p99 × vblade"], "-", "no vblade row");
});

Deno.test("bench ceiling with rounds: the better echo round by round", () => {
  const c = ceiling([{ value: 5, runs: [4, 5, 9] }, { value: 6, runs: [6, 3, 7] }]);
  assertEquals(c, { value: 6, runs: [6, 5, 9] });
  assertEquals(ceiling([{ value: 5, runs: [4, null] }, { value: null, runs: [null, 2] }]), {
    value: 5,
    runs: [4, 2],
  });
  assertEquals(ceiling([undefined, { value: 3 }]), { value: 3 });
  assertEquals(ceiling([undefined, undefined]), undefined);
});

function many(
  target: TargetName,
  layout: "devices" | "shared",
  value: number,
  p99Ms: number,
  workers: number | null = null,
): ManyRow {
  return {
    mtu: 9000,
    workload: "rand_read_4k",
    target,
    layout,
    workers,
    initiators: 4,
    window: 32,
    value,
    unit: "IOPS",
    requestsPerSec: value,
    perInitiator: [0.25, 0.25, 0.25, 0.25].map((s) => ({ value: value * s } as never)),
    fairness: 0.95,
    p50Ms: p99Ms / 2,
    p99Ms,
    retransmits: 3,
    errors: 0,
    targetUsPerRequest: 2,
    workerUsPerRequest: null,
    targetCores: 1,
    startSkewMs: 0,
    otherCores: 0,
    error: null,
  };
}

Deno.test("bench many table: layouts, workers, fairness, retransmits, ratios within a layout", () => {
  const t = manyTable([
    many("ggaoed", "devices", 400_000, 0.4, 1),
    many("ggaoed", "devices", 800_000, 0.2, 2),
    many("vblade", "devices", 500_000, 0.2),
    many("echo", "devices", 1_000_000, 0.1),
    many("ggaoed", "shared", 300_000, 0.3),
    many("vblade", "shared", 200_000, 0.6),
    many("echo-frame", "shared", 600_000, 0.1),
  ]);
  const lines = t.split("\n");
  const head = lines[0].split("|").map((c) => c.trim());
  const get = (i: number) =>
    Object.fromEntries(head.map((h, j) => [h, lines[i + 2].split("|").map((c) => c.trim())[j]]));
  const one = get(0), two = get(1), shared = get(4);
  assertEquals([one.initiators, one.workers, one.total], ["4 × 4 devices", "1", "400000 IOPS"]);
  assertEquals([one["min/max"], one.retx, one["per initiator"]], [
    "0.95",
    "3",
    "100k / 100k / 100k / 100k",
  ]);
  assertEquals([one["× vblade"], one["× ceiling"], one["p99 × vblade"]], ["0.80", "0.40", "2.00"]);
  assertEquals([two.workers, two["× vblade"], two["p99 × vblade"]], ["2", "1.60", "1.00"]);
  assertEquals(get(2).workers, "-", "workers is ggaoed's key");
  // The shared layout is compared with the shared rows only (its ceiling: the per-frame echo).
  assertEquals([shared.initiators, shared.workers], ["4 on 1 device", "-"]);
  assertEquals([shared["× vblade"], shared["× ceiling"], shared["p99 × vblade"]], [
    "1.50",
    "0.50",
    "0.50",
  ]);
  // Rows from before the layouts were all on one device.
  const old = many("ggaoed", "shared", 1, 1);
  delete old.layout;
  assert(manyTable([old]).includes("4 on 1 device"));
});
