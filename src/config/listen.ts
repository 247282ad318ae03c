/**
 * TCP listen addresses in configuration files (`metrics-listen = "127.0.0.1:9642"`): `HOST:PORT`
 * with HOST an IPv4 address, an IPv6 address in brackets (`[::1]:9642`) or a host name, and PORT
 * 1-65535.
 *
 * @module
 */

import type { Read } from "./sources.ts";

/** A parsed listen address. */
export interface ListenAddress {
  /** The address as written in the file (for messages). */
  text: string;
  /** Host to bind, without brackets (`127.0.0.1`, `::1`, `localhost`). */
  hostname: string;
  port: number;
}

const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;
const HOST_NAME =
  /^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;

/** True for a valid IPv6 address (without brackets or zone). */
function isIpv6(text: string): boolean {
  if (!/^[0-9A-Fa-f:.]+$/.test(text) || !text.includes(":")) return false;
  try {
    new URL(`http://[${text}]/`);
    return true;
  } catch {
    return false;
  }
}

/** Parses `HOST:PORT` as written for `key`; the error says what to write instead. */
export function parseListenAddress(text: string, key: string): Read<ListenAddress> {
  const example =
    `write ${key} = "127.0.0.1:9642" (all addresses: "0.0.0.0:9642", IPv6: "[::1]:9642")`;
  const fail = (message: string, fix = example): Read<ListenAddress> => ({
    ok: false,
    message,
    fix,
  });
  const value = text.trim();
  let host: string;
  let port: string;
  const bracketed = /^\[([^\]]*)\](?::(.*))?$/.exec(value);
  if (bracketed) {
    if (bracketed[2] === undefined) return fail(`${JSON.stringify(text)} has no port`);
    [host, port] = [bracketed[1], bracketed[2]];
    if (!isIpv6(host)) {
      return fail(
        `${JSON.stringify(host)} is not an IPv6 address`,
        'give an IPv6 address in brackets, e.g. "[::1]:9642"',
      );
    }
  } else {
    const colon = value.lastIndexOf(":");
    if (colon < 0) return fail(`${JSON.stringify(text)} is not HOST:PORT`);
    [host, port] = [value.slice(0, colon), value.slice(colon + 1)];
    if (host.includes(":")) {
      return isIpv6(host)
        ? fail(
          `the IPv6 address in ${JSON.stringify(text)} is not in brackets`,
          `write ${key} = "[${host}]:${port}"`,
        )
        : fail(`${JSON.stringify(text)} is not HOST:PORT`);
    }
    if (host === "") return fail(`${JSON.stringify(text)} has no host`);
    if (/^[\d.]+$/.test(host)) {
      if (!IPV4.test(host)) {
        return fail(
          `${JSON.stringify(host)} is not an IPv4 address`,
          "write four numbers 0-255, e.g. 127.0.0.1",
        );
      }
    } else if (!HOST_NAME.test(host)) {
      return fail(`${JSON.stringify(host)} is not an IP address or host name`);
    }
  }
  if (!/^\d{1,5}$/.test(port) || Number(port) < 1 || Number(port) > 65535) {
    return fail(
      `port ${JSON.stringify(port)} is not a number 1-65535`,
      `write ${key} = "${bracketed ? `[${host}]` : host}:9642"`,
    );
  }
  return { ok: true, value: { text: value, hostname: host, port: Number(port) } };
}
