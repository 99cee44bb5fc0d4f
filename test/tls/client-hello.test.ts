import t from 'tap';
import fc from 'fast-check';
import { once } from 'node:events';
import { createServer, type AddressInfo } from 'node:net';
import { connect } from 'node:tls';
import { readClientHello, type ClientHelloResult } from '../../src/tls/client-hello.js';

/** The bytes Node's TLS client sends first, caught by a loopback TCP server. */
async function captureClientHello(options: { servername?: string; ALPNProtocols?: string[] }): Promise<Buffer> {
  const chunks: Buffer[] = [];
  const server = createServer((socket) => {
    socket.on('data', (chunk: Buffer) => {
      chunks.push(chunk);
      if (readClientHello(Buffer.concat(chunks)).state !== 'need_more') {
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

// Builders for synthetic ClientHellos (RFC 8446 §4.1.2), to reach the malformed corners.
const u16 = (n: number): Buffer => Buffer.from([n >> 8, n & 0xff]);
const vec8 = (b: Buffer): Buffer => Buffer.concat([Buffer.from([b.length]), b]);
const vec16 = (b: Buffer): Buffer => Buffer.concat([u16(b.length), b]);
const ext = (type: number, data: Buffer): Buffer => Buffer.concat([u16(type), vec16(data)]);
const sniExt = (...names: string[]): Buffer =>
  ext(0, vec16(Buffer.concat(names.map((n) => Buffer.concat([Buffer.from([0]), vec16(Buffer.from(n, 'latin1'))])))));
const alpnExt = (...protocols: string[]): Buffer => ext(16, vec16(Buffer.concat(protocols.map((p) => vec8(Buffer.from(p, 'latin1'))))));

interface HelloParts {
  version?: number;
  sessionId?: Buffer;
  cipherSuites?: Buffer;
  compression?: Buffer;
  /** raw extensions block (without its length) or null for none */
  extensions?: Buffer | null;
  trailing?: Buffer;
}

function helloBody(parts: HelloParts = {}): Buffer {
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

function handshake(body: Buffer, type = 1): Buffer {
  return Buffer.concat([Buffer.from([type, body.length >> 16, (body.length >> 8) & 0xff, body.length & 0xff]), body]);
}

/** Wraps handshake bytes in TLS records of at most `size` bytes each. */
function records(message: Buffer, size = 16384, contentType = 22): Buffer {
  const out: Buffer[] = [];
  for (let at = 0; at < message.length; at += size) {
    const fragment = message.subarray(at, at + size);
    out.push(Buffer.from([contentType, 3, 1]), u16(fragment.length), fragment);
  }
  return Buffer.concat(out);
}

const synthetic = (parts: HelloParts, size?: number): Buffer => records(handshake(helloBody(parts)), size);

const withSni = await captureClientHello({ servername: 'example.test', ALPNProtocols: ['h2', 'http/1.1'] });
const sniOnly = await captureClientHello({ servername: 'api.example.test' });
const bare = await captureClientHello({});

t.test('reads SNI and ALPN from real Node ClientHellos', async (t) => {
  t.same(readClientHello(withSni), { state: 'tls', sni: 'example.test', alpn: ['h2', 'http/1.1'] });
  t.same(readClientHello(sniOnly), { state: 'tls', sni: 'api.example.test', alpn: [] });
  t.same(readClientHello(bare), { state: 'tls', sni: null, alpn: [] }, 'no SNI for an IP-literal connect');
});

t.test('needs more until the last byte, at every split point', async (t) => {
  for (const [name, hello] of [
    ['sni+alpn', withSni],
    ['sni', sniOnly],
    ['bare', bare],
  ] as const) {
    let early = 0;
    for (let cut = 0; cut < hello.length; cut++) {
      if (readClientHello(hello.subarray(0, cut)).state !== 'need_more') early++;
    }
    t.equal(early, 0, `${name}: every proper prefix of ${hello.length} bytes needs more`);
    t.equal(readClientHello(hello).state, 'tls');
  }
});

t.test('ignores what follows the ClientHello', async (t) => {
  const more = Buffer.concat([withSni, Buffer.from('\x17\x03\x03\x00\x05hello')]);
  t.same(readClientHello(more), readClientHello(withSni));
});

t.test('reassembles a ClientHello split over several records', async (t) => {
  const message = withSni.subarray(5, 5 + withSni.readUInt16BE(3));
  const headerSplit = Buffer.concat([records(message.subarray(0, 2)), records(message.subarray(2))]);
  const splits: Array<[string, Buffer]> = [
    ['handshake header split across records', headerSplit],
    ...[50, 100, 511].map((size): [string, Buffer] => [`records of ${size}`, records(message, size)]),
  ];
  for (const [name, split] of splits) {
    t.same(readClientHello(split), { state: 'tls', sni: 'example.test', alpn: ['h2', 'http/1.1'] }, name);
    let early = 0;
    for (let cut = 0; cut < split.length; cut++) if (readClientHello(split.subarray(0, cut)).state !== 'need_more') early++;
    t.equal(early, 0, `${name}: prefixes need more`);
  }
  t.equal(readClientHello(records(message, 1)).state, 'not_tls', 'more than 32 records is refused');
});

t.test('refuses other protocols on their first bytes', async (t) => {
  const cases: Array<[string, Buffer]> = [
    ['HTTP request', Buffer.from('GET / HTTP/1.1\r\n')],
    ['HTTP request, one byte', Buffer.from('G')],
    ['CONNECT', Buffer.from('CONNECT a:443 HTTP/1.1\r\n')],
    ['SSH banner', Buffer.from('SSH-2.0-OpenSSH_9.6\r\n')],
    ['SSLv2 ClientHello', Buffer.from([0x80, 0x2e, 0x01, 0x00, 0x02])],
    ['TLS alert record', records(Buffer.from([2, 40]), 16384, 21)],
    ['application data record', records(Buffer.from('hi'), 16384, 23)],
    ['record version 2', Buffer.from([22, 2, 0, 0, 4])],
    ['ServerHello', records(handshake(helloBody(), 2))],
    ['ServerHello, header only', Buffer.from([22, 3, 3, 0, 80, 2])],
    ['random bytes', Buffer.from('9f1c2a77e0b3d45a8c6e11f02b9d7c3e', 'hex')],
  ];
  for (const [name, bytes] of cases) t.same(readClientHello(bytes), { state: 'not_tls' }, name);
});

t.test('needs more while a short prefix could still be TLS', async (t) => {
  for (const prefix of [[], [22], [22, 3], [22, 3, 1], [22, 3, 1, 0], [22, 3, 1, 0, 200], [22, 3, 1, 0, 200, 1]]) {
    t.same(readClientHello(Buffer.from(prefix)), { state: 'need_more' }, JSON.stringify(prefix));
  }
});

t.test('synthetic ClientHellos: well formed', async (t) => {
  const cases: Array<[string, HelloParts, ClientHelloResult]> = [
    ['no extensions block', { extensions: null }, { state: 'tls', sni: null, alpn: [] }],
    ['empty extensions block', {}, { state: 'tls', sni: null, alpn: [] }],
    ['empty session id', { sessionId: Buffer.alloc(0), extensions: sniExt('a.test') }, { state: 'tls', sni: 'a.test', alpn: [] }],
    ['TLS 1.0 legacy version', { version: 0x0301, extensions: sniExt('a.test') }, { state: 'tls', sni: 'a.test', alpn: [] }],
    [
      'unknown extensions are skipped',
      { extensions: Buffer.concat([ext(0x0a0a, Buffer.alloc(0)), ext(43, Buffer.from([2, 3, 4])), sniExt('b.test'), alpnExt('h2')]) },
      { state: 'tls', sni: 'b.test', alpn: ['h2'] },
    ],
    [
      'a non-host_name entry beside the host_name',
      { extensions: ext(0, vec16(Buffer.concat([Buffer.from([9]), vec16(Buffer.from('x')), Buffer.from([0]), vec16(Buffer.from('c.test'))]))) },
      { state: 'tls', sni: 'c.test', alpn: [] },
    ],
    ['SNI keeps the client spelling', { extensions: sniExt('Mixed.Case.test.') }, { state: 'tls', sni: 'Mixed.Case.test.', alpn: [] }],
    ['ALPN with one protocol', { extensions: alpnExt('http/1.1') }, { state: 'tls', sni: null, alpn: ['http/1.1'] }],
  ];
  for (const [name, parts, expected] of cases) t.same(readClientHello(synthetic(parts)), expected, name);
});

t.test('synthetic ClientHellos: malformed is not TLS', async (t) => {
  const hugeBody = Buffer.concat([helloBody({ extensions: ext(21, Buffer.alloc(17000)) })]);
  const cases: Array<[string, Buffer]> = [
    ['legacy version 2.0', synthetic({ version: 0x0200 })],
    ['session id of 33 bytes', synthetic({ sessionId: Buffer.alloc(33) })],
    ['no cipher suites', synthetic({ cipherSuites: Buffer.alloc(0) })],
    ['odd cipher suites length', synthetic({ cipherSuites: Buffer.from([0x13, 0x01, 0x13]) })],
    ['no compression methods', synthetic({ compression: Buffer.alloc(0) })],
    ['bytes after the extensions', synthetic({ extensions: sniExt('a.test'), trailing: Buffer.from([0]) })],
    ['one stray byte instead of extensions', synthetic({ extensions: null, trailing: Buffer.from([0]) })],
    ['extension length past the end', synthetic({ extensions: Buffer.concat([u16(0), u16(50), Buffer.alloc(3)]) })],
    ['half an extension header', synthetic({ extensions: Buffer.from([0, 0, 0]) })],
    ['two server_name extensions', synthetic({ extensions: Buffer.concat([sniExt('a.test'), sniExt('b.test')]) })],
    ['two host_names', synthetic({ extensions: sniExt('a.test', 'b.test') })],
    ['empty host_name', synthetic({ extensions: sniExt('') })],
    ['host_name with a NUL', synthetic({ extensions: sniExt('a.test\0.evil') })],
    ['host_name with a space', synthetic({ extensions: sniExt('a .test') })],
    ['host_name with a high byte', synthetic({ extensions: sniExt('caf\xe9.test') })],
    ['empty server_name extension', synthetic({ extensions: ext(0, Buffer.alloc(0)) })],
    [
      'server_name list shorter than its extension',
      synthetic({ extensions: ext(0, Buffer.concat([vec16(Buffer.alloc(0)), Buffer.from([1])])) }),
    ],
    ['server_name entry past its list', synthetic({ extensions: ext(0, vec16(Buffer.from([0, 0, 9, 97]))) })],
    ['empty ALPN list', synthetic({ extensions: ext(16, vec16(Buffer.alloc(0))) })],
    ['empty ALPN protocol', synthetic({ extensions: alpnExt('h2', '') })],
    ['ALPN protocol past its list', synthetic({ extensions: ext(16, vec16(Buffer.from([5, 104, 50]))) })],
    ['two ALPN extensions', synthetic({ extensions: Buffer.concat([alpnExt('h2'), alpnExt('http/1.1')]) })],
    ['hello longer than 16 KiB', records(handshake(hugeBody))],
    ['zero-length record', Buffer.from([22, 3, 1, 0, 0])],
    ['record longer than 18 KiB', Buffer.from([22, 3, 1, 0x48, 0x01])],
    [
      'handshake declares more than the records carry, then HTTP',
      Buffer.concat([records(handshake(helloBody()).subarray(0, 20)), Buffer.from('GET /')]),
    ],
    ['hello body shorter than the random', records(handshake(Buffer.from([3, 3, 1, 2])))],
  ];
  for (const [name, bytes] of cases) t.same(readClientHello(bytes), { state: 'not_tls' }, name);
});

t.test('fuzz: arbitrary bytes never throw', async () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 600 }), (bytes) => {
      const result = readClientHello(Buffer.from(bytes));
      return ['need_more', 'not_tls', 'tls'].includes(result.state);
    }),
    { numRuns: 5000 },
  );
});

t.test('fuzz: bytes behind a valid record header never throw', async () => {
  fc.assert(
    fc.property(fc.uint8Array({ minLength: 1, maxLength: 400 }), fc.boolean(), (body, asHello) => {
      const message = asHello ? Buffer.concat([Buffer.from([1, 0, body.length >> 8, body.length & 0xff]), body]) : Buffer.from(body);
      readClientHello(records(message));
      readClientHello(records(message, 37));
    }),
    { numRuns: 3000 },
  );
});

t.test('fuzz: mutated real ClientHellos never throw and never invent a name', async () => {
  fc.assert(
    fc.property(
      fc.array(fc.record({ at: fc.nat(withSni.length - 1), value: fc.integer({ min: 0, max: 255 }) }), { minLength: 1, maxLength: 6 }),
      fc.nat(withSni.length),
      (edits, cut) => {
        const mutated = Buffer.from(withSni.subarray(0, Math.max(cut, 1)));
        for (const { at, value } of edits) if (at < mutated.length) mutated[at] = value;
        const result = readClientHello(mutated);
        if (result.state === 'tls' && result.sni !== null) return /^[\x21-\x7e]+$/.test(result.sni);
        return true;
      },
    ),
    { numRuns: 5000 },
  );
});

t.test('fuzz: any SNI and ALPN round-trip through any record split', async () => {
  const label = fc.stringMatching(/^[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?$/);
  fc.assert(
    fc.property(
      fc.array(label, { minLength: 1, maxLength: 4 }),
      fc.array(fc.stringMatching(/^[\x21-\x7e]{1,20}$/), { maxLength: 4 }),
      fc.integer({ min: 40, max: 600 }),
      (labels, protocols, size) => {
        const host = labels.join('.');
        const extensions = Buffer.concat([sniExt(host), ...(protocols.length ? [alpnExt(...protocols)] : [])]);
        const result = readClientHello(synthetic({ extensions }, size));
        return JSON.stringify(result) === JSON.stringify({ state: 'tls', sni: host, alpn: protocols });
      },
    ),
    { numRuns: 1000 },
  );
});
