/**
 * LogTape set-up for the CLI: human-readable records on stderr (stdout is reserved for JSON
 * lines), at the level given by --log-level.
 * @module
 */
import { configure, getTextFormatter, type LogLevel, type LogRecord } from "@logtape/logtape";

/** Levels accepted by --log-level. */
export const LOG_LEVELS: readonly LogLevel[] = [
  "trace",
  "debug",
  "info",
  "warning",
  "error",
  "fatal",
];

/** Sends records of `ic-handshake` at `level` and above to stderr. */
export async function setupLogging(level: LogLevel): Promise<void> {
  const format = getTextFormatter();
  const encoder = new TextEncoder();
  await configure({
    reset: true,
    sinks: {
      stderr: (record: LogRecord) => {
        Deno.stderr.writeSync(encoder.encode(format(record)));
      },
    },
    loggers: [
      { category: ["ic-handshake"], lowestLevel: level, sinks: ["stderr"] },
      { category: ["logtape", "meta"], lowestLevel: "warning", sinks: ["stderr"] },
    ],
  });
}
