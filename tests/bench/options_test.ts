/**
 * The benchmark's command line (bench/options.ts): defaults, flags with and without values,
 * the modes that change other defaults unless those were given, and errors that name the flag.
 */

import { assertEquals, assertThrows } from "../helpers/assert.ts";
import { DAEMON_HAS_WORKERS, parseArgs, workerCounts } from "../../bench/options.ts";

Deno.test("bench options: defaults, and flags with values", () => {
  const d = parseArgs([]);
  assertEquals([d.mtus, d.seconds, d.warmup, d.repeat, d.many, d.manyCount, d.write], [
    [1500, 9000],
    2.5,
    0.5,
    1,
    ["rand_read_4k"],
    4,
    true,
  ]);
  const o = parseArgs([
    "--mtu",
    "9000",
    "--seconds",
    "2",
    "--only",
    "ggaoed,echo",
    "--workloads",
    "rand_read_4k, seq_write",
    "--initiator",
    "kinit",
    "--many",
    "none",
    "--memory-requests",
    "1000",
    "--no-write",
  ]);
  assertEquals(o.mtus, [9000]);
  assertEquals(o.seconds, 2);
  assertEquals(o.only, ["ggaoed", "echo"]);
  assertEquals(o.workloads, ["rand_read_4k", "seq_write"]);
  assertEquals(o.series, ["kinit"]);
  assertEquals(o.many, []);
  assertEquals([o.memory, o.memoryRequests, o.write], [true, 1000, false]);
});

Deno.test("bench options: --quick and --mechanisms change the defaults of what was not given", () => {
  assertEquals(parseArgs(["--quick"]).seconds, 1);
  assertEquals(parseArgs(["--seconds", "3", "--quick"]).seconds, 3);
  const m = parseArgs(["--mechanisms"]);
  assertEquals([m.mtus, m.seconds, m.warmup, m.repeat, m.series, m.name], [
    [9000],
    2,
    0.3,
    3,
    ["kinit"],
    "mechanisms",
  ]);
  const given = parseArgs(["--variants", "merge-off", "--repeat", "5", "--mtu", "1500"]);
  assertEquals([given.mechanisms, given.variants, given.repeat, given.mtus], [
    true,
    ["merge-off"],
    5,
    [1500],
  ]);
});

Deno.test("bench options: bad values are errors naming the flag or the value", () => {
  assertThrows(() => parseArgs(["--bogus"]), Error, "unknown option --bogus (see --help)");
  assertThrows(() => parseArgs(["--seconds"]), Error, "--seconds needs a positive number");
  assertThrows(() => parseArgs(["--warmup", "-1"]), Error, "--warmup needs a number >= 0");
  assertThrows(() => parseArgs(["--only", "foo"]), Error, "unknown target foo");
  assertThrows(() => parseArgs(["--mtu", "80"]), Error, "bad MTU 80");
  assertThrows(() => parseArgs(["--variants", "nope"]), Error, "unknown variant nope");
  assertThrows(
    () => parseArgs(["--syscalls", "--perf-record", "/tmp/x"]),
    Error,
    "--syscalls and --perf-record each attach perf",
  );
});

Deno.test("bench options: both echoes by default, the many-initiator layouts and their bounds", () => {
  const d = parseArgs([]);
  assertEquals(d.only.filter((t) => t.startsWith("echo")), ["echo", "echo-frame"]);
  assertEquals([d.manyLayouts, d.workers], [["devices", "shared"], [null]]);
  const o = parseArgs(["--many-layout", "shared", "--initiators", "15", "--only", "echo-frame"]);
  assertEquals([o.manyLayouts, o.manyCount, o.only], [["shared"], 15, ["echo-frame"]]);
  assertThrows(() => parseArgs(["--many-layout", "mesh"]), Error, "unknown layout mesh");
  assertThrows(() => parseArgs(["--initiators", "16"]), Error, "--initiators: at most 15");
});

Deno.test("bench options: --workers, with and without the daemon's workers key", () => {
  // A daemon with the key: each value written as workers = N, duplicates once.
  assertEquals(workerCounts(["1", "2", "2", "4"], "--workers", true), [1, 2, 4]);
  // Without it there is one data-path worker: 1 is measured without the key, more is refused.
  assertEquals(workerCounts(["1"], "--workers", false), [null]);
  assertThrows(
    () => workerCounts(["1", "2"], "--workers", false),
    Error,
    '--workers 2: this ggaoed has no "workers" key (one data-path worker only)',
  );
  for (const bad of ["0", "1.5", "x", "-2"]) {
    assertThrows(() => workerCounts([bad], "--workers", true), Error, `${bad} is not a number`);
  }
  assertThrows(() => parseArgs(["--workers"]), Error, "--workers needs a value");
  // This checkout's daemon, through the command line.
  assertEquals(parseArgs(["--workers", "1"]).workers, DAEMON_HAS_WORKERS ? [1] : [null]);
  if (DAEMON_HAS_WORKERS) assertEquals(parseArgs(["--workers", "1,2"]).workers, [1, 2]);
  else assertThrows(() => parseArgs(["--workers", "1,2"]), Error, 'no "workers" key');
});
