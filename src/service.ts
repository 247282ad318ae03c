/**
 * Telling the service manager (systemd, `Type=notify`) what the daemon is doing: `READY=1` once
 * every listener is up, `RELOADING=1` and `READY=1` around a reload, `STOPPING=1` at shutdown,
 * `STATUS=` lines for `systemctl status`, and `WATCHDOG=1` keep-alives when the unit sets
 * `WatchdogSec=`. Without `$NOTIFY_SOCKET` every call does nothing.
 *
 * A keep-alive is sent only after the data-path worker has answered a probe, so a worker that
 * hangs (rather than crashes) stops the pings and the service manager restarts the daemon.
 *
 * @module
 */

import { monotonicMicroseconds, NotifySocket } from "../ffi/mod.ts";

type Env = { get(key: string): string | undefined };
type Warn = (message: string) => void;

/** The daemon's side of sd_notify(3); inert when not started with `$NOTIFY_SOCKET`. */
export class ServiceNotifier {
  readonly #socket: NotifySocket | null;
  readonly #warn: Warn;
  /** Half of `$WATCHDOG_USEC` in ms, or null when no watchdog applies to this process. */
  readonly watchdogIntervalMs: number | null;
  #failed = false;
  #watchdog: ReturnType<typeof setInterval> | null = null;

  constructor(socket: NotifySocket | null, watchdogIntervalMs: number | null, warn: Warn) {
    this.#socket = socket;
    this.watchdogIntervalMs = socket ? watchdogIntervalMs : null;
    this.#warn = warn;
  }

  /**
   * From the environment systemd sets: `NOTIFY_SOCKET`, `WATCHDOG_USEC`, `WATCHDOG_PID` (the
   * watchdog is ours when it is unset or our pid). A malformed value is reported through `warn`
   * and leaves notifications off.
   */
  static fromEnvironment(warn: Warn, env: Env = Deno.env): ServiceNotifier {
    let socket: NotifySocket | null = null;
    try {
      socket = NotifySocket.fromEnvironment(env);
    } catch (e) {
      warn(`not notifying the service manager: ${(e as Error).message}`);
    }
    return new ServiceNotifier(socket, watchdogInterval(env, warn), warn);
  }

  /** Whether a service manager is listening (NOTIFY_SOCKET is set). */
  get active(): boolean {
    return this.#socket !== null;
  }

  /** `READY=1`: every listener is up and requests are served. */
  ready(status: string): void {
    this.#send(`READY=1\nSTATUS=${status}`);
  }

  /** `RELOADING=1` while `reload` runs, then `READY=1` with the status it leaves behind. */
  async reloading<T>(reload: () => Promise<T>, status: () => string): Promise<T> {
    this.#send(`RELOADING=1\nMONOTONIC_USEC=${monotonicMicroseconds()}\nSTATUS=reloading`);
    try {
      return await reload();
    } finally {
      this.#send(`READY=1\nSTATUS=${status()}`);
    }
  }

  /** `STOPPING=1`: shutdown has begun; the watchdog stops. */
  stopping(status: string): void {
    this.#stopWatchdog();
    this.#send(`STOPPING=1\nSTATUS=${status}`);
  }

  /**
   * Sends `WATCHDOG=1` every half `WATCHDOG_USEC`, each time after `probe` (a round trip to the
   * data path) has resolved; a probe still pending at the next tick skips that keep-alive.
   */
  startWatchdog(probe: () => Promise<unknown>): void {
    const interval = this.watchdogIntervalMs;
    if (interval === null || this.#watchdog !== null) return;
    let pending = false;
    const timer = setInterval(() => {
      if (pending) return;
      pending = true;
      probe().then(
        () => {
          pending = false;
          if (this.#watchdog !== null) this.#send("WATCHDOG=1");
        },
        () => (pending = false),
      );
    }, interval);
    Deno.unrefTimer(timer);
    this.#watchdog = timer;
  }

  /** Stops the watchdog timer. */
  close(): void {
    this.#stopWatchdog();
  }

  #stopWatchdog(): void {
    if (this.#watchdog !== null) clearInterval(this.#watchdog);
    this.#watchdog = null;
  }

  #send(text: string): void {
    if (!this.#socket) return;
    try {
      this.#socket.send(text);
      this.#failed = false;
    } catch (e) {
      // Reported once per run of failures: a service manager that does not hear READY=1 stops
      // the daemon after its start timeout, and this line says why.
      if (!this.#failed) this.#warn(`cannot notify the service manager: ${(e as Error).message}`);
      this.#failed = true;
    }
  }
}

/** Half of `WATCHDOG_USEC` in ms when the watchdog is meant for this process, else null. */
function watchdogInterval(env: Env, warn: Warn): number | null {
  const usec = env.get("WATCHDOG_USEC");
  if (!usec) return null;
  const pid = env.get("WATCHDOG_PID");
  if (pid && pid !== String(Deno.pid)) return null;
  const n = Number(usec);
  if (!/^\d+$/.test(usec) || n <= 0) {
    warn(`ignoring WATCHDOG_USEC=${usec}: not a positive number of microseconds`);
    return null;
  }
  return Math.max(1, Math.floor(n / 2000));
}
