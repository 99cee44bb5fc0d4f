import { createHash } from 'node:crypto';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { PolicyError } from '../../src/config/errors.js';
import { loadPolicy, parsePolicy } from '../../src/config/load.js';
import { DEFAULT_LIMITS } from '../../src/config/types.js';

const HASH = createHash('sha256').update('web-fetch-token').digest('hex');

/** Writes the files into a fresh directory, loads policy.yaml from there, returns the problems. */
function problems(t: Test, files: Record<string, string>, entry = 'policy.yaml'): string[] {
  t.chdir(t.testdir(files));
  try {
    loadPolicy(entry);
  } catch (error) {
    if (error instanceof PolicyError) return error.problems;
    throw error;
  }
  t.fail('the policy was accepted');
  return [];
}

function load(t: Test, files: Record<string, string>, entry = 'policy.yaml') {
  t.chdir(t.testdir(files));
  return loadPolicy(entry);
}

/** A valid policy with one tool; `rules` are extra lines under its allow list (line 7 onward). */
const withRules = (rules: string, head = ''): string =>
  `version: 1
${head}tools:
  web-fetch:
    token_sha256: "${HASH}"
    allow:
      - host: api.github.com
${rules}`;

t.test('schema problems name file, line and field', async (t) => {
  const cases: { name: string; text: string; expected: string[] }[] = [
    {
      name: 'unknown field, with a suggestion',
      text: withRules('        hots: example.com\n'),
      expected: ['policy.yaml:7: tools.web-fetch.allow[0].hots: unknown field "hots" (did you mean "host"?)'],
    },
    {
      name: 'unknown top-level field',
      text: 'version: 1\nstrikt: false\n',
      expected: ['policy.yaml:2: strikt: unknown field "strikt" (did you mean "strict"?)'],
    },
    {
      name: 'missing host points at the rule',
      text: withRules('      - ports: [443]\n'),
      expected: ['policy.yaml:7: tools.web-fetch.allow[1]: missing required field "host"'],
    },
    {
      name: 'missing version',
      text: 'tools: {}\n',
      expected: ['policy.yaml:1: missing required field "version"'],
    },
    {
      name: 'wrong version',
      text: 'version: 2\n',
      expected: ['policy.yaml:1: version: must be 1'],
    },
    {
      name: 'bad type',
      text: withRules('        ports: 443\n'),
      expected: ['policy.yaml:7: tools.web-fetch.allow[0].ports: must be a list, not a whole number'],
    },
    {
      name: 'bad type for strict',
      text: 'version: 1\nstrict: "yes"\n',
      expected: ['policy.yaml:2: strict: must be true or false, not text'],
    },
    {
      name: 'bad token hash, value not echoed',
      text: 'version: 1\ntools:\n  web-fetch:\n    token_sha256: "my-real-token"\n    allow: []\n',
      expected: ['policy.yaml:4: tools.web-fetch.token_sha256: expected 64 lower-case hex digits (the sha256 of the token)'],
    },
    {
      name: 'upper-case token hash',
      text: `version: 1\ntools:\n  web-fetch:\n    token_sha256: "${HASH.toUpperCase()}"\n    allow: []\n`,
      expected: ['policy.yaml:4: tools.web-fetch.token_sha256: expected 64 lower-case hex digits (the sha256 of the token)'],
    },
    {
      name: 'both token forms',
      text: `version: 1\ntools:\n  web-fetch:\n    token_sha256: "${HASH}"\n    token_env: TOKEN\n    allow: []\n`,
      expected: ['policy.yaml:3: tools.web-fetch: set exactly one of "token_sha256" or "token_env"'],
    },
    {
      name: 'no token',
      text: 'version: 1\ntools:\n  web-fetch:\n    allow: []\n',
      expected: ['policy.yaml:3: tools.web-fetch: set exactly one of "token_sha256" or "token_env"'],
    },
    {
      name: 'bad env name',
      text: 'version: 1\ntools:\n  web-fetch:\n    token_env: "TOKEN-1"\n    allow: []\n',
      expected: [
        'policy.yaml:4: tools.web-fetch.token_env: expected an environment variable name (letters, digits and "_", not starting with a digit)',
      ],
    },
    {
      name: 'bad tool name',
      text: `version: 1\ntools:\n  Web.Fetch:\n    token_sha256: "${HASH}"\n    allow: []\n`,
      expected: [
        'policy.yaml:3: tools["Web.Fetch"]: name "Web.Fetch" is not valid: expected a name of lower-case letters, digits, "_" and "-", starting with a letter or digit, at most 63 characters',
      ],
    },
    {
      name: 'enum lists the allowed values',
      text: 'version: 1\non_violation: warn\n',
      expected: ['policy.yaml:2: on_violation: must be one of "block", "review"'],
    },
    {
      name: 'port out of range',
      text: withRules('        ports: [443, 70000]\n'),
      expected: ['policy.yaml:7: tools.web-fetch.allow[0].ports[1]: must be at most 65535'],
    },
    {
      name: 'lower-case method',
      text: withRules('        methods: [get]\n'),
      expected: ['policy.yaml:7: tools.web-fetch.allow[0].methods[0]: expected an upper-case HTTP method such as GET'],
    },
    {
      name: 'path without a leading slash',
      text: withRules('        paths: ["repos/**"]\n'),
      expected: ['policy.yaml:7: tools.web-fetch.allow[0].paths[0]: expected a path starting with "/"'],
    },
    {
      name: 'repeated list entry points at the repeat',
      text: 'version: 1\nnetwork:\n  allow_ports:\n    - 80\n    - 443\n    - 80\n',
      expected: ['policy.yaml:6: network.allow_ports[2]: repeats entry [0]; list each value once'],
    },
    {
      name: 'negative limit',
      text: 'version: 1\nlimits:\n  connect_timeout_ms: 0\n  request_timeout_ms: 0\n',
      expected: ['policy.yaml:3: limits.connect_timeout_ms: must be at least 1'],
    },
    {
      name: 'timeout beyond what a timer can hold',
      text: 'version: 1\nlimits:\n  idle_timeout_ms: 3000000000\n',
      expected: ['policy.yaml:3: limits.idle_timeout_ms: must be at most 2147483647'],
    },
    {
      name: 'secret format without {value}',
      text: 'version: 1\nsecrets:\n  github:\n    from: { env: GITHUB_TOKEN }\n    hosts: [api.github.com]\n    inject: { header: Authorization, format: "Bearer" }\n',
      expected: ['policy.yaml:6: secrets.github.inject.format: expected one line of text containing "{value}"'],
    },
    {
      name: 'secret with no hosts',
      text: 'version: 1\nsecrets:\n  github:\n    from: { env: GITHUB_TOKEN }\n    hosts: []\n',
      expected: ['policy.yaml:5: secrets.github.hosts: must list at least 1 entry'],
    },
    {
      name: 'secret from both sources',
      text: 'version: 1\nsecrets:\n  github:\n    from: { env: GITHUB_TOKEN, file: /run/secrets/github }\n    hosts: [api.github.com]\n',
      expected: ['policy.yaml:4: secrets.github.from: set exactly one of "env" or "file"'],
    },
    {
      name: 'fragment-only document is not a policy',
      text: 'tools: {}\nversion: 1\ninclude: ["/etc/*.yaml"]\n',
      expected: [
        'policy.yaml:3: include[0]: expected a relative glob that stays inside the policy file\'s directory (no leading "/" and no ".." segment)',
      ],
    },
    {
      name: 'a list where a mapping belongs',
      text: '- version: 1\n',
      expected: ['policy.yaml:1: must be a mapping of fields, not a list'],
    },
  ];
  for (const c of cases) {
    t.test(c.name, async (t) => {
      t.same(problems(t, { 'policy.yaml': c.text }), c.expected);
    });
  }
});

t.test('semantic problems', async (t) => {
  const cases: { name: string; text: string; expected: string[] }[] = [
    {
      name: 'bare "*" in strict mode, with its line',
      text: withRules('      - host: "*"\n'),
      expected: ['policy.yaml:7: tools.web-fetch.allow[1].host: "*" matches every host; strict mode forbids allow-all'],
    },
    {
      name: '"*:443" in strict mode',
      text: withRules('      - host: "*:443"\n'),
      expected: ['policy.yaml:7: tools.web-fetch.allow[1].host: "*:443" matches every host; strict mode forbids allow-all'],
    },
    {
      name: '"*.com"',
      text: withRules('      - host: "*.com"\n'),
      expected: [
        'policy.yaml:7: tools.web-fetch.allow[1].host: "*.com" matches every name under the public suffix "com"; strict mode forbids allow-all',
      ],
    },
    {
      name: '"*.co.uk"',
      text: withRules('      - host: "*.co.uk"\n'),
      expected: [
        'policy.yaml:7: tools.web-fetch.allow[1].host: "*.co.uk" matches every name under the public suffix "co.uk"; strict mode forbids allow-all',
      ],
    },
    {
      name: '"*.github.io" (anyone can publish there)',
      text: withRules('      - host: "*.github.io"\n'),
      expected: [
        'policy.yaml:7: tools.web-fetch.allow[1].host: "*.github.io" matches every name under the public suffix "github.io"; strict mode forbids allow-all',
      ],
    },
    {
      name: 'a rule wildcard with a public suffix under it, ICANN or private section',
      text: withRules('      - host: "*.amazonaws.com"\n      - host: "*.core.windows.net"\n      - host: "*.example.com"\n'),
      expected: [
        'policy.yaml:7: tools.web-fetch.allow[1].host: "*.amazonaws.com" covers the public suffix "s3.amazonaws.com" (and 650 more), under which anyone can create names; strict mode forbids allow-all',
        'policy.yaml:8: tools.web-fetch.allow[2].host: "*.core.windows.net" covers the public suffix "web.core.windows.net" (and 2 more), under which anyone can create names; strict mode forbids allow-all',
      ],
    },
    {
      name: 'secret wildcards with a public suffix at or under them, in strict mode',
      text: 'version: 1\nsecrets:\n  aws:\n    from: { env: AWS }\n    hosts: ["*.amazonaws.com", "*.s3.amazonaws.com", "*.core.windows.net", "*.github.io", "*.example.com", "mybucket.s3.amazonaws.com"]\n',
      expected: [
        'policy.yaml:5: secrets.aws.hosts[0]: "*.amazonaws.com" would send the secret to names under the public suffix "s3.amazonaws.com" (and 650 more), which anyone can create; name the hosts',
        'policy.yaml:5: secrets.aws.hosts[1]: "*.s3.amazonaws.com" would send the secret to every name under the public suffix "s3.amazonaws.com"',
        'policy.yaml:5: secrets.aws.hosts[2]: "*.core.windows.net" would send the secret to names under the public suffix "web.core.windows.net" (and 2 more), which anyone can create; name the hosts',
        'policy.yaml:5: secrets.aws.hosts[3]: "*.github.io" would send the secret to every name under the public suffix "github.io"',
      ],
    },
    {
      name: 'allow_plaintext in strict mode',
      text: 'version: 1\nsecrets:\n  dev:\n    from: { env: DEV }\n    hosts: [localhost]\n    allow_plaintext: true\n',
      expected: [
        'policy.yaml:6: secrets.dev.allow_plaintext: allow_plaintext: true lets the real value of secret "dev" cross the network in clear over http://; strict mode forbids it (reach localhost over https, or set strict: false for loopback development only)',
      ],
    },
    {
      name: 'require with no header to check, and swap_in into a header sluice manages',
      text: 'version: 1\nsecrets:\n  a:\n    from: { env: A }\n    hosts: [a.example]\n    require: true\n    swap_in: [query, body]\n  b:\n    from: { env: B }\n    hosts: [b.example]\n    swap_in: ["header:Host", "header:X-Key"]\n',
      expected: [
        'policy.yaml:6: secrets.a.require: require: true is checked on a header, and swap_in [query, body] names none; add "header:Authorization" (or the header the credential goes in) to swap_in, or set inject',
        'policy.yaml:11: secrets.b.swap_in[0]: sluice manages the "Host" header itself; a placeholder there is never swapped (name the header the credential goes in)',
      ],
    },
    {
      name: 'wildcard in the middle',
      text: withRules('      - host: "api.*.com"\n'),
      expected: [
        'policy.yaml:7: tools.web-fetch.allow[1].host: "api.*.com" is not a valid host: expected a name ("api.github.com"), a wildcard "*.example.com", an IPv4 literal or a bracketed IPv6 literal ("[2001:db8::1]"), optionally with ":port"',
      ],
    },
    {
      name: 'URL instead of host',
      text: withRules('      - host: "https://example.com/"\n'),
      expected: [
        'policy.yaml:7: tools.web-fetch.allow[1].host: "https://example.com/" is not a valid host: expected a name ("api.github.com"), a wildcard "*.example.com", an IPv4 literal or a bracketed IPv6 literal ("[2001:db8::1]"), optionally with ":port"',
      ],
    },
    {
      name: 'port in host and ports',
      text: withRules('      - host: "example.com:8443"\n        ports: [443]\n'),
      expected: [
        'policy.yaml:8: tools.web-fetch.allow[1].ports: host "example.com:8443" already names port 8443; drop ports or the port in host',
      ],
    },
    {
      name: 'path glob the matcher refuses',
      text: withRules('        paths: ["/repos/a**"]\n'),
      expected: ['policy.yaml:7: tools.web-fetch.allow[0].paths[0]: path pattern "/repos/a**": "**" must be a whole segment'],
    },
    {
      name: 'private_ip: allow in strict mode',
      text: 'version: 1\nnetwork:\n  private_ip: allow\n',
      expected: [
        'policy.yaml:3: network.private_ip: "allow" lets tools reach private addresses; strict mode forbids it (list narrow allow_private_cidrs instead)',
      ],
    },
    {
      name: 'on_violation: review in strict mode',
      text: 'version: 1\non_violation: review\n',
      expected: [
        'policy.yaml:2: on_violation: "review" lets denied requests through; strict mode forbids it (set strict: false while rolling out)',
      ],
    },
    {
      name: 'undefined secret',
      text: `version: 1\ntools:\n  web-fetch:\n    token_sha256: "${HASH}"\n    secrets: [github]\n    allow: []\n`,
      expected: ['policy.yaml:5: tools.web-fetch.secrets[0]: secret "github" is not defined under secrets'],
    },
    {
      name: 'bad CIDRs',
      text: 'version: 1\nnetwork:\n  allow_private_cidrs:\n    - 10.1.2.3\n    - 10.1.2.3/33\n    - 10.1.2.3/8\n    - 10.1.2.3/32\n',
      expected: [
        'policy.yaml:4: network.allow_private_cidrs[0]: "10.1.2.3" is not a CIDR such as "10.1.2.3/32" or "fd00:1::/64"',
        'policy.yaml:5: network.allow_private_cidrs[1]: "10.1.2.3/33" is not a CIDR such as "10.1.2.3/32" or "fd00:1::/64"',
        'policy.yaml:6: network.allow_private_cidrs[2]: "10.1.2.3/8" has host bits set; did you mean "10.0.0.0/8"?',
      ],
    },
    {
      name: 'a CIDR as wide as private_ip: allow',
      text: 'version: 1\nnetwork:\n  allow_private_cidrs: ["0.0.0.0/0"]\n',
      expected: [
        'policy.yaml:3: network.allow_private_cidrs[0]: "0.0.0.0/0" contains the cloud metadata address 169.254.169.254; strict mode forbids it (instance credentials are served there)',
      ],
    },
    {
      name: 'strict: private exceptions wider than /16 or /48, or containing a cloud metadata address',
      text:
        'version: 1\nnetwork:\n  allow_private_cidrs:\n    - 10.0.0.0/8\n    - fd00:1::/32\n    - 169.254.0.0/16\n    - fd00:ec2::/64\n' +
        '    - 100.100.100.200/32\n    - 168.63.128.0/17\n    - 10.1.0.0/16\n    - fd00:1:2::/48\n',
      expected: [
        'policy.yaml:4: network.allow_private_cidrs[0]: "10.0.0.0/8" is wider than /16; strict mode allows private exceptions of /16 or narrower (list the ranges actually needed)',
        'policy.yaml:5: network.allow_private_cidrs[1]: "fd00:1::/32" is wider than /48; strict mode allows private exceptions of /48 or narrower (list the ranges actually needed)',
        'policy.yaml:6: network.allow_private_cidrs[2]: "169.254.0.0/16" contains the cloud metadata address 169.254.169.254; strict mode forbids it (instance credentials are served there)',
        'policy.yaml:7: network.allow_private_cidrs[3]: "fd00:ec2::/64" contains the cloud metadata address fd00:ec2::254; strict mode forbids it (instance credentials are served there)',
        'policy.yaml:8: network.allow_private_cidrs[4]: "100.100.100.200/32" contains the cloud metadata address 100.100.100.200; strict mode forbids it (instance credentials are served there)',
        'policy.yaml:9: network.allow_private_cidrs[5]: "168.63.128.0/17" contains the cloud metadata address 168.63.129.16; strict mode forbids it (instance credentials are served there)',
      ],
    },
    {
      name: 'bad dns servers',
      text: 'version: 1\nnetwork:\n  dns_servers:\n    - 1.1.1.1\n    - "[2001:db8::53]:53"\n    - dns.google\n    - "1.1.1.1:99999"\n    - "2001:db8::53"\n',
      expected: [
        'policy.yaml:6: network.dns_servers[2]: "dns.google" is not "ip" or "ip:port" (an IPv6 server with a port goes in brackets: "[2001:db8::53]:53")',
        'policy.yaml:7: network.dns_servers[3]: "1.1.1.1:99999" is not "ip" or "ip:port" (an IPv6 server with a port goes in brackets: "[2001:db8::53]:53")',
      ],
    },
    {
      name: 'secret sent everywhere (even when not strict)',
      text: 'version: 1\nstrict: false\nsecrets:\n  github:\n    from: { env: GITHUB_TOKEN }\n    hosts: ["api.github.com", "*", "*.com"]\n',
      expected: [
        'policy.yaml:6: secrets.github.hosts[1]: "*" would send the secret to every host',
        'policy.yaml:6: secrets.github.hosts[2]: "*.com" would send the secret to every name under the public suffix "com"',
      ],
    },
    {
      name: 'secret injected into a framing header',
      text: 'version: 1\nsecrets:\n  github:\n    from: { env: GITHUB_TOKEN }\n    hosts: [api.github.com]\n    inject: { header: Content-Length, format: "{value}" }\n',
      expected: [
        'policy.yaml:6: secrets.github.inject.header: sluice manages the "Content-Length" header itself; inject the secret into another header',
      ],
    },
    {
      name: 'two secrets with one placeholder',
      text: 'version: 1\nsecrets:\n  a:\n    from: { env: A }\n    hosts: [a.example]\n    placeholder: SAME_PLACEHOLDER\n  b:\n    from: { env: B }\n    hosts: [b.example]\n    placeholder: SAME_PLACEHOLDER\n',
      expected: ['policy.yaml:7: secrets.b: has the same placeholder as secret "a" (policy.yaml:3); each secret needs its own'],
    },
    {
      name: 'a default placeholder inside another',
      text: 'version: 1\nsecrets:\n  a:\n    from: { env: A }\n    hosts: [a.example]\n  a__b:\n    from: { env: B }\n    hosts: [b.example]\n',
      expected: ['policy.yaml:6: secrets.a__b: has a placeholder overlapping that of secret "a" (policy.yaml:3); each secret needs its own'],
    },
  ];
  for (const c of cases) {
    t.test(c.name, async (t) => {
      t.same(problems(t, { 'policy.yaml': c.text }), c.expected);
    });
  }
});

t.test('strict: false permits allow-all, review and private_ip: allow', async (t) => {
  const loaded = load(t, {
    'policy.yaml': withRules(
      '      - host: "*"\n      - host: "*.com"\n',
      'strict: false\non_violation: review\nnetwork:\n  private_ip: allow\n',
    ),
  });
  t.equal(loaded.doc.strict, false);
  t.equal(loaded.doc.on_violation, 'review');
  t.equal(loaded.doc.network.private_ip, 'allow');
  t.same(
    loaded.doc.tools['web-fetch']!.allow.map((r) => r.host),
    ['api.github.com', '*', '*.com'],
  );
  t.same(problems(t, { 'policy.yaml': withRules('      - host: "*:443"\n', 'strict: false\n') }), [
    'policy.yaml:8: tools.web-fetch.allow[1].host: "*:443" is not supported; write host "*" with ports: [443]',
  ]);
});

t.test('strict: false permits rule and secret wildcards with public suffixes under them', async (t) => {
  const loaded = load(t, {
    'policy.yaml': withRules(
      '      - host: "*.amazonaws.com"\n',
      'strict: false\nsecrets:\n  aws:\n    from: { env: AWS }\n    hosts: ["*.amazonaws.com"]\n',
    ),
  });
  t.same(loaded.doc.secrets.aws!.hosts, ['*.amazonaws.com']);
  t.same(
    loaded.doc.tools['web-fetch']!.allow.map((r) => r.host),
    ['api.github.com', '*.amazonaws.com'],
  );
  t.same(problems(t, { 'policy.yaml': 'version: 1\nstrict: false\nsecrets:\n  a:\n    from: { env: A }\n    hosts: ["*.github.io"]\n' }), [
    'policy.yaml:6: secrets.a.hosts[0]: "*.github.io" would send the secret to every name under the public suffix "github.io"',
  ]);
});

t.test('strict: false permits allow_plaintext; swap_in is kept as written', async (t) => {
  const loaded = load(t, {
    'policy.yaml':
      'version: 1\nstrict: false\nsecrets:\n  dev:\n    from: { env: DEV }\n    hosts: [localhost]\n    allow_plaintext: true\n    swap_in: [header:X-Key, query]\n',
  });
  t.equal(loaded.doc.secrets.dev!.allow_plaintext, true);
  t.same(loaded.doc.secrets.dev!.swap_in, ['header:X-Key', 'query']);
});

t.test('swap_in: its default, and its forms', async (t) => {
  const loaded = load(t, {
    'policy.yaml':
      'version: 1\nsecrets:\n  plain:\n    from: { env: A }\n    hosts: [a.example]\n  injected:\n    from: { env: B }\n    hosts: [b.example]\n    inject: { header: X-Api-Key, format: "{value}" }\n',
  });
  t.same(loaded.doc.secrets.plain!.swap_in, ['header:Authorization'], 'request headers only: Authorization');
  t.same(loaded.doc.secrets.injected!.swap_in, ['header:X-Api-Key'], 'or the injected header');
  t.same(
    problems(t, {
      'policy.yaml':
        'version: 1\nsecrets:\n  a:\n    from: { env: A }\n    hosts: [a.example]\n    swap_in: [Body, "header: Authorization", body, body]\n',
    }),
    [
      'policy.yaml:6: secrets.a.swap_in[0]: expected "header:<Name>" (e.g. "header:Authorization"), "query", "path" or "body"',
      'policy.yaml:6: secrets.a.swap_in[1]: expected "header:<Name>" (e.g. "header:Authorization"), "query", "path" or "body"',
      'policy.yaml:6: secrets.a.swap_in[3]: repeats entry [2]; list each value once',
    ],
  );
});

t.test('accepted host forms', async (t) => {
  const hosts = ['"*.example.com"', 'example.com:8443', '192.0.2.10', '"[2001:db8::1]"', '"[2001:db8::1]:8443"', 'bücher.example'];
  const loaded = load(t, { 'policy.yaml': withRules(hosts.map((h) => `      - host: ${h}\n`).join('')) });
  t.same(
    loaded.doc.tools['web-fetch']!.allow.map((r) => r.host),
    ['api.github.com', '*.example.com', 'example.com:8443', '192.0.2.10', '[2001:db8::1]', '[2001:db8::1]:8443', 'bücher.example'],
  );
});

t.test('defaults are applied', async (t) => {
  const loaded = load(t, {
    'policy.yaml': `version: 1
limits:
  max_response_bytes: 2048
secrets:
  github:
    from: { env: GITHUB_TOKEN }
    hosts: [api.github.com]
  custom:
    from: { file: secrets/custom.txt }
    hosts: [example.com]
    placeholder: MY_CUSTOM_PLACEHOLDER
tools:
  web-fetch:
    token_sha256: "${HASH}"
    allow:
      - host: api.github.com
`,
  });
  const doc = loaded.doc;
  t.equal(doc.strict, true);
  t.equal(doc.on_violation, 'block');
  t.same(doc.network, { private_ip: 'deny', allow_private_cidrs: [], dns_servers: [], allow_ports: [80, 443] });
  t.same(doc.tls, { upstream_ca: null });
  t.same(doc.limits, { ...DEFAULT_LIMITS, max_response_bytes: 2048 });
  t.same(doc.secrets.github, {
    from: { env: 'GITHUB_TOKEN' },
    hosts: ['api.github.com'],
    require: false,
    placeholder: '__sluice_secret_github__',
    swap_in: ['header:Authorization'],
    allow_plaintext: false,
  });
  t.equal(doc.secrets.custom!.placeholder, 'MY_CUSTOM_PLACEHOLDER');
  t.same(doc.secrets.custom!.from, { file: join(process.cwd(), 'secrets/custom.txt') }, 'file paths are taken from the policy directory');
  t.same(doc.tools['web-fetch']!.secrets, []);
  t.equal(doc.tools['web-fetch']!.limits, undefined, 'tool limits stay partial');
  t.equal(doc.include, undefined);
  t.equal((doc.tools as Record<string, unknown>).constructor, undefined, 'no inherited tool names');
  t.equal((doc.secrets as Record<string, unknown>).constructor, undefined, 'no inherited secret names');
  t.equal(loaded.file, join(process.cwd(), 'policy.yaml'));
  t.same(loaded.files, [loaded.file]);
});

t.test('without fragments the digest is the sha256 of the exact file bytes', async (t) => {
  const text = `version: 1   # trailing comment\r\n`;
  const loaded = load(t, { 'policy.yaml': text });
  t.equal(loaded.digest, createHash('sha256').update(text).digest('hex'), 'what sha256sum prints, so it can be pinned from it');
  t.ok(loaded.loadedAt instanceof Date);
});

t.test('duplicate keys are refused in YAML and JSON', async (t) => {
  t.same(problems(t, { 'policy.yaml': 'version: 1\nstrict: true\nstrict: false\n' }), [
    'policy.yaml:3: duplicate key "strict"; a key may appear only once in a mapping',
  ]);
  t.same(problems(t, { 'policy.json': '{\n  "version": 1,\n  "tools": {},\n  "tools": {}\n}\n' }, 'policy.json'), [
    'policy.json:4: duplicate key "tools"; a key may appear only once in a mapping',
  ]);
});

t.test('a JSON policy reports JSON line numbers', async (t) => {
  const json = JSON.stringify(
    { version: 1, tools: { 'web-fetch': { token_sha256: HASH, allow: [{ host: 'api.github.com' }, { host: '*' }] } } },
    null,
    '\t',
  );
  t.same(problems(t, { 'policy.json': json }, 'policy.json'), [
    'policy.json:11: tools.web-fetch.allow[1].host: "*" matches every host; strict mode forbids allow-all',
  ]);
  const loaded = load(t, { 'policy.json': '{"version": 1, "strict": false}' }, 'policy.json');
  t.equal(loaded.doc.strict, false);
});

t.test('empty, missing and unreadable files', async (t) => {
  t.same(problems(t, { 'policy.yaml': '' }), ['policy.yaml:1: the file is empty; a policy needs at least "version: 1"']);
  t.same(problems(t, { 'policy.yaml': '# only a comment\n' }), ['policy.yaml:1: the file is empty; a policy needs at least "version: 1"']);
  t.same(problems(t, {}, 'nowhere/policy.yaml'), ['nowhere/policy.yaml: cannot read the file: it does not exist']);
  t.same(problems(t, { 'dir.yaml': {} as unknown as string }, 'dir.yaml'), ['dir.yaml: cannot read the file: it is a directory']);
  t.same(problems(t, { 'policy.yaml': Buffer.from([0x76, 0x3a, 0xff, 0x0a]) as unknown as string }), [
    'policy.yaml: the file is not valid UTF-8 text',
  ]);
});

t.test('YAML syntax errors carry their line', async (t) => {
  const cases: [string, string[]][] = [
    ['version: 1\nnetwork:\n\tprivate_ip: deny\n', ['policy.yaml:3: syntax error: Tabs are not allowed as indentation']],
    ['version: 1\nx: "unterminated\n', ['policy.yaml:3: syntax error: Missing closing "quote']],
    ['version: 1\n---\nversion: 1\n', ['policy.yaml:2: a policy file holds one YAML document; remove the "---" separator']],
    ['version: !custom 1\n', ['policy.yaml:1: syntax error: Unresolved tag: !custom']],
    [
      'version: 1\ntools:\n  web-fetch: [unclosed\n',
      ['policy.yaml:4: syntax error: Flow sequence in block collection must be sufficiently indented and end with a ]'],
    ],
  ];
  for (const [text, expected] of cases) t.same(problems(t, { 'policy.yaml': text }), expected, JSON.stringify(text));
});

t.test('alias bombs are refused', async (t) => {
  const lines = ['a0: &a0 [x, x, x, x, x, x, x, x, x, x]'];
  for (let i = 1; i < 8; i++)
    lines.push(
      `a${i}: &a${i} [${Array(10)
        .fill(`*a${i - 1}`)
        .join(', ')}]`,
    );
  const found = problems(t, { 'policy.yaml': `version: 1\n${lines.join('\n')}\n` });
  t.match(found[0], /^policy\.yaml:1: cannot expand the document: /);
});

t.test('PolicyError: message, code, problems', async (t) => {
  t.chdir(t.testdir({ 'policy.yaml': 'version: 1\nstrikt: 1\nnetwork: { private_ip: maybe }\n' }));
  const error = t.throws(() => loadPolicy('policy.yaml')) as PolicyError;
  t.ok(error instanceof PolicyError);
  t.equal(error.code, 'SLUICE_POLICY_INVALID');
  t.equal(error.name, 'PolicyError');
  t.same(error.problems, [
    'policy.yaml:2: strikt: unknown field "strikt" (did you mean "strict"?)',
    'policy.yaml:3: network.private_ip: must be one of "deny", "allow"',
  ]);
  t.equal(error.message, error.problems.join('\n'));
});

t.test('parsePolicy validates text without a file', async (t) => {
  const doc = parsePolicy(withRules(''), 'inline.yaml');
  t.equal(doc.tools['web-fetch']!.token_sha256, HASH);
  t.throws(() => parsePolicy('version: 1\ninclude: ["policy.d/*.yaml"]\n', 'inline.yaml'), {
    name: 'PolicyError',
    problems: ['inline.yaml:2: include: fragments can only be included when the policy is loaded from a file'],
  });
  t.throws(() => parsePolicy(withRules('      - host: "*"\n'), 'inline.yaml'), {
    name: 'PolicyError',
    problems: ['inline.yaml:7: tools.web-fetch.allow[1].host: "*" matches every host; strict mode forbids allow-all'],
  });
});

t.test('relative upstream_ca is taken from the policy directory', async (t) => {
  const loaded = load(t, { 'policy.yaml': 'version: 1\ntls:\n  upstream_ca: certs/upstream.pem\n' });
  t.equal(loaded.doc.tls.upstream_ca, join(process.cwd(), 'certs/upstream.pem'));
  const absolute = load(t, { 'policy.yaml': 'version: 1\ntls:\n  upstream_ca: /etc/ssl/extra.pem\n' });
  t.equal(absolute.doc.tls.upstream_ca, '/etc/ssl/extra.pem');
});
