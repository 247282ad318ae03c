/**
 * A faithful reader of glib's GKeyFile format, the configuration syntax of the original ggaoed
 * (docs/decisions.md §1.1), so that existing `/etc/ggaoed.conf` files keep working.
 *
 * The rules follow glib's `gkeyfile.c`:
 * - a line whose first non-blank character is `#` is a comment; `;` is not a comment, and there
 *   are no inline comments (`mtu = 9000 # x` has the value `9000 # x`);
 * - `[name]` starts a group (white space after `]` tolerated); a repeated group is merged into
 *   the first one;
 * - `key = value`: white space around `=` is dropped, trailing white space of the value is kept;
 *   a repeated key replaces the earlier value in place;
 * - anything else is an error, as is a key before the first group.
 *
 * The reader keeps raw values; the typed getters below interpret them as glib's
 * `g_key_file_get_*` do (escapes, list separator `,`, strict numbers and booleans).
 *
 * @module
 */

/** One `key = value` line. */
export interface KeyFileEntry {
  key: string;
  /** The raw value: leading white space removed, escapes not yet interpreted. */
  value: string;
  /** 1-based line of the last assignment. */
  line: number;
  /** Comment and blank lines just before the key's first assignment (`""` = blank line). */
  comments: string[];
}

/** One `[group]`, merged over all its occurrences. */
export interface KeyFileGroup {
  name: string;
  /** 1-based line of the first header. */
  line: number;
  /** Comment and blank lines just before the first header. */
  comments: string[];
  /** Keys in order of first appearance. */
  entries: Map<string, KeyFileEntry>;
}

/** A parsed key file. */
export interface KeyFile {
  /** Groups in order of first appearance. */
  groups: Map<string, KeyFileGroup>;
  /** Comment and blank lines after the last key or group. */
  trailingComments: string[];
}

/** A line that glib would refuse. */
export interface KeyFileSyntaxError {
  line: number;
  message: string;
}

/** Result of a typed getter: the value, or glib's reason it cannot be read. */
export type KeyFileValue<T> = { ok: true; value: T } | { ok: false; message: string };

/** The list separator ggaoed sets with `g_key_file_set_list_separator`. */
export const LIST_SEPARATOR = ",";

const ASCII_SPACE = /^[ \t\n\v\f\r]*/;

function isGroupLine(line: string): boolean {
  if (!line.startsWith("[")) return false;
  const close = line.indexOf("]");
  return close >= 0 && /^[ \t]*$/.test(line.slice(close + 1));
}

function isGroupName(name: string): boolean {
  // glib: non-empty, no brackets, no ASCII control characters.
  // deno-lint-ignore no-control-regex
  return name.length > 0 && !/[[\]\x00-\x1f\x7f]/.test(name);
}

function isKeyName(key: string): boolean {
  // glib: non-empty, no `=`/`[`/`]` except one trailing locale suffix `[xx_YY.enc@mod]`, and no
  // leading or trailing space (which would be lost when the file is written back).
  const m = /^([^=[\]]+)(\[[\p{L}\p{N}\-_.@]*\])?$/u.exec(key);
  if (!m) return false;
  return !m[1].startsWith(" ") && !m[1].endsWith(" ");
}

/**
 * Parses key-file text. Every refused line is reported (glib stops at the first; we list them
 * all so that one run shows every problem).
 */
export function parseKeyFile(text: string): { keyFile: KeyFile; errors: KeyFileSyntaxError[] } {
  const groups = new Map<string, KeyFileGroup>();
  const errors: KeyFileSyntaxError[] = [];
  let current: KeyFileGroup | null = null;
  let pending: string[] = [];
  const lines = text.split("\n");
  // A final newline does not start another (empty) line.
  if (lines.length > 0 && lines[lines.length - 1] === "") lines.pop();
  lines.forEach((rawLine, index) => {
    const lineNo = index + 1;
    const line = rawLine.endsWith("\r") ? rawLine.slice(0, -1) : rawLine;
    const start = line.replace(ASCII_SPACE, "");
    if (start === "" || start.startsWith("#")) {
      pending.push(start === "" ? "" : line);
      return;
    }
    if (isGroupLine(start)) {
      const name = start.slice(1, start.indexOf("]"));
      if (!isGroupName(name)) {
        errors.push({ line: lineNo, message: `invalid group name: ${JSON.stringify(name)}` });
        current = null;
        return;
      }
      const existing = groups.get(name);
      if (existing) {
        current = existing;
        return; // comments before a repeated header stay pending for the next key
      }
      current = { name, line: lineNo, comments: pending, entries: new Map() };
      pending = [];
      groups.set(name, current);
      return;
    }
    const eq = start.indexOf("=");
    if (eq <= 0) {
      errors.push({
        line: lineNo,
        message: `${
          JSON.stringify(line)
        } is not a key-value pair, group, or comment (only lines starting with # are comments)`,
      });
      return;
    }
    const key = start.slice(0, eq).replace(/[ \t\n\v\f\r]+$/, "");
    if (!isKeyName(key)) {
      errors.push({ line: lineNo, message: `invalid key name: ${JSON.stringify(key)}` });
      return;
    }
    if (current === null) {
      errors.push({
        line: lineNo,
        message: groups.size === 0
          ? "key file does not start with a group"
          : "key after an invalid group header",
      });
      return;
    }
    const value = start.slice(eq + 1).replace(ASCII_SPACE, "");
    const group: KeyFileGroup = current;
    const existing = group.entries.get(key);
    if (existing) {
      existing.value = value;
      existing.line = lineNo;
      existing.comments.push(...pending);
    } else {
      group.entries.set(key, { key, value, line: lineNo, comments: pending });
    }
    pending = [];
  });
  return { keyFile: { groups, trailingComments: pending }, errors };
}

/**
 * Interprets escapes as `g_key_file_parse_value_as_string` does. With `split`, unescaped `,`
 * separates list elements and `\,` is a literal comma; without it `\,` is an invalid escape.
 */
function unescape(raw: string, split: boolean): KeyFileValue<string[]> {
  const pieces: string[] = [];
  let piece = "";
  for (let i = 0; i < raw.length; i++) {
    const c = raw[i];
    if (c === "\\") {
      i++;
      if (i >= raw.length) return { ok: false, message: "escape character at end of line" };
      const e = raw[i];
      if (e === "s") piece += " ";
      else if (e === "n") piece += "\n";
      else if (e === "t") piece += "\t";
      else if (e === "r") piece += "\r";
      else if (e === "\\") piece += "\\";
      else if (split && e === LIST_SEPARATOR) piece += LIST_SEPARATOR;
      else return { ok: false, message: `invalid escape sequence "\\${e}"` };
    } else if (split && c === LIST_SEPARATOR) {
      pieces.push(piece);
      piece = "";
    } else {
      piece += c;
    }
  }
  // glib drops the empty piece after a trailing separator, and an empty value is an empty list.
  if (!split || piece !== "") pieces.push(piece);
  return { ok: true, value: pieces };
}

/** `g_key_file_get_string`: the value with escapes interpreted. */
export function keyFileString(raw: string): KeyFileValue<string> {
  const r = unescape(raw, false);
  return r.ok ? { ok: true, value: r.value[0] } : r;
}

/** `g_key_file_get_string_list` with separator `,`: elements are NOT trimmed. */
export function keyFileStringList(raw: string): KeyFileValue<string[]> {
  return unescape(raw, true);
}

const INT_MIN = -2147483648;
const INT_MAX = 2147483647;

/** `g_key_file_get_integer`: base-10 `strtol` over the whole value, within C `int`. */
export function keyFileInteger(raw: string): KeyFileValue<number> {
  // strtol skips leading white space and takes an optional sign; glib then tolerates only
  // white space after the digits.
  const m = /^[ \t\n\v\f\r]*([+-]?[0-9]+)[ \t\n\v\f\r]*$/.exec(raw);
  if (!m) return { ok: false, message: `value "${raw}" cannot be interpreted as a number` };
  const n = Number(m[1]);
  if (n < INT_MIN || n > INT_MAX) {
    return { ok: false, message: `integer value "${raw}" out of range` };
  }
  return { ok: true, value: n === 0 ? 0 : n }; // no -0
}

function parseHexFloat(body: string): number | null {
  const m = /^0[xX]([0-9a-fA-F]*)(?:\.([0-9a-fA-F]*))?(?:[pP]([+-]?[0-9]+))?$/.exec(body);
  if (!m || (m[1] === "" && (m[2] ?? "") === "")) return null;
  const digits = m[1] + (m[2] ?? "");
  let mantissa = 0;
  for (const d of digits) mantissa = mantissa * 16 + parseInt(d, 16);
  const exponent = (m[3] ? parseInt(m[3], 10) : 0) - 4 * (m[2] ?? "").length;
  return mantissa * 2 ** exponent;
}

/** `g_key_file_get_double`: `g_ascii_strtod` (C locale) over the whole value. */
export function keyFileDouble(raw: string): KeyFileValue<number> {
  const fail = { ok: false as const, message: `value "${raw}" cannot be interpreted as a float` };
  // Leading white space is skipped by strtod; trailing white space is tolerated for the same
  // reason as in keyFileBoolean (glib itself would refuse it).
  const s = raw.trim();
  const sign = s.startsWith("-") ? -1 : 1;
  const body = s.startsWith("-") || s.startsWith("+") ? s.slice(1) : s;
  let v: number | null = null;
  if (/^([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$/.test(body)) v = Number(body);
  else if (/^(inf|infinity)$/i.test(body)) v = Infinity;
  else if (/^nan(\([0-9A-Za-z_]*\))?$/i.test(body)) v = NaN;
  else v = parseHexFloat(body);
  return v === null ? fail : { ok: true, value: sign * v };
}

/** `g_key_file_get_boolean`: `true`/`1` or `false`/`0`, case-sensitive. */
export function keyFileBoolean(raw: string): KeyFileValue<boolean> {
  // Trailing white space is tolerated (newer glib does so too): the reader keeps it in the
  // value, and an invisible blank must not turn `true` into an error.
  const m = /^(true|false|1|0)[ \t\n\v\f\r]*$/.exec(raw);
  if (m) return { ok: true, value: m[1] === "true" || m[1] === "1" };
  return { ok: false, message: `value "${raw}" cannot be interpreted as a boolean` };
}
