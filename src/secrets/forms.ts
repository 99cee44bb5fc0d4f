// The shapes a secret value takes on the wire, and percent-encoding helpers for placeholders.

/** A base64 form shorter than this is too likely to occur by chance to be scrubbed or flagged. */
const MIN_ENCODED_FORM = 8;

/**
 * Base64 text that encodes `value` wherever it sits inside a larger base64 blob: the value can
 * start at any of three byte offsets of a 3-byte group, and only the characters whose 6 bits all
 * come from the value are stable. Also the whole, padded encoding at offset 0 (the common case).
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
  return forms.filter((form) => form.length >= MIN_ENCODED_FORM);
}

/** Forms by value: they are asked for on every request and audit line, and values change rarely. */
const formsCache = new Map<string, readonly string[]>();
const FORMS_CACHE_MAX = 1024;

/** Every form of a value to look for: raw, percent-encoded, JSON-escaped, base64 and base64url. */
export function valueForms(value: string): readonly string[] {
  let forms = formsCache.get(value);
  if (!forms) {
    if (formsCache.size >= FORMS_CACHE_MAX) formsCache.clear();
    forms = Object.freeze(computeForms(value));
    formsCache.set(value, forms);
  }
  return forms;
}

function computeForms(value: string): string[] {
  const encoded = encodeURIComponent(value);
  const forms = [
    value,
    encoded,
    encoded.replace(/%[0-9A-F]{2}/g, (escape) => escape.toLowerCase()),
    JSON.stringify(value).slice(1, -1),
    ...base64Forms(Buffer.from(value, 'utf8')),
  ];
  return [...new Set(forms)].filter((form) => form.length > 0);
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
