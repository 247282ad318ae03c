/**
 * `--memory`: 10^5 then 10^6 4 KiB reads at ggaoed with the ring initiator, and its VmRSS after
 * each: memory must not grow with the number of requests served.
 *
 * @module
 */

import { Initiator } from "../src/initiator/mod.ts";
import { interrupted, message, nextSeed, rssKiB, sleep, WINDOW } from "./common.ts";
import {
  discover,
  type Instance,
  type Lab,
  makeLink,
  type Setup,
  startInstance,
  stopInstance,
} from "./targets.ts";

export interface MemoryResult {
  mtu: number;
  ioBytes: number;
  requestsPerIo: number;
  points: { requests: number; vmRssKiB: number; seconds: number; iops: number }[];
  growthPercent: number | null;
  retransmits: number;
  errors: number;
  error: string | null;
}

export async function memoryCheck(lab: Lab, setup: Setup): Promise<MemoryResult> {
  const res: MemoryResult = {
    mtu: lab.mtu,
    ioBytes: 4096,
    requestsPerIo: 1,
    points: [],
    growthPercent: null,
    retransmits: 0,
    errors: 0,
    error: null,
  };
  let inst: Instance | null = null;
  let ini: Initiator | null = null;
  try {
    inst = await startInstance(lab, setup, "ggaoed", false, [await makeLink(lab)]);
    ini = Initiator.open(inst.links[0].host, {
      window: WINDOW,
      congestionControl: false,
      retries: 5,
      ringBytes: 8 * 1024 * 1024,
    });
    const target = await discover(ini, inst);
    const per = ini.maxSectors(target);
    res.requestsPerIo = Math.ceil(8 / per);
    const marks = [Math.round(setup.opts.memoryRequests / 10), setup.opts.memoryRequests];
    let done = 0;
    for (const mark of marks) {
      if (interrupted()) break;
      await sleep(0);
      const ios = Math.ceil((mark - done) / res.requestsPerIo);
      const r = ini.runWorkload({
        target,
        kind: "rand-read",
        ioBytes: 4096,
        window: WINDOW,
        totalBytes: ios * 4096,
        regionSectors: setup.sectors,
        seed: nextSeed(),
      });
      done += r.ios * res.requestsPerIo;
      res.retransmits += r.retransmits;
      res.errors += r.errors;
      const rss = rssKiB(inst.procs[0].pid);
      res.points.push({ requests: done, vmRssKiB: rss, seconds: r.seconds, iops: r.iops });
      console.log(
        `  after ${done} requests: VmRSS ${(rss / 1024).toFixed(1)} MiB ` +
          `(${Math.round(r.iops)} IOPS, ${r.retransmits} retransmits, ${r.errors} errors)`,
      );
    }
    if (res.points.length === 2) {
      res.growthPercent = (res.points[1].vmRssKiB / res.points[0].vmRssKiB - 1) * 100;
    }
  } catch (e) {
    res.error = message(e);
    console.log(`  memory check failed: ${res.error}`);
  } finally {
    ini?.close();
    if (inst) await stopInstance(inst);
  }
  return res;
}
