// `sluice serve` as a new operator starts it (issue 15): the audit on stdout with no --audit, a file
// and stdout together when --audit repeats; log lines with level names and ISO time, a banner with
// the proxy and admin URLs, a line for a newly created CA, one debug line per request, a line for a
// SIGHUP that changed nothing, "draining N connections" and "stopped" at SIGTERM; a bad flag value
// is one line, no stack; `-v`, `--version` and `sluice version` print package.json's version.
import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t from 'tap';
import { cleanEnv, curl } from '../helpers/clients.js';
import { freeLoopbackPort } from '../helpers/gate-cli.js';
import { waitFor } from '../helpers/wait.js';

const CLI = path.resolve('dist/cli.js');
const TOKEN = 'serve-cli-token';
const VERSION = (JSON.parse(readFileSync('package.json', 'utf8')) as { version: string }).version;

interface Served {
  child: ChildProcessWithoutNullStreams;
  port: number;
  adminPort: number;
  /** the JSON lines of stdout (the audit) and of stderr (the log) so far */
  stdout(): Array<Record<string, unknown>>;
  log(): Array<Record<string, unknown>>;
  exited: Promise<number | null>;
}

function jsonLines(text: string): Array<Record<string, unknown>> {
  return text
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

async function serve(dir: string, extra: string[]): Promise<Served> {
  const policyFile = path.join(dir, 'policy.yaml');
  writeFileSync(
    policyFile,
    `version: 1
tools:
  web-fetch:
    token_sha256: "${createHash('sha256').update(TOKEN).digest('hex')}"
    allow:
      - host: allowed.test
`,
  );
  const [port, adminPort] = [await freeLoopbackPort(), await freeLoopbackPort()];
  const args = [CLI, 'serve', '--policy', policyFile, '--listen', `127.0.0.1:${port}`, '--admin', `127.0.0.1:${adminPort}`];
  const child = spawn(process.execPath, [...args, '--ca-dir', path.join(dir, 'certs'), '--no-watch', ...extra], {
    env: cleanEnv(),
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr.on('data', (c: Buffer) => (err += c.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const served: Served = { child, port, adminPort, stdout: () => jsonLines(out), log: () => jsonLines(err), exited };
  await waitFor(() => served.log().some((l) => l.msg === 'sluice serving'), `sluice serving (stderr so far: ${err})`, 15_000);
  return served;
}

const deniedRequest = (s: Served) => curl(['-x', `http://web-fetch:${TOKEN}@127.0.0.1:${s.port}`, 'http://denied.test/x?q=1']);

t.test('no --audit: the audit is on stdout; the log has level names, ISO time, a banner, the new CA, debug lines', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'sluice-serve-cli-'));
  const s = await serve(dir, ['--log-level', 'debug']);
  t.teardown(() => void s.child.kill('SIGKILL'));

  const banner = s.log().find((l) => l.msg === 'sluice serving')!;
  t.equal(banner.level, 'info', 'the level is a name');
  t.match(banner.time, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/, 'ISO 8601 UTC time, as the audit');
  t.equal(banner.proxy_url, `http://127.0.0.1:${s.port}`);
  t.equal(banner.admin_url, `http://127.0.0.1:${s.adminPort}`);
  t.equal(banner.version, VERSION);
  t.same(banner.audit, ['stdout']);
  t.ok(
    s.log().some((l) => typeof l.msg === 'string' && l.msg.startsWith('created a new interception CA')),
    'the first start says it created a CA',
  );

  await deniedRequest(s);
  await waitFor(() => s.stdout().some((r) => r.type === 'policy.violation' && r.host === 'denied.test'), 'the audit record on stdout');
  await waitFor(() => s.log().some((l) => l.level === 'debug' && l.host === 'denied.test'), 'the debug line');
  const debug = s.log().find((l) => l.level === 'debug' && l.host === 'denied.test')!;
  t.match(debug.msg, /^web-fetch GET denied\.test:80\/x -> 403 no_rule$/, 'one line per request, the query cut off');

  s.child.kill('SIGHUP');
  await waitFor(() => s.log().some((l) => typeof l.msg === 'string' && l.msg.startsWith('policy reload: nothing changed')), 'the SIGHUP line');

  s.child.kill('SIGTERM');
  t.equal(await s.exited, 0);
  const messages = s.log().map((l) => l.msg);
  t.ok(messages.includes('draining 0 connections'), messages.join(' | '));
  t.equal(messages.at(-1), 'stopped');
});

t.test('--audit FILE --audit -: the same chained records in the file and on stdout; a restart makes no new CA', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'sluice-serve-cli-'));
  const file = path.join(dir, 'audit.log');
  const first = await serve(dir, ['--audit', file, '--audit', '-']);
  first.child.kill('SIGTERM');
  t.equal(await first.exited, 0);
  const s = await serve(dir, ['--audit', file, '--audit', '-']);
  t.teardown(() => void s.child.kill('SIGKILL'));
  t.notOk(
    s.log().some((l) => typeof l.msg === 'string' && l.msg.startsWith('created a new interception CA')),
    'the CA of the first start is reused, silently',
  );
  await deniedRequest(s);
  await waitFor(() => s.stdout().some((r) => r.type === 'policy.violation'), 'the record on stdout');
  s.child.kill('SIGTERM');
  t.equal(await s.exited, 0);
  const onStdout = s.stdout().find((r) => r.type === 'policy.violation')!;
  const inFile = jsonLines(readFileSync(file, 'utf8')).find((r) => r.type === 'policy.violation');
  t.equal(inFile?.hash, onStdout.hash, 'one chain, written to both');
  t.equal(inFile?.host, 'denied.test');
});

t.test('a bad flag value is one line on stderr, no stack; two audit files are refused', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'sluice-serve-cli-'));
  writeFileSync(path.join(dir, 'p.yaml'), 'version: 1\ntools: {}\n');
  const cases: Array<[string[], RegExp]> = [
    [['--log-level', 'loud'], /^sluice serve: --log-level must be one of fatal, error, warn, info, debug, trace, silent \(got "loud"\)\n$/],
    [['--drain-timeout', 'soon'], /^sluice serve: --drain-timeout must be a whole number \(got "soon"\)\n$/],
    [['--audit', 'a.log', '--audit', 'b.log'], /^sluice serve: --audit takes one file/],
  ];
  for (const [flags, expected] of cases) {
    const r = spawnSync(process.execPath, [CLI, 'serve', '--policy', path.join(dir, 'p.yaml'), ...flags], {
      encoding: 'utf8',
      env: cleanEnv(),
      timeout: 20_000,
    });
    t.equal(r.status, 2, flags.join(' '));
    t.match(r.stderr, expected);
    t.notMatch(r.stderr, /\n\s+at /, 'no stack');
  }
});

t.test('-v, --version and `sluice version` print the version in package.json', async (t) => {
  for (const arg of ['-v', '--version', 'version']) {
    const r = spawnSync(process.execPath, [CLI, arg], { encoding: 'utf8', env: cleanEnv(), timeout: 20_000 });
    t.equal(r.status, 0);
    t.equal(r.stdout, `sluice ${VERSION}\n`, arg);
  }
});
