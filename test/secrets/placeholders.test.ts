import fc from '../helpers/fc.js';
import t, { type Test } from 'tap';
import { encodedForms, percentDecode, rawOrPercentEncoded, valueForms } from '../../src/secrets/forms.js';
import {
  defaultPlaceholder,
  findPlaceholders,
  hasUnknownPlaceholder,
  placeholderIndex,
  planRequestSecrets,
  type RequestSecretsInput,
  type RequestSecretsPlan,
} from '../../src/secrets/placeholders.js';
import { FAKE, SECRETS, values } from './fixtures.js';

const b64 = (s: string): string => Buffer.from(s, 'utf8').toString('base64');
const unb64 = (s: string): string => Buffer.from(s, 'base64').toString('utf8');

function plan(overrides: Partial<RequestSecretsInput>): RequestSecretsPlan {
  const result = planRequestSecrets({
    tool: 'web',
    granted: ['github', 'gh', 'stripe', 'custom'],
    inScope: [],
    headers: [],
    target: '/',
    secrets: SECRETS,
    values,
    tls: true,
    ...overrides,
  });
  if (!result.ok) {
    // a refusal must never carry a value
    for (const value of Object.values(FAKE)) if (result.detail.includes(value)) throw new Error('a value leaked into a detail');
  }
  return result;
}

function ok(t: Test, result: RequestSecretsPlan): Extract<RequestSecretsPlan, { ok: true }> {
  if (!result.ok) throw new Error(`expected ok, got ${result.reason}`);
  t.pass('planned');
  return result;
}

const header = (headers: Array<[string, string]>, name: string): string[] =>
  headers.filter(([n]) => n.toLowerCase() === name.toLowerCase()).map(([, v]) => v);

t.test('findPlaceholders: raw and percent-encoded in any hex case, and no near misses', async (t) => {
  const index = placeholderIndex(SECRETS);
  t.same(findPlaceholders('token __sluice_secret_github__', index), ['github']);
  t.same(findPlaceholders('%5F%5Fsluice%5Fsecret%5Fgithub%5F%5F', index), ['github']);
  t.same(findPlaceholders('%5f%5fsluice_secret_gh%5F_', index), ['gh']);
  t.same(findPlaceholders('%5F%5F%73luice_secret_github__', index), ['github'], 'a letter escaped too');
  t.same(findPlaceholders('CUSTOM%2dPLACEHOLDER%2D1', index), ['custom']);
  t.same(findPlaceholders('__sluice_secret_gh', index), [], 'no closing underscores');
  t.same(findPlaceholders('__sluice_secret_GITHUB__', index), [], 'letters are case sensitive');
  t.same(findPlaceholders('__sluice_secret_gh__ and __sluice_secret_github__', index).sort(), ['gh', 'github']);
  t.same(findPlaceholders('%5G%5Fsluice_secret_github__', index), [], 'not a valid escape');
  t.equal(hasUnknownPlaceholder('x __sluice_secret_nope__', index), true);
  t.equal(hasUnknownPlaceholder('x __sluice_secret_github__ y', index), false);
  t.equal(hasUnknownPlaceholder('%5F%5Fsluice_secret_nope%5F%5F', index), true, 'percent-encoded');
  t.equal(hasUnknownPlaceholder('__sluice_secret_gh_ then other text', index), false, 'a near miss is not a placeholder');
  t.equal(defaultPlaceholder('a'), '__sluice_secret_a__');
});

t.test('swaps a placeholder in a header value', async (t) => {
  const result = ok(
    t,
    plan({
      inScope: ['github'],
      headers: [
        ['X-Token', 'token __sluice_secret_github__'],
        ['Accept', '*/*'],
      ],
    }),
  );
  t.ok(header(result.headers, 'X-Token')[0] === `token ${FAKE.github}`, 'value swapped in');
  t.same(header(result.headers, 'Accept'), ['*/*'], 'other headers untouched');
  t.same(result.uses, [{ alias: 'github', where: 'header:X-Token' }]);
  t.equal(result.target, '/');
});

t.test('swaps inside Authorization: Basic', async (t) => {
  const result = ok(t, plan({ inScope: ['github'], headers: [['Authorization', `Basic ${b64('octocat:__sluice_secret_github__')}`]] }));
  const [value] = header(result.headers, 'authorization');
  t.match(value, /^Basic [A-Za-z0-9+/=]+$/);
  t.ok(unb64(value!.slice(6)) === `octocat:${FAKE.github}`, 'credentials re-encoded with the value');
  t.same(result.uses, [{ alias: 'github', where: 'header:Authorization' }]);
});

t.test('swaps in the query, raw and percent-encoded, percent-encoding the value', async (t) => {
  const encoded = encodeURIComponent(FAKE.custom);
  t.not(encoded, FAKE.custom, 'the fixture value needs encoding');
  // custom has require: its header must carry the placeholder too
  const raw = ok(t, plan({ inScope: ['custom'], headers: [['X-Key', 'CUSTOM-PLACEHOLDER-1']], target: '/x?token=CUSTOM-PLACEHOLDER-1&a=1' }));
  t.ok(raw.target === `/x?token=${encoded}&a=1`, 'raw occurrence');
  t.same(raw.uses, [
    { alias: 'custom', where: 'header:X-Key' },
    { alias: 'custom', where: 'query' },
  ]);

  const mixed = ok(t, plan({ inScope: ['github'], target: '/x?a=%5F%5fsluice%5Fsecret%5Fgithub%5f%5F&b=__sluice_secret_github__' }));
  const value = encodeURIComponent(FAKE.github);
  t.ok(mixed.target === `/x?a=${value}&b=${value}`, 'encoded and raw occurrences');
});

t.test('swaps in the path too (tokens in paths, e.g. /bot<token>/)', async (t) => {
  const result = ok(t, plan({ inScope: ['github'], target: '/bot__sluice_secret_github__/send?x=1' }));
  t.ok(result.target === `/bot${encodeURIComponent(FAKE.github)}/send?x=1`);
  t.same(result.uses, [{ alias: 'github', where: 'path' }]);
});

t.test('inject replaces whatever the tool sent, in any case, and satisfies require', async (t) => {
  const result = ok(
    t,
    plan({
      inScope: ['stripe'],
      headers: [
        ['authorization', 'Bearer mine'],
        ['Accept', '*/*'],
        ['AUTHORIZATION', 'x'],
      ],
    }),
  );
  const values = header(result.headers, 'Authorization');
  t.equal(values.length, 1, 'one Authorization header');
  t.ok(values[0] === `Bearer ${FAKE.stripe}`, 'formatted with the value');
  t.same(result.uses, [{ alias: 'stripe', where: 'inject:Authorization' }]);
});

t.test('require', async (t) => {
  const satisfied = ok(t, plan({ inScope: ['custom'], headers: [['X-Key', 'CUSTOM-PLACEHOLDER-1']] }));
  t.same(satisfied.uses, [{ alias: 'custom', where: 'header:X-Key' }]);
  const missing = plan({ inScope: ['custom'], headers: [['X-Key', 'a foreign token']] });
  t.same(missing.ok ? null : [missing.reason, missing.alias], ['secret_required', 'custom']);
});

t.test('require: only the declared header counts, and it may carry nothing but the placeholder', async (t) => {
  const refused = (headers: Array<[string, string]>, target = '/'): unknown => {
    const result = plan({ inScope: ['custom'], headers, target });
    return result.ok ? 'ok' : result.reason;
  };
  t.equal(refused([], '/?k=CUSTOM-PLACEHOLDER-1'), 'secret_required', 'the query does not satisfy it');
  t.equal(refused([['X-Pad', 'CUSTOM-PLACEHOLDER-1']]), 'secret_misplaced', 'another header is not a place it may go');
  t.equal(refused([['X-Key', 'foreign CUSTOM-PLACEHOLDER-1']]), 'ok', 'a scheme word before it is fine');
  t.equal(refused([['X-Key', 'foreign-token, CUSTOM-PLACEHOLDER-1']]), 'secret_required', 'a foreign credential beside it');
  t.equal(refused([['X-Key', 'CUSTOM-PLACEHOLDER-1 foreign-token']]), 'secret_required', 'or after it');
  t.equal(
    refused([
      ['X-Key', 'CUSTOM-PLACEHOLDER-1'],
      ['x-key', 'foreign-token'],
    ]),
    'secret_required',
    'a second copy of the header with a foreign token',
  );
  const detail = plan({ inScope: ['custom'], headers: [['X-Key', 'foreign-token, CUSTOM-PLACEHOLDER-1']] });
  t.match(detail.ok ? '' : detail.detail, /X-Key.*"custom"/);

  // Basic: the placeholder is the password (a user name is free), or the user name with no password
  const basicSecrets = { ...SECRETS, github: { ...SECRETS.github!, require: true } };
  const basic = (credentials: string): unknown => {
    const result = plan({ inScope: ['github'], secrets: basicSecrets, headers: [['Authorization', `Basic ${b64(credentials)}`]] });
    return result.ok ? 'ok' : result.reason;
  };
  t.equal(basic('x-access-token:__sluice_secret_github__'), 'ok');
  t.equal(basic('__sluice_secret_github__:'), 'ok');
  t.equal(basic('__sluice_secret_github__:foreign'), 'secret_required');
  t.equal(basic(`${'u'.repeat(65)}:__sluice_secret_github__`), 'secret_required', 'a user name as long as a key');
});

t.test('swap_in: a placeholder outside the places its secret names is misplaced, with the places in the detail', async (t) => {
  const cases: Array<[string, Partial<RequestSecretsInput>, string]> = [
    ['another header', { inScope: ['gh'], headers: [['X-Pad', '__sluice_secret_gh__']] }, 'header:X-Pad'],
    ['the query', { inScope: ['gh'], target: '/?t=__sluice_secret_gh__' }, 'query'],
    ['the path', { inScope: ['gh'], target: '/__sluice_secret_gh__/x' }, 'path'],
    ['percent-encoded in the query', { inScope: ['gh'], target: '/?t=%5F%5Fsluice_secret_gh__' }, 'query'],
    ['the default: Authorization only', { inScope: ['other'], headers: [['X-Other', '__sluice_secret_other__']] }, 'header:X-Other'],
  ];
  for (const [name, input, where] of cases) {
    const result = plan({ granted: ['github', 'gh', 'stripe', 'custom', 'other'], ...input });
    t.same(result.ok ? null : [result.reason, result.alias], ['secret_misplaced', input.inScope![0]], name);
    t.match(result.ok ? '' : result.detail, `found in ${where}`, `${name}: names where it was`);
  }
  const gh = plan({ inScope: ['gh'], headers: [['X-Pad', '__sluice_secret_gh__']] });
  t.match(gh.ok ? '' : gh.detail, 'only in header:Authorization, body', 'names the places it may go');
  const headerNamesAnyCase = ok(t, plan({ inScope: ['gh'], headers: [['authorization', 'token __sluice_secret_gh__']] }));
  t.ok(header(headerNamesAnyCase.headers, 'authorization')[0] === `token ${FAKE.gh}`, 'header names match in any case');
  const notGrantedFirst = plan({ inScope: ['gh'], headers: [['X-Pad', '__sluice_secret_other__']] });
  t.same(notGrantedFirst.ok ? null : notGrantedFirst.reason, 'secret_not_granted', 'not granted is said before misplaced');
});

t.test('TLS only: no swap and no injection toward a secret host over plain HTTP', async (t) => {
  const written = plan({ tls: false, inScope: ['gh'], headers: [['Authorization', 'token __sluice_secret_gh__']] });
  t.same(written.ok ? null : [written.reason, written.alias], ['secret_insecure', 'gh']);
  t.match(written.ok ? '' : written.detail, /plain http/);
  const injected = plan({ tls: false, inScope: ['stripe'], headers: [['Accept', '*/*']] });
  t.same(injected.ok ? null : [injected.reason, injected.alias], ['secret_insecure', 'stripe'], 'an injection, with nothing written');
  const nothing = ok(t, plan({ tls: false, inScope: ['gh'], headers: [['Accept', '*/*']] }));
  t.same(nothing.uses, [], 'a request that carries no placeholder goes on');
  const plaintext = { ...SECRETS, gh: { ...SECRETS.gh!, allow_plaintext: true } };
  const allowed = ok(t, plan({ tls: false, secrets: plaintext, inScope: ['gh'], headers: [['Authorization', 'token __sluice_secret_gh__']] }));
  t.same(allowed.uses, [{ alias: 'gh', where: 'header:Authorization' }], 'allow_plaintext swaps over plain HTTP');
  const misplacedFirst = plan({ tls: false, inScope: ['gh'], headers: [['X-Pad', '__sluice_secret_gh__']] });
  t.same(misplacedFirst.ok ? null : misplacedFirst.reason, 'secret_misplaced');
});

t.test('Range and If-Range are dropped toward a host a secret may be swapped into the body of', async (t) => {
  const headers: Array<[string, string]> = [
    ['Range', 'bytes=0-3'],
    ['If-Range', '"etag"'],
    ['Accept', '*/*'],
  ];
  const bodySecret = ok(t, plan({ inScope: ['gh'], headers }));
  t.same(bodySecret.headers, [['Accept', '*/*']], 'gh may be swapped into a body');
  const headerOnly = ok(t, plan({ inScope: ['other'], granted: ['other'], headers }));
  t.same(headerOnly.headers, headers, 'other may not: ranges pass');
  const noSecret = ok(t, plan({ inScope: [], headers }));
  t.same(noSecret.headers, headers);
});

t.test('a credential split across two headers is found in the headers joined', async (t) => {
  const key = 'AKIA' + 'Z'.repeat(16);
  const same = plan({
    headers: [
      ['X-Part', key.slice(0, 9)],
      ['X-Part', key.slice(9)],
    ],
  });
  t.same(same.ok ? null : [same.reason, same.alias], ['secret_leak', null], 'two headers of one name');
  t.match(same.ok ? '' : same.detail, /aws_access_key_id.*joined/);
  const different = plan({
    headers: [
      ['X-A', FAKE.gh.slice(0, 10)],
      ['X-B', FAKE.gh.slice(10)],
    ],
  });
  t.same(different.ok ? null : [different.reason, different.alias], ['secret_leak', 'gh'], 'a known value across two headers');
  const apart = ok(
    t,
    plan({
      headers: [
        ['X-A', 'AKIA'],
        ['Accept', '*/*'],
        ['X-B', 'Z'.repeat(16)],
      ],
    }),
  );
  t.same(apart.uses, [], 'pieces not next to each other are not joined into one');
  const repeats = plan({
    headers: [
      ['X-Part', key.slice(0, 9)],
      ['Accept', '*/*'],
      ['X-Part', key.slice(9)],
    ],
  });
  t.same(repeats.ok ? null : repeats.reason, 'secret_leak', 'repeats of one header, apart');
  // A shape inside a longer word is not one: joining must not lose the look-arounds at the seam.
  const blob = 'Zm9v' + 'AIza' + 'E'.repeat(35) + 'YmFy';
  const inside = ok(
    t,
    plan({
      headers: [
        ['Cookie', `s=${blob}`],
        ['Accept', 'text/html'],
      ],
    }),
  );
  t.same(inside.uses, [], 'a key shape inside a longer token of one header is still not a leak');
});

t.test('a request Content-Encoding sluice cannot decode is refused, whatever the host', async (t) => {
  for (const coding of ['zstd', 'gzip, compress', 'gzip, gzip, gzip, gzip']) {
    const result = plan({ headers: [['Content-Encoding', coding]] });
    t.same(result.ok ? null : result.reason, 'bad_request', coding);
  }
  const stacked = ok(
    t,
    plan({
      headers: [
        ['Content-Encoding', 'gzip'],
        ['Content-Encoding', 'br'],
      ],
    }),
  );
  t.same(stacked.uses, [], 'known codings, also on two lines, go on (the body is checked decoded)');
});

t.test('a placeholder of a secret the tool is not granted is refused', async (t) => {
  for (const where of ['header', 'query', 'basic'] as const) {
    const result = plan({
      inScope: ['github'],
      headers:
        where === 'header'
          ? [['X', '__sluice_secret_other__']]
          : where === 'basic'
            ? [['Authorization', `Basic ${b64('u:__sluice_secret_other__')}`]]
            : [],
      target: where === 'query' ? '/?k=%5F%5Fsluice_secret_other__' : '/',
    });
    t.same(result.ok ? null : [result.reason, result.alias], ['secret_not_granted', 'other'], where);
  }
  const unknown = plan({ headers: [['X', '__sluice_secret_nope__']] });
  t.same(unknown.ok ? null : [unknown.reason, unknown.alias], ['secret_not_granted', null], 'an alias the policy does not define');
});

t.test('a granted placeholder toward a host outside its hosts is refused', async (t) => {
  const result = plan({ inScope: ['gh'], headers: [['Authorization', 'token __sluice_secret_github__']] });
  t.same(result.ok ? null : [result.reason, result.alias], ['secret_out_of_scope', 'github']);
});

t.test('an in-scope secret with no value now is unavailable', async (t) => {
  const noValue = (alias: string): string | null => (alias === 'github' || alias === 'stripe' ? null : values(alias));
  const written = plan({ inScope: ['github'], headers: [['X', '__sluice_secret_github__']], values: noValue });
  t.same(written.ok ? null : [written.reason, written.alias], ['secret_unavailable', 'github']);
  const injected = plan({ inScope: ['stripe'], values: noValue });
  t.same(injected.ok ? null : [injected.reason, injected.alias], ['secret_unavailable', 'stripe']);
  const unused = plan({ inScope: ['github'], values: noValue });
  t.equal(unused.ok, true, 'not needed, not checked');
});

t.test('a real value in the original request is a leak, in any form', async (t) => {
  const cases: Array<[string, Partial<RequestSecretsInput>, string]> = [
    ['raw in a header', { headers: [['X-Api', FAKE.gh]] }, 'gh'],
    ['inside Basic', { headers: [['Authorization', `Basic ${b64('me:' + FAKE.gh)}`]] }, 'gh'],
    ['base64 in a header', { headers: [['X-Api', b64(FAKE.other)]] }, 'other'],
    ['base64 at an odd offset', { headers: [['X-Api', b64('ab' + FAKE.other + 'c')]] }, 'other'],
    ['base64url in the query', { target: '/?k=' + Buffer.from(FAKE.custom).toString('base64url') }, 'custom'],
    ['percent-encoded in the query', { target: '/?k=' + encodeURIComponent(FAKE.custom) }, 'custom'],
    ['raw in the path', { target: '/v1/' + FAKE.gh }, 'gh'],
    ['even toward its own host', { inScope: ['github'], headers: [['Authorization', `token ${FAKE.github}`]] }, 'github'],
  ];
  for (const [name, input, alias] of cases) {
    const result = plan(input);
    t.same(result.ok ? null : [result.reason, result.alias], ['secret_leak', alias], name);
  }
  const rotated = plan({ headers: [['X', 'old-rotated-value-123']], known: [{ alias: 'gh', value: 'old-rotated-value-123' }] });
  t.same(rotated.ok ? null : [rotated.reason, rotated.alias], ['secret_leak', 'gh'], 'a value passed in `known`');
});

t.test('a credential shape in the original request is a leak, named by pattern', async (t) => {
  const jwt = `${Buffer.from('{"alg":"RS256"}').toString('base64url')}.${Buffer.from('{"sub":"x"}').toString('base64url')}.sig`;
  const cases: Array<[Partial<RequestSecretsInput>, string]> = [
    [{ target: '/?id=AKIA' + 'B'.repeat(16) }, 'aws_access_key_id'],
    [{ headers: [['Authorization', `Bearer ${jwt}`]] }, 'jwt'],
    [{ target: '/?k=-----BEGIN%20RSA%20PRIVATE%20KEY-----' }, 'private_key_pem'],
    [{ headers: [['Authorization', `Basic ${b64('x:ghp_' + 'C'.repeat(36))}`]] }, 'github_token'],
    [{ headers: [['X-Goog-Api-Key', 'AIza' + 'D'.repeat(35)]] }, 'google_api_key'],
  ];
  for (const [input, name] of cases) {
    const result = plan(input);
    t.same(result.ok ? null : [result.reason, result.alias], ['secret_leak', null], name);
    t.match(result.ok ? '' : result.detail, name);
  }
});

t.test('a request without placeholders passes unchanged', async (t) => {
  const headers: Array<[string, string]> = [
    ['Accept', 'application/json'],
    ['User-Agent', 'tool/1.0'],
  ];
  const result = ok(t, plan({ inScope: ['github'], headers, target: '/repos/a/b?x=%20y' }));
  t.same(result.headers, headers);
  t.equal(result.target, '/repos/a/b?x=%20y');
  t.same(result.uses, []);
});

t.test('fuzz: percentDecode never throws; any mix of escapes still reads as the placeholder', async (t) => {
  fc.assert(
    fc.property(fc.string({ unit: 'binary', maxLength: 64 }), (text) => {
      percentDecode(text);
      percentDecode(text.replace(/a/g, '%'));
    }),
  );
  const placeholder = '__sluice_secret_github__';
  const pattern = rawOrPercentEncoded(placeholder);
  fc.assert(
    fc.property(
      fc.array(fc.constantFrom('raw', 'upper', 'lower'), { minLength: placeholder.length, maxLength: placeholder.length }),
      fc.string(),
      fc.string(),
      (choices, before, after) => {
        const written = Array.from(placeholder, (char, i) => {
          const hex = char.charCodeAt(0).toString(16);
          return choices[i] === 'raw' ? char : `%${choices[i] === 'upper' ? hex.toUpperCase() : hex}`;
        }).join('');
        pattern.lastIndex = 0;
        return pattern.test(before + written + after) && percentDecode(written) === placeholder;
      },
    ),
  );
  t.pass('properties hold');
});

t.test('valueForms: raw, encoded, base64 at every offset; no short forms', async (t) => {
  const forms = valueForms(FAKE.custom);
  t.ok(forms.includes(FAKE.custom));
  t.ok(forms.includes(encodeURIComponent(FAKE.custom)));
  for (const prefix of ['', 'a', 'ab', 'abc']) {
    const blob = Buffer.from(prefix + FAKE.custom + 'tail').toString('base64');
    t.ok(
      forms.some((form) => blob.includes(form)),
      `base64 with ${prefix.length} bytes before`,
    );
  }
  t.ok(valueForms('abc').includes('abc'));
  t.same(encodedForms('abc'), [], 'base64 and hex forms under 8 characters are dropped');
});

t.test('fuzz: a leak or a placeholder anywhere among many surfaces is found and placed', async (t) => {
  // The plan first looks at all surfaces together; this checks that look never hides one of them.
  const secrets = [
    { text: FAKE.gh, reason: 'secret_leak' },
    { text: 'AKIA' + 'Q'.repeat(16), reason: 'secret_leak' },
    { text: defaultPlaceholder('nope'), reason: 'secret_not_granted' },
    { text: defaultPlaceholder('stripe'), reason: 'secret_out_of_scope' },
  ];
  const benign = fc.stringMatching(/^[A-Za-z0-9 ./=-]{0,40}$/);
  fc.assert(
    fc.property(
      fc.array(benign, { minLength: 1, maxLength: 8 }),
      fc.nat(),
      fc.constantFrom(...secrets),
      fc.constantFrom('header', 'path', 'query'),
      (values, at, secret, surface) => {
        const headers: Array<[string, string]> = values.map((v, i) => [`X-H${i}`, v]);
        const index = at % headers.length;
        let target = '/a/b?c=d';
        if (surface === 'header') headers[index] = [`X-H${index}`, `${headers[index]![1]} ${secret.text}`];
        else if (surface === 'path') target = `/a/${secret.text}/b?c=d`;
        else target = `/a/b?c=${secret.text}`;
        const result = plan({ headers, target });
        if (result.ok) return false;
        const where = surface === 'header' ? `header:X-H${index}` : surface;
        return result.reason === secret.reason && result.detail.includes(where);
      },
    ),
    { numRuns: 300 },
  );
  t.pass('every inserted leak or placeholder was refused with its place');
});
