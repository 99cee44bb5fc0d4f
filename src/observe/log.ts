// The application log (startup, reloads, errors), separate from the audit trail. JSON via pino, to
// stderr by default because stdout may carry the audit stream (`--audit -`). Two layers keep
// credentials out: pino `redact` censors known credential fields, and `scrub` replaces any secret
// value that reached a message, an argument or a field (first on the log call's arguments, then on
// the finished line as a last net for values hidden in bindings or non-plain objects).
import pino, { type DestinationStream, type Logger, type LoggerOptions } from 'pino';

export type { Logger };

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export interface LoggerConfig {
  /** one of LOG_LEVELS; a string because it usually comes straight from a flag or env variable */
  level: string;
  /** default: stderr through an async pino destination */
  destination?: DestinationStream;
  /** replaces secret values in any string; identity when absent */
  scrub?: (s: string) => string;
}

/**
 * pino redact paths. A leading `*` matches one level of nesting, so `headers.x` and `*.x` are both
 * listed; `req.headers.x` (two levels deep, the http serializer's shape) is listed explicitly.
 */
export const REDACT_PATHS = [
  'authorization',
  '["proxy-authorization"]',
  'cookie',
  '["set-cookie"]',
  'token',
  'secret',
  'password',
  'value',
  'req.headers.authorization',
  'req.headers["proxy-authorization"]',
  'req.headers.cookie',
  'res.headers["set-cookie"]',
  'headers.authorization',
  'headers["proxy-authorization"]',
  'headers.cookie',
  'headers["set-cookie"]',
  '*.authorization',
  '*["proxy-authorization"]',
  '*.cookie',
  '*["set-cookie"]',
  '*.token',
  '*.secret',
  '*.password',
  '*.value',
];

const MAX_SCRUB_DEPTH = 8;

export function createLogger(config: LoggerConfig): Logger {
  if (!(LOG_LEVELS as readonly string[]).includes(config.level)) {
    throw new Error(`unknown log level "${config.level}" (expected one of ${LOG_LEVELS.join(', ')})`);
  }
  const scrub = config.scrub ?? ((s: string) => s);
  const options: LoggerOptions = {
    level: config.level,
    base: { name: 'sluice' },
    // Level names and ISO 8601 UTC time, as the audit's ts: a reader needs no table for 30 or epochs.
    formatters: { level: (label) => ({ level: label }) },
    timestamp: pino.stdTimeFunctions.isoTime,
    redact: { paths: REDACT_PATHS, censor: '[REDACTED]' },
    hooks: {
      logMethod(args, method) {
        const scrubbed = scrubArgs(args, scrub);
        return method.apply(this, scrubbed as Parameters<typeof method>);
      },
      streamWrite: (line) => scrub(line),
    },
  };
  return pino(options, config.destination ?? pino.destination({ fd: 2, sync: false }));
}

/** A log call's arguments with every string scrubbed (errors become scrubbed copies). */
function scrubArgs(args: unknown[], scrub: (s: string) => string): unknown[] {
  const seen = new WeakSet<object>();
  return args.map((arg) => scrubValue(arg, scrub, 0, seen));
}

/** A copy of an error with message, stack, cause and own fields scrubbed, still an Error for pino's serializer. */
function scrubError(err: Error, scrub: (s: string) => string, depth: number, seen: WeakSet<object>): Error {
  seen.add(err);
  const copy = new Error(scrub(err.message));
  copy.name = err.name;
  copy.stack = err.stack === undefined ? undefined : scrub(err.stack);
  if (err.cause !== undefined) copy.cause = scrubValue(err.cause, scrub, depth + 1, seen);
  for (const [key, value] of Object.entries(err)) {
    (copy as unknown as Record<string, unknown>)[key] = scrubValue(value, scrub, depth + 1, seen);
  }
  return copy;
}

/** Copies plain objects and arrays with strings scrubbed; anything else is left to the line scrub. */
function scrubValue(value: unknown, scrub: (s: string) => string, depth: number, seen: WeakSet<object>): unknown {
  if (typeof value === 'string') return scrub(value);
  if (typeof value !== 'object' || value === null || depth >= MAX_SCRUB_DEPTH || seen.has(value)) return value;
  if (value instanceof Error) return scrubError(value, scrub, depth, seen);
  if (Array.isArray(value)) {
    seen.add(value);
    return value.map((item) => scrubValue(item, scrub, depth + 1, seen));
  }
  const proto: unknown = Object.getPrototypeOf(value);
  if (proto !== Object.prototype && proto !== null) return value;
  seen.add(value);
  const copy: Record<string, unknown> = {};
  for (const [key, item] of Object.entries(value)) copy[key] = scrubValue(item, scrub, depth + 1, seen);
  return copy;
}
