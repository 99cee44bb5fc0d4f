// The raw-response parser decides what smuggling tests conclude, so it gets its own table and fuzz.
import fc from './fc.js';
import t from 'tap';
import { hasFinalResponse, parseHttpResponses, type ParseOptions } from './http-response.js';

interface Case {
  name: string;
  input: string;
  options?: ParseOptions;
  statuses: number[];
  bodies?: string[];
  incomplete?: boolean;
  malformed?: RegExp;
  rest?: string;
}

const cases: Case[] = [
  { name: 'content-length', input: 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello', statuses: [200], bodies: ['hello'] },
  { name: 'content-length, short', input: 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel', statuses: [], incomplete: true },
  { name: 'head not yet complete', input: 'HTTP/1.1 200 OK\r\nContent-Le', statuses: [], incomplete: true },
  {
    name: 'repeated equal content-length',
    input: 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nhi',
    statuses: [200],
    bodies: ['hi'],
  },
  {
    name: 'conflicting content-length',
    input: 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nhi!',
    statuses: [],
    malformed: /bad content-length/,
  },
  { name: 'negative content-length', input: 'HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n', statuses: [], malformed: /bad content-length/ },
  {
    name: 'chunked with extension and trailer',
    input: 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: y\r\n\r\n',
    statuses: [200],
    bodies: ['hello world'],
  },
  {
    name: 'chunked, cut inside a chunk',
    input: 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel',
    statuses: [],
    incomplete: true,
  },
  { name: 'chunked, no last CRLF yet', input: 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n', statuses: [], incomplete: true },
  {
    name: 'bad chunk size',
    input: 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n',
    statuses: [],
    malformed: /bad chunk size/,
  },
  {
    name: 'chunk without CRLF after data',
    input: 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhiXX0\r\n\r\n',
    statuses: [],
    malformed: /not followed by CRLF/,
  },
  {
    name: 'chunked wins over content-length',
    input: 'HTTP/1.1 200 OK\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n',
    statuses: [200],
    bodies: ['hi'],
  },
  {
    name: 'chunked not last: read to close',
    input: 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\nabc',
    options: { closed: true },
    statuses: [200],
    bodies: ['abc'],
  },
  { name: 'close-delimited, open', input: 'HTTP/1.1 200 OK\r\n\r\nabc', statuses: [], incomplete: true },
  { name: 'close-delimited, closed', input: 'HTTP/1.0 200 OK\r\n\r\nabc', options: { closed: true }, statuses: [200], bodies: ['abc'] },
  {
    name: '100 continue then final',
    input: 'HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n',
    statuses: [100, 201],
    bodies: ['', ''],
  },
  {
    name: '204 has no body',
    input: 'HTTP/1.1 204 No Content\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx',
    statuses: [204, 200],
    bodies: ['', 'x'],
  },
  {
    name: 'HEAD answer has no body',
    input: 'HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n',
    options: { requestMethod: 'HEAD' },
    statuses: [200],
    bodies: [''],
  },
  {
    name: 'CONNECT 200 opens a tunnel',
    input: 'HTTP/1.1 200 Connection Established\r\n\r\n\x16\x03\x01',
    options: { requestMethod: 'CONNECT' },
    statuses: [200],
    rest: '\x16\x03\x01',
  },
  {
    name: 'CONNECT 403 has a body',
    input: 'HTTP/1.1 403 Forbidden\r\nContent-Length: 2\r\n\r\nno',
    options: { requestMethod: 'connect' },
    statuses: [403],
    bodies: ['no'],
  },
  {
    name: '101 switches protocol',
    input: 'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x00',
    statuses: [101],
    rest: '\x81\x00',
  },
  {
    name: 'two pipelined responses',
    input: 'HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\naHTTP/1.1 404 Not Found\r\nContent-Length: 1\r\n\r\nb',
    statuses: [200, 404],
    bodies: ['a', 'b'],
  },
  {
    name: 'garbage after a response',
    input: 'HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\naGET / HTTP/1.1\r\n\r\n',
    statuses: [200],
    malformed: /not a status line/,
    rest: 'GET / HTTP/1.1\r\n\r\n',
  },
  { name: 'not HTTP at all', input: 'SSH-2.0-OpenSSH\r\n\r\n', statuses: [], malformed: /not a status line/ },
  { name: 'header line without colon', input: 'HTTP/1.1 200 OK\r\nBroken header\r\n\r\n', statuses: [], malformed: /not a header line/ },
  { name: 'empty input', input: '', statuses: [] },
];

t.test('parseHttpResponses table', async (t) => {
  for (const c of cases) {
    const result = parseHttpResponses(Buffer.from(c.input, 'latin1'), c.options);
    t.same(
      result.responses.map((response) => response.status),
      c.statuses,
      `${c.name}: statuses`,
    );
    if (c.bodies)
      t.same(
        result.responses.map((response) => response.body),
        c.bodies,
        `${c.name}: bodies`,
      );
    t.equal(result.incomplete, c.incomplete ?? false, `${c.name}: incomplete`);
    if (c.malformed) t.match(result.malformed, c.malformed, `${c.name}: malformed`);
    else t.equal(result.malformed, null, `${c.name}: not malformed`);
    if (c.rest !== undefined) t.equal(result.rest.toString('latin1'), c.rest, `${c.name}: rest`);
  }
});

t.test('headers: lower-cased, repeats joined, raw pairs kept', async (t) => {
  const [response] = parseHttpResponses(
    Buffer.from('HTTP/1.1 200 OK\r\nSet-Cookie: a=1\r\nset-cookie:  b=2 \r\nX-Y: z\r\nContent-Length: 0\r\n\r\n'),
  ).responses;
  t.same(response?.headers, { 'set-cookie': 'a=1, b=2', 'x-y': 'z', 'content-length': '0' });
  t.same(response?.rawHeaders, [
    ['Set-Cookie', 'a=1'],
    ['set-cookie', 'b=2'],
    ['X-Y', 'z'],
    ['Content-Length', '0'],
  ]);
  t.equal(response?.framing, 'content-length');
});

t.test('hasFinalResponse', async (t) => {
  const interim = parseHttpResponses(Buffer.from('HTTP/1.1 100 Continue\r\n\r\n')).responses;
  t.equal(hasFinalResponse(interim), false);
  t.equal(hasFinalResponse(parseHttpResponses(Buffer.from('HTTP/1.1 101 Switching\r\n\r\n')).responses), true);
  t.equal(hasFinalResponse(parseHttpResponses(Buffer.from('HTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n')).responses), true);
});

t.test('fuzz: hostile bytes never throw and keep the invariants', async (t) => {
  const optionsArb = fc.record({ closed: fc.boolean(), requestMethod: fc.constantFrom(undefined, 'GET', 'HEAD', 'CONNECT') });
  const httpish = fc
    .array(
      fc.constantFrom(
        'HTTP/1.1 200 OK',
        'HTTP/1.1 100 Continue',
        'Content-Length: 3',
        'Content-Length: x',
        'Transfer-Encoding: chunked',
        '\r\n',
        '3\r\nabc',
        '0',
        'ffffffff',
        ':',
        'a',
      ),
      { maxLength: 20 },
    )
    .map((parts) => Buffer.from(parts.join('\r\n')));
  const bytes = fc.uint8Array({ maxLength: 300 }).map((array) => Buffer.from(array));
  fc.assert(
    fc.property(fc.oneof(bytes, httpish), optionsArb, (buf, options) => {
      const result = parseHttpResponses(buf, options);
      for (const response of result.responses) {
        if (response.status < 100 || response.status > 999) return false;
      }
      const restIsSuffix = buf.subarray(buf.length - result.rest.length).equals(result.rest);
      return restIsSuffix && !(result.incomplete && result.malformed !== null);
    }),
    { numRuns: 2000 },
  );
  t.pass('no throw, status in range, rest is a suffix, never both incomplete and malformed');
});

t.test('fuzz: well-framed responses parse back exactly, and every prefix is incomplete', async (t) => {
  const response = fc.record({
    status: fc.integer({ min: 200, max: 599 }).filter((status) => status !== 204 && status !== 304),
    body: fc.uint8Array({ maxLength: 200 }).map((array) => Buffer.from(array)),
    chunkSizes: fc.option(fc.array(fc.integer({ min: 1, max: 50 }), { minLength: 1, maxLength: 8 }), { nil: undefined }),
  });
  const encode = (r: { status: number; body: Buffer; chunkSizes: number[] | undefined }): Buffer => {
    if (!r.chunkSizes) return Buffer.concat([Buffer.from(`HTTP/1.1 ${r.status} X\r\nContent-Length: ${r.body.length}\r\n\r\n`), r.body]);
    const parts: Buffer[] = [Buffer.from(`HTTP/1.1 ${r.status} X\r\nTransfer-Encoding: chunked\r\n\r\n`)];
    let offset = 0;
    for (let i = 0; offset < r.body.length; i += 1) {
      const size = Math.min(r.chunkSizes[i % r.chunkSizes.length]!, r.body.length - offset);
      parts.push(Buffer.from(`${size.toString(16)}\r\n`), r.body.subarray(offset, offset + size), Buffer.from('\r\n'));
      offset += size;
    }
    parts.push(Buffer.from('0\r\n\r\n'));
    return Buffer.concat(parts);
  };
  fc.assert(
    fc.property(fc.array(response, { minLength: 1, maxLength: 3 }), fc.nat(), (responses, cutSeed) => {
      const wire = Buffer.concat(responses.map(encode));
      const whole = parseHttpResponses(wire);
      const exact =
        !whole.incomplete &&
        whole.malformed === null &&
        whole.rest.length === 0 &&
        whole.responses.length === responses.length &&
        whole.responses.every((parsed, i) => parsed.status === responses[i]!.status && parsed.bodyBuffer.equals(responses[i]!.body));
      const cut = cutSeed % wire.length;
      const prefix = parseHttpResponses(wire.subarray(0, cut));
      const prefixSound =
        prefix.malformed === null && prefix.responses.length < responses.length && (prefix.incomplete || prefix.rest.length === 0);
      return exact && prefixSound;
    }),
    { numRuns: 1000 },
  );
  t.pass('every generated response round-trips; prefixes never over-read');
});
