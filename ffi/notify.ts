/**
 * systemd's readiness protocol (sd_notify(3)) without libsystemd: one datagram of
 * newline-separated `KEY=VALUE` assignments (`READY=1`, `STATUS=...`) to the AF_UNIX socket named
 * by `$NOTIFY_SOCKET`, which is a file system path (`/run/systemd/notify`) or, with a leading
 * `@`, a name in the abstract namespace. Like sd_notify, each message opens, connects and closes
 * its own socket, so a service manager that re-creates its socket (daemon-reexec) is still
 * reached.
 *
 *     struct sockaddr_un { sa_family_t sun_family; char sun_path[108]; }
 *     abstract name: sun_path[0] = '\0', the name follows, addrlen = 2 + 1 + strlen(name)
 *
 * @module
 */

import {
  CLOCK_MONOTONIC,
  MSG_DONTWAIT,
  MSG_NOSIGNAL,
  SOCK_CLOEXEC,
  SOCK_DGRAM,
} from "./constants.ts";
import { check, lastError } from "./errno.ts";
import { big, libc } from "./libc.ts";
import { TIMESPEC } from "./structs.ts";
import { sockaddrUn } from "./syslog.ts";

const AF_UNIX = 1;

/** The service manager's notification socket (`$NOTIFY_SOCKET`). */
export class NotifySocket {
  /** The address as given: a path, or `@name` for the abstract namespace. */
  readonly address: string;
  readonly #addr: Uint8Array<ArrayBuffer>;
  readonly #addrLength: number;
  readonly #encoder = new TextEncoder();

  /** Throws a RangeError for an address that is neither an absolute path nor `@name`. */
  constructor(address: string) {
    this.address = address;
    if (address.startsWith("@") && address.length > 1) {
      const name = address.slice(1);
      this.#addr = sockaddrUn(`\0${name}`);
      this.#addrLength = 2 + 1 + this.#encoder.encode(name).length;
    } else if (address.startsWith("/")) {
      this.#addr = sockaddrUn(address);
      this.#addrLength = this.#addr.length;
    } else {
      throw new RangeError(
        `NOTIFY_SOCKET=${address}: not an absolute path or an @abstract name ` +
          "(only AF_UNIX notification sockets are supported)",
      );
    }
  }

  /**
   * The socket named by `NOTIFY_SOCKET` in `env`, or null when the variable is unset or empty
   * (not started by a service manager that wants notifications).
   */
  static fromEnvironment(env: { get(key: string): string | undefined } = Deno.env) {
    const address = env.get("NOTIFY_SOCKET");
    return address ? new NotifySocket(address) : null;
  }

  /**
   * Sends `text` (e.g. `"READY=1\nSTATUS=serving"`) as one datagram. Never blocks: a full
   * socket fails with EAGAIN. Throws a {@link SysError} naming the socket and what to do.
   */
  send(text: string): void {
    const fd = check(libc().socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0), "socket(AF_UNIX)");
    try {
      if (libc().connect(fd, this.#addr, this.#addrLength) === -1) {
        throw lastError(`connect(NOTIFY_SOCKET=${this.address})`, {
          ENOENT: "the service manager's notification socket does not exist",
          ECONNREFUSED: "nothing listens on the service manager's notification socket",
          EACCES: "the notification socket is not writable by this user",
        });
      }
      const bytes = this.#encoder.encode(text);
      const sent = libc().send(fd, bytes, big(bytes.length), MSG_DONTWAIT | MSG_NOSIGNAL);
      if (sent === -1) throw lastError(`send(NOTIFY_SOCKET=${this.address})`);
    } finally {
      libc().close(fd);
    }
  }
}

/** CLOCK_MONOTONIC in microseconds, the clock of `MONOTONIC_USEC=` in a `RELOADING=1` message. */
export function monotonicMicroseconds(): bigint {
  const ts = new Uint8Array(new ArrayBuffer(TIMESPEC.size));
  check(libc().clock_gettime(CLOCK_MONOTONIC, ts), "clock_gettime(CLOCK_MONOTONIC)");
  const view = new DataView(ts.buffer);
  return view.getBigInt64(TIMESPEC.sec, true) * 1_000_000n +
    view.getBigInt64(TIMESPEC.nsec, true) / 1000n;
}
