/**
 * `ggaoed convert-config`: turns the original's INI (GKeyFile) configuration into the equivalent
 * TOML file. Groups are classified as the original did (docs/decisions.md §1.2), keys keep their names
 * and order, lists become arrays of trimmed items, and comments are carried over. Keys the
 * original ignored (unknown or obsolete) become comments, so the result loads to the same
 * configuration as the INI file.
 *
 * @module
 */

import {
  keyFileBoolean,
  keyFileDouble,
  type KeyFileEntry,
  keyFileInteger,
  keyFileString,
  keyFileStringList,
  type KeyFileValue,
  parseKeyFile,
} from "./gkeyfile.ts";
import { DEFAULTS_KEYS, DEVICE_KEYS, findKey, INTERFACE_KEYS, type KeySpec } from "./schema.ts";
import { ConfigError, type ConfigIssue } from "./types.ts";

/** A TOML key: bare when it can be, else a basic string. */
export function tomlKey(name: string): string {
  return /^[A-Za-z0-9_-]+$/.test(name) ? name : tomlString(name);
}

/** A TOML basic string (JSON's escapes are all valid TOML; DEL must be escaped too). */
export function tomlString(s: string): string {
  return JSON.stringify(s).replace(/\x7f/g, "\\u007F");
}

function tomlFloat(n: number): string {
  if (Number.isNaN(n)) return "nan";
  if (!Number.isFinite(n)) return n > 0 ? "inf" : "-inf";
  const s = String(n);
  return /[.eE]/.test(s) ? s : `${s}.0`;
}

function tomlArray(items: string[]): string {
  return `[${items.map(tomlString).join(", ")}]`;
}

/** Same rule as the loader: what the kernel accepts as an interface name. */
function validInterfaceName(name: string): boolean {
  return name.length > 0 && name.length < 16 && name !== "." && name !== ".." &&
    !/[/:\s]/.test(name);
}

/**
 * Converts INI configuration `text` (from `file`, named in messages and the header) to TOML.
 * Throws {@link ConfigError} listing every line or value the INI reader refuses.
 */
export function convertIniToToml(text: string, file: string): string {
  const issues: ConfigIssue[] = [];
  const { keyFile, errors } = parseKeyFile(text.startsWith("\uFEFF") ? text.slice(1) : text);
  for (const e of errors) {
    issues.push({
      file,
      key: "",
      message: `line ${e.line}: ${e.message}`,
      fix: "fix the line or start it with #",
    });
  }
  const out: string[] = [
    `# ggaoed configuration (TOML), converted from the original INI file ${file}`,
    "# by `ggaoed convert-config`. Keys keep their names and meanings; ggaoed.conf.dist and",
    "# docs/configuration.md list every key with its default.",
    "",
  ];
  const comments = (lines: string[]) => {
    for (const line of lines) {
      // Blank lines separate; runs of them collapse to one.
      if (line === "" && (out.length === 0 || out[out.length - 1] === "")) continue;
      // TOML forbids control characters other than tab in comments.
      // deno-lint-ignore no-control-regex
      out.push(line === "" ? "" : line.trimStart().replace(/[\x00-\x08\x0a-\x1f\x7f]/g, ""));
    }
  };
  const value = <T>(
    entry: KeyFileEntry,
    where: string,
    parse: (raw: string) => KeyFileValue<T>,
    show: (v: T) => string,
  ): string | null => {
    const r = parse(entry.value);
    if (r.ok) return show(r.value);
    issues.push({
      file,
      key: `${where}.${entry.key}`,
      message: `line ${entry.line}: ${r.message}`,
      fix: "correct the value before converting",
    });
    return null;
  };
  const list = (raw: string): KeyFileValue<string[]> => {
    const r = keyFileStringList(raw);
    return r.ok ? { ok: true, value: r.value.map((s) => s.trim()).filter((s) => s !== "") } : r;
  };
  const render = (entry: KeyFileEntry, where: string, spec: KeySpec | undefined): string | null => {
    if (!spec || spec.kind === "obsolete") return null;
    switch (spec.kind) {
      case "integer":
      case "kib":
        return value(entry, where, keyFileInteger, String);
      case "number":
        return value(entry, where, keyFileDouble, tomlFloat);
      case "boolean":
        return value(entry, where, keyFileBoolean, String);
      case "string":
      case "enum":
      case "listen":
        return value(entry, where, keyFileString, (s) => tomlString(s.trim()));
      case "patterns":
      case "tokens":
      case "options": // "name=value" items: the TOML loader reads such a list as settings
        return value(entry, where, list, tomlArray);
    }
  };

  for (const group of keyFile.groups.values()) {
    const name = group.name;
    let header: string;
    let specs: readonly KeySpec[] | null;
    if (name === "defaults") [header, specs] = ["[defaults]", DEFAULTS_KEYS];
    else if (name === "acls") [header, specs] = ["[acls]", null];
    else if (group.entries.has("shelf")) {
      [header, specs] = [`[devices.${tomlKey(name)}]`, DEVICE_KEYS];
    } else if (validInterfaceName(name)) {
      [header, specs] = [`[interfaces.${tomlKey(name)}]`, INTERFACE_KEYS];
    } else {
      [header, specs] = [`# [${name}] (ignored: not a device and not an interface name)`, []];
    }
    comments(group.comments);
    out.push(header);
    const ignored = header.startsWith("#");
    for (const entry of group.entries.values()) {
      comments(entry.comments);
      const spec = specs === null ? { key: entry.key, kind: "tokens" as const } : findKey(
        specs,
        entry.key,
      );
      const rendered = ignored ? null : render(entry, name, spec);
      if (rendered !== null) out.push(`${tomlKey(entry.key)} = ${rendered}`);
      else if (ignored || !spec || spec.kind === "obsolete") {
        const why = ignored ? "" : spec ? "obsolete, ignored: " : "unknown key, ignored: ";
        out.push(`# ${why}${entry.key} = ${entry.value}`);
      }
    }
    if (out[out.length - 1] !== "") out.push("");
  }
  comments(keyFile.trailingComments);
  while (out.length > 0 && out[out.length - 1] === "") out.pop();
  if (issues.length > 0) throw new ConfigError(issues);
  return out.join("\n") + "\n";
}
