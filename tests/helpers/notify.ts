/**
 * A stand-in for systemd's notification socket: an AF_UNIX datagram socket bound to a path (or
 * an `@abstract` name) that records every message with its arrival time.
 *
 * ```ts
 * const sd = FakeNotifySocket.bind(`${dir}/notify`);
 * // start the daemon with NOTIFY_SOCKET=sd.address
 * const ready = await sd.next((m) => m.fields.READY === "1");
 * sd.close();
 * ```
 *
 * @module
 */

import { libc } from "../../ffi/libc.ts";
import { sockaddrUn } from "../../ffi/mod.ts";

const AF_UNIX = 1;
const SOCK_DGRAM = 2;
const SOCK_CLOEXEC = 0o2000000;
const MSG_DONTWAIT = 0x40;

/** One notification as received. */
export interface Notification {
  /** performance.now() when the test process read it (polled every few ms). */
  at: number;
  text: string;
  /** The `KEY=VALUE` lines. */
  fields: Record<string, string>;
}

export class FakeNotifySocket {
  readonly address: string;
  readonly messages: Notification[] = [];
  readonly #fd: number;
  readonly #timer: ReturnType<typeof setInterval>;
  readonly #buffer = new Uint8Array(new ArrayBuffer(4096));
  #cursor = 0;

  private constructor(address: string, fd: number) {
    this.address = address;
    this.#fd = fd;
    this.#timer = setInterval(() => this.#drain(), 5);
  }

  /** Binds `address`: a path, or `@name` in the abstract namespace. */
  static bind(address: string): FakeNotifySocket {
    const fd = libc().socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) throw new Error("socket(AF_UNIX) failed");
    const abstract = address.startsWith("@");
    const addr = sockaddrUn(abstract ? `\0${address.slice(1)}` : address);
    const length = abstract ? 3 + new TextEncoder().encode(address.slice(1)).length : addr.length;
    if (libc().bind(fd, addr, length) !== 0) {
      libc().close(fd);
      throw new Error(`bind(${address}) failed`);
    }
    return new FakeNotifySocket(address, fd);
  }

  #drain(): void {
    for (;;) {
      const n = libc().recv(this.#fd, this.#buffer, BigInt(this.#buffer.length), MSG_DONTWAIT);
      if (n < 0) return;
      const text = new TextDecoder().decode(this.#buffer.subarray(0, n));
      const fields: Record<string, string> = {};
      for (const line of text.split("\n")) {
        const eq = line.indexOf("=");
        if (eq > 0) fields[line.slice(0, eq)] = line.slice(eq + 1);
      }
      this.messages.push({ at: performance.now(), text, fields });
    }
  }

  /**
   * The first message after the previous `next()` result that matches `predicate` (messages
   * skipped on the way are still in {@link messages}); throws after `timeoutMs`.
   */
  async next(predicate: (m: Notification) => boolean, timeoutMs = 20000): Promise<Notification> {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      this.#drain();
      while (this.#cursor < this.messages.length) {
        const m = this.messages[this.#cursor++];
        if (predicate(m)) return m;
      }
      if (performance.now() > deadline) {
        throw new Error(
          `no matching notification within ${timeoutMs} ms; got:\n` +
            this.messages.map((m) => JSON.stringify(m.text)).join("\n"),
        );
      }
      await new Promise((r) => setTimeout(r, 5));
    }
  }

  /** How many messages arrived so far, every datagram already sent included. */
  received(): number {
    this.#drain();
    return this.messages.length;
  }

  close(): void {
    clearInterval(this.#timer);
    libc().close(this.#fd);
  }
}
