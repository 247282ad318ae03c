/**
 * A MAC address as the daemon holds it: the six bytes read big-endian as a 48-bit number
 * (`00:1b:21:0a:aa:22` is 0x001b210aaa22), exact in a JavaScript number, compared in the natural
 * order, read from a frame without allocating. Parsing and printing are in `src/mac.ts`.
 *
 * @module
 */

const TWO_32 = 0x1_0000_0000;

/** Reads the MAC at `bytes[offset..offset+6]` as a 48-bit number. */
export function macAt(bytes: Uint8Array, offset: number): number {
  const hi = (bytes[offset] << 8) | bytes[offset + 1];
  const lo = ((bytes[offset + 2] << 24) | (bytes[offset + 3] << 16) | (bytes[offset + 4] << 8) |
    bytes[offset + 5]) >>> 0;
  return hi * TWO_32 + lo;
}

/** Writes `mac` as six bytes at `bytes[offset..offset+6]`. */
export function putMac(bytes: Uint8Array, offset: number, mac: number): void {
  const hi = Math.floor(mac / TWO_32);
  const lo = mac % TWO_32;
  bytes[offset] = hi >>> 8;
  bytes[offset + 1] = hi & 0xff;
  bytes[offset + 2] = lo >>> 24;
  bytes[offset + 3] = (lo >>> 16) & 0xff;
  bytes[offset + 4] = (lo >>> 8) & 0xff;
  bytes[offset + 5] = lo & 0xff;
}
