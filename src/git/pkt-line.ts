// git's pkt-line framing (gitprotocol-common): four hex digits giving the length of the line
// including themselves, then the payload; "0000" is a flush, "0001" a delimiter and "0002" a
// response end (protocol v2). Pure: bytes in, one line (or why not) out. Used to read the command
// list of a push and to write the report-status answer sluice gives when it refuses one.

/** Largest pkt-line git writes or reads: 65520 bytes, the four length digits included. */
export const MAX_PKT_LEN = 65520;

export type PktLine = { kind: 'data'; payload: Buffer } | { kind: 'flush' } | { kind: 'delim' } | { kind: 'response-end' };

export type PktRead =
  | { state: 'line'; line: PktLine; next: number }
  /** the buffer ends inside the line: more bytes are needed */
  | { state: 'incomplete' }
  | { state: 'malformed'; why: string };

const HEX4 = /^[0-9a-fA-F]{4}$/;

/** Reads the pkt-line that starts at `at`. Never throws. */
export function readPktLine(buf: Buffer, at: number): PktRead {
  if (buf.length - at < 4) {
    // Even a partial length must be hex: a body that is not pkt-lines is refused at its first byte.
    const partial = buf.subarray(at).toString('latin1');
    return /^[0-9a-fA-F]*$/.test(partial) ? { state: 'incomplete' } : { state: 'malformed', why: 'the body is not git pkt-lines' };
  }
  const digits = buf.subarray(at, at + 4).toString('latin1');
  if (!HEX4.test(digits)) return { state: 'malformed', why: `bad pkt-line length ${JSON.stringify(printable(digits))}` };
  const len = Number.parseInt(digits, 16);
  if (len === 0) return { state: 'line', line: { kind: 'flush' }, next: at + 4 };
  if (len === 1) return { state: 'line', line: { kind: 'delim' }, next: at + 4 };
  if (len === 2) return { state: 'line', line: { kind: 'response-end' }, next: at + 4 };
  if (len < 4) return { state: 'malformed', why: `bad pkt-line length ${digits}` };
  if (len > MAX_PKT_LEN) return { state: 'malformed', why: `pkt-line length ${len} is over git's ${MAX_PKT_LEN}` };
  if (buf.length - at < len) return { state: 'incomplete' };
  return { state: 'line', line: { kind: 'data', payload: buf.subarray(at + 4, at + len) }, next: at + len };
}

/** One data pkt-line; the payload must fit (callers split larger data, as side-band does). */
export function pktLine(payload: Buffer | string): Buffer {
  const body = typeof payload === 'string' ? Buffer.from(payload, 'utf8') : payload;
  const len = body.length + 4;
  if (len > MAX_PKT_LEN) throw new RangeError(`pkt-line payload of ${body.length} bytes is too long`);
  return Buffer.concat([Buffer.from(len.toString(16).padStart(4, '0'), 'latin1'), body]);
}

export const FLUSH_PKT = Buffer.from('0000', 'latin1');

/** Visible ASCII only, for a sentence about bytes a client sent. */
export function printable(text: string): string {
  return text.replace(/[^\x20-\x7e]/g, '?').slice(0, 80);
}
