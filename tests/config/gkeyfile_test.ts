import assert from "node:assert/strict";
import {
  keyFileBoolean,
  keyFileDouble,
  keyFileInteger,
  keyFileString,
  keyFileStringList,
  parseKeyFile,
} from "../../src/config/gkeyfile.ts";

function values(text: string): Record<string, Record<string, string>> {
  const { keyFile, errors } = parseKeyFile(text);
  assert.deepEqual(errors, []);
  const out: Record<string, Record<string, string>> = {};
  for (const g of keyFile.groups.values()) {
    out[g.name] = Object.fromEntries([...g.entries.values()].map((e) => [e.key, e.value]));
  }
  return out;
}

Deno.test("gkeyfile: groups, keys, blanks around = dropped, trailing blanks kept", () => {
  assert.deepEqual(values("[a]\n  key1=v1\nkey2   =   two words  \n\n[b]\nx =\n"), {
    a: { key1: "v1", key2: "two words  " },
    b: { x: "" },
  });
});

Deno.test("gkeyfile: only # starts a comment; no inline comments", () => {
  assert.deepEqual(values("# c\n   # indented\n[g]\nmtu = 9000 # x\n"), {
    g: { mtu: "9000 # x" },
  });
  const { errors } = parseKeyFile("[g]\n; not a comment\nk = v\n");
  assert.equal(errors.length, 1);
  assert.equal(errors[0].line, 2);
  assert.match(errors[0].message, /not a key-value pair, group, or comment/);
});

Deno.test("gkeyfile: every unparsable line is reported with its line number", () => {
  const { errors } = parseKeyFile("k = before group\n[ok]\njunk\n= novalue\n[bad[name]\n[g]x\n");
  assert.deepEqual(errors.map((e) => e.line), [1, 3, 4, 5, 6]);
  assert.match(errors[0].message, /does not start with a group/);
});

Deno.test("gkeyfile: repeated key last wins in place; repeated groups merge", () => {
  const { keyFile } = parseKeyFile("[g]\na = 1\nb = 2\n[h]\nz = 0\n[g]\na = 3\nc = 4\n");
  assert.deepEqual([...keyFile.groups.keys()], ["g", "h"]);
  const g = keyFile.groups.get("g")!;
  assert.deepEqual([...g.entries.keys()], ["a", "b", "c"]);
  assert.equal(g.entries.get("a")!.value, "3");
  assert.equal(g.entries.get("a")!.line, 7);
});

Deno.test("gkeyfile: group and key names are case-sensitive; CRLF lines are read", () => {
  assert.deepEqual(values("[G]\r\nKey = 1\r\nkey = 2\r\n[g]\r\n"), {
    G: { Key: "1", key: "2" },
    g: {},
  });
});

Deno.test("gkeyfile: comments are kept with the key or group that follows", () => {
  const { keyFile } = parseKeyFile("# top\n\n[g]\n# about k\nk = 1\n# tail\n");
  const g = keyFile.groups.get("g")!;
  assert.deepEqual(g.comments, ["# top", ""]);
  assert.deepEqual(g.entries.get("k")!.comments, ["# about k"]);
  assert.deepEqual(keyFile.trailingComments, ["# tail"]);
});

Deno.test("gkeyfile: escapes in strings; \\, only inside lists", () => {
  assert.deepEqual(keyFileString("\\sa\\tb\\nc\\rd\\\\e"), { ok: true, value: " a\tb\nc\rd\\e" });
  assert.equal(keyFileString("a\\,b").ok, false);
  assert.equal(keyFileString("a\\x").ok, false);
  assert.equal(keyFileString("a\\").ok, false);
});

Deno.test("gkeyfile: list elements are split on , and not trimmed; trailing , allowed", () => {
  assert.deepEqual(keyFileStringList("a, b,c"), { ok: true, value: ["a", " b", "c"] });
  assert.deepEqual(keyFileStringList("a\\,b,c,"), { ok: true, value: ["a,b", "c"] });
  assert.deepEqual(keyFileStringList("a,,b"), { ok: true, value: ["a", "", "b"] });
  assert.deepEqual(keyFileStringList(""), { ok: true, value: [] });
  assert.equal(keyFileStringList("a\\q").ok, false);
});

Deno.test("gkeyfile: integers are base 10, whole value, within C int", () => {
  assert.deepEqual(keyFileInteger("16"), { ok: true, value: 16 });
  assert.deepEqual(keyFileInteger("-5  "), { ok: true, value: -5 });
  assert.deepEqual(keyFileInteger("+7"), { ok: true, value: 7 });
  assert.deepEqual(keyFileInteger("2147483647"), { ok: true, value: 2147483647 });
  for (const bad of ["", "9000 # x", "0x10", "1.5", "2147483648", "12abc", "abc"]) {
    assert.equal(keyFileInteger(bad).ok, false, bad);
  }
});

Deno.test("gkeyfile: doubles in the C locale", () => {
  assert.deepEqual(keyFileDouble("0.001"), { ok: true, value: 0.001 });
  assert.deepEqual(keyFileDouble("1e-3"), { ok: true, value: 0.001 });
  assert.deepEqual(keyFileDouble(".5"), { ok: true, value: 0.5 });
  assert.deepEqual(keyFileDouble("5."), { ok: true, value: 5 });
  assert.deepEqual(keyFileDouble("0x1p-3"), { ok: true, value: 0.125 });
  assert.deepEqual(keyFileDouble("-inf"), { ok: true, value: -Infinity });
  for (const bad of ["", "0,001", "1e", "abc", "0.1s"]) {
    assert.equal(keyFileDouble(bad).ok, false, bad);
  }
});

Deno.test("gkeyfile: booleans are exactly true/false/1/0", () => {
  assert.deepEqual(keyFileBoolean("true"), { ok: true, value: true });
  assert.deepEqual(keyFileBoolean("1"), { ok: true, value: true });
  assert.deepEqual(keyFileBoolean("false"), { ok: true, value: false });
  assert.deepEqual(keyFileBoolean("0 "), { ok: true, value: false });
  for (const bad of ["True", "yes", "on", "2", "", "true x"]) {
    assert.equal(keyFileBoolean(bad).ok, false, bad);
  }
});
