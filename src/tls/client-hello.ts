// Reads the SNI and ALPN of a TLS ClientHello from the first bytes of a tunnel, without I/O: the
// caller feeds everything it has buffered so far and gets one of
//   need_more  the bytes are a valid prefix of a ClientHello (or too few to tell) and below the caps
//   not_tls    the first bytes do not start like a TLS record or an SSLv2-style hello at all
//   malformed  they start like TLS but are not one ClientHello sluice can read (with why)
//   tls        a complete ClientHello, with its server_name and ALPN list
// The bytes come from the tool, so they are hostile: every length is checked against what is
// really there and against the caps below, nothing here throws, and a prefix that is already
// malformed is reported at once rather than after waiting for the rest. Because the parse runs
// left to right and stops at the first fault, a result other than need_more never changes when
// more bytes arrive: the I/O adapter may call this on every chunk.
// Layout: RFC 8446 §5.1 (records), §4.1.2 (ClientHello), RFC 6066 §3 (server_name), RFC 7301 (ALPN).

export type HelloScan =
  { state: 'need_more' } | { state: 'not_tls' } | { state: 'malformed'; why: string } | { state: 'tls'; sni: string | null; alpn: string[] };

/** TLSPlaintext.length limit (RFC 8446 §5.1): the first flight is never encrypted. */
const MAX_RECORD_LENGTH = 16384;
/**
 * The most bytes a ClientHello's records may take on the wire: one full-size record and its
 * header. Real ClientHellos are 0.2–2 KiB (post-quantum key shares included), so this is only
 * ever reached by padding; it is also the most the I/O adapter ever buffers before a decision.
 */
export const MAX_HELLO_WIRE_BYTES = MAX_RECORD_LENGTH + 5;
/**
 * Real clients send the hello in one record (two at most with very large key shares); a hello
 * cut into many tiny records is how DPI evasion tools hide the SNI from middleboxes. Past this
 * it is refused, never relayed as "not TLS".
 */
export const MAX_HELLO_RECORDS = 16;

const CONTENT_TYPE_HANDSHAKE = 22;
const HANDSHAKE_CLIENT_HELLO = 1;
const SSL2_MT_CLIENT_HELLO = 1;
const EXT_SERVER_NAME = 0;
const EXT_ALPN = 16;
const SNI_HOST_NAME = 0;
const RECORD_TYPES: Record<number, string> = { 20: 'change_cipher_spec', 21: 'alert', 23: 'application_data', 24: 'heartbeat' };

const NEED_MORE = Object.freeze({ state: 'need_more' as const });
const NOT_TLS = Object.freeze({ state: 'not_tls' as const });
const malformed = (why: string): HelloScan => ({ state: 'malformed', why });

export function scanClientHello(buf: Buffer): HelloScan {
  const start = classifyStart(buf);
  if (start !== null) return start;

  // Walk the records, keeping what is there of each fragment; lengths are judged as soon as the
  // header declaring them has arrived, before their bytes do.
  const parts: Buffer[] = [];
  let have = 0; // fragment bytes present
  let declared = 0; // fragment bytes announced by complete record headers
  let helloLength: number | null = null; // handshake header (4) + body, once known
  let offset = 0;
  let complete = false;
  // A fault in a record header is reported only if the hello's bytes before that header are not
  // already malformed: the first fault in wire order wins, so a shorter prefix never disagrees.
  const recordFault = (why: string): HelloScan => (helloLength === null ? null : parseBody(parts, have, helloLength, false)) ?? malformed(why);
  const BYTES_AFTER = "the ClientHello's record carries bytes after the ClientHello";
  for (let records = 0; ; records++) {
    if (helloLength !== null && declared === helloLength) {
      complete = true;
      break;
    }
    if (records === MAX_HELLO_RECORDS) return recordFault(`the ClientHello is split over more than ${MAX_HELLO_RECORDS} records`);
    if (helloLength !== null && offset + 5 + (helloLength - declared) > MAX_HELLO_WIRE_BYTES) {
      return recordFault(`the ClientHello's records would take more than ${MAX_HELLO_WIRE_BYTES} bytes`);
    }
    const header = buf.subarray(offset, offset + 5);
    if (header.length >= 1 && header[0] !== CONTENT_TYPE_HANDSHAKE) {
      return recordFault(`record ${records + 1} is ${recordName(header[0]!)}, not the rest of the handshake`);
    }
    if (header.length >= 2 && header[1] !== 3) return recordFault(`record ${records + 1} has version ${header[1]}.x, not 3.x`);
    if (header.length < 5) break;
    const length = header.readUInt16BE(3);
    if (length === 0) return recordFault('a zero-length handshake record');
    if (length > MAX_RECORD_LENGTH) return recordFault(`a record of ${length} bytes, over the TLS limit of ${MAX_RECORD_LENGTH}`);
    if (offset + 5 + length > MAX_HELLO_WIRE_BYTES) {
      return recordFault(`the ClientHello's records would take more than ${MAX_HELLO_WIRE_BYTES} bytes`);
    }
    // Nothing may follow the ClientHello in its own records: the client waits for the ServerHello,
    // and early data travels in records of its own (RFC 8446 §5.1: no message spans a key change).
    if (helloLength !== null && declared + length > helloLength) return recordFault(BYTES_AFTER);
    const fragment = buf.subarray(offset + 5, offset + 5 + length);
    parts.push(fragment);
    have += fragment.length;
    declared += length;
    // Faults in the handshake header come before any body byte: nothing earlier can be malformed.
    if (helloLength === null && have >= 1) {
      const type = parts[0]![0]!; // the first record is complete before a second is read
      if (type !== HANDSHAKE_CLIENT_HELLO) return malformed(`the first handshake message has type ${type}, not ClientHello (1)`);
    }
    if (helloLength === null && have >= 4) {
      helloLength = 4 + Buffer.concat(parts, 4).readUIntBE(1, 3);
      if (helloLength > MAX_RECORD_LENGTH) return malformed(`a ClientHello of ${helloLength} bytes, more than ${MAX_RECORD_LENGTH}`);
      if (declared > helloLength) return malformed(BYTES_AFTER);
    }
    if (fragment.length < length) break;
    offset += 5 + length;
  }
  if (helloLength === null) return NEED_MORE;
  // Bytes after the hello's last record are the tunnel's business.
  return parseBody(parts, have, helloLength, complete) ?? NEED_MORE;
}

/**
 * Parses the hello body as far as it has arrived: the answer when `complete`, malformed when the
 * bytes so far already contradict themselves, null when more bytes are needed to tell.
 */
function parseBody(parts: Buffer[], have: number, helloLength: number, complete: boolean): HelloScan | null {
  if (have <= 4) return complete ? parseOrFault(Buffer.alloc(0), helloLength) : null;
  const message = parts.length === 1 ? parts[0]! : Buffer.concat(parts, have);
  const result = parseOrFault(message.subarray(4), helloLength);
  return complete || result?.state === 'malformed' ? result : null;
}

function parseOrFault(body: Buffer, helloLength: number): HelloScan | null {
  try {
    return parseClientHelloBody(new Reader(body, helloLength - 4));
  } catch (e) {
    if (e === SHORT) return null;
    if (e instanceof Malformed) return malformed(e.message);
    throw e;
  }
}

/**
 * What the first bytes look like: null for the start of a TLS handshake record (parse on), or the
 * answer already. Any record type (20–24) with version 3.x counts as "looks like TLS", so an alert
 * or change_cipher_spec first is refused rather than taken for another protocol. So does an
 * SSLv2-style hello (high bit set, CLIENT-HELLO as the message type), which OpenSSL still accepts
 * to negotiate TLS and which carries no extensions, hence no SNI.
 */
function classifyStart(buf: Buffer): HelloScan | null {
  if (buf.length === 0) return NEED_MORE;
  const first = buf[0]!;
  if (first >= 20 && first <= 24) {
    if (buf.length < 2) return NEED_MORE;
    if (buf[1] !== 3) return NOT_TLS;
    if (first !== CONTENT_TYPE_HANDSHAKE) return malformed(`the first record is ${recordName(first)}, not a handshake`);
    return null;
  }
  if (first & 0x80) {
    if (buf.length < 3) return NEED_MORE;
    if (buf[2] === SSL2_MT_CLIENT_HELLO) return malformed('an SSLv2-style hello, which carries no server name');
    return NOT_TLS;
  }
  return NOT_TLS;
}

function recordName(type: number): string {
  const name = RECORD_TYPES[type];
  return name === undefined ? `content type ${type}` : `${name} (${type})`;
}

function parseClientHelloBody(hello: Reader): HelloScan {
  const legacyVersion = hello.u16();
  if (legacyVersion >> 8 !== 3) throw new Malformed(`legacy_version ${legacyVersion >> 8}.${legacyVersion & 0xff}, not 3.x`);
  hello.skip(32); // random
  const sessionId = hello.vector8();
  if (sessionId.declared > 32) throw new Malformed(`a session id of ${sessionId.declared} bytes, more than 32`);
  sessionId.skip(sessionId.declared);
  const cipherSuites = hello.vector16();
  if (cipherSuites.declared < 2 || cipherSuites.declared % 2 !== 0) {
    throw new Malformed(`a cipher suite list of ${cipherSuites.declared} bytes`);
  }
  cipherSuites.skip(cipherSuites.declared);
  const compression = hello.vector8();
  if (compression.declared < 1) throw new Malformed('no compression methods');
  compression.skip(compression.declared);
  if (hello.declared === 0) return { state: 'tls', sni: null, alpn: [] }; // no extensions at all

  const extensions = hello.vector16();
  if (hello.declared !== 0) throw new Malformed(`${hello.declared} bytes after the extensions`);
  const seen = new Set<number>();
  let sni: string | null = null;
  let alpn: string[] = [];
  while (extensions.declared > 0) {
    const type = extensions.u16();
    // RFC 8446 §4.2: an extension type appears at most once; a repeat could make us read one name
    // while the server reads another.
    if (seen.has(type)) throw new Malformed(`extension ${type} appears twice`);
    seen.add(type);
    const data = extensions.vector16();
    if (type === EXT_SERVER_NAME) sni = parseServerName(data);
    else if (type === EXT_ALPN) alpn = parseAlpn(data);
    else data.skip(data.declared);
  }
  return { state: 'tls', sni, alpn };
}

/** The one host_name of a server_name extension; malformed when empty, repeated or not printable ASCII. */
function parseServerName(data: Reader): string {
  const list = data.vector16();
  if (data.declared !== 0) throw new Malformed('bytes after the server_name list');
  if (list.declared === 0) throw new Malformed('an empty server_name list');
  let hostName: string | null = null;
  while (list.declared > 0) {
    const nameType = list.u8();
    const name = list.vector16();
    const bytes = name.bytes(name.declared);
    if (nameType !== SNI_HOST_NAME) continue;
    if (hostName !== null) throw new Malformed('two host_names in server_name');
    if (bytes.length === 0) throw new Malformed('an empty host_name in server_name');
    if (!bytes.every((b) => b > 0x20 && b < 0x7f)) throw new Malformed('a host_name in server_name that is not printable ASCII');
    hostName = bytes.toString('latin1');
  }
  if (hostName === null) throw new Malformed('a server_name extension without a host_name');
  return hostName;
}

function parseAlpn(data: Reader): string[] {
  const list = data.vector16();
  if (data.declared !== 0) throw new Malformed('bytes after the ALPN list');
  if (list.declared === 0) throw new Malformed('an empty ALPN list');
  const protocols: string[] = [];
  while (list.declared > 0) {
    const protocol = list.vector8();
    if (protocol.declared === 0) throw new Malformed('an empty ALPN protocol name');
    protocols.push(protocol.bytes(protocol.declared).toString('latin1'));
  }
  return protocols;
}

/** Thrown inside the parse when a field runs past the bytes that have arrived (but not past its vector). */
const SHORT = Symbol('short');
/** Thrown inside the parse when a field contradicts the lengths around it: more bytes cannot help. */
class Malformed extends Error {}

/**
 * A bounds-checked cursor over a vector of which `declared` bytes remain according to its length
 * prefix, of which only the first `buf.length` may have arrived yet. Reading past `declared` is
 * malformed; reading within it but past what arrived is short (need more).
 */
class Reader {
  #at = 0;
  #declared: number;
  constructor(
    readonly buf: Buffer,
    declared: number,
  ) {
    this.#declared = declared;
  }

  /** Bytes left in the vector by its declared length. */
  get declared(): number {
    return this.#declared;
  }

  bytes(n: number): Buffer {
    if (n > this.#declared) throw new Malformed('a field runs past the vector that holds it');
    // eslint-disable-next-line @typescript-eslint/only-throw-error -- a sentinel, caught in this file: no stack to build per short read
    if (this.#at + n > this.buf.length) throw SHORT;
    const out = this.buf.subarray(this.#at, this.#at + n);
    this.#at += n;
    this.#declared -= n;
    return out;
  }

  skip(n: number): void {
    this.bytes(n);
  }

  u8(): number {
    return this.bytes(1)[0]!;
  }

  u16(): number {
    return this.bytes(2).readUInt16BE(0);
  }

  /** A vector with a one-byte length prefix, as its own Reader; its bytes may still be arriving. */
  vector8(): Reader {
    return this.#vector(this.u8());
  }

  /** A vector with a two-byte length prefix, as its own Reader; its bytes may still be arriving. */
  vector16(): Reader {
    return this.#vector(this.u16());
  }

  #vector(n: number): Reader {
    if (n > this.#declared) throw new Malformed(`a vector of ${n} bytes runs past the ${this.#declared} bytes that hold it`);
    const start = this.#at;
    this.#at += n;
    this.#declared -= n;
    return new Reader(this.buf.subarray(start, Math.min(start + n, this.buf.length)), n);
  }
}
