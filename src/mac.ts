/**
 * MAC addresses.
 *
 * Inside the daemon a MAC is a plain number: the six bytes read big-endian as a 48-bit integer
 * (`00:1b:21:0a:aa:22` is 0x001b210aaa22). That fits a JavaScript number exactly, compares in the
 * natural order, and costs no allocation per frame: `macAt(frame, 6)` reads a source MAC.
 *
 * @module
 */

/** The broadcast address ff:ff:ff:ff:ff:ff as a number. */
export const BROADCAST_MAC = 0xffffffffffff;

// Reading and writing a MAC in a frame is shared with ffi/ (interface addresses, rtnetlink), which
// imports nothing from src/: the two live there.
import { macAt, putMac } from "../ffi/mac.ts";
export { macAt, putMac };

/** The six bytes of `mac`. */
export function macBytes(mac: number): Uint8Array {
  const out = new Uint8Array(6);
  putMac(out, 0, mac);
  return out;
}

/** `00:1b:21:0a:aa:22`: lowercase, two digits a byte, colon separated. */
export function formatMac(mac: number): string {
  return mac.toString(16).padStart(12, "0").replace(/(..)(?!$)/g, "$1:");
}

/**
 * Parses a MAC in the usual spellings, or returns null:
 * - six groups of one or two hex digits separated by `:` or `-` (`0:1b:21:a:aa:22`, as glibc's
 *   `ether_aton` accepts; `00-1B-21-0A-AA-22` as Windows prints),
 * - three groups of four digits separated by `.` (`001b.210a.aa22`, Cisco style),
 * - twelve hex digits (`001b210aaa22`).
 * Case-insensitive; surrounding white space is ignored.
 */
export function parseMac(text: string): number | null {
  const s = text.trim();
  let m =
    /^([0-9a-f]{1,2})([:-])([0-9a-f]{1,2})\2([0-9a-f]{1,2})\2([0-9a-f]{1,2})\2([0-9a-f]{1,2})\2([0-9a-f]{1,2})$/i
      .exec(s);
  if (m) {
    const groups = [m[1], m[3], m[4], m[5], m[6], m[7]];
    return groups.reduce((acc, g) => acc * 256 + parseInt(g, 16), 0);
  }
  m = /^([0-9a-f]{4})\.([0-9a-f]{4})\.([0-9a-f]{4})$/i.exec(s);
  if (m) return parseInt(m[1] + m[2] + m[3], 16);
  if (/^[0-9a-f]{12}$/i.test(s)) return parseInt(s, 16);
  return null;
}
