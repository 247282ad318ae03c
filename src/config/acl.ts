/**
 * ACL token resolution (docs/decisions.md §1.4): a token is a MAC address, the
 * name of an `[acls]` entry (in any order, expanded recursively), or a host name from the ethers
 * file. Anything else is an error, not a skipped token.
 *
 * @module
 */

import { MAX_MAC_LIST } from "../state/device_state.ts";
import { parseMac } from "../mac.ts";

/** Host name → MAC table of an ethers file. */
export type EthersTable = Map<string, number>;

/**
 * Parses ethers(5) text: `MAC hostname` per line, `#` starts a comment. Host names are keyed in
 * lower case (glibc compares them without case). Lines that do not parse are skipped, as glibc
 * does.
 */
export function parseEthers(text: string): EthersTable {
  const table: EthersTable = new Map();
  for (const raw of text.split("\n")) {
    const line = raw.replace(/#.*$/, "").trim();
    if (line === "") continue;
    const [macText, host] = line.split(/[ \t]+/);
    const mac = macText === undefined ? null : parseMac(macText);
    if (mac === null || host === undefined) continue;
    const key = host.toLowerCase();
    if (!table.has(key)) table.set(key, mac); // the first line wins, as in a sequential lookup
  }
  return table;
}

/** A problem found while resolving tokens; `key` is the dotted key of the list. */
export interface AclProblem {
  key: string;
  message: string;
  fix: string;
}

/** Where named ACLs and host names come from. */
export interface AclContext {
  /** `[acls]` entries: name → tokens as written. */
  definitions: Map<string, string[]>;
  /** Dotted key prefix of the definitions, e.g. `acls`. */
  prefix: string;
  /** The ethers table, read on first use; null when the file cannot be read. */
  ethers: () => { table: EthersTable | null; file: string; reason: string };
}

/** Resolves every `[acls]` entry and any number of token lists against them. */
export class AclResolver {
  readonly #ctx: AclContext;
  readonly #resolved = new Map<string, number[]>();
  /** ACLs whose resolution failed (so that users of them do not repeat the error). */
  readonly #failed = new Set<string>();
  readonly problems: AclProblem[] = [];

  constructor(ctx: AclContext) {
    this.#ctx = ctx;
  }

  /** Every `[acls]` entry resolved to sorted, de-duplicated MACs (failed ones left out). */
  resolveAll(): Map<string, number[]> {
    const out = new Map<string, number[]>();
    for (const name of this.#ctx.definitions.keys()) {
      const macs = this.#resolveAcl(name, []);
      if (macs) out.set(name, macs);
    }
    return out;
  }

  /**
   * Resolves a token list (a device's `accept` or `deny`), reporting problems under `key`.
   * Returns null if any token failed.
   */
  resolveList(key: string, tokens: readonly string[]): number[] | null {
    return this.#resolveTokens(key, tokens, []);
  }

  #resolveAcl(name: string, stack: string[]): number[] | null {
    const done = this.#resolved.get(name);
    if (done) return done;
    if (this.#failed.has(name)) return null;
    if (stack.includes(name)) {
      const cycle = [...stack.slice(stack.indexOf(name)), name].join(" -> ");
      this.problems.push({
        key: `${this.#ctx.prefix}.${name}`,
        message: `ACL cycle: ${cycle}`,
        fix: "an ACL must not include itself, directly or through other ACLs",
      });
      this.#failed.add(name);
      return null;
    }
    const tokens = this.#ctx.definitions.get(name) ?? [];
    const macs = this.#resolveTokens(`${this.#ctx.prefix}.${name}`, tokens, [...stack, name]);
    if (macs === null) this.#failed.add(name);
    else this.#resolved.set(name, macs);
    return macs;
  }

  #resolveTokens(key: string, tokens: readonly string[], stack: string[]): number[] | null {
    const macs = new Set<number>();
    let ok = true;
    for (const token of tokens) {
      const mac = parseMac(token);
      if (mac !== null) {
        macs.add(mac);
        continue;
      }
      if (this.#ctx.definitions.has(token)) {
        const included = this.#resolveAcl(token, stack);
        if (included === null) ok = false;
        else for (const m of included) macs.add(m);
        continue;
      }
      const ethers = this.#ctx.ethers();
      const host = ethers.table?.get(token.toLowerCase());
      if (host !== undefined) {
        macs.add(host);
        continue;
      }
      ok = false;
      this.problems.push({
        key,
        message: `unknown ACL token ${
          JSON.stringify(token)
        }: not a MAC address, not an ACL in [${this.#ctx.prefix}], and not a host name in ${ethers.file}${
          ethers.table ? "" : ` (${ethers.reason})`
        }`,
        fix: "write a MAC such as 00:1b:21:0a:aa:22, define the ACL, or add the host to " +
          ethers.file,
      });
    }
    if (!ok) return null;
    if (macs.size > MAX_MAC_LIST) {
      this.problems.push({
        key,
        message: `resolves to ${macs.size} addresses, more than ${MAX_MAC_LIST}`,
        fix: `an ACL holds at most ${MAX_MAC_LIST} addresses; split the device's clients`,
      });
      return null;
    }
    return [...macs].sort((a, b) => a - b);
  }
}
