/**
 * Classic pcap files (not pcapng), link type 1 (Ethernet), for golden-frame tests: write frames
 * built by the code under test, let tshark decode them, compare. Also reads them back (captures
 * taken with `tshark -F pcap` / `tcpdump -w`).
 *
 * ```
 * file header (24 bytes, little-endian):
 *   0 magic 0xa1b2c3d4 | 4 version 2.4 | 8 thiszone 0 | 12 sigfigs 0 | 16 snaplen | 20 linktype 1
 * record header (16 bytes) then the frame:
 *   0 ts_sec | 4 ts_usec | 8 incl_len | 12 orig_len
 * ```
 *
 * @module
 */

/** Link type of Ethernet frames. */
export const LINKTYPE_ETHERNET = 1;

const MAGIC = 0xa1b2c3d4;
const SNAPLEN = 262144;

/** One captured frame. */
export interface PcapRecord {
  /** Seconds since the epoch (fractional). */
  time: number;
  data: Uint8Array;
  /** Length on the wire (>= data.length when the capture was truncated). */
  originalLength: number;
}

/** The bytes of a pcap file holding `frames`, timestamped 1 ms apart from `start` seconds. */
export function pcapBytes(frames: Uint8Array[], start = 1_700_000_000): Uint8Array {
  const size = 24 + frames.reduce((sum, f) => sum + 16 + f.length, 0);
  const out = new Uint8Array(size);
  const v = new DataView(out.buffer);
  v.setUint32(0, MAGIC, true);
  v.setUint16(4, 2, true);
  v.setUint16(6, 4, true);
  v.setUint32(16, SNAPLEN, true);
  v.setUint32(20, LINKTYPE_ETHERNET, true);
  let off = 24;
  frames.forEach((f, i) => {
    v.setUint32(off, start + Math.floor(i / 1000), true);
    v.setUint32(off + 4, (i % 1000) * 1000, true);
    v.setUint32(off + 8, f.length, true);
    v.setUint32(off + 12, f.length, true);
    out.set(f, off + 16);
    off += 16 + f.length;
  });
  return out;
}

/** Writes `frames` to a pcap file at `path`. */
export async function writePcap(path: string, frames: Uint8Array[]): Promise<void> {
  await Deno.writeFile(path, pcapBytes(frames));
}

/** Parses a classic pcap file (either byte order, microsecond or nanosecond timestamps). */
export function parsePcap(bytes: Uint8Array): PcapRecord[] {
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (bytes.length < 24) throw new Error(`pcap file of ${bytes.length} bytes: no header`);
  const m = v.getUint32(0, true);
  let little: boolean;
  let nano = false;
  if (m === MAGIC || m === 0xa1b23c4d) little = true;
  else if (v.getUint32(0, false) === MAGIC || v.getUint32(0, false) === 0xa1b23c4d) little = false;
  else throw new Error(`not a classic pcap file (magic 0x${m.toString(16)}); pcapng is not read`);
  nano = v.getUint32(0, little) === 0xa1b23c4d;
  const records: PcapRecord[] = [];
  let off = 24;
  while (off + 16 <= bytes.length) {
    const sec = v.getUint32(off, little);
    const frac = v.getUint32(off + 4, little);
    const incl = v.getUint32(off + 8, little);
    const orig = v.getUint32(off + 12, little);
    if (off + 16 + incl > bytes.length) throw new Error(`pcap record at ${off} is truncated`);
    records.push({
      time: sec + frac / (nano ? 1e9 : 1e6),
      data: bytes.slice(off + 16, off + 16 + incl),
      originalLength: orig,
    });
    off += 16 + incl;
  }
  return records;
}

/** Reads a classic pcap file. */
export async function readPcap(path: string): Promise<PcapRecord[]> {
  return parsePcap(await Deno.readFile(path));
}
