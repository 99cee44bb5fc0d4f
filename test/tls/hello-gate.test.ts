import t, { type Test } from 'tap';
import fc from '../helpers/fc.js';
import { gateTunnelStart, MAX_FIRST_LINE_BYTES, MAX_GATE_BYTES, type GateResult, type GateTunnel } from '../../src/tls/hello-gate.js';
import { MAX_HELLO_RECORDS } from '../../src/tls/client-hello.js';
import { alpnExt, captureClientHello, ext, handshake, helloBody, messageOf, records, sniExt, synthetic } from '../helpers/tls-hello.js';

// Real ClientHellos from Node's TLS client: TLS 1.3 and 1.2, with and without ALPN and SNI.
const tls13 = await captureClientHello({ servername: 'example.test', ALPNProtocols: ['h2', 'http/1.1'] });
const tls12 = await captureClientHello({ servername: 'example.test', ALPNProtocols: ['http/1.1'], maxVersion: 'TLSv1.2' });
const tls13Plain = await captureClientHello({ servername: 'example.test', minVersion: 'TLSv1.3' });
const tls13NoSni = await captureClientHello({ ALPNProtocols: ['h2'] });
const tls12NoSni = await captureClientHello({ maxVersion: 'TLSv1.2' });
const tls13Other = await captureClientHello({ servername: 'other.test' });
const REAL = { tls13, tls12, tls13Plain, tls13NoSni, tls12NoSni, tls13Other };

const name443: GateTunnel = { host: 'example.test', hostIsName: true, port: 443 };
const name8443: GateTunnel = { host: 'example.test', hostIsName: true, port: 8443 };
const ip443: GateTunnel = { host: '127.0.0.1', hostIsName: false, port: 443 };
const ip6Other: GateTunnel = { host: '::1', hostIsName: false, port: 8443 };
const redis: GateTunnel = { host: 'cache.test', hostIsName: true, port: 6379 };

const b = (s: string): Buffer => Buffer.from(s, 'latin1');
const http: GateResult = { kind: 'http' };
const opaque: GateResult = { kind: 'opaque' };
const needMore: GateResult = { kind: 'need_more' };
const badRequest = (detail: RegExp) => ({ kind: 'refuse', reason: 'bad_request', detail });
const sniMismatch = (detail: RegExp) => ({ kind: 'refuse', reason: 'sni_mismatch', detail });
const NOT_A_HELLO = /^the tunnel's first bytes look like TLS but are not a ClientHello sluice can read \(.+\)$/;

type Row = [name: string, bytes: Buffer, tunnel: GateTunnel, expected: GateResult | ReturnType<typeof badRequest>];

const message = messageOf(tls13);
const padded = records(handshake(helloBody({ extensions: Buffer.concat([sniExt('example.test'), ext(21, Buffer.alloc(16500))]) })));

const ROWS: Row[] = [
  // TLS that parses: the SNI rule.
  ['TLS 1.3, SNI and ALPN', tls13, name443, { kind: 'tls', sni: 'example.test', alpn: ['h2', 'http/1.1'] }],
  ['TLS 1.2, SNI and ALPN, off 443', tls12, name8443, { kind: 'tls', sni: 'example.test', alpn: ['http/1.1'] }],
  ['TLS 1.3, SNI, no ALPN', tls13Plain, name443, { kind: 'tls', sni: 'example.test', alpn: [] }],
  ['TLS 1.3, no SNI, to an IP', tls13NoSni, ip443, { kind: 'tls', sni: null, alpn: ['h2'] }],
  ['TLS 1.2, no SNI, to an IPv6 literal off 443', tls12NoSni, ip6Other, { kind: 'tls', sni: null, alpn: [] }],
  [
    'no SNI while the tunnel is for a name',
    tls13NoSni,
    name443,
    sniMismatch(/^the TLS ClientHello names no server \(SNI\) but the tunnel is for example\.test$/),
  ],
  ['no SNI while the tunnel is for a name, off 443', tls12NoSni, name8443, sniMismatch(/names no server/)],
  ['another name', tls13Other, name443, sniMismatch(/^the TLS ClientHello names other\.test but the tunnel was allowed for example\.test$/)],
  ['a name while the tunnel is for an IP', tls13, ip443, sniMismatch(/names example\.test but the tunnel was allowed for 127\.0\.0\.1/)],
  [
    'SNI in another spelling of the same name',
    synthetic({ extensions: sniExt('EXAMPLE.Test.') }),
    name443,
    { kind: 'tls', sni: 'example.test', alpn: [] },
  ],
  [
    'SNI that is the tunnel IP',
    synthetic({ extensions: sniExt('127.0.0.1') }),
    ip443,
    sniMismatch(/names the IP address 127\.0\.0\.1 as its server.*RFC 6066/),
  ],
  ['SNI that is an IP in decimal', synthetic({ extensions: sniExt('2130706433') }), ip443, sniMismatch(/IP address 2130706433/)],
  ['SNI that is a bracketed IPv6', synthetic({ extensions: sniExt('[::1]') }), ip6Other, sniMismatch(/IP address \[::1\]/)],
  ['SNI that is an IP, tunnel for a name', synthetic({ extensions: sniExt('93.184.216.34') }), name443, sniMismatch(/IP address/)],
  ['SNI that is not a host name', synthetic({ extensions: sniExt('exa%mple.test') }), name443, sniMismatch(/names exa%mple\.test but/)],
  ['SNI with a port', synthetic({ extensions: sniExt('example.test:443') }), name443, sniMismatch(/names example\.test:443 but/)],
  ['SNI of a suffix', synthetic({ extensions: sniExt('evil.example.test') }), name443, sniMismatch(/names evil\.example\.test/)],
  // Looks like TLS, does not parse: refused on every port.
  [`hello in one-byte records, off 443`, records(message, 1), name8443, badRequest(/more than 16 records\)$/)],
  [
    `hello in ${MAX_HELLO_RECORDS + 1} records`,
    records(message, Math.floor(message.length / (MAX_HELLO_RECORDS + 1))),
    name8443,
    badRequest(NOT_A_HELLO),
  ],
  ['hello padded past 16 KiB, off 443', padded, name8443, badRequest(/ClientHello of \d+ bytes, more than 16384/)],
  ['hello padded past 16 KiB, on 443', padded, name443, badRequest(NOT_A_HELLO)],
  ['record over the TLS limit', b('\x16\x03\x01\x40\x01'), name8443, badRequest(/over the TLS limit/)],
  ['alert first', b('\x15\x03\x03\x00\x02\x02\x28'), redis, badRequest(/alert \(21\)/)],
  ['change_cipher_spec first', b('\x14\x03\x03\x00\x01\x01'), name8443, badRequest(/change_cipher_spec/)],
  ['application data first', b('\x17\x03\x03\x00\x02hi'), ip6Other, badRequest(NOT_A_HELLO)],
  [
    'duplicate extensions',
    synthetic({ extensions: Buffer.concat([sniExt('example.test'), sniExt('other.test')]) }),
    name8443,
    badRequest(/appears twice/),
  ],
  [
    'duplicate ALPN',
    synthetic({ extensions: Buffer.concat([sniExt('example.test'), alpnExt('h2'), alpnExt('h2')]) }),
    name443,
    badRequest(/appears twice/),
  ],
  ['malformed SNI (NUL inside)', synthetic({ extensions: sniExt('example.test\0.evil') }), name8443, badRequest(/not printable ASCII/)],
  ['two host_names', synthetic({ extensions: sniExt('example.test', 'other.test') }), name8443, badRequest(/two host_names/)],
  ['SSLv2-style hello', b('\x80\x2e\x01\x03\x01\x00\x15'), name8443, badRequest(/SSLv2/)],
  ['ServerHello', records(handshake(helloBody(), 2)), name8443, badRequest(/not ClientHello/)],
  [
    'hello then not a record',
    Buffer.concat([records(message.subarray(0, 30)), b('GET / HTTP/1.1\r\n')]),
    name8443,
    badRequest(/record 2 is content type 71/),
  ],
  // Not TLS to 443: refused at once.
  ['HTTP to 443', b('GET / HTTP/1.1\r\n'), name443, badRequest(/^the tunnel to example\.test:443 did not start with a TLS ClientHello$/)],
  ['one byte of HTTP to 443', b('G'), name443, badRequest(/did not start with a TLS ClientHello/)],
  ['a blank line to 443', b('\r\n'), ip443, badRequest(/^the tunnel to 127\.0\.0\.1:443 did not/)],
  [
    'SSH to 443 of an IPv6 literal',
    b('SSH-2.0-x\r\n'),
    { host: '::1', hostIsName: false, port: 443 },
    badRequest(/^the tunnel to \[::1\]:443 did not/),
  ],
  ['a TLS-looking byte to 443, not yet decided', b('\x16'), name443, needMore],
  // Not TLS elsewhere: other protocols are opaque...
  ['SSH banner', b('SSH-2.0-OpenSSH_9.6\r\n'), name8443, opaque],
  ['SSH banner with comment', b('SSH-2.0-OpenSSH_9.6 Ubuntu-3ubuntu13\r\n'), name8443, opaque],
  ['Redis RESP', b('*1\r\n$4\r\nPING\r\n'), redis, opaque],
  ['Redis inline command', b('PING\r\n'), redis, opaque],
  ['Postgres startup', b('\x00\x00\x00\x08\x04\xd2\x16\x2f'), { host: 'db.test', hostIsName: true, port: 5432 }, opaque],
  ['SMTP EHLO', b('EHLO mail.test\r\n'), { host: 'mx.test', hostIsName: true, port: 25 }, opaque],
  ['JSON line', b('{"jsonrpc":"2.0"}\n'), name8443, opaque],
  ['a method and nothing', b('GET \r\n'), name8443, opaque],
  ['a method alone', b('GET\r\n'), name8443, opaque],
  ['a line without a target form', b('HELLO world\r\n'), name8443, opaque],
  ['control byte first', b('\x01GET / HTTP/1.1\r\n'), name8443, opaque],
  ['DEL first', b('\x7fGET /'), name8443, opaque],
  ['NUL first', b('\x00'), name8443, opaque],
  ['high byte first, not SSLv2', b('\xff\x00\x00'), name8443, opaque],
  ['0x16 without TLS version', b('\x16\x00'), name8443, opaque],
  ['control byte after blank lines', b('\r\n\x16\x03\x01\x00\x05'), name8443, opaque],
  // ... and HTTP is HTTP, in any spelling a lenient server would take.
  ['lower-case method', b('get /x HTTP/1.1\r\n'), name8443, http],
  ['leading CRLF', b('\r\nGET /'), name8443, http],
  ['leading spaces and tabs', b(' \t GET /'), name8443, http],
  ['absolute form', b('GET http://a/ HTTP/1.0\r\n'), name8443, http],
  ['absolute form, decided before the line ends', b('GET a://b'), name8443, http],
  ['asterisk form', b('OPTIONS * HTTP/1.1\r\n'), name8443, http],
  ['authority form', b('GET a.test:80 HTTP/1.1\r\n'), name8443, http],
  ['CONNECT inside the tunnel', b('CONNECT a.test:80 HTTP/1.1\r\n'), name8443, http],
  ['lower-case version, bare LF', b('GET a.test:80 http/1.1\n'), name8443, http],
  ['HTTP/2 preface', b('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'), name8443, http],
  ['any token is a method', b('FOO bar HTTP/1.1\r\n'), name8443, http],
  ['tab as separator', b('GET\t/x'), name8443, http],
  ['garbage inside the target', b('GET x\x00y HTTP/1.1\r\n'), name8443, http],
  ['a Redis command that looks like a request', b('SET /k v\r\n'), redis, http],
  ['origin form, first byte of target', b('POST /'), name8443, http],
  // Undecided: need more, until the line caps.
  ['nothing yet', b(''), name8443, needMore],
  ['blank lines only', b('\r\n\r\n'), name8443, needMore],
  ['a method so far', b('GET'), name8443, needMore],
  ['a method and part of a target', b('GET ab'), name8443, needMore],
  ['a method and blanks', b('GET  '), name8443, needMore],
  ['one high byte, maybe SSLv2', b('\x80'), name8443, needMore],
  [
    `${MAX_FIRST_LINE_BYTES} printable bytes without a line end`,
    b('A'.repeat(MAX_FIRST_LINE_BYTES)),
    name8443,
    badRequest(/^the tunnel to example\.test:8443 sent 4096 bytes without a line end; sluice cannot tell which protocol it speaks$/),
  ],
  ['a target running past the cap', b('GET ' + 'a'.repeat(5000)), name8443, badRequest(/cannot tell which protocol/)],
  ['blank lines up to the cap', b('\r\n'.repeat(MAX_FIRST_LINE_BYTES / 2)), name8443, badRequest(/cannot tell/)],
  ['a line end just past the cap', b('GET ' + 'a'.repeat(MAX_FIRST_LINE_BYTES - 4) + ' HTTP/1.1\r\n'), name8443, badRequest(/cannot tell/)],
];

t.test('gate: table of first bytes', async (t) => {
  for (const [name, bytes, tunnel, expected] of ROWS) {
    const got = gateTunnelStart(bytes, tunnel);
    if (expected.kind === 'refuse') t.match(got, expected, name);
    else t.same(got, expected, name);
  }
});

t.test('gate: an SNI in a refusal sentence is cut at 100 characters', async (t) => {
  const long = 'a'.repeat(60) + '.' + 'b'.repeat(60) + '.test';
  const got = gateTunnelStart(synthetic({ extensions: sniExt(long) }), name443);
  t.match(got, { kind: 'refuse', reason: 'sni_mismatch' });
  const detail = got.kind === 'refuse' ? got.detail : '';
  t.ok(detail.includes(`names ${long.slice(0, 100)}… but`), detail);
  t.notOk(detail.includes(long.slice(0, 101)));
});

/** Every prefix of `bytes` needs more or already gives the final answer, and once final stays so. */
function checkPrefixes(t: Test, name: string, bytes: Buffer, tunnel: GateTunnel): void {
  const final = JSON.stringify(gateTunnelStart(bytes, tunnel));
  let firstFinal = -1;
  let disagree = 0;
  for (let cut = 0; cut <= bytes.length; cut++) {
    const got = gateTunnelStart(bytes.subarray(0, cut), tunnel);
    if (got.kind === 'need_more') {
      if (firstFinal !== -1) disagree++; // need_more after a final answer
      continue;
    }
    if (firstFinal === -1) firstFinal = cut;
    if (JSON.stringify(got) !== final) disagree++;
  }
  t.equal(disagree, 0, `${name}: need_more, then ${final} from byte ${firstFinal} on`);
}

t.test('gate: fed byte by byte, a real hello needs more until its last byte', async (t) => {
  for (const [name, hello] of Object.entries(REAL)) {
    for (const tunnel of [name443, name8443, ip443]) {
      let early = 0;
      for (let cut = 0; cut < hello.length; cut++) if (gateTunnelStart(hello.subarray(0, cut), tunnel).kind !== 'need_more') early++;
      t.equal(early, 0, `${name} to ${tunnel.host}:${tunnel.port}: every proper prefix needs more`);
      t.not(gateTunnelStart(hello, tunnel).kind, 'need_more');
    }
  }
});

t.test('gate: every table row, fed at every byte boundary, settles on the same answer', async (t) => {
  for (const [name, bytes, tunnel] of ROWS) checkPrefixes(t, name, bytes, tunnel);
  checkPrefixes(t, 'tls13 split in 40-byte records', records(message, 40), name443);
});

// Byte sources an attacker would try: anything, text, TLS-looking starts, request-ish lines.
const anyBytes = fc.uint8Array({ maxLength: 800 }).map((a) => Buffer.from(a));
const text = fc.string({ unit: fc.constantFrom(...' \t\r\nGETPOST/:*HTTP1.0ab-_'.split('')), maxLength: 200 }).map(b);
const tlsStart = fc
  .tuple(fc.constantFrom(20, 21, 22, 23, 24, 0x80, 0x81), fc.constantFrom(3, 1, 0), fc.uint8Array({ maxLength: 400 }))
  .map(([type, version, rest]) => Buffer.concat([Buffer.from([type, version]), Buffer.from(rest)]));
const mutatedHello = fc
  .array(fc.record({ at: fc.nat(tls13.length - 1), value: fc.integer({ min: 0, max: 255 }) }), { minLength: 1, maxLength: 5 })
  .map((edits) => {
    const out = Buffer.from(tls13);
    for (const { at, value } of edits) out[at] = value;
    return out;
  });
const hostile = fc.oneof(anyBytes, text, tlsStart, mutatedHello);
const tunnels = fc.constantFrom(name443, name8443, ip443, ip6Other, redis);

t.test('fuzz: hostile bytes never throw, and a prefix never disagrees with the whole', async () => {
  fc.assert(
    fc.property(hostile, tunnels, fc.nat(), (bytes, tunnel, cutSeed) => {
      const whole = gateTunnelStart(bytes, tunnel);
      const prefix = gateTunnelStart(bytes.subarray(0, cutSeed % (bytes.length + 1)), tunnel);
      return prefix.kind === 'need_more' || JSON.stringify(prefix) === JSON.stringify(whole);
    }),
    { numRuns: 20000 },
  );
});

t.test('fuzz: never need_more at or past the cap', async () => {
  // Long inputs the gate could be tempted to keep waiting on: printable text with no line end,
  // blank runs, and records that declare large lengths.
  const longText = fc
    .tuple(fc.string({ unit: fc.constantFrom('a', 'G', ' ', '/', ':'), minLength: 1, maxLength: 40 }), fc.integer({ min: 100, max: 500 }))
    .map(([s, n]) => b(s.repeat(n)));
  const bigRecords = fc
    .tuple(fc.integer({ min: 16000, max: 16400 }), fc.array(fc.integer({ min: 1, max: 16384 }), { minLength: 1, maxLength: 4 }))
    .map(([helloLength, lengths]) => {
      // The first fragment opens a ClientHello of helloLength bytes; the rest is filler.
      const opening = Buffer.from([1, helloLength >> 16, (helloLength >> 8) & 0xff, helloLength & 0xff]);
      const fragments = lengths.map((n, i) =>
        i === 0 ? Buffer.concat([opening, Buffer.alloc(n, 0x61)]).subarray(0, n) : Buffer.alloc(n, 0x61),
      );
      return Buffer.concat(fragments.flatMap((fragment) => [Buffer.from([22, 3, 3, fragment.length >> 8, fragment.length & 0xff]), fragment]));
    });
  fc.assert(
    fc.property(fc.oneof(longText, bigRecords, hostile), tunnels, (bytes, tunnel) => {
      const result = gateTunnelStart(bytes, tunnel);
      return result.kind !== 'need_more' || bytes.length < MAX_GATE_BYTES;
    }),
    { numRuns: 3000 },
  );
});

t.test('fuzz: a mutated hello never passes under a name other than the tunnel host', async () => {
  fc.assert(
    fc.property(mutatedHello, fc.constantFrom(name443, name8443), (bytes, tunnel) => {
      const result = gateTunnelStart(bytes, tunnel);
      return result.kind !== 'tls' || result.sni === tunnel.host;
    }),
    { numRuns: 10000 },
  );
});

t.test('fuzz: request lines are HTTP whatever the method and target form', async () => {
  const tchar = fc.constantFrom(..."!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz".split(''));
  const method = fc.string({ unit: tchar, minLength: 1, maxLength: 12 });
  const target = fc.oneof(
    fc.webPath().map((p) => `/${p.replace(/^\//, '')}`),
    fc.webUrl(),
    fc.constant('*'),
    fc.domain().map((d) => `${d}:80 HTTP/1.1\r\n`),
  );
  fc.assert(
    fc.property(
      fc.string({ unit: fc.constantFrom('\r', '\n', ' ', '\t'), maxLength: 6 }),
      method,
      fc.constantFrom(' ', '\t', '  '),
      target,
      fc.constantFrom(' HTTP/1.1\r\n', ' HTTP/1.0\n', ''),
      tunnels.filter((tunnel) => tunnel.port !== 443),
      (lead, m, sp, target, tail, tunnel) => {
        return gateTunnelStart(b(`${lead}${m}${sp}${target}${tail}`), tunnel).kind === 'http';
      },
    ),
    { numRuns: 400 },
  );
});
