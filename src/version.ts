// sluice's version: read once from package.json, the one place it is written (CHANGELOG says so).
// Both src/ (tests) and dist/ (the built CLI, the image) sit one level below it.
import { readFileSync } from 'node:fs';

function readVersion(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version?: unknown };
    return typeof pkg.version === 'string' ? pkg.version : 'unknown';
  } catch {
    return 'unknown';
  }
}

export const VERSION = readVersion();
