// Request bodies: swap in-scope placeholders for values as the body streams through, and fail the
// stream (SecretViolation) before the first byte of anything the tool may not send.
import type { Transform } from 'node:stream';
import type { SecretDoc } from '../config/types.js';
import { valueForms } from './forms.js';
import { LEAK_PATTERNS, type LeakPattern } from './leak-patterns.js';
import { insecureDetail, misplacedDetail, placesOf } from './placement.js';
import { placeholderIndex } from './placeholders.js';
import { NeedleSet, RewriteStream, type Needle, type NeedleAction } from './rewrite.js';

export interface BodySwapOptions {
  tool: string;
  granted: readonly string[];
  inScope: readonly string[];
  secrets: Record<string, SecretDoc>;
  values: (alias: string) => string | null;
  /** values to treat as leaks; default: values() of every alias (pass SecretStore.knownValues() for rotated ones) */
  known?: ReadonlyArray<{ alias: string; value: string }>;
  /** credential shapes to refuse; default LEAK_PATTERNS */
  leakPatterns?: readonly LeakPattern[];
  /** once per alias per body, after its value has been passed on */
  onUse?: (alias: string, where: 'body') => void;
  /** the request goes upstream over TLS sluice verified: only then are values swapped in (unless allow_plaintext) */
  tls: boolean;
}

/** A placeholder as written raw, and fully percent-encoded with upper- and lower-case hex (form bodies). */
function writtenForms(placeholder: string): Array<{ text: string; encoded: boolean }> {
  const upper = Array.from(Buffer.from(placeholder, 'utf8'), (b) => `%${b.toString(16).toUpperCase().padStart(2, '0')}`).join('');
  return [
    { text: placeholder, encoded: false },
    { text: upper, encoded: true },
    { text: upper.toLowerCase(), encoded: true },
  ];
}

function needle(text: string, action: NeedleAction): Needle {
  return { bytes: Buffer.from(text, 'utf8'), action };
}

export function createBodySwapper(options: BodySwapOptions): Transform {
  const index = placeholderIndex(options.secrets);
  const needles: Needle[] = [];

  for (const { alias, placeholder } of index.entries) {
    const secret = options.secrets[alias]!;
    const inScope = options.inScope.includes(alias);
    const value = inScope ? options.values(alias) : null;
    for (const form of writtenForms(placeholder)) {
      let action: NeedleAction;
      if (!options.granted.includes(alias)) {
        action = {
          kind: 'refuse',
          reason: 'secret_not_granted',
          alias,
          detail: `tool "${options.tool}" is not granted secret "${alias}" (placeholder in body)`,
        };
      } else if (!inScope) {
        action = {
          kind: 'refuse',
          reason: 'secret_out_of_scope',
          alias,
          detail: `secret "${alias}" may only be sent to its own hosts, and this host is not one of them (placeholder in body)`,
        };
      } else if (!placesOf(secret).body) {
        action = { kind: 'refuse', reason: 'secret_misplaced', alias, detail: misplacedDetail(alias, secret, 'body') };
      } else if (!options.tls && !secret.allow_plaintext) {
        action = { kind: 'refuse', reason: 'secret_insecure', alias, detail: insecureDetail(alias, 'its placeholder in the body') };
      } else if (!value) {
        action = {
          kind: 'refuse',
          reason: 'secret_unavailable',
          alias,
          detail: `secret "${alias}" has no value right now (its source is missing or empty)`,
        };
      } else {
        action = { kind: 'replace', with: Buffer.from(form.encoded ? encodeURIComponent(value) : value, 'utf8'), use: alias };
      }
      needles.push(needle(form.text, action));
    }
  }

  const known =
    options.known ??
    Object.keys(options.secrets).flatMap((alias) => {
      const value = options.values(alias);
      return value ? [{ alias, value }] : [];
    });
  for (const { alias, value } of known) {
    for (const form of valueForms(value)) {
      needles.push(
        needle(form, {
          kind: 'refuse',
          reason: 'secret_leak',
          alias,
          detail: `the body carries the real value of secret "${alias}"; send its placeholder instead`,
        }),
      );
    }
  }

  const onUse = options.onUse;
  return new RewriteStream({
    needles: new NeedleSet(needles),
    leakPatterns: options.leakPatterns ?? LEAK_PATTERNS,
    ...(onUse ? { onUse: (alias: string) => onUse(alias, 'body') } : {}),
  });
}
