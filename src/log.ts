/**
 * Logging for the daemon and its tools, on LogTape. Messages go to standard error (the default,
 * and always with `-d`) as `ggaoed[PID]: LEVEL: message`, written synchronously so that nothing is
 * lost at exit; or to syslog (ident `ggaoed`, facility daemon) with `log-target = "syslog"`.
 *
 * Message texts keep the original's wording where admins match on it (logcheck rules), e.g.
 * `disk/NAME: Shelf 0, slot 1, path '/dev/sdb' (size 100 GiB, sectors 209715200) opened`.
 *
 * @module
 */

import { configure, getLogger, type LogLevel, type LogRecord, reset } from "@logtape/logtape";

export type Level = "debug" | "info" | "warning" | "error";

const encoder = new TextEncoder();

function render(record: LogRecord): string {
  return record.message.map((part) => (typeof part === "string" ? part : String(part))).join("");
}

/** Where log lines go: stderr, or a syslog writer (see `ffi/syslog.ts`). */
export interface LogOptions {
  level: Level;
  /** Receives each line instead of stderr (syslog, tests). */
  sink?: (level: Level, message: string) => void;
}

/** Sets up logging once, at start. */
export async function setupLogging(options: LogOptions): Promise<void> {
  const pid = Deno.pid;
  const out = options.sink;
  await reset();
  await configure({
    reset: true,
    sinks: {
      main: (record: LogRecord) => {
        const level = toLevel(record.level);
        const message = render(record);
        if (out) out(level, message);
        else {
          Deno.stderr.writeSync(
            encoder.encode(`ggaoed[${pid}]: ${level}: ${message}\n`),
          );
        }
      },
    },
    loggers: [
      { category: ["ggaoed"], sinks: ["main"], lowestLevel: options.level as LogLevel },
      { category: ["logtape", "meta"], sinks: [], lowestLevel: "warning" },
    ],
  });
}

function toLevel(l: LogLevel): Level {
  if (l === "trace" || l === "debug") return "debug";
  if (l === "info") return "info";
  if (l === "warning") return "warning";
  return "error";
}

const logger = getLogger(["ggaoed"]);

/** Logs one message. */
export function log(level: Level, message: string): void {
  // Pass the text as a single interpolated value so that braces in it are not placeholders.
  switch (level) {
    case "debug":
      logger.debug("{m}", { m: message });
      break;
    case "info":
      logger.info("{m}", { m: message });
      break;
    case "warning":
      logger.warn("{m}", { m: message });
      break;
    default:
      logger.error("{m}", { m: message });
  }
}
