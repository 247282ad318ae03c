/**
 * Page-aligned memory outside the JavaScript heap, for buffers the kernel reads and writes
 * directly: O_DIRECT request buffers (512/4096-byte alignment), iocbs, iovecs, AIO events.
 *
 * @module
 */

import { check, lastError } from "./errno.ts";
import { big, libc } from "./libc.ts";
import { MAP_ANONYMOUS, MAP_PRIVATE, PROT_READ, PROT_WRITE } from "./constants.ts";

/** The x86-64 page size: Memory regions start on, and are sized in, multiples of it. */
export const PAGE_SIZE = 4096;

const MAP_FAILED = 0xffff_ffff_ffff_ffffn;

let addressOf: (memory: Memory) => number;
let pointerOf: (memory: Memory) => Deno.PointerObject;
let adopt: (pointer: Deno.PointerObject, length: number) => Memory;

/**
 * An anonymous private mapping, zero-filled, page-aligned. `bytes` views all of it; the address
 * stays inside `ffi/`. After {@link Memory.close} every view of it reads as empty (the buffer
 * is detached), so a stale view cannot touch unmapped memory.
 */
export class Memory {
  /** The whole region. */
  readonly bytes: Uint8Array<ArrayBuffer>;
  /** Size in bytes: the requested size rounded up to whole pages. */
  readonly length: number;
  #pointer: Deno.PointerObject | null;
  #address: number;
  #buffer: ArrayBuffer;

  static {
    addressOf = (memory) => {
      if (memory.#pointer === null) throw new Error("Memory is closed");
      return memory.#address;
    };
    pointerOf = (memory) => {
      if (memory.#pointer === null) throw new Error("Memory is closed");
      return memory.#pointer;
    };
    adopt = (pointer, length) => new Memory(pointer, length);
  }

  private constructor(pointer: Deno.PointerObject, length: number) {
    this.#pointer = pointer;
    this.#address = Number(Deno.UnsafePointer.value(pointer));
    this.length = length;
    this.#buffer = Deno.UnsafePointerView.getArrayBuffer(pointer, length);
    this.bytes = new Uint8Array(this.#buffer);
  }

  /** Maps at least `bytes` bytes (rounded up to whole pages), zero-filled. */
  static allocate(bytes: number): Memory {
    if (!Number.isSafeInteger(bytes) || bytes <= 0) {
      throw new RangeError(`Memory.allocate: size must be a positive integer, got ${bytes}`);
    }
    const length = Math.ceil(bytes / PAGE_SIZE) * PAGE_SIZE;
    const flags = MAP_PRIVATE | MAP_ANONYMOUS;
    const pointer = libc().mmap(null, BigInt(length), PROT_READ | PROT_WRITE, flags, -1, 0n);
    if (pointer === null || Deno.UnsafePointer.value(pointer) === MAP_FAILED) {
      throw lastError(`mmap(${length} bytes)`, {
        ENOMEM: "out of memory or address space; lower the ring or queue sizes",
      });
    }
    return new Memory(pointer, length);
  }

  /** Whether {@link Memory.close} has been called. */
  get closed(): boolean {
    return this.#pointer === null;
  }

  /** Unmaps the region; idempotent. Views of it become empty. */
  close(): void {
    const pointer = this.#pointer;
    if (pointer === null) return;
    this.#pointer = null;
    // Detach first: from here on no view can reach the memory we are about to unmap.
    this.#buffer.transfer(0);
    check(libc().munmap(pointer, BigInt(this.length)), "munmap");
  }
}

/** @internal For ffi/ only: the region's address as a number (for iovec/iocb fields). */
export function _memoryAddress(memory: Memory): number {
  return addressOf(memory);
}

/**
 * @internal For ffi/ only: a Memory over a mapping made elsewhere (the packet rings), `length`
 * bytes long. Its {@link Memory.close} unmaps it.
 */
export function _adoptMapping(pointer: Deno.PointerObject, length: number): Memory {
  return adopt(pointer, length);
}

/**
 * @internal For ffi/ only: a pointer `offset` bytes into the region. Allocates: call it at setup
 * time and keep the result, never per I/O.
 */
export function _memoryPointerAt(memory: Memory, offset: number): Deno.PointerObject {
  const base = pointerOf(memory);
  if (offset < 0 || offset > memory.length) throw new RangeError("offset outside the Memory");
  return offset === 0 ? base : Deno.UnsafePointer.offset(base, offset)!;
}

/**
 * Copies `length` bytes from the start of `src` to the start of `dst` with memcpy(3): one fast
 * FFI call, where `dst.set(src.subarray(0, length))` would allocate a view per frame.
 */
export function copyBytes(dst: Uint8Array, src: Uint8Array, length: number): void {
  if (length > dst.length || length > src.length || length < 0) {
    throw new RangeError(`copyBytes: ${length} bytes do not fit (${src.length} -> ${dst.length})`);
  }
  libc().memcpy(dst, src, big(length));
}
