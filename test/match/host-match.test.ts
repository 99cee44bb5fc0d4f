import t from 'tap';
import { canonicalHost } from '../../src/net/host.js';
import { compileHostPattern, hostMatches } from '../../src/match/host-match.js';

// [pattern, request host, request port (undefined = not given), matches]
const rows: Array<[string, string, number | undefined, boolean]> = [
  // exact names: case, trailing dot
  ['api.github.com', 'api.github.com', 443, true],
  ['api.github.com', 'API.GitHub.COM', 443, true],
  ['api.github.com', 'api.github.com.', 443, true],
  ['API.GITHUB.COM.', 'api.github.com', 443, true],
  ['api.github.com', 'github.com', 443, false],
  ['api.github.com', 'xapi.github.com', 443, false],
  ['api.github.com', 'api.github.com.evil.com', 443, false],
  // IDN: a Unicode pattern and its punycode are the same host
  ['bücher.de', 'xn--bcher-kva.de', 443, true],
  ['xn--bcher-kva.de', 'bücher.de', 443, true],
  ['xn--bcher-kva.de', 'BÜCHER.de', 443, true],
  ['bücher.de', 'bucher.de', 443, false],
  ['*.bücher.de', 'www.xn--bcher-kva.de', 443, true],
  // wildcards: any depth, never the apex, label boundary respected
  ['*.example.com', 'a.example.com', 443, true],
  ['*.example.com', 'a.b.c.example.com', 443, true],
  ['*.example.com', 'A.EXAMPLE.COM.', 443, true],
  ['*.example.com', 'example.com', 443, false],
  ['*.example.com', 'evil-example.com', 443, false],
  ['*.example.com', 'aexample.com', 443, false],
  ['*.example.com', 'example.com.evil.com', 443, false],
  ['*.example.com', 'a.example.com.evil.com', 443, false],
  ['*.example.com', 'example.org', 443, false],
  // host:port patterns
  ['example.com:8443', 'example.com', 8443, true],
  ['example.com:8443', 'example.com', 443, false],
  ['example.com:8443', 'example.com', undefined, false],
  ['*.example.com:8443', 'a.example.com', 8443, true],
  ['*.example.com:8443', 'a.example.com', 443, false],
  ['example.com', 'example.com', 12345, true],
  // IPv4 literals and their odd spellings
  ['127.0.0.1', '127.0.0.1', 80, true],
  ['127.0.0.1', '2130706433', 80, true],
  ['127.0.0.1', '0x7f.1', 80, true],
  ['127.0.0.1', '0177.0.0.1', 80, true],
  ['127.0.0.1', '127.1', 80, true],
  ['127.0.0.1', '127.0.0.2', 80, false],
  ['1.2.3.4:8080', '1.2.3.4', 8080, true],
  ['1.2.3.4:8080', '1.2.3.4', 80, false],
  // an IP rule never matches a name, a name rule never an IP, a wildcard never an IP
  ['127.0.0.1', 'localhost', 80, false],
  ['localhost', '127.0.0.1', 80, false],
  ['*.0.0.1', '127.0.0.1', 80, false],
  // IPv6: brackets, case, compression
  ['[2001:db8::1]', '2001:db8::1', 443, true],
  ['[2001:db8::1]', '[2001:db8::1]', 443, true],
  ['[2001:db8::1]', '2001:DB8::1', 443, true],
  ['[2001:db8::1]', '2001:0db8:0000:0000:0000:0000:0000:0001', 443, true],
  ['[2001:DB8:0:0::1]', '2001:db8::1', 443, true],
  ['2001:db8::1', '[2001:db8::1]', 443, true],
  ['[2001:db8::1]:8443', '2001:db8::1', 8443, true],
  ['[2001:db8::1]:8443', '2001:db8::1', 443, false],
  ['[2001:db8::1]', '2001:db8::2', 443, false],
  ['[::ffff:127.0.0.1]', '::ffff:7f00:1', 443, true],
  // bare "*" (only when strict is off) covers every host
  ['*', 'anything.example', 443, true],
  ['*', '10.0.0.1', 443, true],
  // invalid request hosts match nothing
  ['example.com', 'example.com:443', 443, false],
  ['[2001:db8::1]', '[2001:db8::1]:443', 443, false],
  ['example.com', 'exa mple.com', 443, false],
  ['example.com', '', 443, false],
  ['*', 'a..b', 443, false],
];

t.test('hostMatches table', async (t) => {
  for (const [pattern, host, port, expected] of rows) {
    t.equal(hostMatches(pattern, host, port), expected, `${pattern} vs ${host}${port === undefined ? '' : `:${port}`}`);
  }
});

t.test('compileHostPattern canonicalizes and refuses what is not a pattern', async (t) => {
  t.same(compileHostPattern('API.Example.COM.'), { kind: 'exact', text: 'API.Example.COM.', host: 'api.example.com', port: null });
  t.same(compileHostPattern('*.Bücher.de:8443'), { kind: 'subdomains', text: '*.Bücher.de:8443', suffix: 'xn--bcher-kva.de', port: 8443 });
  t.same(compileHostPattern('[2001:DB8::1]:443'), { kind: 'exact', text: '[2001:DB8::1]:443', host: '2001:db8::1', port: 443 });
  t.same(compileHostPattern('*'), { kind: 'any', text: '*', port: null });
  const invalid = [
    '',
    '*.',
    '*.*.example.com',
    'a.*.example.com',
    'example.*',
    '*example.com',
    'example.com:0',
    'example.com:65536',
    'example.com:http',
    '[example.com]',
    '[2001:db8::1',
    'exa mple.com',
    'a/b',
    'user@example.com',
    '*:443',
    '*.1.2.3.4',
  ];
  for (const pattern of invalid) t.equal(compileHostPattern(pattern), null, `refuses ${JSON.stringify(pattern)}`);
});

t.test('canonicalHost refuses a host that carries a port', async (t) => {
  t.equal(canonicalHost('example.com:443'), null);
  t.equal(canonicalHost('[::1]:443'), null);
  t.equal(canonicalHost('1.2.3.4:80'), null);
  t.same(canonicalHost('[::1]'), { kind: 'ip', host: '::1', family: 6 });
  t.same(canonicalHost('::1'), { kind: 'ip', host: '::1', family: 6 });
  t.same(canonicalHost('Example.COM.'), { kind: 'name', host: 'example.com' });
});
