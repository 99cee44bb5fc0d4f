import t from 'tap';
import fc from '../helpers/fc.js';
import { FRAMING_HEADER_NAMES, isFramingHeaderName, lookalikeHeader } from '../../src/http/lookalike.js';

// [header name as sent, the framing header it looks like, or null when it must pass]
const TABLE: Array<[string, string | null]> = [
  // The Transfer-Encoding name mutations of request-smuggling scanners that Node's parser lets
  // through (bytes outside tchar, spaces before the colon and line folding never get this far).
  ['Transfer_Encoding', 'transfer-encoding'],
  ['transfer_encoding', 'transfer-encoding'],
  ['TRANSFER_ENCODING', 'transfer-encoding'],
  ['Transfer-Encoding_', 'transfer-encoding'],
  ['_Transfer-Encoding', 'transfer-encoding'],
  ['Transfer_-Encoding', 'transfer-encoding'],
  ['Transfer__Encoding', 'transfer-encoding'],
  ['Transfer--Encoding', 'transfer-encoding'],
  ['-Transfer-Encoding', 'transfer-encoding'],
  ['Transfer-Encoding-', 'transfer-encoding'],
  ['Transfer-Encoding__', 'transfer-encoding'],
  // The same with bytes a caller other than Node's parser might hand over.
  ['Transfer-Encoding ', 'transfer-encoding'],
  [' Transfer-Encoding', 'transfer-encoding'],
  ['Transfer-Encoding\t', 'transfer-encoding'],
  ['\x01Transfer-Encoding', 'transfer-encoding'],
  ['Transfer\x00-Encoding', 'transfer-encoding'],
  ['Transfer-\x7fEncoding', 'transfer-encoding'],
  ['Transfer Encoding', null], // a space removed leaves "transferencoding": no folding server reads that as TE
  // The other framing and hop-by-hop names.
  ['Content_Length', 'content-length'],
  ['Content-Length_', 'content-length'],
  ['CONTENT_LENGTH', 'content-length'],
  ['Connection_', 'connection'],
  ['_Connection', 'connection'],
  ['Upgrade_', 'upgrade'],
  ['TE_', 'te'],
  ['_te', 'te'],
  ['Trailer_', 'trailer'],
  ['Keep_Alive', 'keep-alive'],
  ['Host_', 'host'],
  ['_Host', 'host'],
  ['Proxy_Authorization', 'proxy-authorization'],
  ['proxy_connection', 'proxy-connection'],
  ['Proxy-Authorization_', 'proxy-authorization'],
  ['Proxy_', 'proxy'], // httpoxy: CGI turns it into HTTP_PROXY
  ['Proxy-Foo_Bar', 'proxy-foo-bar'],
  // The real names pass (what to do with them is the framing code's business).
  ['Transfer-Encoding', null],
  ['transfer-encoding', null],
  ['TRANSFER-ENCODING', null],
  ['Content-Length', null],
  ['Connection', null],
  ['Upgrade', null],
  ['TE', null],
  ['Trailer', null],
  ['Keep-Alive', null],
  ['Host', null],
  ['Proxy-Authorization', null],
  ['Proxy-Connection', null],
  ['Proxy', null],
  // Ordinary headers pass.
  ['X-Transfer-Encoding-Hint', null],
  ['X_Transfer_Encoding', null],
  ['Content-Type', null],
  ['Content_Type', null],
  ['X_Custom', null],
  ['Accept_Language', null],
  ['TransferEncoding', null],
  ['T_E', null],
  ['Trailers', null],
  ['Hostname', null],
  ['X-Proxy-Id', null],
  ['Proxyman-Version', null],
  ['Content-Length2', null],
  ['Keep-Alive-Ish', null],
];

t.test('lookalikeHeader: table of names', async (t) => {
  for (const [name, looksLike] of TABLE) {
    const got = lookalikeHeader([name, 'chunked']);
    t.same(got, looksLike === null ? null : { name, looksLike }, JSON.stringify(name));
  }
});

t.test('lookalikeHeader reads names only, and finds the first look-alike among many', async (t) => {
  t.equal(lookalikeHeader([]), null);
  t.equal(lookalikeHeader(['Host', 'a.test', 'X-Note', 'Transfer_Encoding']), null, 'a value is never read as a name');
  t.same(lookalikeHeader(['Host', 'a.test', 'Content-Length', '5', 'Content_Length', '0', 'Transfer_Encoding', 'chunked']), {
    name: 'Content_Length',
    looksLike: 'content-length',
  });
});

t.test('the list of framing names', async (t) => {
  t.same([...FRAMING_HEADER_NAMES].sort(), [
    'connection',
    'content-length',
    'host',
    'keep-alive',
    'te',
    'trailer',
    'transfer-encoding',
    'upgrade',
  ]);
  t.ok(Object.isFrozen(FRAMING_HEADER_NAMES));
  for (const name of [...FRAMING_HEADER_NAMES, 'proxy', 'proxy-authorization']) t.ok(isFramingHeaderName(name), name);
  for (const name of ['content-type', 'proxyman', 'x-proxy-id', 'Transfer-Encoding']) t.notOk(isFramingHeaderName(name), name);
});

const framing = fc.constantFrom(...FRAMING_HEADER_NAMES, 'proxy-authorization', 'proxy-connection', 'proxy');

/** A framing name with random case and at least one of: `_` for `-`, a `_` or `-` added at an end, a control byte inside. */
const mutation = fc
  .tuple(
    framing,
    fc.array(fc.boolean(), { minLength: 30, maxLength: 30 }),
    fc.constantFrom('underscore', 'prefix', 'suffix', 'control'),
    fc.nat(),
    fc.constantFrom('_', '-', '__'),
    fc.integer({ min: 0, max: 0x1f }),
  )
  .map(([name, upper, kind, at, extra, control]) => {
    const cased = [...name].map((c, i) => (upper[i] ? c.toUpperCase() : c)).join('');
    const dashes = [...cased].flatMap((c, i) => (c === '-' ? [i] : []));
    let mutated: string;
    if (kind === 'underscore' && dashes.length > 0)
      mutated = cased.slice(0, dashes[at % dashes.length]) + '_' + cased.slice(dashes[at % dashes.length]! + 1);
    else if (kind === 'prefix') mutated = extra + cased;
    else if (kind === 'control')
      mutated = cased.slice(0, at % (cased.length + 1)) + String.fromCharCode(control) + cased.slice(at % (cased.length + 1));
    else mutated = cased + extra;
    return { name, mutated };
  });

t.test('fuzz: every mutation of a framing name is caught as that name', async () => {
  fc.assert(
    fc.property(mutation, ({ name, mutated }) => {
      const got = lookalikeHeader([mutated, 'x']);
      return got !== null && got.name === mutated && got.looksLike === name;
    }),
    { numRuns: 5000 },
  );
});

t.test('fuzz: a name of letters, digits and single inner dashes is never a look-alike', async () => {
  const word = fc.stringMatching(/^[A-Za-z0-9]{1,10}$/);
  fc.assert(
    fc.property(fc.array(word, { minLength: 1, maxLength: 4 }), (words) => lookalikeHeader([words.join('-'), 'x']) === null),
    { numRuns: 3000 },
  );
});
