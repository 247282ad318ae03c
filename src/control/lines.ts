/**
 * Newline-delimited framing for the control socket, with a bound on the line length so that a
 * peer cannot make us buffer without limit.
 *
 * @module
 */

/** A line grew past the reader's bound before its newline arrived. */
export class LineTooLongError extends Error {
  /** The bound that was exceeded, in bytes. */
  readonly maxBytes: number;
  constructor(maxBytes: number) {
    super(`line longer than ${maxBytes} bytes`);
    this.name = "LineTooLongError";
    this.maxBytes = maxBytes;
  }
}

/** Anything with `read` like a `Deno.Conn`. */
export interface ByteSource {
  read(p: Uint8Array): Promise<number | null>;
}

const NEWLINE = 0x0a;

/** Splits a byte stream into lines (without the `\n`), each at most `maxBytes` long. */
export class LineReader {
  readonly #source: ByteSource;
  readonly #maxBytes: number;
  #buf = new Uint8Array(4096);
  #start = 0;
  #end = 0;
  /** Where the newline search resumes: bytes before it are known not to be `\n`. */
  #scanned = 0;

  constructor(source: ByteSource, maxBytes: number) {
    this.#source = source;
    this.#maxBytes = maxBytes;
  }

  /**
   * The next complete line, or null at the end of the stream (an unterminated last line is
   * dropped: a peer that dies mid-request has not asked anything). Throws
   * {@link LineTooLongError} when a line exceeds the bound.
   */
  async next(): Promise<Uint8Array | null> {
    for (;;) {
      const nl = this.#buf.subarray(this.#scanned, this.#end).indexOf(NEWLINE);
      if (nl >= 0) {
        const lineEnd = this.#scanned + nl;
        const line = this.#buf.slice(this.#start, lineEnd);
        this.#start = this.#scanned = lineEnd + 1;
        if (line.length > this.#maxBytes) throw new LineTooLongError(this.#maxBytes);
        return line;
      }
      this.#scanned = this.#end;
      if (this.#end - this.#start > this.#maxBytes) throw new LineTooLongError(this.#maxBytes);
      this.#makeRoom();
      const n = await this.#source.read(this.#buf.subarray(this.#end));
      if (n === null) return null;
      this.#end += n;
    }
  }

  /** Moves pending bytes to the front, growing the buffer if it is still too full. */
  #makeRoom(): void {
    const pending = this.#end - this.#start;
    if (this.#start > 0) {
      this.#buf.copyWithin(0, this.#start, this.#end);
      this.#scanned -= this.#start;
      this.#start = 0;
      this.#end = pending;
    }
    if (this.#buf.length - this.#end < 1024) {
      const bigger = new Uint8Array(Math.min(this.#buf.length * 2, this.#maxBytes + 4096));
      bigger.set(this.#buf.subarray(0, this.#end));
      this.#buf = bigger;
    }
  }
}

/** Writes all of `bytes` (a single `write` may take only part of it). */
export async function writeAll(
  sink: { write(p: Uint8Array): Promise<number> },
  bytes: Uint8Array,
): Promise<void> {
  let off = 0;
  while (off < bytes.length) off += await sink.write(bytes.subarray(off));
}
