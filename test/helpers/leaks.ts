// Looks for secret values in what sluice let out (client bytes, audit, logs, admin answers), in
// every form the scrubber claims to cover, after undoing what a client would undo itself: content
// codings, WebSocket framing and permessage-deflate, wrapped lines. Reports which value and which
// form, never the value, so a failing assertion cannot print it.
import { brotliDecompressSync, constants, gunzipSync, inflateRawSync, inflateSync } from 'node:zlib';

// The oracle is written apart from src/secrets/forms.ts on purpose: it undoes encodings instead of
// listing forms, so it also sees mixes the scrubber does not claim, and it runs on any version.

/** Text with every line break and JSON \n, \r escape taken out (stricter than the scrubber's own joining). */
function unwrapped(text: string): string {
  return text.replace(/\\r\\n|\\n|\\r|\r\n|\r|\n/g, '');
}

/** JSON string escapes undone wherever they are (\uXXXX, \/, \", \\), without parsing. */
function jsonUnescaped(text: string): string {
  return text.replace(/\\u([0-9a-fA-F]{4})/g, (_, hex: string) => String.fromCharCode(parseInt(hex, 16))).replace(/\\([/"\\])/g, '$1');
}

/** %XX escapes undone (malformed ones left), and `+` as space when `form`. */
function percentDecoded(text: string, form: boolean): string {
  const spaced = form ? text.replaceAll('+', ' ') : text;
  return spaced.replace(/(?:%[0-9a-fA-F]{2})+/g, (run) => {
    try {
      return decodeURIComponent(run);
    } catch {
      return run;
    }
  });
}

/** The base64 (or base64url) characters that encode `value` wherever it sits in a larger blob. */
function base64Cores(value: Buffer, encoding: 'base64' | 'base64url'): string[] {
  return [0, 1, 2].map((offset) => {
    const encoded = Buffer.concat([Buffer.alloc(offset), value]).toString(encoding);
    return encoded.slice(Math.ceil((8 * offset) / 6), Math.floor((8 * (offset + value.length)) / 6));
  });
}

/**
 * The first way one of `values` shows in `data`, as "value #i, <how>", or null when it does not:
 * raw, after undoing JSON escapes or percent-encoding, or base64/base64url/hex once lines are joined.
 */
export function leakIn(data: Buffer | string, values: readonly string[]): string | null {
  const texts = typeof data === 'string' ? [data] : [data.toString('utf8'), data.toString('latin1')];
  const views: Array<[string, string]> = [];
  for (const text of texts) {
    views.push(['raw', text], ['json-unescaped', jsonUnescaped(text)], ['percent-decoded', percentDecoded(text, false)]);
    views.push(['form-decoded', percentDecoded(text, true)], ['json-unescaped, percent-decoded', percentDecoded(jsonUnescaped(text), true)]);
  }
  const joined = texts.flatMap((text) => [unwrapped(text), unwrapped(text).replaceAll('\\/', '/')]);
  for (const [i, value] of values.entries()) {
    for (const [how, view] of views) if (view.includes(value)) return `value #${i}, ${how}`;
    const bytes = Buffer.from(value, 'utf8');
    const encoded = [
      ...base64Cores(bytes, 'base64'),
      ...base64Cores(bytes, 'base64url'),
      bytes.toString('hex'),
      bytes.toString('hex').toUpperCase(),
    ];
    for (const form of encoded) if (joined.some((text) => text.includes(form))) return `value #${i}, encoded`;
  }
  return null;
}

/** A body with its Content-Encoding undone as a client would (the codings in the order applied). */
export function decodeBody(body: Buffer, contentEncoding: string | string[] | undefined): Buffer {
  const fields = contentEncoding === undefined ? [] : Array.isArray(contentEncoding) ? contentEncoding : [contentEncoding];
  const codings = fields
    .join(',')
    .split(',')
    .map((c) => c.trim().toLowerCase())
    .filter((c) => c !== '' && c !== 'identity');
  let out = body;
  for (const coding of codings.reverse()) {
    if (coding === 'gzip' || coding === 'x-gzip') out = gunzipSync(out);
    else if (coding === 'br') out = brotliDecompressSync(out);
    else if (coding === 'deflate') out = inflateSync(out);
  }
  return out;
}

/** Bytes as a client would read them at the end: gunzipped when they are gzip data. */
export function gunzipIfGzip(bytes: Buffer): Buffer {
  if (bytes[0] !== 0x1f || bytes[1] !== 0x8b) return bytes;
  try {
    return gunzipSync(bytes);
  } catch {
    return bytes;
  }
}

export interface WsFrameRead {
  fin: boolean;
  rsv1: boolean;
  opcode: number;
  payload: Buffer;
}

/** Server frames (unmasked) parsed from bytes; stops at the first incomplete frame. */
export function serverFrames(bytes: Buffer): WsFrameRead[] {
  const frames: WsFrameRead[] = [];
  let at = 0;
  while (at + 2 <= bytes.length) {
    const b0 = bytes[at]!;
    let length = bytes[at + 1]! & 0x7f;
    let head = 2;
    if (length === 126) {
      if (at + 4 > bytes.length) break;
      length = bytes.readUInt16BE(at + 2);
      head = 4;
    } else if (length === 127) {
      if (at + 10 > bytes.length) break;
      length = Number(bytes.readBigUInt64BE(at + 2));
      head = 10;
    }
    if (at + head + length > bytes.length) break;
    frames.push({ fin: (b0 & 0x80) !== 0, rsv1: (b0 & 0x40) !== 0, opcode: b0 & 0x0f, payload: bytes.subarray(at + head, at + head + length) });
    at += head + length;
  }
  return frames;
}

/**
 * The messages a client reads from server frames: fragments joined, compressed messages inflated
 * with the shared window (context takeover), control frames as their own messages.
 */
export function wsMessages(bytes: Buffer): Buffer[] {
  const messages: Buffer[] = [];
  let parts: Buffer[] = [];
  let compressed = false;
  let window = Buffer.alloc(0);
  for (const frame of serverFrames(bytes)) {
    if (frame.opcode >= 0x8) {
      messages.push(frame.payload);
      continue;
    }
    if (frame.opcode !== 0x0) compressed = frame.rsv1;
    parts.push(frame.payload);
    if (!frame.fin) continue;
    let message = Buffer.concat(parts);
    parts = [];
    if (compressed) {
      message = inflateRawSync(Buffer.concat([message, Buffer.from([0, 0, 0xff, 0xff])]), {
        finishFlush: constants.Z_SYNC_FLUSH,
        ...(window.length > 0 ? { dictionary: window } : {}),
      });
      window = Buffer.concat([window, message]).subarray(-32768);
    }
    messages.push(message);
  }
  return messages;
}
