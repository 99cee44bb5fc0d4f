// Shared test data: obviously fake values, never real credentials. Assertions compare with
// t.ok(a === b) so a failure never prints a value.
import type { Duplex } from 'node:stream';
import type { SecretDoc } from '../../src/config/types.js';

export const FAKE = {
  github: 'ghp_' + 'Fake'.repeat(9),
  gh: 'not-a-real-gh-value-0001',
  stripe: 'fake-stripe-value-for-tests',
  custom: 'custom/value+with$&special=chars',
  other: 'other-fake-value-99',
} as const;

/** Each swap_in names the places the tests below write its placeholder in. */
export const SECRETS: Record<string, SecretDoc> = {
  github: {
    from: { env: 'GH_TOKEN' },
    hosts: ['api.github.com'],
    require: false,
    placeholder: '__sluice_secret_github__',
    swap_in: ['header:Authorization', 'header:X-Token', 'header:X', 'query', 'path', 'body'],
    allow_plaintext: false,
  },
  gh: {
    from: { env: 'GH2' },
    hosts: ['gh.example'],
    require: false,
    placeholder: '__sluice_secret_gh__',
    swap_in: ['header:Authorization', 'body'],
    allow_plaintext: false,
  },
  stripe: {
    from: { env: 'STRIPE' },
    hosts: ['api.stripe.com'],
    require: true,
    inject: { header: 'Authorization', format: 'Bearer {value}' },
    placeholder: '__sluice_secret_stripe__',
    swap_in: ['header:Authorization'],
    allow_plaintext: false,
  },
  custom: {
    from: { env: 'CUSTOM' },
    hosts: ['custom.example'],
    require: true,
    placeholder: 'CUSTOM-PLACEHOLDER-1',
    swap_in: ['header:X-Key', 'query', 'body'],
    allow_plaintext: false,
  },
  other: {
    from: { env: 'OTHER' },
    hosts: ['other.example'],
    require: false,
    placeholder: '__sluice_secret_other__',
    swap_in: ['header:Authorization'],
    allow_plaintext: false,
  },
};

export const values = (alias: string): string | null => (FAKE as Record<string, string>)[alias] ?? null;

/** Writes the chunks, ends, and collects what came out before the end or the first error. */
export async function run(stream: Duplex, chunks: readonly Buffer[]): Promise<{ out: Buffer; error: Error | null }> {
  const out: Buffer[] = [];
  stream.on('data', (chunk: Buffer) => out.push(chunk));
  const done = new Promise<Error | null>((resolve) => {
    stream.on('end', () => resolve(null));
    stream.on('error', (error) => resolve(error));
  });
  for (const chunk of chunks) {
    if (stream.destroyed) break;
    stream.write(chunk);
  }
  if (!stream.destroyed) stream.end();
  const error = await done;
  return { out: Buffer.concat(out), error };
}

/** Every split in two ([0..i], [i..]) and byte by byte. */
export function chunkings(input: Buffer): Buffer[][] {
  const all: Buffer[][] = [];
  for (let i = 0; i <= input.length; i++) all.push([input.subarray(0, i), input.subarray(i)]);
  all.push(Array.from(input, (byte) => Buffer.from([byte])));
  return all;
}
