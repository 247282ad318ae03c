/**
 * Interface name patterns, as the original matched them with `fnmatch(3)` without flags on
 * interface names: `*` is any run of characters (also empty), `?` is exactly one character,
 * every other character is literal (no bracket classes, no escapes: interface names never need
 * them), and the pattern must match the whole name.
 *
 * @module
 */

/** True if `pattern` (`*`, `?`, everything else literal) matches all of `name`. */
export function globMatch(pattern: string, name: string): boolean {
  // Iterative wildcard matching with single-star backtracking: linear in practice and never
  // exponential, unlike a naive recursive matcher or a RegExp built from the pattern.
  let p = 0;
  let n = 0;
  let starP = -1;
  let starN = 0;
  while (n < name.length) {
    const c = p < pattern.length ? pattern[p] : "";
    if (c === "*") {
      starP = p++;
      starN = n;
    } else if (c !== "" && (c === "?" || c === name[n])) {
      p++;
      n++;
    } else if (starP >= 0) {
      p = starP + 1;
      n = ++starN;
    } else {
      return false;
    }
  }
  while (p < pattern.length && pattern[p] === "*") p++;
  return p === pattern.length;
}

/** True if any pattern matches `name`; a null list matches every name. */
export function matchesAny(patterns: readonly string[] | null, name: string): boolean {
  if (patterns === null) return true;
  return patterns.some((p) => globMatch(p, name));
}
