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
    notifier.startWatchdog(() => answer ? Promise.resolve() : new Promise(() => {}));
    await sd.next((m) => m.fields.WATCHDOG === "1", 2000);
    answer = false;
    await new Promise((r) => setTimeout(r, 120)); // a probe that never answers is now pending
    const count = sd.messages.length;
    await new Promise((r) => setTimeout(r, 400));
    assertEquals(sd.messages.length, count, "no keep-alive while the probe hangs");
  } finally {
    notifier.close();
    sd.close();
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("MONOTONIC_USEC is CLOCK_MONOTONIC in microseconds", async () => {
  const a = monotonicMicroseconds();
  const t0 = performance.now();
  await new Promise((r) => setTimeout(r, 50));
  const b = monotonicMicroseconds();
  const elapsedUs = (performance.now() - t0) * 1000;
  assert(a > 0n && b > a);
  assert(Math.abs(Number(b - a) - elapsedUs) < 5000, `${b - a} µs against ${elapsedUs}`);
  // /proc/uptime is CLOCK_BOOTTIME, equal to CLOCK_MONOTONIC on a machine that never slept:
  // at least check the order of magnitude (seconds since boot).
  const uptime = Number(Deno.readTextFileSync("/proc/uptime").split(" ")[0]);
  assert(Number(a) / 1e6 <= uptime + 1, `${a} µs is more than the uptime ${uptime} s`);
});
