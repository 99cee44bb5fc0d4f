import t from 'tap';
import fc from '../helpers/fc.js';
import { MAX_HELLO_RECORDS, MAX_HELLO_WIRE_BYTES, scanClientHello, type HelloScan } from '../../src/tls/client-hello.js';
import {
  alpnExt,
  captureClientHello,
  ext,
  handshake,
  helloBody,
  messageOf,
  records,
  sniExt,
  synthetic,
  u16,
  vec16,
  type HelloParts,
} from '../helpers/tls-hello.js';

const withSni = await captureClientHello({ servername: 'example.test', ALPNProtocols: ['h2', 'http/1.1'] });
const sniOnly = await captureClientHello({ servername: 'api.example.test' });
const bare = await captureClientHello({});

t.test('reads SNI and ALPN from real Node ClientHellos', async (t) => {
  t.same(scanClientHello(withSni), { state: 'tls', sni: 'example.test', alpn: ['h2', 'http/1.1'] });
  t.same(scanClientHello(sniOnly), { state: 'tls', sni: 'api.example.test', alpn: [] });
  t.same(scanClientHello(bare), { state: 'tls', sni: null, alpn: [] }, 'no SNI for an IP-literal connect');
});

t.test('needs more until the last byte, at every split point', async (t) => {
  for (const [name, hello] of [
    ['sni+alpn', withSni],
    ['sni', sniOnly],
    ['bare', bare],
  ] as const) {
    let early = 0;
    for (let cut = 0; cut < hello.length; cut++) {
      if (scanClientHello(hello.subarray(0, cut)).state !== 'need_more') early++;
    }
    t.equal(early, 0, `${name}: every proper prefix of ${hello.length} bytes needs more`);
    t.equal(scanClientHello(hello).state, 'tls');
  }
});

t.test('ignores records that follow the ClientHello', async (t) => {
  const more = Buffer.concat([withSni, Buffer.from('\x17\x03\x03\x00\x05hello')]);
  t.same(scanClientHello(more), scanClientHello(withSni));
});

t.test('reassembles a ClientHello split over several records, up to the cap', async (t) => {
  const message = messageOf(withSni);
  const headerSplit = Buffer.concat([records(message.subarray(0, 2)), records(message.subarray(2))]);
  const atCap = Math.ceil(message.length / MAX_HELLO_RECORDS);
  const splits: Array<[string, Buffer]> = [
    ['handshake header split across records', headerSplit],
    ['a one-byte first record', Buffer.concat([records(message.subarray(0, 1)), records(message.subarray(1))])],
    // Record sizes that keep the hello within the cap whatever its size (Node 24's hello carries a
    // post-quantum key share and is about 1.7 KiB; Node 20's about 0.5 KiB).
    ...[atCap, Math.max(100, atCap + 1), 511].map((size): [string, Buffer] => [`records of ${size}`, records(message, size)]),
  ];
  for (const [name, split] of splits) {
    t.same(scanClientHello(split), { state: 'tls', sni: 'example.test', alpn: ['h2', 'http/1.1'] }, name);
    let early = 0;
    for (let cut = 0; cut < split.length; cut++) if (scanClientHello(split.subarray(0, cut)).state !== 'need_more') early++;
    t.equal(early, 0, `${name}: prefixes need more`);
  }
});

t.test('a hello in more records than the cap is malformed, not "not TLS"', async (t) => {
  const message = messageOf(withSni);
  const tooMany = records(message, Math.floor(message.length / (MAX_HELLO_RECORDS + 1)));
  t.match(scanClientHello(tooMany), { state: 'malformed', why: /more than 16 records/ });
  const oneByte = records(message, 1);
  t.match(scanClientHello(oneByte), { state: 'malformed', why: /more than 16 records/ }, 'one byte per record');
  // Decided as soon as the cap is reached: the 17th record header need not arrive.
  t.match(scanClientHello(oneByte.subarray(0, MAX_HELLO_RECORDS * 6)), { state: 'malformed' });
  t.same(scanClientHello(oneByte.subarray(0, MAX_HELLO_RECORDS * 6 - 1)), { state: 'need_more' });
});

t.test('other protocols are not TLS on their first bytes', async (t) => {
  const cases: Array<[string, Buffer]> = [
    ['HTTP request', Buffer.from('GET / HTTP/1.1\r\n')],
    ['HTTP request, one byte', Buffer.from('G')],
    ['CONNECT', Buffer.from('CONNECT a:443 HTTP/1.1\r\n')],
    ['SSH banner', Buffer.from('SSH-2.0-OpenSSH_9.6\r\n')],
    ['record version 2', Buffer.from([22, 2, 0, 0, 4])],
    ['handshake type byte then no version', Buffer.from([22, 0x16])],
    ['Postgres startup', Buffer.from([0, 0, 0, 8, 4, 0xd2, 0x16, 0x2f])],
    ['high byte, not an SSLv2 hello', Buffer.from([0x85, 0x00, 0x07])],
    ['random bytes', Buffer.from('9f1c2a77e0b3d45a8c6e11f02b9d7c3e', 'hex')],
  ];
  for (const [name, bytes] of cases) t.same(scanClientHello(bytes), { state: 'not_tls' }, name);
});

t.test('what starts like TLS and is not a ClientHello is malformed', async (t) => {
  const cases: Array<[string, Buffer, RegExp]> = [
    ['SSLv2-style ClientHello', Buffer.from([0x80, 0x2e, 0x01, 0x00, 0x02]), /SSLv2/],
    ['SSLv2-style, three bytes', Buffer.from([0x81, 0x2e, 0x01]), /SSLv2/],
    ['TLS alert record', records(Buffer.from([2, 40]), 16384, 21), /alert \(21\)/],
    ['alert, two bytes', Buffer.from([21, 3]), /alert/],
    ['change_cipher_spec first', records(Buffer.from([1]), 16384, 20), /change_cipher_spec/],
    ['application data record', records(Buffer.from('hi'), 16384, 23), /application_data/],
    ['heartbeat record', Buffer.from([24, 3, 3, 0, 3]), /heartbeat/],
    ['ServerHello', records(handshake(helloBody(), 2)), /type 2, not ClientHello/],
    ['ServerHello, header only', Buffer.from([22, 3, 3, 0, 80, 2]), /type 2/],
  ];
  for (const [name, bytes, why] of cases) t.match(scanClientHello(bytes), { state: 'malformed', why }, name);
});

t.test('needs more while a short prefix could still be TLS', async (t) => {
  const prefixes = [[], [22], [20], [24], [0x80], [0x80, 0x2e], [22, 3], [22, 3, 1], [22, 3, 1, 0], [22, 3, 1, 0, 200], [22, 3, 1, 0, 200, 1]];
  for (const prefix of prefixes) t.same(scanClientHello(Buffer.from(prefix)), { state: 'need_more' }, JSON.stringify(prefix));
});

t.test('synthetic ClientHellos: well formed', async (t) => {
  const cases: Array<[string, HelloParts, HelloScan]> = [
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
    [
      'padding up to one full record',
      { extensions: ext(21, Buffer.alloc(16384 - 4 - helloBody().length - 4)) },
      { state: 'tls', sni: null, alpn: [] },
    ],
  ];
  for (const [name, parts, expected] of cases) t.same(scanClientHello(synthetic(parts)), expected, name);
});

t.test('synthetic ClientHellos: malformed, each with its reason', async (t) => {
  const padded = (n: number): Buffer => records(handshake(helloBody({ extensions: ext(21, Buffer.alloc(n)) })), 16384);
  const overOneRecord = 16384 - 4 - helloBody().length - 4 + 1;
  const cases: Array<[string, Buffer, RegExp]> = [
    ['legacy version 2.0', synthetic({ version: 0x0200 }), /legacy_version 2\.0/],
    ['session id of 33 bytes', synthetic({ sessionId: Buffer.alloc(33) }), /session id of 33/],
    ['no cipher suites', synthetic({ cipherSuites: Buffer.alloc(0) }), /cipher suite list of 0/],
    ['odd cipher suites length', synthetic({ cipherSuites: Buffer.from([0x13, 0x01, 0x13]) }), /cipher suite list of 3/],
    ['no compression methods', synthetic({ compression: Buffer.alloc(0) }), /no compression/],
    ['bytes after the extensions', synthetic({ extensions: sniExt('a.test'), trailing: Buffer.from([0]) }), /1 bytes after the extensions/],
    ['one stray byte instead of extensions', synthetic({ extensions: null, trailing: Buffer.from([0]) }), /runs past/],
    ['extension length past the end', synthetic({ extensions: Buffer.concat([u16(0), u16(50), Buffer.alloc(3)]) }), /vector of 50/],
    ['half an extension header', synthetic({ extensions: Buffer.from([0, 0, 0]) }), /runs past/],
    ['two server_name extensions', synthetic({ extensions: Buffer.concat([sniExt('a.test'), sniExt('b.test')]) }), /extension 0 appears twice/],
    [
      'two unknown extensions of one type',
      synthetic({ extensions: Buffer.concat([ext(43, Buffer.alloc(1)), ext(43, Buffer.alloc(1))]) }),
      /43 appears twice/,
    ],
    ['two host_names', synthetic({ extensions: sniExt('a.test', 'b.test') }), /two host_names/],
    ['empty host_name', synthetic({ extensions: sniExt('') }), /empty host_name/],
    ['host_name with a NUL', synthetic({ extensions: sniExt('a.test\0.evil') }), /printable/],
    ['host_name with a space', synthetic({ extensions: sniExt('a .test') }), /printable/],
    ['host_name with a high byte', synthetic({ extensions: sniExt('caf\xe9.test') }), /printable/],
    [
      'server_name with only other name types',
      synthetic({ extensions: ext(0, vec16(Buffer.concat([Buffer.from([9]), vec16(Buffer.from('x'))]))) }),
      /without a host_name/,
    ],
    ['empty server_name extension', synthetic({ extensions: ext(0, Buffer.alloc(0)) }), /runs past/],
    ['empty server_name list', synthetic({ extensions: ext(0, vec16(Buffer.alloc(0))) }), /empty server_name list/],
    [
      'server_name list shorter than its extension',
      synthetic({ extensions: ext(0, Buffer.concat([vec16(Buffer.alloc(0)), Buffer.from([1])])) }),
      /after the server_name list/,
    ],
    ['server_name entry past its list', synthetic({ extensions: ext(0, vec16(Buffer.from([0, 0, 9, 97]))) }), /vector of 9/],
    ['empty ALPN list', synthetic({ extensions: ext(16, vec16(Buffer.alloc(0))) }), /empty ALPN list/],
    ['empty ALPN protocol', synthetic({ extensions: alpnExt('h2', '') }), /empty ALPN protocol/],
    ['ALPN protocol past its list', synthetic({ extensions: ext(16, vec16(Buffer.from([5, 104, 50]))) }), /vector of 5/],
    ['two ALPN extensions', synthetic({ extensions: Buffer.concat([alpnExt('h2'), alpnExt('http/1.1')]) }), /16 appears twice/],
    ['hello one byte past a full record', padded(overOneRecord), /more than 16384/],
    ['hello padded to 17,000 bytes', padded(17000), /more than 16384/],
    ['zero-length record', Buffer.from([22, 3, 1, 0, 0]), /zero-length/],
    ['record one byte over the TLS limit', Buffer.from([22, 3, 1, 0x40, 0x01]), /16385 bytes, over the TLS limit/],
    ['record longer than 18 KiB', Buffer.from([22, 3, 1, 0x48, 0x01]), /over the TLS limit/],
    [
      'handshake declares more than the records carry, then HTTP',
      Buffer.concat([records(handshake(helloBody()).subarray(0, 20)), Buffer.from('GET /')]),
      /record 2 is content type 71/,
    ],
    [
      "an alert between the hello's records",
      Buffer.concat([records(messageOf(withSni).subarray(0, 40)), Buffer.from([21, 3, 3, 0, 2, 2, 40])]),
      /record 2 is alert/,
    ],
    [
      'a later record of version 2',
      Buffer.concat([records(messageOf(withSni).subarray(0, 40)), Buffer.from([22, 2])]),
      /record 2 has version 2/,
    ],
    ['hello body shorter than the random', records(handshake(Buffer.from([3, 3, 1, 2]))), /runs past/],
    [
      'bytes after the hello in its own record',
      records(Buffer.concat([messageOf(withSni), Buffer.from([20, 0, 0, 0])])),
      /after the ClientHello/,
    ],
    [
      'a second record longer than what the hello has left',
      Buffer.concat([records(messageOf(withSni).subarray(0, 40)), Buffer.from([22, 3, 3]), u16(messageOf(withSni).length)]),
      /after the ClientHello/,
    ],
    [
      'a hello that fits one full record, sent in two: the second header takes it past the wire cap',
      records(handshake(helloBody({ extensions: ext(21, Buffer.alloc(16380 - 4 - helloBody().length - 4)) })).subarray(0, 100)),
      /more than 16389 bytes/,
    ],
  ];
  for (const [name, bytes, why] of cases) t.match(scanClientHello(bytes), { state: 'malformed', why }, name);
});

t.test('a malformed hello is refused when the fault arrives, not after the rest', async (t) => {
  // Declares 16 KiB but its session id is too long: known after 5 + 4 + 2 + 32 + 1 bytes.
  const body = helloBody({ sessionId: Buffer.alloc(33), extensions: ext(21, Buffer.alloc(15000)) });
  const wire = records(handshake(body));
  const faultAt = 5 + 4 + 2 + 32 + 1;
  t.same(scanClientHello(wire.subarray(0, faultAt - 1)), { state: 'need_more' });
  t.match(scanClientHello(wire.subarray(0, faultAt)), { state: 'malformed', why: /session id of 33/ });
  // A repeated extension is seen as soon as its type is, long before the padding behind it.
  const dup = records(handshake(helloBody({ extensions: Buffer.concat([sniExt('a.test'), sniExt('b.test'), ext(21, Buffer.alloc(15000))]) })));
  const firstEnd = 5 + 4 + helloBody({ extensions: Buffer.alloc(0) }).length + sniExt('a.test').length;
  t.match(scanClientHello(dup.subarray(0, firstEnd + 2)), { state: 'malformed', why: /appears twice/ });
});

t.test('fuzz: arbitrary bytes never throw, and never need more past the wire cap', async () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 600 }), (bytes) => {
      const result = scanClientHello(Buffer.from(bytes));
      return ['need_more', 'not_tls', 'malformed', 'tls'].includes(result.state);
    }),
    { numRuns: 5000 },
  );
  // A plausible start whose hello length and record lengths are arbitrary (often near the caps):
  // whatever they claim, once the cap's worth of bytes is there the answer is final.
  const helloLength = fc.oneof(fc.integer({ min: 0, max: 0xffffff }), fc.integer({ min: 16300, max: 16400 }), fc.integer({ min: 0, max: 600 }));
  const record = fc.record({
    length: fc.oneof(fc.integer({ min: 0, max: 0x4100 }), fc.integer({ min: 1, max: 40 })),
    present: fc.integer({ min: 0, max: 0x4100 }),
  });
  fc.assert(
    fc.property(helloLength, fc.array(record, { minLength: 1, maxLength: 24 }), (length, recs) => {
      const out: Buffer[] = [];
      recs.forEach((r, i) => {
        const fragment = Buffer.alloc(Math.min(r.length, r.present), 0x42);
        if (i === 0 && fragment.length >= 1) fragment[0] = 1;
        if (i === 0 && fragment.length >= 4) fragment.writeUIntBE(length, 1, 3);
        out.push(Buffer.from([22, 3, 3]), u16(r.length), fragment);
      });
      const bytes = Buffer.concat(out);
      const result = scanClientHello(bytes);
      return result.state !== 'need_more' || bytes.length < MAX_HELLO_WIRE_BYTES;
    }),
    { numRuns: 3000 },
  );
});

t.test('fuzz: bytes behind a valid record header never throw', async () => {
  fc.assert(
    fc.property(fc.uint8Array({ minLength: 1, maxLength: 400 }), fc.boolean(), (body, asHello) => {
      const message = asHello ? Buffer.concat([Buffer.from([1, 0, body.length >> 8, body.length & 0xff]), body]) : Buffer.from(body);
      scanClientHello(records(message));
      scanClientHello(records(message, 37));
    }),
    { numRuns: 3000 },
  );
});

t.test('fuzz: a final answer on any prefix is the answer on the whole (mutated real hellos)', async () => {
  // In one record as Node sends it, and in records of 37 bytes so that faults in record headers
  // and in the body compete: the first fault in wire order must win at every length.
  for (const base of [withSni, records(messageOf(withSni), 37)]) {
    fc.assert(
      fc.property(
        fc.array(fc.record({ at: fc.nat(base.length - 1), value: fc.integer({ min: 0, max: 255 }) }), { minLength: 1, maxLength: 8 }),
        (edits) => {
          const mutated = Buffer.from(base);
          for (const { at, value } of edits) mutated[at] = value;
          const whole = scanClientHello(mutated);
          if (whole.state === 'tls' && whole.sni !== null && !/^[\x21-\x7e]+$/.test(whole.sni)) return false; // never invents a name
          const final = JSON.stringify(whole);
          for (let cut = 0; cut < mutated.length; cut++) {
            const prefix = scanClientHello(mutated.subarray(0, cut));
            if (prefix.state !== 'need_more' && JSON.stringify(prefix) !== final) return false;
          }
          return true;
        },
      ),
      { numRuns: 200 },
    );
  }
});

t.test('fuzz: any SNI and ALPN round-trip through any record split within the cap', async () => {
  const label = fc.stringMatching(/^[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?$/);
  fc.assert(
    fc.property(
      fc.array(label, { minLength: 1, maxLength: 4 }),
      fc.array(fc.stringMatching(/^[\x21-\x7e]{1,20}$/), { maxLength: 4 }),
      fc.integer({ min: 40, max: 600 }),
      (labels, protocols, size) => {
        const host = labels.join('.');
        const extensions = Buffer.concat([sniExt(host), ...(protocols.length ? [alpnExt(...protocols)] : [])]);
        const result = scanClientHello(synthetic({ extensions }, size));
        return JSON.stringify(result) === JSON.stringify({ state: 'tls', sni: host, alpn: protocols });
      },
    ),
    { numRuns: 1000 },
  );
});
