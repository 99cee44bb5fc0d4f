// issue 22, hostname labels: a wildcard rule refuses a label of the part it matched that reads as
// encoded data (encoded_hostname), in the decision core, so on the CONNECT line and on each request
// alike. Hostile spellings first (case, trailing dot, punycode, data split at any label boundary,
// separators inserted), then the names it must let through, and the thresholds per rule.
import { createHash, randomBytes } from 'node:crypto';
import fc from '../helpers/fc.js';
import t from 'tap';
import type { RuleDoc } from '../../src/config/types.js';
import { compilePolicy } from '../../src/policy/compile.js';
import { decide, explain } from '../../src/policy/decide.js';
import { DEFAULT_LABEL_CHECK, encodedLabel } from '../../src/policy/labels.js';
import { connect, makeDoc, request } from './fixtures.js';

const BASE32 = 'abcdefghijklmnopqrstuvwxyz234567';
function base32(bytes: Buffer): string {
  let bits = 0;
  let value = 0;
  let out = '';
  for (const byte of bytes) {
    value = ((value << 8) | byte) & 0xffff;
    bits += 8;
    while (bits >= 5) {
      out += BASE32[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  return out;
}

/** A file's worth of data as an attacker would write it: base32 of 32 bytes (51 characters). */
const DATA = base32(createHash('sha256').update('a file').digest());
const HEX = createHash('sha1').update('a file').digest('hex');

function policyWith(strict: boolean, rules: RuleDoc[]) {
  return compilePolicy({ ...makeDoc({ tools: { agent: { allow: rules } } }), strict }, 'f'.repeat(64));
}
const strict = policyWith(true, [{ host: '*.allowed.example' }, { host: 'exact-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.other.example' }]);

const REFUSED: Array<[string, string]> = [
  ['base32 label', `${DATA}.allowed.example`],
  ['hex label', `${HEX}.allowed.example`],
  ['upper-case label (DNS folds case)', `${DATA.toUpperCase()}.allowed.example`],
  ['trailing dot', `${DATA}.allowed.example.`],
  ['deeper under the wildcard', `${DATA}.x.allowed.example`],
  ['not the first label', `www.${DATA}.allowed.example`],
  ['separators inserted', `${DATA.replace(/(.{6})/g, '$1-').replace(/-$/, '')}.allowed.example`],
  ['underscores inserted', `${DATA.replace(/(.{6})/g, '$1_').replace(/_$/, '')}.allowed.example`],
  ['split in two labels', `${DATA.slice(0, 26)}.${DATA.slice(26)}.allowed.example`],
  ['split in short labels', `${DATA.replace(/(.{7})/g, '$1.').replace(/\.$/, '')}.allowed.example`],
  ['split at uneven places', `${DATA.slice(0, 3)}.${DATA.slice(3, 19)}.${DATA.slice(19, 40)}.${DATA.slice(40)}.allowed.example`],
  // An IDN label is judged as its punycode, the form on the wire: data in Unicode letters is still data.
  ['punycode (IDN) of encoded data', `${'ж'.repeat(2)}${DATA.slice(0, 30)}.allowed.example`],
];

for (const [name, host] of REFUSED) {
  t.test(`refused: ${name}`, async (t) => {
    for (const req of [connect(host), request('GET', host, '/')]) {
      const d = decide(strict, 'agent', req);
      t.equal(d.verdict, 'deny', req.phase);
      t.equal(d.reason, 'encoded_hostname', req.phase);
      t.match(d.detail, /label \d+ of the \d+ the wildcard matched/, 'names the position');
      t.match(d.detail, /\d+ characters, \d\.\d bits\/char entropy/, 'names length and entropy');
      t.match(d.detail, /hostname_labels/, 'says how to tune it');
      // The host is in the record already; the detail does not repeat the label.
      const label = host.split('.')[0]!.toLowerCase();
      if (label.length > 6) t.notOk(d.detail.toLowerCase().replace(d.host, '').includes(label), 'the label is not echoed');
    }
  });
}

// Real names under wildcards, long ones included, and the shards the brief asked about.
const ORDINARY = [
  'api-eu-west-1',
  'pkg-containers',
  'd1a2b3c4.cloudfront',
  'd111111abcdef8',
  'my-lb-1234567890.us-east-1.elb',
  'ec2-203-0-113-25.compute-1',
  'production-cloudflare',
  'storage-googleapis-europe-west4',
  'mozilla-firefox-release-builds',
  'my-very-long-bucket-name-for-logs-2024',
  'github-production-release-asset-2e65be',
  'amazon-cloudwatch-agent-us-west-2',
  'dualstack-my-internal-loadbalancer-1234567',
  'my-function-app-westeurope-01',
  'deployment-preview-feature-branch-42',
  'artifactregistry-docker-europe-west1',
  'oauth2-accounts-authentication',
  'internationalization-service',
  'myorganizationsstorageaccount',
  'contosostorageaccount2023',
  'a1b2c3d4e5f6a7b8',
  'abc123defg.execute-api.us-east-1',
  'xn--mnchen-3ya',
  'xn--bcher-kva.www',
  'en.m.upload',
  'objects.githubusercontent',
];

t.test('ordinary names under a wildcard are allowed', async (t) => {
  for (const name of ORDINARY) {
    const d = decide(strict, 'agent', connect(`${name}.allowed.example`));
    t.equal(d.verdict, 'allow', name);
  }
});

t.test('what is not judged', async (t) => {
  t.equal(decide(strict, 'agent', connect('exact-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.other.example')).verdict, 'allow', 'an exact rule');
  const wide = policyWith(true, [{ host: '*.allowed.example' }, { host: `${DATA}.allowed.example` }]);
  t.equal(decide(wide, 'agent', connect(`${DATA}.allowed.example`)).rule, 'agent.allow[1]', 'an exact rule for the same host still allows it');
  const ips = policyWith(true, [{ host: '*' }, { host: '[2001:db8::1]' }]);
  t.equal(decide(ips, 'agent', connect('2001:db8::1')).verdict, 'allow', 'an IPv6 literal');
  t.equal(decide(ips, 'agent', connect('[2001:db8:0:0:0:0:0:1]')).verdict, 'allow', 'an IPv6 literal, long form');
  t.equal(decide(ips, 'agent', connect('93.184.216.34')).verdict, 'allow', 'an IPv4 literal');
  t.equal(decide(ips, 'agent', connect(`${DATA}.anything.example`)).reason, 'encoded_hostname', '"*" judges the whole name');
  t.equal(decide(strict, 'agent', connect(`${DATA}.elsewhere.example`)).reason, 'no_rule', 'no rule: no_rule, not encoded_hostname');
  // Counterexample of the property below (seed 412420766): 40 zero bytes carry nothing to judge.
  t.equal(decide(strict, 'agent', connect(`${'a'.repeat(63)}.allowed.example`)).verdict, 'allow', 'base32 of zero bytes');
  t.equal(decide(strict, 'agent', connect(`${'0'.repeat(63)}.${'0'.repeat(17)}.allowed.example`)).verdict, 'allow', 'hex of zero bytes');
});

t.test('on by default only in strict mode; per rule on, off and thresholds', async (t) => {
  const host = `${DATA}.allowed.example`;
  t.equal(decide(policyWith(false, [{ host: '*.allowed.example' }]), 'agent', connect(host)).verdict, 'allow', 'strict: false');
  t.equal(
    decide(policyWith(false, [{ host: '*.allowed.example', hostname_labels: { check: true } }]), 'agent', connect(host)).reason,
    'encoded_hostname',
    'check: true without strict',
  );
  t.equal(
    decide(policyWith(true, [{ host: '*.allowed.example', hostname_labels: { check: false } }]), 'agent', connect(host)).verdict,
    'allow',
    'check: false in strict mode',
  );
  const long = policyWith(true, [{ host: '*.allowed.example', hostname_labels: { min_length: 60 } }]);
  t.equal(decide(long, 'agent', connect(host)).verdict, 'allow', 'min_length above the label');
  const short = policyWith(true, [{ host: '*.allowed.example', hostname_labels: { min_length: 12, min_entropy: 2.5, max_vowel_share: 1 } }]);
  t.equal(decide(short, 'agent', connect('d111111abcdef8.allowed.example')).reason, 'encoded_hostname', 'a tighter rule judges shards');
  t.equal(decide(short, 'agent', connect('api-eu-west-1.allowed.example')).verdict, 'allow', 'but not words');
});

t.test('explain says why the rule did not match', async (t) => {
  const { considered } = explain(strict, 'agent', connect(`${DATA}.allowed.example`));
  t.equal(considered[0]?.matched, false);
  t.match(considered[0]?.why ?? '', /reads as encoded data \(51 characters/);
});

t.test('property: random base32 or hex of 40+ bytes, split at any places, any case, is refused', async (t) => {
  fc.assert(
    fc.property(
      // Uniform bytes (fast-check's bias favours zeros), and never data that carries almost nothing:
      // 40 zero bytes are "aaaa…" or "0000…", which no measure of density reads as data.
      fc.noBias(fc.uint8Array({ minLength: 40, maxLength: 80 })).filter((bytes) => new Set(bytes).size >= 16),
      fc.boolean(),
      fc.array(fc.integer({ min: 1, max: 63 }), { minLength: 1, maxLength: 8 }),
      fc.boolean(),
      (bytes, hex, cuts, upper) => {
        let data = hex ? Buffer.from(bytes).toString('hex') : base32(Buffer.from(bytes));
        const labels: string[] = [];
        for (const cut of cuts) {
          if (data.length === 0) break;
          labels.push(data.slice(0, cut));
          data = data.slice(cut);
        }
        while (data.length > 0) {
          labels.push(data.slice(0, 63));
          data = data.slice(63);
        }
        const name = `${labels.join('.')}.allowed.example`;
        const host = upper ? name.toUpperCase() : name;
        return decide(strict, 'agent', request('GET', host, '/')).reason === 'encoded_hostname';
      },
    ),
    { numRuns: 2000 },
  );
  t.pass('refused');
});

t.test('measured: refusal rate of random labels and the corpus at the defaults', async (t) => {
  const rate = (make: () => string, n = 5000): number => {
    let hits = 0;
    for (let i = 0; i < n; i++) if (encodedLabel(`${make()}.allowed.example`, 'allowed.example', DEFAULT_LABEL_CHECK)) hits++;
    return hits / n;
  };
  const b32 = (chars: number) => () => base32(randomBytes(64)).slice(0, chars);
  const hex = (chars: number) => () => randomBytes(32).toString('hex').slice(0, chars);
  const rates = { b32x20: rate(b32(20)), b32x32: rate(b32(32)), b32x63: rate(b32(63)), hex20: rate(hex(20)), hex32: rate(hex(32)) };
  t.comment(
    `refused at defaults: ${Object.entries(rates)
      .map(([k, v]) => `${k} ${(v * 100).toFixed(1)}%`)
      .join(', ')}`,
  );
  t.ok(rates.b32x32 > 0.98 && rates.b32x63 > 0.99 && rates.hex32 > 0.99, 'long labels are refused');
  t.ok(rates.b32x20 > 0.9 && rates.hex20 > 0.9, 'labels at min_length mostly refused');
});
