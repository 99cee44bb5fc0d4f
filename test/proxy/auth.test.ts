import { createHash } from 'node:crypto';
import t from 'tap';
import type { PolicyDoc } from '../../src/config/types.js';
import { ToolTokens } from '../../src/proxy/auth.js';

const sha = (s: string): string => createHash('sha256').update(s).digest('hex');
const basic = (s: string): string => `Basic ${Buffer.from(s).toString('base64')}`;
const doc = {
  tools: { web: { token_sha256: sha('right-token'), allow: [] }, ci: { token_env: 'CI_TOKEN', allow: [] } },
} as unknown as PolicyDoc;

t.test('remembered successes never let a wrong token through', async (t) => {
  const tokens = new ToolTokens(doc, { CI_TOKEN: 'ci-token' });
  t.same(tokens.authenticate(basic('web:right-token')), { ok: true, tool: 'web' });
  t.same(tokens.authenticate(basic('web:right-token')), { ok: true, tool: 'web' }, 'the same header again');
  t.match(tokens.authenticate(basic('web:wrong-token')), { ok: false, claimed: 'web' });
  t.match(tokens.authenticate(basic('ci:right-token')), { ok: false, claimed: 'ci' }, "another tool's token");
  t.same(tokens.authenticate(basic('ci:ci-token')), { ok: true, tool: 'ci' });
  t.match(tokens.authenticate(undefined), { ok: false, claimed: null });
});

t.test('a new policy load starts from nothing remembered', async (t) => {
  const before = new ToolTokens(doc, { CI_TOKEN: 'ci-token' });
  t.ok(before.authenticate(basic('ci:ci-token')).ok);
  const after = new ToolTokens(doc, { CI_TOKEN: 'rotated' });
  t.match(after.authenticate(basic('ci:ci-token')), { ok: false }, 'the old env token no longer works');
  t.ok(after.authenticate(basic('ci:rotated')).ok);
});

t.test('many distinct good headers stay correct past the memory bound', async (t) => {
  const tokens = new ToolTokens(doc, { CI_TOKEN: 'ci-token' });
  // Whitespace variants are distinct header strings carrying one token: 1,200 of them.
  const encoded = Buffer.from('web:right-token').toString('base64');
  let good = 0;
  for (let lead = 1; lead <= 40; lead++) {
    for (let trail = 0; trail < 30; trail++) if (tokens.authenticate(`Basic${' '.repeat(lead)}${encoded}${' '.repeat(trail)}`).ok) good++;
  }
  t.equal(good, 1200);
  t.match(tokens.authenticate(basic('web:nope')), { ok: false });
});
