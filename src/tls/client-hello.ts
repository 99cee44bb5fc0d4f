// Reads the SNI and ALPN of a TLS ClientHello from the first bytes of a tunnel, without I/O: the
// caller feeds what it has buffered and gets `need_more`, `not_tls` or the result. Hostile input is
// expected (the bytes come from the tool), so every length is checked against what is really
// there and anything malformed, ambiguous or oversized is `not_tls`; nothing here throws.
// Layout: RFC 8446 §5.1 (records), §4.1.2 (ClientHello), RFC 6066 §3 (server_name), RFC 7301 (ALPN).

export type ClientHelloResult = { state: 'need_more' } | { state: 'not_tls' } | { state: 'tls'; sni: string | null; alpn: string[] };

const CONTENT_TYPE_HANDSHAKE = 22;
const HANDSHAKE_CLIENT_HELLO = 1;
const MAX_RECORD_LENGTH = 16384 + 2048; // TLSCiphertext bound; a plaintext record is smaller still
/** Real ClientHellos are 0.2–2 KiB (post-quantum key shares included). */
const MAX_HELLO_LENGTH = 16 * 1024;
/** Real clients need one or two records; the cap also bounds re-scanning as bytes trickle in. */
const MAX_RECORDS = 32;
const EXT_SERVER_NAME = 0;
const EXT_ALPN = 16;
const SNI_HOST_NAME = 0;

const NEED_MORE = Object.freeze({ state: 'need_more' as const });
const NOT_TLS = Object.freeze({ state: 'not_tls' as const });

export function readClientHello(buf: Buffer): ClientHelloResult {
  const fragments: Buffer[] = [];
  let fragmentBytes = 0;
  let helloLength: number | null = null; // handshake header (4) + body, once known
  let offset = 0;
  for (let records = 0; helloLength === null || fragmentBytes < helloLength; records++) {
    if (records === MAX_RECORDS) return NOT_TLS;
    const header = buf.subarray(offset, offset + 5);
    // Judge a partial header by what it has, so plain HTTP or SSH is refused on its first byte.
    if (header.length >= 1 && header[0] !== CONTENT_TYPE_HANDSHAKE) return NOT_TLS;
    if (header.length >= 2 && header[1] !== 3) return NOT_TLS;
    if (header.length < 5) return NEED_MORE;
    const length = header.readUInt16BE(3);
    if (length === 0 || length > MAX_RECORD_LENGTH) return NOT_TLS;
    const fragment = buf.subarray(offset + 5, offset + 5 + length);
    if (fragments.length === 0 && fragment.length >= 1 && fragment[0] !== HANDSHAKE_CLIENT_HELLO) return NOT_TLS;
    if (fragment.length < length) return NEED_MORE;
    fragments.push(fragment);
    fragmentBytes += length;
    offset += 5 + length;
    if (helloLength === null && fragmentBytes >= 4) {
      const start = Buffer.concat(fragments, 4);
      helloLength = 4 + start.readUIntBE(1, 3);
      if (helloLength > 4 + MAX_HELLO_LENGTH) return NOT_TLS;
    }
  }
  // Bytes after the ClientHello (in its last record or later ones) are the tunnel's business.
  const body = Buffer.concat(fragments, helloLength).subarray(4);
  return parseClientHelloBody(new Reader(body)) ?? NOT_TLS;
}

function parseClientHelloBody(hello: Reader): ClientHelloResult | null {
  const legacyVersion = hello.u16();
  if (legacyVersion === null || legacyVersion >> 8 !== 3) return null;
  if (hello.bytes(32) === null) return null; // random
  const sessionId = hello.vector8();
  if (sessionId === null || sessionId.remaining > 32) return null;
  const cipherSuites = hello.vector16();
  if (cipherSuites === null || cipherSuites.remaining < 2 || cipherSuites.remaining % 2 !== 0) return null;
  const compression = hello.vector8();
  if (compression === null || compression.remaining < 1) return null;
  if (hello.remaining === 0) return { state: 'tls', sni: null, alpn: [] }; // no extensions at all

  const extensions = hello.vector16();
  if (extensions === null || hello.remaining !== 0) return null;
  const seen = new Set<number>();
  let sni: string | null = null;
  let alpn: string[] = [];
  while (extensions.remaining > 0) {
    const type = extensions.u16();
    const data = extensions.vector16();
    // RFC 8446 §4.2: an extension type appears at most once; a repeat could make us read one name
    // while the server reads another.
    if (type === null || data === null || seen.has(type)) return null;
    seen.add(type);
    if (type === EXT_SERVER_NAME) {
      sni = parseServerName(data);
      if (sni === null) return null;
    } else if (type === EXT_ALPN) {
      const protocols = parseAlpn(data);
      if (protocols === null) return null;
      alpn = protocols;
    }
  }
  return { state: 'tls', sni, alpn };
}

/** The one host_name of a server_name extension; null when malformed, repeated or not printable ASCII. */
function parseServerName(data: Reader): string | null {
  const list = data.vector16();
  if (list === null || data.remaining !== 0 || list.remaining === 0) return null;
  let hostName: string | null = null;
  while (list.remaining > 0) {
    const nameType = list.u8();
    const name = list.vector16();
    if (nameType === null || name === null) return null;
    if (nameType !== SNI_HOST_NAME) continue;
    const bytes = name.bytes(name.remaining);
    if (hostName !== null || bytes === null || bytes.length === 0) return null;
    if (!bytes.every((b) => b > 0x20 && b < 0x7f)) return null;
    hostName = bytes.toString('latin1');
  }
  return hostName;
}

function parseAlpn(data: Reader): string[] | null {
  const list = data.vector16();
  if (list === null || data.remaining !== 0 || list.remaining === 0) return null;
  const protocols: string[] = [];
  while (list.remaining > 0) {
    const protocol = list.vector8();
    if (protocol === null || protocol.remaining === 0) return null;
    protocols.push(protocol.bytes(protocol.remaining)!.toString('latin1'));
  }
  return protocols;
}

/** A bounds-checked cursor: every read returns null instead of running past the end. */
class Reader {
  #at = 0;
  constructor(readonly buf: Buffer) {}

  get remaining(): number {
    return this.buf.length - this.#at;
  }

  bytes(n: number): Buffer | null {
    if (n > this.remaining) return null;
    const out = this.buf.subarray(this.#at, this.#at + n);
    this.#at += n;
    return out;
  }

  u8(): number | null {
    const b = this.bytes(1);
    return b === null ? null : b[0]!;
  }

  u16(): number | null {
    const b = this.bytes(2);
    return b === null ? null : b.readUInt16BE(0);
  }

  /** A vector with a one-byte length prefix, as its own Reader. */
  vector8(): Reader | null {
    const n = this.u8();
    const b = n === null ? null : this.bytes(n);
    return b === null ? null : new Reader(b);
  }

  /** A vector with a two-byte length prefix, as its own Reader. */
  vector16(): Reader | null {
    const n = this.u16();
    const b = n === null ? null : this.bytes(n);
    return b === null ? null : new Reader(b);
  }
}
