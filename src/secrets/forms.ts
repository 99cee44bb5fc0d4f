// The shapes a secret value takes on the wire, and percent-encoding helpers for placeholders.
//
// Two families, because they are searched differently (scanner.ts):
// - text forms are looked for in the bytes as they are: raw, percent-encoded, JSON-escaped;
// - encoded forms (base64, base64url, hex) are looked for with the line breaks of a wrapped blob
//   taken out (MIME, PEM, GitHub's contents API wrap base64 at 60, 64 or 76 columns).
// Anything else an upstream does to a value (other encodings, compression inside a payload, a
// value cut into pieces it sends apart) is out of reach of a scanner; the README says so.

/** A base64 or hex form shorter than this is too likely to occur by chance to be scrubbed or flagged. */
const MIN_ENCODED_FORM = 8;

/**
 * Base64 text that encodes `value` wherever it sits inside a larger base64 blob: the value can
 * start at any of three byte offsets of a 3-byte group, and only the characters whose 6 bits all
 * come from the value are stable. Also the whole, padded encoding at offset 0 (the common case).
 * For a standard alphabet form with a `/`, also the form a JSON encoder that escapes `/` writes.
 */
function base64Forms(value: Buffer): string[] {
  const forms: string[] = [];
  for (const encoding of ['base64', 'base64url'] as const) {
    forms.push(value.toString(encoding));
    for (let offset = 0; offset < 3; offset++) {
      const encoded = Buffer.concat([Buffer.alloc(offset), value]).toString(encoding);
      const first = Math.ceil((8 * offset) / 6);
      const end = Math.floor((8 * (offset + value.length)) / 6);
      forms.push(encoded.slice(first, end));
    }
  }
  const escaped = forms.filter((form) => form.includes('/')).map((form) => form.replaceAll('/', '\\/'));
  return [...forms, ...escaped].filter((form) => form.length >= MIN_ENCODED_FORM);
}

function hexForms(value: Buffer): string[] {
  const hex = value.toString('hex');
  return [hex, hex.toUpperCase()].filter((form) => form.length >= MIN_ENCODED_FORM);
}

/**
 * Characters JSON encoders differ on: each class is escaped by some encoders and not by others
 * (Go escapes `<`, `>`, `&` and U+2028/U+2029; PHP `/` as `\/` and non-ASCII, and with its
 * JSON_HEX_* flags `<>`, `&`, `'` and `"`; Python's ensure_ascii non-ASCII).
 */
const JSON_CLASSES: ReadonlyArray<(code: number) => boolean> = [
  (c) => c === 0x3c || c === 0x3e,
  (c) => c === 0x26,
  (c) => c === 0x27,
  (c) => c === 0x22,
  (c) => c === 0x2f,
  (c) => c === 0x2028 || c === 0x2029,
  (c) => c > 0x7e && c !== 0x2028 && c !== 0x2029,
];

const SHORT_ESCAPES: Readonly<Record<number, string>> = { 0x08: '\\b', 0x09: '\\t', 0x0a: '\\n', 0x0c: '\\f', 0x0d: '\\r' };

function unicodeEscape(code: number, upper: boolean): string {
  const hex = code.toString(16).padStart(4, '0');
  return `\\u${upper ? hex.toUpperCase() : hex}`;
}

/** `value` as a JSON string body, the classes in `escaped` written as escapes. */
function jsonEscaped(value: string, escaped: ReadonlySet<number>, upper: boolean): string {
  let out = '';
  for (let i = 0; i < value.length; i++) {
    const code = value.charCodeAt(i);
    const klass = JSON_CLASSES.findIndex((test) => test(code));
    if (klass >= 0 && escaped.has(klass)) out += code === 0x2f ? '\\/' : unicodeEscape(code, upper);
    else if (code === 0x22) out += '\\"';
    else if (code === 0x5c) out += '\\\\';
    else if (code < 0x20) out += SHORT_ESCAPES[code] ?? unicodeEscape(code, upper);
    else out += value[i];
  }
  return out;
}

/** Every way a JSON encoder may write the value: each mix of the classes it contains, either hex case, and all-escaped. */
function jsonForms(value: string): string[] {
  const codes = Array.from({ length: value.length }, (_, i) => value.charCodeAt(i));
  const present = JSON_CLASSES.flatMap((test, klass) => (codes.some(test) ? [klass] : []));
  const forms: string[] = [];
  for (const upper of [false, true]) {
    forms.push(codes.map((code) => unicodeEscape(code, upper)).join(''));
    for (let mask = 0; mask < 1 << present.length; mask++) {
      const escaped = new Set(present.filter((_, bit) => mask & (1 << bit)));
      forms.push(jsonEscaped(value, escaped, upper));
    }
  }
  return forms;
}

/** Forms by value: they are asked for on every request and audit line, and values change rarely. */
const textCache = new Map<string, readonly string[]>();
const encodedCache = new Map<string, readonly string[]>();
const allCache = new Map<string, readonly string[]>();
const FORMS_CACHE_MAX = 1024;

function cached(cache: Map<string, readonly string[]>, value: string, compute: (value: string) => string[]): readonly string[] {
  let forms = cache.get(value);
  if (!forms) {
    if (cache.size >= FORMS_CACHE_MAX) cache.clear();
    forms = Object.freeze([...new Set(compute(value))].filter((form) => form.length > 0));
    cache.set(value, forms);
  }
  return forms;
}

/**
 * Forms to look for in text as it is: raw; percent-encoded (upper- and lower-case hex, and as a
 * form field with `+` for space); JSON-escaped as JSON.stringify writes it, with `/` as `\/`, with
 * the HTML characters, non-ASCII, or every character as \uXXXX (either case), and their mixes.
 */
export function textForms(value: string): readonly string[] {
  return cached(textCache, value, (v) => {
    const encoded = encodeURIComponent(v);
    return [
      v,
      encoded,
      encoded.replace(/%[0-9A-F]{2}/g, (escape) => escape.toLowerCase()),
      new URLSearchParams({ v }).toString().slice(2),
      ...jsonForms(v),
    ];
  });
}

/**
 * Forms to look for with wrapped lines joined (scanner.ts): base64 and base64url at any offset in
 * a larger blob (also with `\/`), hex in lower and upper case. Each at least MIN_ENCODED_FORM long.
 */
export function encodedForms(value: string): readonly string[] {
  return cached(encodedCache, value, (v) => {
    const bytes = Buffer.from(v, 'utf8');
    return [...base64Forms(bytes), ...hexForms(bytes)];
  });
}

/** Every form of a value: text forms, then encoded forms (for checks on text that is never wrapped). */
export function valueForms(value: string): readonly string[] {
  return cached(allCache, value, (v) => [...textForms(v), ...encodedForms(v)]);
}

/** Decodes %XX escapes, leaving malformed ones as they are (never throws, unlike decodeURIComponent). */
export function percentDecode(text: string): string {
  if (!text.includes('%')) return text;
  const bytes = Buffer.from(text, 'utf8');
  const out = Buffer.alloc(bytes.length);
  let length = 0;
  for (let i = 0; i < bytes.length; i++) {
    const byte = bytes[i]!;
    if (byte === 0x25 && i + 2 < bytes.length && isHex(bytes[i + 1]!) && isHex(bytes[i + 2]!)) {
      out[length++] = parseInt(String.fromCharCode(bytes[i + 1]!, bytes[i + 2]!), 16);
      i += 2;
    } else {
      out[length++] = byte;
    }
  }
  return out.subarray(0, length).toString('utf8');
}

function isHex(byte: number): boolean {
  return (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x46) || (byte >= 0x61 && byte <= 0x66);
}

function escapeRegex(char: string): string {
  return char.replace(/[\\^$.*+?()[\]{}|/-]/g, '\\$&');
}

/**
 * A global regex matching `text` raw, percent-encoded, or any mix of the two (hex digits in either
 * case): `__x__`, `%5F%5Fx%5f%5f` and `%5F_x__` all match.
 */
export function rawOrPercentEncoded(text: string): RegExp {
  const parts = Array.from(text, (char) => {
    const escapes = Array.from(Buffer.from(char, 'utf8'), (byte) => {
      const hex = byte.toString(16).padStart(2, '0');
      return Array.from(hex, (digit) => (/[a-f]/.test(digit) ? `[${digit}${digit.toUpperCase()}]` : digit)).join('');
    });
    return `(?:${escapeRegex(char)}|%${escapes.join('%')})`;
  });
  return new RegExp(parts.join(''), 'g');
}
