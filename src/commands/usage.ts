// Shared parsing for commands: flags via node:util parseArgs, env fallbacks, endpoints, numbers.
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { splitHostPort } from '../net/host.js';

export class UsageError extends Error {}

export interface Flags {
  values: Record<string, string | boolean | undefined>;
  positionals: string[];
}

/** Parses flags (plus -h/--help); returns null after printing the help. */
export function parseFlags(args: string[], options: NonNullable<ParseArgsConfig['options']>, help: string): Flags | null {
  let parsed: Flags;
  try {
    parsed = parseArgs({ args, options: { ...options, help: { type: 'boolean', short: 'h' } }, allowPositionals: true, strict: true });
  } catch (err) {
    throw new UsageError(`${(err as Error).message}\n\n${help}`);
  }
  if (parsed.values.help) {
    process.stdout.write(help);
    return null;
  }
  return parsed;
}

export function parseEndpoint(text: string, flag: string): { host: string; port: number } {
  const split = splitHostPort(text);
  if (!split || split.port === null) throw new UsageError(`${flag} must be host:port (got "${text}")`);
  return { host: split.host, port: split.port };
}

/** A whole number ≥ 0 from a flag or env value. */
export function wholeNumber(text: string, flag: string): number {
  const n = Number(text);
  if (text.trim() === '' || !Number.isInteger(n) || n < 0) throw new UsageError(`${flag} must be a whole number (got "${text}")`);
  return n;
}
