// ClientHello bytes for the sans-I/O tests of tls/client-hello.ts and tls/hello-gate.ts: real ones
// caught from Node's TLS client on loopback, and builders for synthetic ones (RFC 8446 §4.1.2) that
// reach the malformed corners a real client never sends.
import { once } from 'node:events';
import { createServer, type AddressInfo } from 'node:net';
import { connect, type SecureVersion } from 'node:tls';
import { scanClientHello } from '../../src/tls/client-hello.js';

export interface CaptureOptions {
  servername?: string;
  ALPNProtocols?: string[];
  minVersion?: SecureVersion;
  maxVersion?: SecureVersion;
}

/** The bytes Node's TLS client sends first (its whole ClientHello), caught by a loopback TCP server. */
export async function captureClientHello(options: CaptureOptions = {}): Promise<Buffer> {
  const chunks: Buffer[] = [];
  const server = createServer((socket) => {
    socket.on('data', (chunk: Buffer) => {
      chunks.push(chunk);
      if (scanClientHello(Buffer.concat(chunks)).state !== 'need_more') {
        socket.destroy();
        server.close();
      }
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const client = connect({ host: '127.0.0.1', port: (server.address() as AddressInfo).port, ...options });
  client.on('error', () => {}); // the server hangs up mid-handshake on purpose
  await once(server, 'close');
  client.destroy();
  return Buffer.concat(chunks);
}

export const u16 = (n: number): Buffer => Buffer.from([n >> 8, n & 0xff]);
export const vec8 = (b: Buffer): Buffer => Buffer.concat([Buffer.from([b.length]), b]);
export const vec16 = (b: Buffer): Buffer => Buffer.concat([u16(b.length), b]);
export const ext = (type: number, data: Buffer): Buffer => Buffer.concat([u16(type), vec16(data)]);
export const sniExt = (...names: string[]): Buffer =>
  ext(0, vec16(Buffer.concat(names.map((n) => Buffer.concat([Buffer.from([0]), vec16(Buffer.from(n, 'latin1'))])))));
export const alpnExt = (...protocols: string[]): Buffer => ext(16, vec16(Buffer.concat(protocols.map((p) => vec8(Buffer.from(p, 'latin1'))))));

export interface HelloParts {
  version?: number;
  sessionId?: Buffer;
  cipherSuites?: Buffer;
  compression?: Buffer;
  /** raw extensions block (without its length) or null for none */
  extensions?: Buffer | null;
  trailing?: Buffer;
}

export function helloBody(parts: HelloParts = {}): Buffer {
  const extensions = parts.extensions === undefined ? Buffer.alloc(0) : parts.extensions;
  return Buffer.concat([
    u16(parts.version ?? 0x0303),
    Buffer.alloc(32, 7),
    vec8(parts.sessionId ?? Buffer.alloc(32, 1)),
    vec16(parts.cipherSuites ?? Buffer.from([0x13, 0x01, 0x13, 0x02])),
    vec8(parts.compression ?? Buffer.from([0])),
    extensions === null ? Buffer.alloc(0) : vec16(extensions),
    parts.trailing ?? Buffer.alloc(0),
  ]);
}

/** A handshake message: type, 24-bit length, body. */
export function handshake(body: Buffer, type = 1): Buffer {
  return Buffer.concat([Buffer.from([type, body.length >> 16, (body.length >> 8) & 0xff, body.length & 0xff]), body]);
}

/** Wraps handshake bytes in TLS records of at most `size` bytes each. */
export function records(message: Buffer, size = 16384, contentType = 22): Buffer {
  const out: Buffer[] = [];
  for (let at = 0; at < message.length; at += size) {
    const fragment = message.subarray(at, at + size);
    out.push(Buffer.from([contentType, 3, 1]), u16(fragment.length), fragment);
  }
  return Buffer.concat(out);
}

/** The handshake message inside a real capture (one record, as Node sends it). */
export function messageOf(capture: Buffer): Buffer {
  return capture.subarray(5, 5 + capture.readUInt16BE(3));
}

/** A synthetic ClientHello in records of at most `size` bytes. */
export const synthetic = (parts: HelloParts, size?: number): Buffer => records(handshake(helloBody(parts)), size);
