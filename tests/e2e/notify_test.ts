/**
 * systemd readiness (sd_notify) end to end: the real daemon, started with `NOTIFY_SOCKET` and
 * `WATCHDOG_USEC` as systemd sets them for a `Type=notify` unit, talks to a stand-in notification
 * socket; signals are real.
 */

import { assert, assertEquals } from "../helpers/assert.ts";
import { FakeNotifySocket } from "../helpers/notify.ts";
import { monotonicMicroseconds } from "../../ffi/mod.ts";
import { ControlClient } from "../../src/control/client.ts";
import { testWorkersStatus, withTarget } from "../../lab/target.ts";

const opts = { sanitizeResources: false, sanitizeOps: false };
const WATCHDOG_USEC = 2_000_000;

Deno.test({
  ...opts,
  name: "READY=1 comes once discovery and the control socket answer; RELOADING=1/READY=1 " +
    "frame each reload; WATCHDOG=1 every half WATCHDOG_USEC; STOPPING=1 at SIGTERM",
  fn: async () => {
    const dir = Deno.makeTempDirSync({ dir: "/var/tmp", prefix: "ggaoed-notify-" });
    const sd = FakeNotifySocket.bind(`${dir}/notify`);
    try {
      await withTarget({
        waitReady: false,
        env: { NOTIFY_SOCKET: sd.address, WATCHDOG_USEC: String(WATCHDOG_USEC) },
      }, async (t) => {
        // Ready: the first message, and by then every listener answers at the first attempt.
        const ready = await sd.next((m) => m.fields.READY === "1");
        assertEquals(sd.messages.indexOf(ready), 0, "READY=1 is the first notification");
        const client = await ControlClient.connect(t.socketPath);
        const { devices } = await client.request("stats", {});
        client.close();
        assertEquals(devices.map((d) => d.name), ["disk1"]);
        const disk = t.initiator().find(0, 1, { waitMs: 300 });
        assertEquals([disk.shelf, disk.slot], [0, 1]);
        assertEquals(
          ready.fields.STATUS,
          "serving 1 device(s) on 1 interface(s)" + testWorkersStatus(),
        );
        await t.waitForLog(/ggaoed is running/, 2000);

        // Watchdog: a keep-alive every WATCHDOG_USEC / 2, never a gap that would trip systemd.
        // The times are the test's receive times: a busy machine delays some, which lengthens
        // one gap and shortens the next, so the median gap is compared (a wrong interval, e.g.
        // the whole WATCHDOG_USEC or a quarter of it, moves every gap). The interval (1 s) is
        // long beside what a slow machine adds.
        const half = WATCHDOG_USEC / 2000;
        const first = await sd.next((m) => m.fields.WATCHDOG === "1", 4 * half);
        const pings = [first.at];
        while (pings.length < 9) {
          pings.push((await sd.next((m) => m.fields.WATCHDOG === "1", 4 * half)).at);
        }
        const gaps = pings.slice(1).map((at, i) => at - pings[i]);
        const median = [...gaps].sort((a, b) => a - b)[gaps.length >> 1];
        const shown = gaps.map((g) => g.toFixed(0)).join(", ");
        assert(median > 0.75 * half && median < 1.5 * half, `keep-alive gaps ${shown} ms`);
        assert(Math.max(...gaps) < 2 * half, `keep-alive gaps ${shown} ms: one trips systemd`);

        // SIGHUP: RELOADING=1 with the monotonic time of the request, then READY=1.
        const before = monotonicMicroseconds();
        t.process!.kill("SIGHUP");
        const reloading = await sd.next((m) => m.fields.RELOADING === "1");
        const after = monotonicMicroseconds();
        const at = BigInt(reloading.fields.MONOTONIC_USEC);
        assert(at >= before && at <= after, `MONOTONIC_USEC ${at} outside [${before}, ${after}]`);
        const reloaded = await sd.next((m) => m.fields.READY === "1" || m.fields.STOPPING === "1");
        assertEquals(reloaded.fields.READY, "1");
        await t.waitForLog(/configuration has been reloaded/);

        // A broken configuration is refused: the reload still ends with READY=1 (the old
        // configuration keeps serving), and ggaoectl reload goes through the same path.
        t.writeConfig("[defaults\n");
        const ctl = await t.ctl("reload");
        assert(ctl.code !== 0, "a broken reload is reported");
        await sd.next((m) => m.fields.RELOADING === "1");
        const kept = await sd.next((m) => m.fields.READY === "1" || m.fields.STOPPING === "1");
        assertEquals(
          kept.fields.STATUS,
          "serving 1 device(s) on 1 interface(s)" + testWorkersStatus(),
        );
        t.initiator().find(0, 1, { waitMs: 300 });

        // SIGTERM: STOPPING=1, then no more keep-alives, exit 0.
        const status = t.stop("SIGTERM");
        const stopping = await sd.next((m) => m.fields.STOPPING === "1");
        assertEquals((await status).code, 0);
        const late = sd.messages.filter((m) => m.at > stopping.at && m.fields.WATCHDOG === "1");
        assertEquals(late.length, 0, "keep-alives after STOPPING=1");
        assert(/^SIGTERM received/.test(stopping.fields.STATUS), stopping.text);
      });
    } finally {
      sd.close();
      Deno.removeSync(dir, { recursive: true });
    }
  },
});

Deno.test({
  ...opts,
  name: "a NOTIFY_SOCKET nobody listens on is reported once and the daemon serves anyway",
  fn: () =>
    withTarget({ env: { NOTIFY_SOCKET: "/nonexistent/notify" } }, async (t) => {
      t.initiator().find(0, 1);
      await t.waitForLog(/cannot notify the service manager: connect\(NOTIFY_SOCKET=/);
    }),
});
