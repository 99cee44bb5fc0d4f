// The pure limit pieces: token bucket arithmetic, the per-tool slot queue, and request framing.
import fc from '../helpers/fc.js';
import t from 'tap';
import { awaitTurn, framingProblem } from '../../src/proxy/framing.js';
import { takeToken, ToolLimiter } from '../../src/proxy/limits.js';

t.test('takeToken: a full bucket of one minute, refilled continuously', async (t) => {
  let bucket = null as ReturnType<typeof takeToken>['bucket'] | null;
  const at = (now: number) => {
    const r = takeToken(bucket, 60, now);
    bucket = r.bucket;
    return r;
  };
  for (let i = 0; i < 60; i++) t.ok(at(0).ok);
  const refused = at(0);
  t.notOk(refused.ok);
  t.equal(refused.retryAfterSeconds, 1, 'one token a second at 60/min');
  t.ok(at(1000).ok, 'a second later one token is back');
  t.notOk(at(1000).ok);
  const slow = takeToken({ tokens: 0, at: 0 }, 2, 0);
  t.equal(slow.retryAfterSeconds, 30, '2/min: next token in 30 s');
  t.equal(takeToken({ tokens: 0, at: 0 }, 10, 10 * 60_000).bucket.tokens, 9, 'never more than a minute’s worth');
});

t.test('ToolLimiter: caps per tool, waits for a freed slot, refuses after the wait', async (t) => {
  const limiter = new ToolLimiter({ waitMs: 50 });
  const caps = { max_connections_per_tool: 2, requests_per_minute: 0 };
  const a1 = await limiter.acquire('a', caps);
  const a2 = await limiter.acquire('a', caps);
  t.ok(a1.ok && a2.ok);
  t.ok((await limiter.acquire('b', caps)).ok, 'another tool is not affected');
  const refused = await limiter.acquire('a', caps);
  t.notOk(refused.ok);
  if (!refused.ok) t.match(refused.detail, /max_connections_per_tool/);
  const waiting = limiter.acquire('a', caps);
  if (a1.ok) {
    a1.release();
    a1.release();
  }
  const handed = await waiting;
  t.ok(handed.ok, 'a freed slot goes to the waiter');
  t.equal(limiter.active('a'), 2, 'double release counts once');
  if (handed.ok) handed.release();
  if (a2.ok) a2.release();
  t.equal(limiter.active('a'), 0);
});

t.test('ToolLimiter: requests_per_minute refuses with Retry-After before taking a slot', async (t) => {
  let now = 0;
  const limiter = new ToolLimiter({ waitMs: 10, now: () => now });
  const caps = { max_connections_per_tool: 10, requests_per_minute: 2 };
  const one = await limiter.acquire('a', caps);
  const two = await limiter.acquire('a', caps);
  const three = await limiter.acquire('a', caps);
  t.ok(one.ok && two.ok);
  t.same(three.ok ? null : three.retryAfterSeconds, 30);
  t.equal(limiter.active('a'), 2, 'the refused request holds no slot');
  now = 30_000;
  t.ok((await limiter.acquire('a', caps)).ok);
});

t.test('framingProblem', async (t) => {
  const table: Array<[string, string, string[], boolean]> = [
    ['no body framing', '1.1', ['Host', 'a'], false],
    ['Content-Length only', '1.1', ['Content-Length', '3'], false],
    ['chunked', '1.1', ['Transfer-Encoding', 'chunked'], false],
    ['CHUNKED, padded', '1.1', ['Transfer-Encoding', ' CHUNKED '], false],
    ['gzip, chunked', '1.1', ['Transfer-Encoding', 'gzip, chunked'], true],
    ['two lines x then chunked', '1.1', ['Transfer-encoding', 'x', 'Transfer-Encoding', 'chunked'], true],
    ['chunked twice in a list', '1.1', ['Transfer-Encoding', 'chunked, chunked'], true],
    ['empty coding', '1.1', ['Transfer-Encoding', ', chunked'], true],
    ['chunked in HTTP/1.0', '1.0', ['Transfer-Encoding', 'chunked'], true],
  ];
  for (const [what, version, raw, refused] of table)
    t.equal(framingProblem({ kind: 'request', httpVersion: version, rawHeaders: raw }) !== null, refused, what);
  fc.assert(
    fc.property(fc.array(fc.tuple(fc.constantFrom('Transfer-Encoding', 'transfer-encoding', 'X-A'), fc.string())), (pairs) => {
      const raw = pairs.flat();
      const codings = pairs.filter(([n]) => n.toLowerCase() === 'transfer-encoding').flatMap(([, v]) => v.split(','));
      const accepted = framingProblem({ kind: 'request', httpVersion: '1.1', rawHeaders: raw }) === null;
      // Accepted only with no Transfer-Encoding, or exactly one coding that is chunked.
      t.equal(accepted, codings.length === 0 || (codings.length === 1 && codings[0]!.trim().toLowerCase() === 'chunked'));
    }),
    { numRuns: 300 },
  );
});

t.test('awaitTurn: a pipelined request waits for the one before it, and is dropped after a closing answer', async (t) => {
  const { EventEmitter } = await import('node:events');
  const socket = { destroyed: false, writableEnded: false };
  const res1 = new EventEmitter();
  const closed = (res: InstanceType<typeof EventEmitter>): Promise<void> => new Promise((resolve) => res.once('close', () => resolve()));
  t.equal(await awaitTurn(socket as never, closed(res1)), true, 'the first goes at once');
  let second: boolean | null = null;
  void awaitTurn(socket as never, closed(new EventEmitter())).then((ok) => (second = ok));
  await new Promise((r) => setImmediate(r));
  t.equal(second, null, 'the second waits');
  socket.writableEnded = true;
  res1.emit('close');
  await new Promise((r) => setImmediate(r));
  t.equal(second, false, 'after a closing answer it is dropped');
});
