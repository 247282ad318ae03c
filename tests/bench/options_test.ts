/**
 * The benchmark's command line (bench/options.ts): defaults, flags with and without values,
 * the modes that change other defaults unless those were given, and errors that name the flag.
 */

import { assertEquals, assertThrows } from "../helpers/assert.ts";
import { parseArgs } from "../../bench/options.ts";

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
