import fc from '../helpers/fc.js';
import t from 'tap';
import { DecodeBudget, DecodeBudgetExceeded, decodedText, detectLeak, MAX_DEPTH, normalize } from '../../src/leak/detect.js';
import { applyChain, chain, CREDENTIALS, ORDINARY } from './fixtures.js';

const detect = (text: string, limit = 1024 * 1024) => detectLeak(text, { budget: new DecodeBudget(limit) });
const GH = 'ghp_aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3z5A';
const b64 = (s: string) => Buffer.from(s).toString('base64');

// Each row is one class of disguise from issue 22; every one passed the plain scan of the text as sent.
const TABLE: Array<{ name: string; text: string; shape: RegExp; chain?: string[]; split?: boolean }> = [
  { name: 'base64 in a query string', text: `/upload?d=${b64(GH)}&x=1`, shape: /github/, chain: ['base64'] },
  { name: 'base64url without padding in JSON', text: `{"blob":"${Buffer.from(`k=${GH}`).toString('base64url')}"}`, shape: /github/ },
  {
    name: 'base64 in an MCP tool argument',
    text: `{"jsonrpc":"2.0","method":"tools/call","params":{"name":"save","arguments":{"note":"${b64(`creds: ${GH}`)}"}}}`,
    shape: /github/,
  },
  {
    name: 'base64 wrapped at 76 columns',
    text: (b64(`xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx ${GH} yyyyyyyyyyyyyyyyyyyyyyyyyy`).match(/.{1,76}/g) ?? []).join('\n'),
    shape: /github/,
  },
  { name: 'hex', text: `data=${Buffer.from(GH).toString('hex')}`, shape: /github/, chain: ['hex'] },
  {
    name: 'hex with colons',
    text: Buffer.from(GH)
      .toString('hex')
      .replace(/..(?!$)/g, '$&:'),
    shape: /github/,
    chain: ['hex'],
  },
  {
    name: 'hex with dashes, upper case',
    text: Buffer.from(GH)
      .toString('hex')
      .toUpperCase()
      .replace(/..(?!$)/g, '$&-'),
    shape: /github/,
  },
  {
    name: 'double percent-encoding',
    text: `q=${encodeURIComponent(GH.replace(/./g, (c) => `%${c.charCodeAt(0).toString(16)}`))}`,
    shape: /github/,
    chain: ['percent', 'percent'],
  },
  { name: 'percent over base64', text: `q=${applyChain(GH, ['base64', 'percent'])}`, shape: /github/, chain: ['percent', 'base64'] },
  { name: 'zero-width characters inserted', text: `{"k":"ghp_\u200baB3dE5fG7hJ9k\u200dL1mN3pQ5rS7tU9vW1xY3z5A"}`, shape: /github/ },
  { name: 'zero-width characters as JSON escapes', text: '{"k":"ghp_\\u200baB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3z5A"}', shape: /github/ },
  { name: 'bidi controls', text: `ghp_aB3dE5fG7h\u202eJ9kL1mN3pQ5rS7tU9vW1xY3z5A`, shape: /github/ },
  { name: 'full-width letters (NFKC)', text: 'ｇｈｐ_aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3z5A', shape: /github/ },
  { name: 'split across two JSON fields', text: '{"a":"ghp_aB3dE5fG7hJ9kL1","b":"mN3pQ5rS7tU9vW1xY3z5A"}', shape: /github/, split: true },
  { name: 'split across two form fields', text: 'a=AKIAQ3EXAMPLE&b=7XYZ2W', shape: /aws/, split: true },
  { name: 'a ghp_ token two characters short', text: 'token=ghp_aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3', shape: /github_token_near/ },
  { name: 'xoxb- slightly off format', text: 'xoxb-12345-abcdefABCDEF123456', shape: /slack/ },
  { name: 'sk-ant- slightly off format', text: 'sk-ant-abcdefghijABCDEFGHIJ0123456789', shape: /anthropic/ },
  { name: 'AKIA two characters short', text: 'id AKIAQ3EXAMPLE7XYZ2 end', shape: /aws/ },
  { name: 'SendGrid', text: `{"key":"SG.abcdefghijABCDEFGHIJ12.abcdefghijABCDEFGHIJ1234567890abcdefghijABC"}`, shape: /sendgrid/ },
  { name: 'npm token', text: 'npm_' + 'aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3z5A', shape: /npm/ },
  { name: 'Docker Hub token', text: 'dckr_pat_aB3dE5fG7hJ9kL1mN3pQ5rS7tU9', shape: /docker/ },
  { name: 'a gitleaks-only shape (Twilio API key)', text: 'SK0123456789abcdef0123456789abcdef ', shape: /gitleaks:twilio/ },
  { name: 'base64 of base64', text: b64(b64(GH)), shape: /github/, chain: ['base64', 'base64'] },
  // Found by the transport properties (test/e2e/leak-transports.test.ts): a base64url value after
  // other path segments ("/" is base64 too, so the run started out of step), and wrapped base64
  // inside a JSON string, whose line breaks are escapes.
  { name: 'base64url in a path segment', text: `/notes/x/${Buffer.from(`AKIAQ3EXAMPLE7XYZ2WA`).toString('base64url')}`, shape: /aws/ },
  {
    name: 'wrapped base64 in a JSON string (escaped line breaks)',
    text: `{"note":"${(b64(`xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx ${GH} yyyy`).match(/.{1,64}/g) ?? []).join('\\r\\n')}"}`,
    shape: /github/,
  },
];

for (const row of TABLE) {
  t.test(`finds: ${row.name}`, async (t) => {
    const finding = detect(row.text);
    t.ok(finding, 'found');
    t.match(finding?.shape, row.shape, 'names the shape');
    if (row.chain) t.same(finding?.chain, row.chain, 'names the decodings');
    if (row.split !== undefined) t.equal(finding?.split, row.split);
  });
}

t.test('depth is bounded: a fourth layer is not undone', async (t) => {
  t.ok(detect(b64(b64(b64(GH)))), 'three layers');
  t.equal(MAX_DEPTH, 3);
  t.equal(detect(b64(b64(b64(b64(GH))))), null, 'four layers: past the bound');
});

t.test('decoded bytes count against the budget', async (t) => {
  const big = b64('x'.repeat(30_000));
  t.throws(() => detect(big, 10_000), DecodeBudgetExceeded);
  t.equal(detect(big, 1024 * 1024), null);
});

t.test('normalize takes out invisible characters and folds compatibility forms', async (t) => {
  t.equal(normalize('a\u200bb\u2060c\ufeffd\u202ae'), 'abcde');
  t.equal(normalize('ＡＢＣ'), 'ABC');
  t.equal(normalize('plain ascii'), 'plain ascii');
});

t.test('decodedText keeps text and cuts binary to its printable runs', async (t) => {
  t.equal(decodedText(Buffer.from('hello world')), 'hello world');
  t.equal(decodedText(Buffer.from([0, 1, 2, ...Buffer.from('a long printable run'), 0xff, 3])), 'a long printable run');
  // Found by the WebSocket property: base64 wrapped twice in a binary message; its last line is short.
  t.equal(decodedText(Buffer.from([0, ...Buffer.from('a wrapped line\r\nTWtS'), 2])), 'a wrapped line\r\nTWtS', 'line breaks stay in a run');
});

t.test('property: a credential of any shape, under any chain of up to two encodings, is found', async (t) => {
  for (const [name, credential] of Object.entries(CREDENTIALS)) {
    fc.assert(
      fc.property(credential, chain, fc.constantFrom('json', 'form', 'text'), (value, encodings, surface) => {
        const encoded = applyChain(value, encodings);
        const text = surface === 'json' ? `{"x":1,"v":"${encoded}"}` : surface === 'form' ? `a=1&v=${encoded}&b=2` : `note ${encoded} end`;
        return detect(text) !== null;
      }),
      { numRuns: 300 },
    );
    t.pass(name);
  }
});

t.test('property: ordinary traffic is never refused (10,000 samples)', async (t) => {
  const kinds = Object.entries(ORDINARY);
  let falsePositives = 0;
  const examples: string[] = [];
  for (let i = 0; i < 10_000; i++) {
    const [kind, make] = kinds[i % kinds.length]!;
    const sample = make();
    const text = typeof sample === 'string' ? sample : decodedText(sample);
    const finding = detect(text);
    if (finding) {
      falsePositives++;
      if (examples.length < 5) examples.push(`${kind}: ${finding.shape}`);
    }
  }
  t.comment(`false positives: ${falsePositives} / 10000`);
  t.equal(falsePositives, 0, examples.join('; '));
});
