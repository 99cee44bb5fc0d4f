// Puts a value into a response body the way upstream APIs serve stored data, in each form the
// README says the scrubber covers, and wraps the body in each content coding sluice decodes. Written
// apart from src/secrets/forms.ts: the tests say what "covered" means, the source must live up to it.
import { brotliCompressSync, deflateRawSync, deflateSync, gzipSync } from 'node:zlib';

export const FORMS = [
  'raw',
  'percent',
  'percent-lower',
  'form-urlencoded',
  'json',
  'json-slash',
  'json-html',
  'json-html-upper',
  'json-ascii',
  'json-all',
  'json-all-upper',
  'base64',
  'base64url',
  'base64-wrapped',
  'base64url-wrapped',
  'base64-json-wrapped',
  'hex',
  'hex-upper',
  'hex-wrapped',
] as const;
export type Form = (typeof FORMS)[number];

export const CODINGS = ['identity', 'gzip', 'deflate', 'deflate-raw', 'br', 'gzip, br', 'gzip + br lines', 'identity + gzip lines'] as const;
export type Coding = (typeof CODINGS)[number];

export const WIDTHS = [60, 64, 76] as const;
export const EOLS = ['\n', '\r\n', '\\n', '\\r\\n'] as const;

export interface Embedding {
  form: Form;
  /** bytes of the larger blob before the value (base64 and hex forms) */
  lead: number;
  /** wrapped forms: the line width and the line end (a real one, or a JSON escape) */
  width: (typeof WIDTHS)[number];
  eol: (typeof EOLS)[number];
}

const hex4 = (code: number, upper: boolean): string => {
  const hex = code.toString(16).padStart(4, '0');
  return `\\u${upper ? hex.toUpperCase() : hex}`;
};

/** JSON string text of `value`, the characters `escape` picks written as \u escapes (a pair for one beyond U+FFFF). */
function jsonWith(value: string, escape: (code: number) => boolean, upper: boolean): string {
  return Array.from(value, (char) => {
    const units = Array.from({ length: char.length }, (_, i) => char.charCodeAt(i));
    if (escape(units[0]!)) return units.map((unit) => hex4(unit, upper)).join('');
    const short = JSON.stringify(char).slice(1, -1);
    // control characters without a short escape take the same hex case as the rest
    return units[0]! < 0x20 && short.startsWith('\\u') ? hex4(units[0]!, upper) : short;
  }).join('');
}

const wrap = (text: string, width: number, eol: string): string => (text.match(new RegExp(`.{1,${width}}`, 'gs')) ?? []).join(eol);

/** The value's text in one form; base64 and hex forms sit inside a larger blob (`lead` bytes before it). */
export function embedded(value: string, e: Embedding): string {
  const bytes = Buffer.from(value, 'utf8');
  const inBlob = Buffer.concat([Buffer.alloc(e.lead, 0x41 + (e.lead % 26)), bytes, Buffer.from('tail-of-the-blob')]);
  switch (e.form) {
    case 'raw':
      return value;
    case 'percent':
      return encodeURIComponent(value);
    case 'percent-lower':
      return encodeURIComponent(value).replace(/%[0-9A-F]{2}/g, (x) => x.toLowerCase());
    case 'form-urlencoded':
      return new URLSearchParams({ v: value }).toString().slice(2);
    case 'json':
      return JSON.stringify(value).slice(1, -1);
    case 'json-slash':
      return JSON.stringify(value).slice(1, -1).replaceAll('/', '\\/');
    case 'json-html':
    case 'json-html-upper':
      return jsonWith(value, (c) => c === 0x3c || c === 0x3e || c === 0x26, e.form === 'json-html-upper');
    case 'json-ascii':
      return jsonWith(value, (c) => c > 0x7e, false);
    case 'json-all':
    case 'json-all-upper':
      return jsonWith(value, () => true, e.form === 'json-all-upper');
    case 'base64':
      return inBlob.toString('base64');
    case 'base64url':
      return inBlob.toString('base64url');
    case 'base64-wrapped':
      return wrap(inBlob.toString('base64'), e.width, e.eol);
    case 'base64url-wrapped':
      return wrap(inBlob.toString('base64url'), e.width, e.eol);
    case 'base64-json-wrapped':
      // GitHub's contents API
      return JSON.stringify({ content: `${wrap(inBlob.toString('base64'), 60, '\n')}\n` });
    case 'hex':
      return inBlob.toString('hex');
    case 'hex-upper':
      return inBlob.toString('hex').toUpperCase();
    case 'hex-wrapped':
      return wrap(inBlob.toString('hex'), e.width, e.eol);
  }
}

/** A body in a content coding: the Content-Encoding header lines to send, and the bytes. */
export function encoded(body: Buffer, coding: Coding): { headers: string[]; body: Buffer } {
  switch (coding) {
    case 'identity':
      return { headers: [], body };
    case 'gzip':
      return { headers: ['Content-Encoding: gzip'], body: gzipSync(body) };
    case 'deflate':
      return { headers: ['Content-Encoding: deflate'], body: deflateSync(body) };
    case 'deflate-raw':
      return { headers: ['Content-Encoding: deflate'], body: deflateRawSync(body) };
    case 'br':
      return { headers: ['Content-Encoding: br'], body: brotliCompressSync(body) };
    case 'gzip, br':
      return { headers: ['Content-Encoding: gzip, br'], body: brotliCompressSync(gzipSync(body)) };
    case 'gzip + br lines':
      return { headers: ['Content-Encoding: gzip', 'Content-Encoding: br'], body: brotliCompressSync(gzipSync(body)) };
    case 'identity + gzip lines':
      return { headers: ['Content-Encoding: identity', 'Content-Encoding: gzip'], body: gzipSync(body) };
  }
}

/** The Content-Encoding value(s) of `headers` lines, as the scrubber is given them. */
export function contentEncodings(headers: readonly string[]): string[] {
  return headers.map((line) => line.slice(line.indexOf(':') + 1).trim());
}

/** `bytes` cut at the given points (any numbers; taken modulo the length, sorted, de-duplicated). */
export function cutAt(bytes: Buffer, points: readonly number[]): Buffer[] {
  const cuts = [...new Set(points.map((p) => p % (bytes.length + 1)))].sort((a, b) => a - b);
  const ends = [...cuts, bytes.length];
  return [0, ...cuts].map((start, i) => bytes.subarray(start, ends[i]));
}
