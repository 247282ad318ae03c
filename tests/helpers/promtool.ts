/**
 * Prometheus' own checkers, from Debian's `prometheus` package (`scripts/install-deps.sh --test`
 * installs it): `promtool check metrics` parses and lints the 0.0.4 text format, and
 * `promtool tsdb create-blocks-from openmetrics` runs Prometheus' OpenMetrics parser over an
 * exposition (it wants timestamps, which are added to every sample for it); `promtool check
 * rules` parses rule files, so their PromQL.
 *
 * @module
 */

/** What promtool said. */
export interface PromtoolResult {
  code: number;
  output: string;
}

export interface Promtool {
  /** `promtool check metrics` on `text`: code 0 and no output when valid and lint-clean. */
  checkMetrics(text: string): Promise<PromtoolResult>;
  /** Imports an OpenMetrics exposition into a throw-away TSDB; `samples` it stored. */
  importOpenMetrics(text: string): Promise<PromtoolResult & { samples: number }>;
  /** `promtool check rules` on rule files given as their text (JSON is YAML too). */
  checkRules(files: string[]): Promise<PromtoolResult>;
}

const PATHS = ["/usr/bin/promtool", "/usr/local/bin/promtool"];

let found: string | null | undefined;

/** The installed promtool, or null (tests that need it are then skipped, saying why). */
export function promtool(): Promtool | null {
  if (found === undefined) {
    found = PATHS.find((p) => {
      try {
        return Deno.statSync(p).isFile;
      } catch {
        return false;
      }
    }) ?? null;
  }
  const bin = found;
  if (bin === null) return null;
  const run = async (args: string[], stdin?: string): Promise<PromtoolResult> => {
    const child = new Deno.Command(bin, {
      args,
      stdin: stdin === undefined ? "null" : "piped",
      stdout: "piped",
      stderr: "piped",
      signal: AbortSignal.timeout(30_000),
    }).spawn();
    if (stdin !== undefined) {
      const w = child.stdin.getWriter();
      await w.write(new TextEncoder().encode(stdin));
      await w.close();
    }
    const out = await child.output();
    const d = new TextDecoder();
    return { code: out.code, output: d.decode(out.stdout) + d.decode(out.stderr) };
  };
  /** Runs `body` with a fresh temporary directory, removed afterwards. */
  const inTempDir = async <T>(body: (dir: string) => Promise<T>): Promise<T> => {
    const dir = Deno.makeTempDirSync({ prefix: "ggaoed-promtool-" });
    try {
      return await body(dir);
    } finally {
      Deno.removeSync(dir, { recursive: true });
    }
  };
  return {
    checkMetrics: (text) => run(["check", "metrics"], text),
    checkRules: (files) =>
      inTempDir((dir) => {
        const paths = files.map((text, i) => {
          const path = `${dir}/rules-${i}.yml`;
          Deno.writeTextFileSync(path, text);
          return path;
        });
        return run(["check", "rules", ...paths]);
      }),
    importOpenMetrics: (text) =>
      inTempDir(async (dir) => {
        const stamped = text.split("\n").map((
          l,
        ) => (l === "" || l.startsWith("#") ? l : `${l} 1700000000`))
          .join("\n");
        Deno.writeTextFileSync(`${dir}/metrics.om`, stamped);
        const r = await run([
          "tsdb",
          "create-blocks-from",
          "openmetrics",
          `${dir}/metrics.om`,
          `${dir}/tsdb`,
        ]);
        // The block table: ULID, MIN TIME, MAX TIME, DURATION, NUM SAMPLES, ...
        const row = /^\w{26}\s+\d+\s+\d+\s+\S+\s+(\d+)/m.exec(r.output);
        return { ...r, samples: row ? Number(row[1]) : -1 };
      }),
  };
}
