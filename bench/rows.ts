/**
 * The main table of one MTU: every workload, initiator and target, `--repeat` rounds
 * interleaved, the median round per cell; then kinit's verifying workload (`--verify`).
 *
 * @module
 */

import { ECHOES, type Row, type TargetName } from "./report.ts";
import { KinitRun } from "./kernel.ts";
import {
  command,
  interrupted,
  median,
  message,
  nextSeed,
  SHELF,
  sleep,
  SLOTS,
  WINDOW,
} from "./common.ts";
import { emptyRow, isWrite, type Measure, measure, printRow } from "./measure.ts";
import {
  DEFAULT_VARIANT,
  type Instance,
  type Lab,
  type Link,
  makeLink,
  type Setup,
  startInstance,
  stopInstance,
} from "./targets.ts";

/**
 * The targets of one MTU's main table: started once each (each on its own link) and kept up,
 * except ggaoed under --profile, which starts once per row so that each row has its own profile.
 */
class Targets {
  readonly #lab: Lab;
  readonly #setup: Setup;
  readonly #instances = new Map<string, Instance | Error>();
  readonly #links = new Map<string, Link>();

  constructor(lab: Lab, setup: Setup) {
    this.#lab = lab;
    this.#setup = setup;
  }

  /** The running target `t` (started on first use; a failed start fails every later use). */
  async get(t: TargetName, direct: boolean): Promise<Instance> {
    const key = `${t}-${direct}`;
    const have = this.#instances.get(key);
    if (have instanceof Error) throw have;
    if (have) return have;
    try {
      const link = await makeLink(this.#lab);
      const inst = await startInstance(this.#lab, this.#setup, t, direct, [link]);
      this.#instances.set(key, inst);
      return inst;
    } catch (e) {
      const err = new Error(`start: ${message(e)}`);
      this.#instances.set(key, err);
      throw err;
    }
  }

  /** ggaoed under --profile: a fresh start for the row `tag`, on the same link each time. */
  async profiled(t: TargetName, direct: boolean, tag: string): Promise<Instance> {
    const key = `${t}-${direct}`;
    let link = this.#links.get(key);
    if (!link) {
      link = await makeLink(this.#lab);
      this.#links.set(key, link);
    }
    const dir = `${this.#setup.opts.profile}/${tag}`;
    return await startInstance(this.#lab, this.#setup, t, direct, [link], DEFAULT_VARIANT, dir);
  }

  async stopAll(): Promise<void> {
    for (const inst of this.#instances.values()) {
      if (!(inst instanceof Error)) await stopInstance(inst);
    }
  }
}

/**
 * Every row of one MTU, `opts.repeat` rounds: per round, per workload, per initiator, per target;
 * then --verify.
 */
export async function mainRows(
  lab: Lab,
  setup: Setup,
): Promise<{ rows: Row[]; verify: VerifyResult[] }> {
  const o = setup.opts;
  const targets = new Targets(lab, setup);
  const all: Row[][] = [];
  try {
    for (let round = 1; round <= o.repeat && !interrupted(); round++) {
      if (o.repeat > 1) console.log(`  round ${round} of ${o.repeat}`);
      all.push(await oneRound(lab, setup, targets, round));
    }
    const verify: VerifyResult[] = [];
    if (o.verify && !interrupted()) {
      for (const t of o.only) {
        if (ECHOES.includes(t) || t === "echo-ts") continue;
        try {
          verify.push(await verifyTarget(await targets.get(t, false), setup, lab.mtu));
        } catch (e) {
          verify.push({ mtu: lab.mtu, target: t, error: message(e) } as VerifyResult);
        }
        printVerify(verify[verify.length - 1]);
      }
    }
    return { rows: medianRows(all), verify };
  } finally {
    await targets.stopAll();
  }
}

/** One round: per workload, per initiator, per target, one measurement each. */
async function oneRound(lab: Lab, setup: Setup, targets: Targets, round: number): Promise<Row[]> {
  const o = setup.opts;
  const rows: Row[] = [];
  for (const w of o.workloads) {
    const direct = w === "seq_write_direct";
    for (const series of o.series) {
      for (const t of o.only) {
        if (interrupted()) break;
        if (direct && (ECHOES.includes(t) || t === "echo-ts")) continue;
        await sleep(0); // let a pending Ctrl-C run
        const tag = `mtu${lab.mtu}-${w}-${series}-${t}${o.repeat > 1 ? `-r${round}` : ""}`;
        const m: Measure = { setup, mtu: lab.mtu, workload: w, tag };
        let row: Row;
        const profiled = o.profile !== null && t === "ggaoed";
        let inst: Instance | null = null;
        try {
          inst = profiled ? await targets.profiled(t, direct, tag) : await targets.get(t, direct);
          row = await measure(series, inst, m);
        } catch (e) {
          row = emptyRow(series, lab.mtu, w, t, message(e));
        } finally {
          if (profiled && inst) await stopInstance(inst);
        }
        if (isWrite(w)) command("sync");
        printRow(row);
        rows.push(row);
      }
    }
  }
  return rows;
}

/** Per cell (series, workload, target), the median round's row, with every round's value. */
function medianRows(rounds: Row[][]): Row[] {
  if (rounds.length === 1) return rounds[0];
  const out: Row[] = [];
  for (const r of rounds[0]) {
    const same = rounds.map((rs) =>
      rs.find((x) => x.series === r.series && x.workload === r.workload && x.target === r.target)
    ).filter((x): x is Row => x !== undefined);
    const ok = same.filter((x) => x.value !== null);
    const pick = ok.length ? median(ok, (x) => x.value!) : same[0];
    out.push({ ...pick, runs: same.map((x) => x.value) });
  }
  return out;
}

// --- Verify ------------------------------------------------------------------------------------

export interface VerifyResult {
  mtu: number;
  target: TargetName;
  requests: number;
  checkedReads: number;
  mismatches: number;
  errors: number;
  retransmits: number;
  error: string | null;
}

async function verifyTarget(inst: Instance, setup: Setup, mtu: number): Promise<VerifyResult> {
  const secs = Math.min(2, setup.opts.seconds);
  const run = new KinitRun(setup.tools.kinit, [
    "-i",
    inst.links[0].host,
    "--shelf",
    String(SHELF),
    "--slot",
    String(SLOTS[inst.target]),
    "--workload",
    "verify",
    "--window",
    String(WINDOW),
    "--seconds",
    String(secs),
    "--warmup",
    "0.5",
    "--seed",
    String(nextSeed()),
    "--discover-ms",
    "10000",
  ], secs * 1000 + 60_000);
  const r = await run.result;
  command("sync");
  return {
    mtu,
    target: inst.target,
    requests: r.requests,
    checkedReads: r.verify?.checkedReads ?? 0,
    mismatches: r.verify?.mismatches ?? 0,
    errors: r.errors,
    retransmits: r.retransmits,
    error: r.firstError,
  };
}

function printVerify(v: VerifyResult): void {
  console.log(
    v.requests === undefined
      ? `  MTU ${v.mtu}  verify ${v.target}: FAILED ${v.error}`
      : `  MTU ${v.mtu}  verify ${v.target.padEnd(8)} ${v.checkedReads} reads checked, ` +
        `${v.mismatches} mismatches, ${v.errors} errors, ${v.retransmits} retransmits` +
        (v.error ? ` (${v.error})` : ""),
  );
}
