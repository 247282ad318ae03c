/**
 * Read-only mappings of exported files and block devices, and a batch of copies out of them
 * that cannot kill the process.
 *
 * Why: a page-cache read with preadv costs a system call and a page-cache lookup per request
 * (about 1.0 µs of CPU for 4 KiB on the development VM, against 0.3 µs for copying the same
 * 4 KiB out of a mapping), and random 4 KiB reads cannot be merged into fewer calls. Why it
 * needs care: touching a mapped page past the end of a file that was truncated meanwhile, or a
 * page whose read from the disk fails, raises SIGBUS, whose default action ends the process; a
 * storage target must never go down for that.
 *
 * How: the copies are run by a few bytes of x86-64 machine code (a loop of `rep movsb` over a
 * table of copies), and a SIGBUS handler, also machine code, recognises a fault at exactly that
 * `rep movsb` (by the bytes that follow it) and resumes the thread at the loop's failure exit,
 * which returns the index of the copy that faulted. The caller reads those bytes with preadv
 * instead, which reports EIO or a short read the ordinary way. A SIGBUS anywhere else restores
 * the default action and lets the fault happen again, so it still ends the process as before (a
 * bug is not hidden). The code is position independent and checked by its bytes, so every thread
 * may build its own code page and any installed handler recognises all of them. One call runs a
 * whole batch: a call through a function pointer costs about 0.8 µs in Deno (it is not a fast
 * call like a dlopen'ed symbol), paid once per turn of the loop, not per request.
 *
 * ```
 * copy_batch:  u32 copy_batch(const u64 *table, u32 first, u32 count)   (System V ABI)
 *              table entry i (24 bytes): u64 dst, u64 src, u32 bytes, u32 unused
 *   0  41 89 f1             mov    r9d, esi              ; i = first
 *   3  49 89 fa             mov    r10, rdi
 *   6  41 89 d3             mov    r11d, edx
 *   9  45 39 d9       1:    cmp    r9d, r11d
 *   c  73 1d                jae    2b                    ; i == count: done
 *   e  44 89 c8             mov    eax, r9d
 *  11  48 8d 04 40          lea    rax, [rax+rax*2]
 *  15  4d 8d 04 c2          lea    r8, [r10+rax*8]       ; &table[i]
 *  19  49 8b 38             mov    rdi, [r8]
 *  1c  49 8b 70 08          mov    rsi, [r8+8]
 *  20  41 8b 48 10          mov    ecx, [r8+16]
 *  24  f3 a4                rep movsb                    ; <- SIGBUS here resumes at 2f
 *  26  41 ff c1             inc    r9d
 *  29  eb de                jmp    9
 *  2b  44 89 d8             mov    eax, r11d
 *  2e  c3                   ret                          ; count: all copied
 *  2f  44 89 c8             mov    eax, r9d
 *  32  c3                   ret                          ; i: table[i] faulted
 * handler:     void handler(int sig, siginfo_t *info, ucontext_t *uc)
 *  33  48 8b 82 a8 00 00 00 mov    rax, [rdx+168]        ; uc->uc_mcontext.gregs[REG_RIP]
 *  3a  66 81 38 f3 a4       cmp    word [rax], 0xa4f3    ; rep movsb,
 *  3f  75 1e                jne    5f
 *  41  81 78 02 41 ff c1 eb cmp    dword [rax+2], 0xebc1ff41   ; then exactly our loop's bytes
 *  48  75 15                jne    5f
 *  4a  81 78 06 de 44 89 d8 cmp    dword [rax+6], 0xd88944de
 *  51  75 0c                jne    5f
 *  53  48 83 c0 0b          add    rax, 11
 *  57  48 89 82 a8 00 00 00 mov    [rdx+168], rax        ; resume at the failure exit
 *  5e  c3                   ret
 *  5f  b8 0d 00 00 00       mov    eax, 13               ; rt_sigaction(SIGBUS, &zeros, 0, 8):
 *  64  bf 07 00 00 00       mov    edi, 7                ;   back to the default action; the
 *  69  48 8d 35 0b 00 00 00 lea    rsi, [rip+0xb]        ;   fault, repeated on return, ends
 *  70  31 d2                xor    edx, edx              ;   the process as it would have
 *  72  41 ba 08 00 00 00    mov    r10d, 8
 *  78  0f 05                syscall
 *  7a  c3                   ret
 *  7b  32 zero bytes (a kernel sigaction: SIG_DFL)
 * ```
 *
 * @module
 */

import { check, lastError } from "./errno.ts";
import { libc } from "./libc.ts";
import { _memoryAddress, type Memory, PAGE_SIZE } from "./memory.ts";
import {
  MAP_ANONYMOUS,
  MAP_PRIVATE,
  MAP_SHARED,
  PROT_EXEC,
  PROT_READ,
  PROT_WRITE,
  SA_SIGINFO,
  SIGBUS,
} from "./constants.ts";
import { SIGACTION } from "./structs.ts";

const CODE = new Uint8Array([
  // copy_batch
  0x41,
  0x89,
  0xf1,
  0x49,
  0x89,
  0xfa,
  0x41,
  0x89,
  0xd3,
  0x45,
  0x39,
  0xd9,
  0x73,
  0x1d,
  0x44,
  0x89,
  0xc8,
  0x48,
  0x8d,
  0x04,
  0x40,
  0x4d,
  0x8d,
  0x04,
  0xc2,
  0x49,
  0x8b,
  0x38,
  0x49,
  0x8b,
  0x70,
  0x08,
  0x41,
  0x8b,
  0x48,
  0x10,
  0xf3,
  0xa4,
  0x41,
  0xff,
  0xc1,
  0xeb,
  0xde,
  0x44,
  0x89,
  0xd8,
  0xc3,
  0x44,
  0x89,
  0xc8,
  0xc3,
  // handler
  0x48,
  0x8b,
  0x82,
  0xa8,
  0x00,
  0x00,
  0x00,
  0x66,
  0x81,
  0x38,
  0xf3,
  0xa4,
  0x75,
  0x1e,
  0x81,
  0x78,
  0x02,
  0x41,
  0xff,
  0xc1,
  0xeb,
  0x75,
  0x15,
  0x81,
  0x78,
  0x06,
  0xde,
  0x44,
  0x89,
  0xd8,
  0x75,
  0x0c,
  0x48,
  0x83,
  0xc0,
  0x0b,
  0x48,
  0x89,
  0x82,
  0xa8,
  0x00,
  0x00,
  0x00,
  0xc3,
  0xb8,
  0x0d,
  0x00,
  0x00,
  0x00,
  0xbf,
  0x07,
  0x00,
  0x00,
  0x00,
  0x48,
  0x8d,
  0x35,
  0x0b,
  0x00,
  0x00,
  0x00,
  0x31,
  0xd2,
  0x41,
  0xba,
  0x08,
  0x00,
  0x00,
  0x00,
  0x0f,
  0x05,
  0xc3,
  // 32 zero bytes follow (the page is zero-filled)
]);
const HANDLER_OFFSET = 0x33;
/** Bytes of one table entry: u64 dst, u64 src, u32 bytes, u32 unused. */
const ENTRY_BYTES = 24;
const TWO_32 = 0x1_0000_0000;
const MAP_FAILED = 0xffff_ffff_ffff_ffffn;

type BatchFn = (table: Uint8Array, first: number, count: number) => number;
let batchFn: BatchFn | null = null;

/** Builds this thread's code page and installs the SIGBUS handler (once per thread). */
function copyBatch(): BatchFn {
  if (batchFn) return batchFn;
  const page = libc().mmap(
    null,
    BigInt(PAGE_SIZE),
    PROT_READ | PROT_WRITE,
    MAP_PRIVATE | MAP_ANONYMOUS,
    -1,
    0n,
  );
  if (page === null || Deno.UnsafePointer.value(page) === MAP_FAILED) {
    throw lastError("mmap(code page)");
  }
  new Uint8Array(Deno.UnsafePointerView.getArrayBuffer(page, PAGE_SIZE)).set(CODE);
  check(libc().mprotect(page, BigInt(PAGE_SIZE), PROT_READ | PROT_EXEC), "mprotect(code page)", {
    EACCES: "executable memory is refused (SELinux execmem, or MemoryDenyWriteExecute)",
  });
  // Never unmapped: the handler installed here may run in any thread, at any later time.
  const act = new Uint8Array(new ArrayBuffer(SIGACTION.size));
  const view = new DataView(act.buffer);
  const handler = Deno.UnsafePointer.value(Deno.UnsafePointer.offset(page, HANDLER_OFFSET)!);
  view.setBigUint64(SIGACTION.handler, BigInt(handler), true);
  view.setInt32(SIGACTION.flags, SA_SIGINFO, true);
  const old = new Uint8Array(new ArrayBuffer(SIGACTION.size));
  check(libc().sigaction(SIGBUS, act, old), "sigaction(SIGBUS)");
  const definition = { parameters: ["buffer", "u32", "u32"], result: "u32" } as const;
  const fn = new Deno.UnsafeFnPointer(
    page as Deno.PointerObject<typeof definition>,
    definition,
  );
  batchFn = (table, first, count) => fn.call(table, first, count);
  return batchFn;
}

/**
 * A read-only shared mapping of the first `length` bytes of an open file or block device: the
 * page cache that the file's reads and writes use, so copies out of it see every write.
 */
export class FileMap {
  /** Bytes mapped. */
  readonly length: number;
  readonly #pointer: Deno.PointerObject;
  /** The mapping's address (for the copy table). */
  readonly base: number;
  #closed = false;

  private constructor(pointer: Deno.PointerObject, length: number) {
    this.#pointer = pointer;
    this.base = Number(Deno.UnsafePointer.value(pointer));
    this.length = length;
  }

  /** mmap(PROT_READ, MAP_SHARED) of the first `length` (> 0) bytes of `fd`. */
  static open(fd: number, length: number, name: string): FileMap {
    if (!Number.isSafeInteger(length) || length <= 0) {
      throw new RangeError(`FileMap: bad length ${length}`);
    }
    copyBatch(); // the handler is in place before the first page can fault
    const p = libc().mmap(null, BigInt(length), PROT_READ, MAP_SHARED, fd, 0n);
    if (p === null || Deno.UnsafePointer.value(p) === MAP_FAILED) {
      throw lastError(`mmap(${name})`, { ENODEV: "this file system cannot be mapped" });
    }
    return new FileMap(p, length);
  }

  /** Whether {@link close} was called. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Unmaps; idempotent. Queue no copies from it afterwards. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    check(libc().munmap(this.#pointer, BigInt(this.length)), "munmap(file)");
  }
}

/**
 * A table of copies out of {@link FileMap}s into {@link Memory} regions, run by one call.
 *
 * ```ts
 * copies.add(map, fileOffset, ringMemory, frameOffset + 36, 4096);   // for each read
 * copies.run();                      // one call for all of them
 * if (copies.faulted(i)) ...         // read entry i with preadv instead
 * copies.clear();
 * ```
 */
export class MapCopies {
  /** Entries the table holds. */
  readonly capacity: number;
  readonly #table: Uint8Array<ArrayBuffer>;
  readonly #words: Uint32Array;
  readonly #faulted: Uint8Array;
  #count = 0;

  constructor(capacity = 1024) {
    this.capacity = capacity;
    this.#table = new Uint8Array(new ArrayBuffer(capacity * ENTRY_BYTES));
    this.#words = new Uint32Array(this.#table.buffer);
    this.#faulted = new Uint8Array(capacity);
  }

  /** Entries queued. */
  get count(): number {
    return this.#count;
  }

  /**
   * Queues a copy of `bytes` bytes from `map` at `offset` to `dst[dstOffset..]`; returns its
   * index, or -1 when the table is full (run it first).
   */
  add(map: FileMap, offset: number, dst: Memory, dstOffset: number, bytes: number): number {
    const i = this.#count;
    if (i === this.capacity) return -1;
    if (
      map.closed || !(offset >= 0 && bytes >= 0 && offset + bytes <= map.length) ||
      !(dstOffset >= 0 && dstOffset + bytes <= dst.length)
    ) {
      throw new RangeError(`MapCopies.add: ${bytes} bytes at ${offset} to ${dstOffset}`);
    }
    const d = _memoryAddress(dst) + dstOffset;
    const s = map.base + offset;
    const w = i * (ENTRY_BYTES / 4);
    const words = this.#words;
    words[w] = d >>> 0;
    words[w + 1] = Math.floor(d / TWO_32);
    words[w + 2] = s >>> 0;
    words[w + 3] = Math.floor(s / TWO_32);
    words[w + 4] = bytes;
    this.#count = i + 1;
    return i;
  }

  /** Runs every queued copy; returns how many faulted (see {@link faulted}). */
  run(): number {
    const count = this.#count;
    if (count === 0) return 0;
    const fn = copyBatch();
    this.#faulted.fill(0, 0, count);
    let faults = 0;
    for (let first = 0; first < count;) {
      const stopped = fn(this.#table, first, count);
      if (stopped >= count) break;
      this.#faulted[stopped] = 1;
      faults++;
      first = stopped + 1;
    }
    return faults;
  }

  /** Whether copy `i` of the last {@link run} faulted (its bytes must be read otherwise). */
  faulted(i: number): boolean {
    return this.#faulted[i] === 1;
  }

  /** Empties the table. */
  clear(): void {
    this.#count = 0;
  }
}
