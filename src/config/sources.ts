/**
 * The two file formats seen through one interface: a section (a TOML table or a GKeyFile group)
 * answers typed reads of its keys, with the format's own typing rules and error wording. The
 * validation in `load.ts` never looks at the syntax.
 *
 * @module
 */

import {
  keyFileBoolean,
  keyFileDouble,
  type KeyFileGroup,
  keyFileInteger,
  keyFileString,
  keyFileStringList,
} from "./gkeyfile.ts";

/** A typed read: the value, or what is wrong and how to write it. */
export type Read<T> = { ok: true; value: T } | { ok: false; message: string; fix: string };

/** One section of either format. */
export interface Section {
  /** Dotted key prefix for messages: `devices.disk1`, `defaults`, or the INI group name. */
  readonly path: string;
  /** Keys in file order. */
  keys(): string[];
  has(key: string): boolean;
  integer(key: string): Read<number>;
  number(key: string): Read<number>;
  boolean(key: string): Read<boolean>;
  string(key: string): Read<string>;
  /** A list of strings, items trimmed, empty items dropped. */
  list(key: string): Read<string[]>;
  /** NAME = VALUE settings: a table (TOML), or a list of `name=value` items. */
  options(key: string): Read<Record<string, string>>;
}

function describe(v: unknown): string {
  if (typeof v === "string") return `the string ${JSON.stringify(v)}`;
  if (Array.isArray(v)) return "a list";
  if (v instanceof Date) return "a date";
  if (typeof v === "object" && v !== null) return "a table";
  if (typeof v === "bigint") return `the integer ${v}`;
  return `${typeof v === "number" ? "the number" : "the value"} ${String(v)}`;
}

function splitList(text: string): string[] {
  return text.split(",").map((s) => s.trim()).filter((s) => s !== "");
}

const OPTION_NAME = /^[A-Za-z0-9_][A-Za-z0-9_ .-]*$/;

/** `name=value` items as settings, or what is wrong with the first bad one. */
export function parseOptionItems(
  items: string[],
  key: string,
): Read<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const item of items) {
    const eq = item.indexOf("=");
    const name = eq < 0 ? "" : item.slice(0, eq).trim();
    if (!OPTION_NAME.test(name)) {
      return {
        ok: false,
        message: `${JSON.stringify(item)} is not NAME=VALUE`,
        fix: `write ${key} = "name=value, name=value"`,
      };
    }
    out[name] = item.slice(eq + 1).trim();
  }
  return { ok: true, value: out };
}

/** A TOML table. */
export class TomlSection implements Section {
  readonly path: string;
  readonly #table: Record<string, unknown>;

  constructor(path: string, table: Record<string, unknown>) {
    this.path = path;
    this.#table = table;
  }

  keys(): string[] {
    return Object.keys(this.#table);
  }

  has(key: string): boolean {
    return Object.hasOwn(this.#table, key);
  }

  integer(key: string): Read<number> {
    const v = this.#table[key];
    if (typeof v === "number" && Number.isInteger(v)) return { ok: true, value: v };
    if (typeof v === "bigint") return { ok: true, value: Number(v) }; // range check rejects it
    const quoted = typeof v === "string" && /^\s*[+-]?\d+\s*$/.test(v);
    return {
      ok: false,
      message: `expected a whole number, got ${describe(v)}`,
      fix: quoted ? `remove the quotes: ${key} = ${v.trim()}` : `write ${key} = <whole number>`,
    };
  }

  number(key: string): Read<number> {
    const v = this.#table[key];
    if (typeof v === "number") return { ok: true, value: v };
    const quoted = typeof v === "string" && !Number.isNaN(Number(v)) && v.trim() !== "";
    return {
      ok: false,
      message: `expected a number of seconds, got ${describe(v)}`,
      fix: quoted ? `remove the quotes: ${key} = ${v.trim()}` : `write ${key} = <seconds>`,
    };
  }

  boolean(key: string): Read<boolean> {
    const v = this.#table[key];
    if (typeof v === "boolean") return { ok: true, value: v };
    const quoted = typeof v === "string" && /^\s*(true|false)\s*$/i.test(v);
    return {
      ok: false,
      message: `expected true or false, got ${describe(v)}`,
      fix: quoted
        ? `remove the quotes: ${key} = ${v.trim().toLowerCase()}`
        : `write ${key} = true or ${key} = false`,
    };
  }

  string(key: string): Read<string> {
    const v = this.#table[key];
    if (typeof v === "string") return { ok: true, value: v };
    return {
      ok: false,
      message: `expected a string, got ${describe(v)}`,
      fix: `quote it: ${key} = "..."`,
    };
  }

  list(key: string): Read<string[]> {
    const v = this.#table[key];
    if (typeof v === "string") return { ok: true, value: splitList(v) };
    if (Array.isArray(v) && v.every((item) => typeof item === "string")) {
      return { ok: true, value: v.map((s) => s.trim()).filter((s) => s !== "") };
    }
    return {
      ok: false,
      message: `expected a list of strings, got ${
        Array.isArray(v) ? "a list with non-string items" : describe(v)
      }`,
      fix: `write ${key} = ["a", "b"] (quote every item)`,
    };
  }

  options(key: string): Read<Record<string, string>> {
    const v = this.#table[key];
    if (typeof v === "string" || Array.isArray(v)) {
      const items = this.list(key);
      return items.ok ? parseOptionItems(items.value, key) : items;
    }
    const fix = `write ${key} = { name = "value", ... }`;
    if (typeof v !== "object" || v === null || v instanceof Date) {
      return { ok: false, message: `expected a table of settings, got ${describe(v)}`, fix };
    }
    const out: Record<string, string> = {};
    for (const [name, value] of Object.entries(v)) {
      if (!OPTION_NAME.test(name)) {
        return { ok: false, message: `${JSON.stringify(name)} is not an option name`, fix };
      }
      if (typeof value === "string") out[name] = value;
      else if (typeof value === "number" || typeof value === "boolean") out[name] = String(value);
      else if (typeof value === "bigint") out[name] = String(value);
      else {
        return {
          ok: false,
          message: `${name}: expected a string, number or boolean, got ${describe(value)}`,
          fix,
        };
      }
    }
    return { ok: true, value: out };
  }
}

/** A GKeyFile group, read with glib's rules and then our decisions (trimmed strings and items). */
export class IniSection implements Section {
  readonly path: string;
  readonly #group: KeyFileGroup;

  constructor(group: KeyFileGroup) {
    this.path = group.name;
    this.#group = group;
  }

  keys(): string[] {
    return [...this.#group.entries.keys()];
  }

  has(key: string): boolean {
    return this.#group.entries.has(key);
  }

  #read<T>(
    key: string,
    parse: (raw: string) => { ok: true; value: T } | { ok: false; message: string },
    fix: string,
  ): Read<T> {
    const entry = this.#group.entries.get(key);
    if (!entry) return { ok: false, message: "missing", fix };
    const r = parse(entry.value);
    if (r.ok) return r;
    return { ok: false, message: `line ${entry.line}: ${r.message}`, fix };
  }

  integer(key: string): Read<number> {
    return this.#read(key, keyFileInteger, `write ${key} = <whole number> with nothing after it`);
  }

  number(key: string): Read<number> {
    return this.#read(key, keyFileDouble, `write ${key} = <seconds>, e.g. 0.001`);
  }

  boolean(key: string): Read<boolean> {
    return this.#read(key, keyFileBoolean, `write ${key} = true or false (lower case)`);
  }

  string(key: string): Read<string> {
    // Our decision: surrounding blanks of a string are never meant (the original kept trailing
    // ones, so `path = /dev/sdb ` named a file that does not exist).
    const r = this.#read(key, keyFileString, "escape a backslash as \\\\");
    return r.ok ? { ok: true, value: r.value.trim() } : r;
  }

  list(key: string): Read<string[]> {
    const r = this.#read(
      key,
      keyFileStringList,
      "separate items with commas; write \\, for a comma",
    );
    if (!r.ok) return r;
    return { ok: true, value: r.value.map((s) => s.trim()).filter((s) => s !== "") };
  }

  options(key: string): Read<Record<string, string>> {
    const items = this.list(key);
    return items.ok ? parseOptionItems(items.value, key) : items;
  }
}
