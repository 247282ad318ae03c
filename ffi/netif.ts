/**
 * Network interface facts (index, MTU, MAC, flags) through the classic SIOCGIF* ioctls.
 *
 * @module
 */

import { check, lastError } from "./errno.ts";
import { libc } from "./libc.ts";
import {
  AF_INET,
  ARPHRD_ETHER,
  IFF_LOOPBACK,
  IFF_UP,
  IFNAMSIZ,
  SIOCGIFFLAGS,
  SIOCGIFHWADDR,
  SIOCGIFINDEX,
  SIOCGIFMTU,
  SOCK_CLOEXEC,
  SOCK_DGRAM,
} from "./constants.ts";
import { IFREQ } from "./structs.ts";
import { macAt } from "./mac.ts";

/** What {@link interfaceInfo} reports about an interface. */
export interface InterfaceInfo {
  /** Kernel interface index (stable while the interface exists). */
  index: number;
  /** Link MTU (payload bytes, without the 14-byte Ethernet header). */
  mtu: number;
  /** Hardware address as a 48-bit number (src/mac.ts). */
  mac: number;
  /** IFF_UP is set. */
  up: boolean;
  /** IFF_LOOPBACK is set. */
  loopback: boolean;
  /** ARPHRD_ETHER with a 6-byte address: AoE can run on it. */
  ethernet: boolean;
}

const SIOCGIF_ADVICE = { ENODEV: "no such network interface" } as const;

/**
 * Reads `name`'s index, MTU, MAC and flags with SIOCGIFINDEX/MTU/HWADDR/FLAGS on a throw-away
 * datagram socket. Throws a SysError (ENODEV) when there is no such interface.
 */
export function interfaceInfo(name: string): InterfaceInfo {
  const encoded = new TextEncoder().encode(name);
  if (encoded.length === 0 || encoded.length >= IFNAMSIZ || encoded.includes(0)) {
    throw new RangeError(`interface name "${name}" must be 1..${IFNAMSIZ - 1} bytes`);
  }
  const request = new Uint8Array(new ArrayBuffer(IFREQ.size));
  const view = new DataView(request.buffer);
  const fd = check(libc().socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0), "socket(AF_INET)");
  try {
    // Each ioctl reads ifr_name and overwrites the union at 16; re-zero it between calls.
    const ask = (code: number, call: string) => {
      request.fill(0);
      request.set(encoded, IFREQ.name);
      check(libc().ioctl(fd, BigInt(code), request), `ioctl(${name}, ${call})`, SIOCGIF_ADVICE);
    };
    ask(SIOCGIFINDEX, "SIOCGIFINDEX");
    const index = view.getInt32(IFREQ.ifindex, true);
    ask(SIOCGIFMTU, "SIOCGIFMTU");
    const mtu = view.getInt32(IFREQ.mtu, true);
    ask(SIOCGIFFLAGS, "SIOCGIFFLAGS");
    const flags = view.getUint16(IFREQ.flags, true);
    ask(SIOCGIFHWADDR, "SIOCGIFHWADDR");
    const family = view.getUint16(IFREQ.hwaddrFamily, true);
    return {
      index,
      mtu,
      mac: macAt(request, IFREQ.hwaddrData),
      up: (flags & IFF_UP) !== 0,
      loopback: (flags & IFF_LOOPBACK) !== 0,
      ethernet: family === ARPHRD_ETHER,
    };
  } finally {
    libc().close(fd);
  }
}

/**
 * Names of the network interfaces in this namespace, sorted, from if_nameindex(3). (Deno only
 * lets a program read /sys with --allow-all, so /sys/class/net is not an option.)
 *
 *     struct if_nameindex { unsigned int if_index; char *if_name; }   16 bytes on x86-64,
 *     the array ends with an entry whose if_index is 0
 */
export function listInterfaces(): string[] {
  const list = libc().if_nameindex();
  if (list === null) throw lastError("if_nameindex");
  try {
    const view = new Deno.UnsafePointerView(list);
    const names: string[] = [];
    for (let offset = 0;; offset += 16) {
      if (view.getUint32(offset) === 0) break;
      const name = view.getPointer(offset + 8);
      if (name !== null) names.push(Deno.UnsafePointerView.getCString(name));
    }
    return names.sort();
  } finally {
    libc().if_freenameindex(list);
  }
}
