import { assert, assertEquals, assertThrows } from "../helpers/assert.ts";
import { FakeNotifySocket } from "../helpers/notify.ts";
import { monotonicMicroseconds, NotifySocket } from "../../ffi/mod.ts";
import { ServiceNotifier } from "../../src/service.ts";

const env = (vars: Record<string, string>) => ({ get: (k: string) => vars[k] });

Deno.test("a notification reaches a socket in the abstract namespace (@name) as one datagram", async () => {
  const name = `@ggaoed-test-${Deno.pid}-${Math.random().toString(36).slice(2)}`;
  const sd = FakeNotifySocket.bind(name);
  try {
    NotifySocket.fromEnvironment(env({ NOTIFY_SOCKET: name }))!.send("READY=1\nSTATUS=ok");
    const m = await sd.next(() => true, 2000);
    assertEquals(m.text, "READY=1\nSTATUS=ok");
  } finally {
    sd.close();
  }
});

Deno.test("NOTIFY_SOCKET unset or empty means no service manager; a relative one is refused", () => {
  assertEquals(NotifySocket.fromEnvironment(env({})), null);
  assertEquals(NotifySocket.fromEnvironment(env({ NOTIFY_SOCKET: "" })), null);
  assertThrows(() => new NotifySocket("run/notify"), RangeError, "absolute path or an @abstract");
  assertThrows(() => new NotifySocket("vsock:2:1234"), RangeError);
  const warnings: string[] = [];
  const notifier = ServiceNotifier.fromEnvironment(
    (w) => warnings.push(w),
    env({
      NOTIFY_SOCKET: "relative",
    }),
  );
  assertEquals(notifier.active, false);
  assertEquals(warnings.length, 1);
});

Deno.test("the watchdog applies when WATCHDOG_PID is unset or ours, at half WATCHDOG_USEC", () => {
  const interval = (vars: Record<string, string>) =>
    ServiceNotifier.fromEnvironment(() => {}, env({ NOTIFY_SOCKET: "/run/x", ...vars }))
      .watchdogIntervalMs;
  assertEquals(interval({ WATCHDOG_USEC: "30000000" }), 15000);
  assertEquals(interval({ WATCHDOG_USEC: "30000000", WATCHDOG_PID: String(Deno.pid) }), 15000);
  assertEquals(interval({ WATCHDOG_USEC: "30000000", WATCHDOG_PID: "1" }), null);
  assertEquals(interval({}), null);
  assertEquals(interval({ WATCHDOG_USEC: "soon" }), null);
  // Without a notification socket there is nobody to ping.
  assertEquals(
    ServiceNotifier.fromEnvironment(() => {}, env({ WATCHDOG_USEC: "1000" })).watchdogIntervalMs,
    null,
  );
});

/** Polls `ok` every 10 ms until it holds; fails after `ms`. */
async function waitFor(ok: () => boolean, what: string, ms = 10_000): Promise<void> {
  const deadline = performance.now() + ms;
  while (!ok()) {
    if (performance.now() > deadline) throw new Error(`not within ${ms} ms: ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Resolves once a `periodMs` interval timer has fired `n` times. */
function timerTurns(n: number, periodMs: number): Promise<void> {
  return new Promise((resolve) => {
    let turns = 0;
    const timer = setInterval(() => {
      if (++turns < n) return;
      clearInterval(timer);
      resolve();
    }, periodMs);
  });
}

Deno.test("a hung data path stops the keep-alives: WATCHDOG=1 only after the probe answers", async () => {
  const dir = Deno.makeTempDirSync();
  const sd = FakeNotifySocket.bind(`${dir}/notify`);
  const notifier = ServiceNotifier.fromEnvironment(
    () => {},
    env({
      NOTIFY_SOCKET: sd.address,
      WATCHDOG_USEC: "100000",
    }),
  );
  try {
    let answer = true;
    let hung = 0;
    let release = () => {};
    notifier.startWatchdog(() => {
      if (answer) return Promise.resolve();
      hung++;
      return new Promise<void>((r) => release = r);
    });
    await sd.next((m) => m.fields.WATCHDOG === "1", 2000);
    answer = false;
    await waitFor(() => hung === 1, "the watchdog probes the hung data path");
    const count = sd.received();
    // Eight more turns of the watchdog's 50 ms timer (counted on a timer of the same period, so
    // a stalled event loop cannot make this pass without the watchdog's timer having run).
    await timerTurns(8, 50);
    assertEquals(hung, 1, "a probe is not sent again while one is pending");
    assertEquals(sd.received(), count, "no keep-alive while the probe hangs");
    // The data path answers: the keep-alive follows.
    release();
    await sd.next((m) => m.fields.WATCHDOG === "1", 2000);
  } finally {
    notifier.close();
    sd.close();
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("MONOTONIC_USEC is CLOCK_MONOTONIC in microseconds", async () => {
  // Each reading bracketed by performance.now() (monotonic too): however long a busy machine
  // keeps this thread off the CPU between two calls, the interval lies between the brackets.
  const before0 = performance.now();
  const a = monotonicMicroseconds();
  const after0 = performance.now();
  await new Promise((r) => setTimeout(r, 50));
  const before1 = performance.now();
  const b = monotonicMicroseconds();
  const after1 = performance.now();
  assert(a > 0n && b > a);
  const us = Number(b - a), slackUs = 1000; // performance.now() may be coarsened to 1 ms
  const [shortest, longest] = [(before1 - after0) * 1000, (after1 - before0) * 1000];
  assert(
    us >= shortest - slackUs && us <= longest + slackUs,
    `${us} µs, not within ${shortest}..${longest}`,
  );
  // /proc/uptime is CLOCK_BOOTTIME, equal to CLOCK_MONOTONIC on a machine that never slept:
  // at least check the order of magnitude (seconds since boot).
  const uptime = Number(Deno.readTextFileSync("/proc/uptime").split(" ")[0]);
  assert(Number(a) / 1e6 <= uptime + 1, `${a} µs is more than the uptime ${uptime} s`);
});
