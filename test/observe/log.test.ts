import { Writable } from 'node:stream';
import t from 'tap';
import { createLogger } from '../../src/observe/log.js';

const SECRET = 'ghp_FAKEVALUE0123456789';

function capture(): { stream: Writable; records: () => Array<Record<string, unknown>>; raw: () => string } {
  const chunks: string[] = [];
  const stream = new Writable({
    write(chunk, _enc, done) {
      chunks.push(chunk.toString());
      done();
    },
  });
  return {
    stream,
    raw: () => chunks.join(''),
    records: () =>
      chunks
        .join('')
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l)),
  };
}

function scrub(s: string): string {
  return s.split(SECRET).join('__sluice_secret_github__');
}

t.test('credential headers and fields are redacted', async (t) => {
  const out = capture();
  const log = createLogger({ level: 'info', destination: out.stream, scrub });
  log.info(
    {
      req: { headers: { authorization: 'Basic abc', 'proxy-authorization': 'Basic def', cookie: 'sid=1', host: 'x.example' } },
      headers: { authorization: 'Bearer a', 'proxy-authorization': 'Basic b', cookie: 'c=1', accept: '*/*' },
      upstream: { authorization: 'Bearer u', cookie: 'u=1', token: 'tok' },
      secret: 'plain',
      token: 'top',
      github: { value: 'hidden' },
    },
    'request',
  );
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- parsed log lines, read several levels deep
  const [record] = out.records() as Array<any>;
  t.same(record.req.headers, { authorization: '[REDACTED]', 'proxy-authorization': '[REDACTED]', cookie: '[REDACTED]', host: 'x.example' });
  t.same(record.headers, { authorization: '[REDACTED]', 'proxy-authorization': '[REDACTED]', cookie: '[REDACTED]', accept: '*/*' });
  t.same(record.upstream, { authorization: '[REDACTED]', cookie: '[REDACTED]', token: '[REDACTED]' });
  t.equal(record.secret, '[REDACTED]');
  t.equal(record.token, '[REDACTED]');
  t.same(record.github, { value: '[REDACTED]' });
  t.equal(record.msg, 'request');
  t.equal(record.name, 'sluice');
  t.notOk(/Basic abc|Bearer a|sid=1|tok"|hidden/.test(out.raw()));
});

t.test('scrub replaces secret values in messages, arguments, fields, errors and bindings', async (t) => {
  const out = capture();
  const log = createLogger({ level: 'debug', destination: out.stream, scrub });
  log.info(`saw ${SECRET} in a header`);
  log.info('format %s and %o', SECRET, { nested: [SECRET] });
  log.warn({ detail: `x-${SECRET}`, list: [{ deep: SECRET }] }, 'fields');
  log.error(new Error(`upstream echoed ${SECRET}`));
  const coded = Object.assign(new Error(`wrapped ${SECRET}`, { cause: new Error(`cause ${SECRET}`) }), { code: 'E_X', hint: SECRET });
  log.error({ err: coded }, 'wrapped');
  log.child({ label: SECRET }).debug('child');
  const circular: Record<string, unknown> = { v: SECRET };
  circular.self = circular;
  log.info({ circular }, 'cycle');
  const raw = out.raw();
  t.notOk(raw.includes(SECRET), 'no secret value anywhere in the output');
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- parsed log lines, read several levels deep
  const records = out.records() as Array<any>;
  t.equal(records.length, 7);
  t.equal(records[0].msg, 'saw __sluice_secret_github__ in a header');
  t.match(records[1].msg, /^format __sluice_secret_github__ and /);
  t.equal(records[2].detail, 'x-__sluice_secret_github__');
  t.same(records[2].list, [{ deep: '__sluice_secret_github__' }]);
  t.equal(records[3].msg, 'upstream echoed __sluice_secret_github__');
  t.equal(records[3].err.message, 'upstream echoed __sluice_secret_github__');
  t.equal(records[3].err.type, 'Error');
  t.equal(records[4].err.message, 'wrapped __sluice_secret_github__: cause __sluice_secret_github__');
  t.equal(records[4].err.code, 'E_X');
  t.equal(records[4].err.hint, '__sluice_secret_github__');
  t.match(records[4].err.stack, /caused by: Error: cause __sluice_secret_github__/);
  t.equal(records[5].label, '__sluice_secret_github__');
  t.equal(records[6].circular.v, '__sluice_secret_github__');
});

t.test('level filters and unknown levels are refused', async (t) => {
  const out = capture();
  const log = createLogger({ level: 'warn', destination: out.stream });
  log.info('hidden');
  log.warn('shown');
  t.same(
    out.records().map((r) => r.msg),
    ['shown'],
  );
  t.throws(() => createLogger({ level: 'loud', destination: out.stream }), /unknown log level "loud"/);
});
