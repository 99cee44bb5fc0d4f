// Real TLS ClientHellos, captured from Node's own TLS client, and re-framed the ways a hostile tool
// can: split across many records, padded past 16 KiB, with a repeated extension, or with the wrong
// handshake type. A gate that reads the hello must refuse each (the SNI could not be trusted), while
// the unmodified hello passes; so the tests start from real bytes rather than hand-made ones.
import { Duplex } from 'node:stream';
import tls from 'node:tls';

const RECORD_HEADER = 5;
const CONTENT_TYPE_HANDSHAKE = 22;
const MAX_PLAINTEXT_RECORD = 16 * 1024;
const EXT_SERVER_NAME = 0;
const EXT_PADDING = 21;

/** The first flight of Node's TLS client for `servername`: one or more complete TLS records. */
export function captureClientHello(servername: string): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    let captured = Buffer.alloc(0);
    const wire = new Duplex({
      read() {},
      write(chunk: Buffer, _encoding, done) {
        captured = Buffer.concat([captured, chunk]);
        done();
        if (completeRecords(captured)) {
          resolve(captured);
          // The first write can come while tls.connect() is still running.
          setImmediate(() => client.destroy());
        }
      },
    });
    const client = tls.connect({ socket: wire, servername, rejectUnauthorized: false });
    client.on('error', (err) => (completeRecords(captured) ? undefined : reject(err as Error)));
  });
}

/** True when `bytes` is a whole number of TLS records holding a whole handshake message. */
function completeRecords(bytes: Buffer): boolean {
  let offset = 0;
  while (offset + RECORD_HEADER <= bytes.length) offset += RECORD_HEADER + bytes.readUInt16BE(offset + 3);
  if (offset !== bytes.length || offset === 0) return false;
  const handshake = handshakeBytes(bytes);
  return handshake.length >= 4 && handshake.length >= 4 + handshake.readUIntBE(1, 3);
}

/** The handshake message carried by a run of records (their payloads concatenated). */
export function handshakeBytes(records: Buffer): Buffer {
  const parts: Buffer[] = [];
  for (let offset = 0; offset + RECORD_HEADER <= records.length;) {
    const length = records.readUInt16BE(offset + 3);
    parts.push(records.subarray(offset + RECORD_HEADER, offset + RECORD_HEADER + length));
    offset += RECORD_HEADER + length;
  }
  return Buffer.concat(parts);
}

/** Frames a handshake message as consecutive handshake records of the given payload sizes (the last takes the rest). */
export function asRecords(handshake: Buffer, payloadSizes: number[]): Buffer {
  const out: Buffer[] = [];
  let offset = 0;
  for (let i = 0; offset < handshake.length; i++) {
    const size = Math.min(payloadSizes[i] ?? MAX_PLAINTEXT_RECORD, MAX_PLAINTEXT_RECORD, handshake.length - offset);
    const header = Buffer.from([CONTENT_TYPE_HANDSHAKE, 3, 1, size >> 8, size & 0xff]);
    out.push(header, handshake.subarray(offset, offset + size));
    offset += size;
  }
  return Buffer.concat(out);
}

/** The same ClientHello split into `records` records of (nearly) equal size. */
export function fragmentClientHello(hello: Buffer, records: number): Buffer {
  const handshake = handshakeBytes(hello);
  if (handshake.length < records) throw new Error(`a ${handshake.length}-byte hello cannot fill ${records} records`);
  const base = Math.floor(handshake.length / records);
  return asRecords(
    handshake,
    Array.from({ length: records }, (_, i) => (i === records - 1 ? handshake.length - base * i : base)),
  );
}

/** Where the extensions block of a ClientHello handshake message starts (its 2-byte length). */
function extensionsOffset(handshake: Buffer): number {
  let at = 4 + 2 + 32; // handshake header, legacy_version, random
  at += 1 + handshake[at]!; // session id
  at += 2 + handshake.readUInt16BE(at); // cipher suites
  at += 1 + handshake[at]!; // compression methods
  return at;
}

/** Appends extensions to a ClientHello and fixes the lengths; the result is re-framed in records of up to 16 KiB. */
function withExtensions(hello: Buffer, extra: Buffer): Buffer {
  const handshake = handshakeBytes(hello);
  const at = extensionsOffset(handshake);
  const extensionsLength = handshake.readUInt16BE(at) + extra.length;
  if (extensionsLength > 0xffff) throw new Error('extensions too long');
  const grown = Buffer.concat([handshake, extra]);
  grown.writeUInt16BE(extensionsLength, at);
  grown.writeUIntBE(grown.length - 4, 1, 3);
  return asRecords(grown, []);
}

function extension(type: number, data: Buffer): Buffer {
  const head = Buffer.alloc(4);
  head.writeUInt16BE(type, 0);
  head.writeUInt16BE(data.length, 2);
  return Buffer.concat([head, data]);
}

/**
 * The ClientHello with a padding extension (RFC 7685) that makes the handshake message at least
 * `minBytes` long (default 17 KiB: past 16 KiB however it is counted, with or without the 4-byte
 * handshake header; it needs two records). A server would accept it.
 */
export function padClientHello(hello: Buffer, minBytes = 17 * 1024): Buffer {
  const current = handshakeBytes(hello).length;
  const padding = Math.max(0, minBytes - current - 4);
  return withExtensions(hello, extension(EXT_PADDING, Buffer.alloc(padding)));
}

/** The ClientHello with a second server_name extension naming `servername`: ambiguous, so not readable. */
export function duplicateSniClientHello(hello: Buffer, servername: string): Buffer {
  const name = Buffer.from(servername, 'latin1');
  const entry = Buffer.concat([Buffer.from([0, name.length >> 8, name.length & 0xff]), name]);
  const list = Buffer.concat([Buffer.from([entry.length >> 8, entry.length & 0xff]), entry]);
  return withExtensions(hello, extension(EXT_SERVER_NAME, list));
}

/** The same records with the handshake type changed from ClientHello (1) to `type` (2 = ServerHello). */
export function retypedClientHello(hello: Buffer, type = 2): Buffer {
  const out = Buffer.from(hello);
  out[RECORD_HEADER] = type;
  return out;
}

/** A handshake record whose header and ClientHello type look right, followed by bytes that are not a hello. */
export function garbageClientHello(): Buffer {
  const body = Buffer.alloc(60, 0xff);
  const handshake = Buffer.concat([Buffer.from([1, 0, 0, body.length]), body]);
  return asRecords(handshake, []);
}
