/**
 * Logging to syslog without syslog(3): that function is variadic, which Deno's FFI cannot call
 * portably. Instead this speaks the local syslog protocol itself: one datagram per message on
 * the AF_UNIX socket /dev/log, formatted `<PRI>ggaoed[PID]: message` (RFC 3164 without the
 * timestamp and host, which the local daemon adds), facility daemon.
 *
 *     struct sockaddr_un { sa_family_t sun_family; char sun_path[108]; }   110 bytes
 *
 * @module
 */

import { check, Errno, lastError } from "./errno.ts";
import { big, errno, libc } from "./libc.ts";

const AF_UNIX = 1;
const SOCK_DGRAM = 2;
const SOCK_CLOEXEC = 0o2000000;
const MSG_DONTWAIT = 0x40;
const SOCKADDR_UN_SIZE = 110;
const LOG_DAEMON = 3 << 3;

/** Syslog severities of our log levels. */
export const SYSLOG_SEVERITY = { debug: 7, info: 6, warning: 4, error: 3 } as const;

/** `struct sockaddr_un` for `path`. */
export function sockaddrUn(path: string): Uint8Array<ArrayBuffer> {
  const encoded = new TextEncoder().encode(path);
  if (encoded.length >= SOCKADDR_UN_SIZE - 2) throw new RangeError(`socket path too long: ${path}`);
  const addr = new Uint8Array(new ArrayBuffer(SOCKADDR_UN_SIZE));
  new DataView(addr.buffer).setUint16(0, AF_UNIX, true);
  addr.set(encoded, 2);
  return addr;
}

/** A connection to the local syslog daemon. */
export class SyslogWriter {
  readonly #fd: number;
  readonly #prefix: string;
  readonly #encoder = new TextEncoder();
  /** Messages the syslog daemon could not take (its socket was full or gone). */
  lost = 0;

  private constructor(fd: number, ident: string) {
    this.#fd = fd;
    this.#prefix = `${ident}[${Deno.pid}]: `;
  }

  /** Connects to `path` (default /dev/log); throws a SysError saying what is wrong. */
  static open(ident: string, path = "/dev/log"): SyslogWriter {
    const fd = check(libc().socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0), "socket(AF_UNIX)");
    const addr = sockaddrUn(path);
    if (libc().connect(fd, addr, addr.length) === -1) {
      const e = lastError(`connect(${path})`, {
        ENOENT:
          'no syslog daemon is listening there: install one (rsyslog) or set log-target = "stderr"',
        ECONNREFUSED: 'the syslog daemon is not running: start it or set log-target = "stderr"',
      });
      libc().close(fd);
      throw e;
    }
    return new SyslogWriter(fd, ident);
  }

  /** Sends one message; never blocks (a full syslog socket loses the message, counted). */
  write(level: keyof typeof SYSLOG_SEVERITY, message: string): void {
    const bytes = this.#encoder.encode(
      `<${LOG_DAEMON | SYSLOG_SEVERITY[level]}>${this.#prefix}${message}`,
    );
    if (libc().send(this.#fd, bytes, big(bytes.length), MSG_DONTWAIT) === -1) {
      const e = errno();
      if (e === Errno.EAGAIN || e === Errno.ECONNREFUSED || e === Errno.ENOBUFS) this.lost++;
      else throw lastError("send(/dev/log)");
    }
  }

  close(): void {
    libc().close(this.#fd);
  }
}
