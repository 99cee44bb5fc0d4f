// issue 22, hostname labels: a wildcard rule ("*.allowed.example") lets a tool pick the names under
// it, and so lets it write data into them (`<base32 of a file>.allowed.example`) whether or not the
// request is ever answered. This judges the labels the wildcard matched: one that is long, dense
// (high Shannon entropy per character) and unlike words (few vowels, or letters and digits mixed)
// reads as encoded data. Pure: a canonical host and thresholds in, a finding out (positions and
// numbers, never the label).
//
// Why these measures: DNS folds case, so data in a label is base32, hex or base36 (base64 does not
// survive). Entropy alone does not tell "my-very-long-bucket-name-for-logs-2024" (4.2 bits/char)
// from 32 random base32 characters (about 4.0): the vowel share does (0.32 against about 0.19;
// random hex about 0.13), and so does how often it changes between letters and digits (random
// base32 every third character, a name with a number on it once or twice). Length keeps short
// shards (CloudFront's d111111abcdef8, k8s pod hashes, api-eu-west-1) out: a short label carries
// little. Hyphens and underscores are taken out before measuring, so separators inserted into the
// data do not shorten it.

export interface LabelCheck {
  /** characters of a label (without - and _) below which it is never judged */
  readonly minLength: number;
  /** bits per character at or above which a long label is dense */
  readonly minEntropy: number;
  /** share of vowels (a e i o u y) below which a dense label is unlike words */
  readonly maxVowelShare: number;
}

/** Measured on random base32/hex/base36 labels and a corpus of real long names (test/policy/labels.test.ts). */
export const DEFAULT_LABEL_CHECK: LabelCheck = Object.freeze({ minLength: 20, minEntropy: 3.0, maxVowelShare: 0.3 });

export interface LabelFinding {
  /** 1-based, counted from the left of the whole host */
  readonly position: number;
  /** how many labels the wildcard matched */
  readonly of: number;
  /** characters measured (without - and _) */
  readonly length: number;
  /** bits per character, one decimal */
  readonly entropy: number;
  /** share of vowels, two decimals */
  readonly vowelShare: number;
  /** the finding is over the hyphen-free labels joined (data split across labels); position is the first of them */
  readonly joined: boolean;
}

/**
 * The first label of the part of `host` a wildcard matched that looks like encoded data, else null.
 * host: canonical name; suffix: the rule's suffix ("allowed.example"), or null for "*" (the whole host).
 */
export function encodedLabel(host: string, suffix: string | null, check: LabelCheck): LabelFinding | null {
  const part = suffix === null ? host : host.slice(0, host.length - suffix.length - 1);
  if (part.length === 0) return null;
  const labels = part.split('.');
  for (const [i, label] of labels.entries()) {
    const finding = judge(label.replace(/[-_]/g, ''), check);
    if (finding) return { ...finding, position: i + 1, of: labels.length, joined: false };
  }
  // Data split into short labels: the labels without separators, joined in order, judged as one.
  const dense = labels.map((label, i) => ({ label, i })).filter(({ label }) => !/[-_]/.test(label));
  if (dense.length < 2) return null;
  const finding = judge(dense.map(({ label }) => label).join(''), check);
  return finding ? { ...finding, position: dense[0]!.i + 1, of: labels.length, joined: true } : null;
}

function judge(text: string, check: LabelCheck): { length: number; entropy: number; vowelShare: number } | null {
  if (text.length < check.minLength) return null;
  const entropy = shannon(text);
  if (entropy < check.minEntropy) return null;
  const vowelShare = (text.match(/[aeiouy]/g)?.length ?? 0) / text.length;
  // Words carry vowels; a word with a number on it changes between letters and digits once or
  // twice, random base32/hex/base36 every third or second character.
  if (vowelShare >= check.maxVowelShare && mixes(text) * MIXED_EVERY < text.length) return null;
  return { length: text.length, entropy: Math.round(entropy * 10) / 10, vowelShare: Math.round(vowelShare * 100) / 100 };
}

/** A dense label that changes between letter and digit once in this many characters or more often reads as data, vowels or not. */
const MIXED_EVERY = 8;

/** How often text changes between a digit and a letter. */
function mixes(text: string): number {
  let changes = 0;
  for (let i = 1; i < text.length; i++) if (isDigit(text.charCodeAt(i)) !== isDigit(text.charCodeAt(i - 1))) changes++;
  return changes;
}

function isDigit(code: number): boolean {
  return code >= 48 && code <= 57;
}

/** Shannon entropy of the characters of text, in bits per character. */
export function shannon(text: string): number {
  const counts = new Map<string, number>();
  for (const c of text) counts.set(c, (counts.get(c) ?? 0) + 1);
  let bits = 0;
  for (const n of counts.values()) {
    const p = n / text.length;
    bits -= p * Math.log2(p);
  }
  return bits;
}
