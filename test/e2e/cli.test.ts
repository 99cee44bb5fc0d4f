// The built command line (dist/cli.js, as `npx sluice` runs it) spawned for real: check, explain,
// serve refusals, help, ca init. `npm test` builds dist before testing.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, statSync, writeFileSync, readFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t from 'tap';
import { cleanEnv } from '../helpers/clients.js';

const CLI = path.resolve('dist/cli.js');
const dir = mkdtempSync(path.join(tmpdir(), 'sluice-cli-'));

function sluiceCli(args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', env: cleanEnv(), timeout: 20_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

function policy(name: string, text: string): string {
  const file = path.join(dir, name);
  writeFileSync(file, text);
  return file;
}

const good = policy(
  'good.yaml',
  `version: 1
tools:
  web-fetch:
    token_env: WEB_FETCH_TOKEN
    allow:
      - host: example.com
        methods: [GET]
        paths: ["/ok/**"]
`,
);
const allowAll = policy(
  'allow-all.yaml',
  `version: 1
tools:
  web-fetch:
    token_env: WEB_FETCH_TOKEN
    allow:
      - host: example.com
      - host: "*"
`,
);

t.test('check: an allow-all host fails with file:line and the reason', async (t) => {
  const r = sluiceCli(['check', allowAll]);
  t.equal(r.code, 1);
  t.match(r.stderr + r.stdout, `${allowAll}:7:`);
  t.match(r.stderr + r.stdout, /"\*" matches every host; strict mode forbids allow-all \[allow_all\]$/m, 'with its code from the README table');
});

t.test('check: a good policy prints its sha256', async (t) => {
  const r = sluiceCli(['check', good]);
  t.equal(r.code, 0, r.stderr);
  t.match(r.stdout, `sha256 ${createHash('sha256').update(readFileSync(good)).digest('hex')}`);
  t.match(r.stdout, 'tool web-fetch: 1 rule');
});

t.test('explain: allow exits 0 naming the rule, deny exits 1 saying why', async (t) => {
  const allow = sluiceCli(['explain', '--policy', good, '--tool', 'web-fetch', 'GET', 'https://example.com/ok/1']);
  t.equal(allow.code, 0, allow.stderr);
  t.match(allow.stdout, /^decision: allow$/m);
  t.match(allow.stdout, /^rule: web-fetch\.allow\[0\]$/m);
  const deny = sluiceCli(['explain', '--policy', good, '--tool', 'web-fetch', 'DELETE', 'https://example.com/ok/1']);
  t.equal(deny.code, 1);
  t.match(deny.stdout, /^decision: deny \(method_not_allowed\)$/m);
  t.match(deny.stdout, /DELETE/);
  const noRule = sluiceCli(['explain', '--policy', good, '--tool', 'web-fetch', 'GET', 'https://other.example/']);
  t.equal(noRule.code, 1);
  t.match(noRule.stdout, /no_rule/);
});

t.test('serve refuses a missing or invalid policy: exit 2 with the reason', async (t) => {
  const missing = sluiceCli(['serve', '--policy', path.join(dir, 'nope.yaml'), '--admin', 'off', '--listen', '127.0.0.1:39999']);
  t.equal(missing.code, 2);
  t.match(missing.stderr, /refusing to start: .*nope\.yaml: cannot read the file/);
  const invalid = sluiceCli(['serve', '--policy', allowAll, '--admin', 'off', '--listen', '127.0.0.1:39999']);
  t.equal(invalid.code, 2);
  t.match(invalid.stderr, /refusing to start: .*allow-all\.yaml:7: .*strict mode forbids allow-all/);
  const pinned = sluiceCli(['serve', '--policy', good, '--admin', 'off', '--listen', '127.0.0.1:39999', '--policy-sha256', 'a'.repeat(64)]);
  t.equal(pinned.code, 2);
  t.match(pinned.stderr, /does not match the pinned --policy-sha256/);
});

t.test('--help for sluice and for each command exits 0', async (t) => {
  const top = sluiceCli(['--help']);
  t.equal(top.code, 0);
  t.match(top.stdout, /Usage:/);
  for (const command of ['serve', 'check', 'explain', 'ca', 'audit']) {
    const r = sluiceCli([command, '--help']);
    t.equal(r.code, 0, `${command} --help`);
    t.match(r.stdout, /Usage: sluice /, command);
  }
});

t.test('ca init creates the CA with its key readable by the owner only', async (t) => {
  const caDir = path.join(dir, 'ca');
  const r = sluiceCli(['ca', 'init', '--dir', caDir]);
  t.equal(r.code, 0, r.stderr);
  t.match(readFileSync(path.join(caDir, 'ca.pem'), 'utf8'), /^-----BEGIN CERTIFICATE-----/);
  t.equal(statSync(path.join(caDir, 'ca-key.pem')).mode & 0o777, 0o600);
});
