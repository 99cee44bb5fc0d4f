// The first start of `sluice serve` creates the interception CA (issue 20). What a user relies on:
// the proxy port listens only once the CA is written, loaded and checked (a client may fetch
// certs/ca.pem the moment the port answers); a start refused for another reason never leaves a
// key without its certificate; a CA dir that cannot be made refuses the start with one line
// naming it. Runs the built CLI (dist/cli.js).
import { spawn, spawnSync } from 'node:child_process';
import { createHash, createPrivateKey, X509Certificate } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t, { type Test } from 'tap';
import { cleanEnv, openSocket } from '../helpers/clients.js';
import { freeLoopbackPort } from '../helpers/gate-cli.js';
import { waitFor } from '../helpers/wait.js';

const CLI = path.resolve('dist/cli.js');
const TOKEN = 'ca-first-start-token';

function policy(dir: string): string {
  const file = path.join(dir, 'policy.yaml');
  const sha = createHash('sha256').update(TOKEN).digest('hex');
  writeFileSync(file, `version: 1\ntools:\n  web-fetch:\n    token_sha256: "${sha}"\n    allow:\n      - host: allowed.test\n`);
  return file;
}

/** The CA in dir as a client and the next start read it: a CA certificate and its own key. */
function checkCa(t: Test, caDir: string): string {
  const certPem = readFileSync(path.join(caDir, 'ca.pem'), 'utf8');
  const cert = new X509Certificate(certPem);
  t.ok(cert.ca, 'ca.pem is a CA certificate');
  t.ok(cert.checkPrivateKey(createPrivateKey(readFileSync(path.join(caDir, 'ca-key.pem'), 'utf8'))), 'ca-key.pem is its key');
  t.equal(statSync(path.join(caDir, 'ca-key.pem')).mode & 0o777, 0o600, 'the key is 0600');
  return certPem;
}

t.test('the first start has the whole CA on disk and at /ca.pem before the proxy port accepts', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'sluice-ca-first-'));
  const caDir = path.join(dir, 'certs');
  const [port, adminPort] = [await freeLoopbackPort(), await freeLoopbackPort()];
  const child = spawn(
    process.execPath,
    [
      CLI,
      'serve',
      '--policy',
      policy(dir),
      '--listen',
      `127.0.0.1:${port}`,
      '--admin',
      `127.0.0.1:${adminPort}`,
      '--ca-dir',
      caDir,
      '--no-watch',
    ],
    { env: cleanEnv(), stdio: ['ignore', 'ignore', 'pipe'] },
  );
  t.teardown(() => void child.kill('SIGKILL'));
  let log = '';
  child.stderr.on('data', (c: Buffer) => (log += c.toString()));
  // Polled from the spawn: the first moment the port takes a connection, the files must be there.
  let filesAtAccept: string[] | null = null;
  const deadline = Date.now() + 20_000;
  for (;;) {
    const accepted = await openSocket(port).then(
      (s) => (s.destroy(), true),
      () => false,
    );
    if (accepted) {
      filesAtAccept = existsSync(caDir) ? readdirSync(caDir).sort() : [];
      break;
    }
    if (Date.now() > deadline) throw new Error(`the proxy port did not accept (log so far: ${log})`);
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
  await waitFor(() => log.includes('sluice serving'), 'the banner');
  t.same(filesAtAccept, ['ca-key.pem', 'ca.pem'], 'both files exist when the port first accepts');
  const certPem = checkCa(t, caDir);
  const served = await fetch(`http://127.0.0.1:${adminPort}/ca.pem`);
  t.equal(served.status, 200);
  t.equal(await served.text(), new X509Certificate(certPem).toString(), '/ca.pem is the file');
  const lines = log
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => (JSON.parse(l) as { msg: string }).msg);
  const created = lines.findIndex((m) => m.startsWith('created a new interception CA'));
  t.ok(created >= 0, 'the start says it created a CA');
  t.ok(created < lines.indexOf('sluice serving'), 'before the banner');
  t.notMatch(log, /PRIVATE KEY/, 'no key material in the log');
});

t.test('a first start refused for its policy leaves no CA or a whole one, never a lone key', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'sluice-ca-refused-'));
  const caDir = path.join(dir, 'certs');
  const bad = path.join(dir, 'bad.yaml');
  writeFileSync(bad, 'version: 1\ntools:\n  web-fetch:\n    allow: [{ host: 7 }]\n');
  const r = spawnSync(
    process.execPath,
    [CLI, 'serve', '--policy', bad, '--listen', `127.0.0.1:${await freeLoopbackPort()}`, '--ca-dir', caDir, '--no-watch'],
    {
      encoding: 'utf8',
      env: cleanEnv(),
      timeout: 20_000,
    },
  );
  t.equal(r.status, 2, r.stderr);
  t.match(r.stderr, /^sluice serve: refusing to start: /);
  const files = existsSync(caDir) ? readdirSync(caDir).sort() : [];
  t.ok(files.length === 0 || files.join() === 'ca-key.pem,ca.pem', `no half CA (${files.join(', ')})`);
  if (files.length === 2) checkCa(t, caDir);
});

t.test('a CA dir that cannot be made refuses the first start with one line naming it', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'sluice-ca-unwritable-'));
  writeFileSync(path.join(dir, 'file'), 'not a dir');
  const caDir = path.join(dir, 'file', 'certs');
  const r = spawnSync(
    process.execPath,
    [CLI, 'serve', '--policy', policy(dir), '--listen', `127.0.0.1:${await freeLoopbackPort()}`, '--ca-dir', caDir, '--no-watch'],
    {
      encoding: 'utf8',
      env: cleanEnv(),
      timeout: 20_000,
    },
  );
  t.equal(r.status, 2, r.stderr);
  t.match(r.stderr, /^sluice serve: refusing to start: .*ENOTDIR.*file\/certs/);
  t.notMatch(r.stderr, /\n\s+at /, 'no stack');
});
