// Upgrade handshakes written by hand (absolute-form to the proxy, or origin-form inside a tunnel),
// the Sec-WebSocket-Accept an honest server computes, masked frames as a client sends them, and the
// `ws` client driven over a socket the test opened (a TLS tunnel through sluice).
import { createHash } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import type { Duplex } from 'node:stream';
import WebSocket from 'ws';

/** The RFC 6455 sample key; any 16-byte base64 value would do. */
export const WS_KEY = 'dGhlIHNhbXBsZSBub25jZQ==';

/** The Sec-WebSocket-Accept a server answers to `key` (RFC 6455 §4.2.2). */
export function wsAccept(key = WS_KEY): string {
  return createHash('sha1').update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64');
}

export interface UpgradeRequestOptions {
  /** absolute-form (`http://host:port/path`, to the proxy) or origin-form (`/path`, inside a tunnel) */
  target: string;
  /** the Host header value */
  host: string;
  /** a Proxy-Authorization value (absolute-form only) */
  proxyAuthorization?: string;
  /** the Upgrade token; default websocket */
  upgrade?: string;
  /** the Connection header value; default Upgrade */
  connection?: string;
  /** more header lines, e.g. ['X-Ws-Token: __sluice_secret_ws__'] */
  headers?: string[];
  method?: string;
}

/** The bytes of one Upgrade request; WebSocket headers are added when the token is websocket. */
export function upgradeRequest(options: UpgradeRequestOptions): string {
  const token = options.upgrade ?? 'websocket';
  const lines = [
    `${options.method ?? 'GET'} ${options.target} HTTP/1.1`,
    `Host: ${options.host}`,
    `Upgrade: ${token}`,
    `Connection: ${options.connection ?? 'Upgrade'}`,
  ];
  if (/^websocket$/i.test(token)) lines.push(`Sec-WebSocket-Key: ${WS_KEY}`, 'Sec-WebSocket-Version: 13');
  if (options.proxyAuthorization !== undefined) lines.push(`Proxy-Authorization: ${options.proxyAuthorization}`);
  lines.push(...(options.headers ?? []));
  return `${lines.join('\r\n')}\r\n\r\n`;
}

/** One masked WebSocket frame (clients must mask), text by default; payloads under 64 KiB. */
export function maskedFrame(payload: string | Buffer, opcode = 0x1): Buffer {
  const data = Buffer.isBuffer(payload) ? payload : Buffer.from(payload);
  const mask = Buffer.from([0x11, 0x22, 0x33, 0x44]);
  const masked = Buffer.from(data.map((b, i) => b ^ mask[i % 4]!));
  const length =
    data.length < 126
      ? Buffer.from([0x80 | opcode, 0x80 | data.length])
      : Buffer.from([0x80 | opcode, 0x80 | 126, data.length >> 8, data.length & 0xff]);
  return Buffer.concat([length, mask, masked]);
}

/**
 * One unmasked frame, as a server sends it (binary by default; payloads under 64 KiB). Written by a
 * client to a raw-echo upstream, it comes back as a well-formed server frame: while sluice holds
 * secret values it reads (and scrubs) every frame the upstream sends, and refuses what is not one.
 */
export function serverFrame(payload: string | Buffer, opcode = 0x2): Buffer {
  const data = Buffer.isBuffer(payload) ? payload : Buffer.from(payload);
  const length =
    data.length < 126 ? Buffer.from([0x80 | opcode, data.length]) : Buffer.from([0x80 | opcode, 126, data.length >> 8, data.length & 0xff]);
  return Buffer.concat([length, data]);
}

/**
 * An upstream that echoes WebSocket messages: each masked client frame comes back as the same
 * frame unmasked, as a server sends it (sluice reads the frames both ways, and refuses a frame
 * from the wrong side). Payloads under 64 KiB.
 */
export function echoFrames(socket: Duplex): void {
  let buffer = Buffer.alloc(0);
  socket.on('data', (chunk: Buffer) => {
    buffer = Buffer.concat([buffer, chunk]);
    for (;;) {
      if (buffer.length < 2) return;
      let length = buffer[1]! & 0x7f;
      let at = 2;
      if (length === 126) {
        if (buffer.length < 4) return;
        length = buffer.readUInt16BE(2);
        at = 4;
      }
      const masked = (buffer[1]! & 0x80) !== 0;
      const mask = masked ? buffer.subarray(at, at + 4) : null;
      if (masked) at += 4;
      if (buffer.length < at + length) return;
      const payload = Buffer.from(buffer.subarray(at, at + length).map((b, i) => (mask ? b ^ mask[i % 4]! : b)));
      const b0 = buffer[0]!;
      buffer = buffer.subarray(at + length);
      const head = length < 126 ? Buffer.from([b0, length]) : Buffer.from([b0, 126, length >> 8, length & 0xff]);
      socket.write(Buffer.concat([head, payload]));
    }
  });
}

export interface WsOutcome {
  /** 101 when the socket opened, else the status of the answer the client got instead */
  status: number;
  headers: IncomingHttpHeaders;
  /** what the server sent back for the message, when it opened */
  echo: string | null;
}

/**
 * The `ws` client over a socket the test already opened (e.g. TLS inside a CONNECT tunnel): sends
 * `message` once open and waits for one message back, then closes; or reports the refusal it got.
 */
export function wsOverSocket(
  url: string,
  socket: Duplex,
  options: { headers?: Record<string, string>; message?: string; timeoutMs?: number } = {},
): Promise<WsOutcome> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { createConnection: () => socket, headers: options.headers ?? {} });
    let status = 0;
    let headers: IncomingHttpHeaders = {};
    const timer = setTimeout(() => {
      ws.terminate();
      reject(new Error(`the WebSocket to ${url} settled on nothing within ${options.timeoutMs ?? 10_000} ms`));
    }, options.timeoutMs ?? 10_000);
    const done = (outcome: WsOutcome): void => {
      clearTimeout(timer);
      resolve(outcome);
    };
    ws.once('upgrade', (res) => {
      status = res.statusCode ?? 0;
      headers = res.headers;
    });
    ws.once('unexpected-response', (_req, res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => {
        socket.destroy();
        done({ status: res.statusCode ?? 0, headers: res.headers, echo: null });
      });
      res.on('error', () => done({ status: res.statusCode ?? 0, headers: res.headers, echo: null }));
    });
    ws.once('open', () => ws.send(options.message ?? 'ping through sluice'));
    ws.once('message', (data) => {
      const echo = Buffer.from(data as Buffer).toString('utf8');
      ws.once('close', () => done({ status, headers, echo }));
      ws.close();
    });
    ws.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}
