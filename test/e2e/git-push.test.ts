// Git push rules (issue 21) end to end: real `git` clones and pushes through sluice, which
// intercepts the host with its CA, to a real smart-HTTP server (git http-backend behind a CGI host
// on loopback, TLS from the test CA). Each refusal is checked as git prints it (its stderr), on the
// server's refs (nothing changed), in the audit and in the metrics; the token sluice injects is
// checked to reach the server only with pushes that were allowed.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t, { type Test } from 'tap';
import { curl } from '../helpers/clients.js';
import { startDns, type DnsServer } from '../helpers/dns.js';
import { gitEnv, makeBareRepository, runGit, startGitServer, type GitServer } from '../helpers/git-server.js';
import { scrapeMetrics, total } from '../helpers/metrics.js';
import { makeTestPki, testCaFile } from '../helpers/pki.js';
import { auditMark, canonicalSince, sha256, startTestSluice, TOOL, TOKEN, type TestSluice } from '../helpers/sluice.js';

// An obviously fake credential; the test never prints it, the server records only a match.
const GIT_TOKEN = 'git-real-token-0123456789abcdef';
const RELEASER = 'releaser';
const RELEASER_TOKEN = 'releaser-token-for-test';
const READER = 'reader';
const READER_TOKEN = 'reader-token-for-test';
/** pushes over plain http:// (absolute-form), with no secret: a token is never injected in clear */
const PLAIN = 'plainpush';
const PLAIN_TOKEN = 'plainpush-token-for-test';

let sluice: TestSluice;
let server: GitServer;
let plainServer: GitServer;
let dns: DnsServer;
let root: string;
let bare: string;
let home: string;
let remote: string;
let sluiceCaFile: string;

t.before(async () => {
  const pki = await makeTestPki();
  const testCa = await testCaFile();
  root = mkdtempSync(path.join(tmpdir(), 'sluice-git-'));
  home = mkdtempSync(path.join(tmpdir(), 'sluice-git-home-'));
  bare = await makeBareRepository(root, 'repo.git', home);
  server = await startGitServer(root, pki.server, `Bearer ${GIT_TOKEN}`);
  plainServer = await startGitServer(root, null, null);
  dns = await startDns({ 'upstream.test': [{ type: 'A', address: '127.0.0.2' }] });
  remote = `https://upstream.test:${server.port}/repo.git`;
  sluice = await startTestSluice({
    env: { GIT_TOKEN_FOR_TEST: GIT_TOKEN },
    policy: `
version: 1
network:
  allow_private_cidrs: ["127.0.0.2/32"]
  dns_servers: ["${dns.address}"]
  allow_ports: [${server.port}, ${plainServer.port}]
tls:
  upstream_ca: ${testCa}
secrets:
  git_token:
    from: { env: GIT_TOKEN_FOR_TEST }
    hosts: ["upstream.test"]
    inject: { header: Authorization, format: "Bearer {value}" }
tools:
  ${TOOL}:
    token_sha256: "\${TOKEN_SHA}"
    secrets: [git_token]
    allow:
      - host: upstream.test
        limits: { max_request_bytes: 16777216 }
        git:
          push: { refs: ["refs/heads/agent/**"] }
  ${RELEASER}:
    token_sha256: "${sha256(RELEASER_TOKEN)}"
    secrets: [git_token]
    allow:
      - host: upstream.test
        git:
          push: { refs: ["refs/heads/agent/**", "refs/tags/moving"], delete: true, tags: true, options: ["ci.skip"] }
  ${READER}:
    token_sha256: "${sha256(READER_TOKEN)}"
    secrets: [git_token]
    allow:
      - host: upstream.test
        git:
          push: { refs: ["refs/heads/agent/**"] }
          fetch: false
  ${PLAIN}:
    token_sha256: "${sha256(PLAIN_TOKEN)}"
    allow:
      - host: upstream.test
        git:
          push: { refs: ["refs/heads/agent/**"] }
`,
  });
  sluiceCaFile = path.join(sluice.caDir, 'ca.pem');
});

t.teardown(async () => {
  await sluice?.close();
  await server?.close();
  await plainServer?.close();
  await dns?.close();
});

/** git through sluice as `tool`: http.proxy, sluice's CA alone, Basic proxy auth up front. */
function git(cwd: string, tool: string, token: string, ...args: string[]) {
  return runGit(
    [
      '-c',
      `http.proxy=http://${tool}:${token}@127.0.0.1:${sluice.port}`,
      '-c',
      `http.sslCAInfo=${sluiceCaFile}`,
      '-c',
      'http.proxyAuthMethod=basic',
      '-c',
      'user.name=agent',
      '-c',
      'user.email=agent@example.test',
      ...args,
    ],
    { cwd, env: gitEnv(home) },
  );
}

/** A ref on the server, or null when it does not exist. */
async function serverRef(ref: string): Promise<string | null> {
  const r = await runGit(['--git-dir', bare, 'rev-parse', '--verify', '-q', ref], { cwd: root, env: gitEnv(home) });
  return r.code === 0 ? r.stdout.trim() : null;
}

/** A fresh clone through sluice (as the default tool) with one new commit on top. */
async function cloneWithCommit(t: Test, name: string): Promise<{ dir: string; head: string }> {
  const dir = path.join(mkdtempSync(path.join(tmpdir(), 'sluice-git-clone-')), name);
  const cloned = await git(path.dirname(dir), TOOL, TOKEN, 'clone', '-q', remote, dir);
  t.equal(cloned.code, 0, `clone through sluice works (${cloned.stderr.trim()})`);
  writeFileSync(path.join(dir, `${name}.txt`), `${name}\n`);
  await git(dir, TOOL, TOKEN, 'add', '.');
  await git(dir, TOOL, TOKEN, 'commit', '-qm', name);
  const head = (await git(dir, TOOL, TOKEN, 'rev-parse', 'HEAD')).stdout.trim();
  return { dir, head };
}

const receivePackPosts = (): number => server.requests.filter((r) => r.method === 'POST' && r.path.endsWith('/git-receive-pack')).length;

async function violations(reason: string): Promise<number> {
  return total(await scrapeMetrics(sluice.adminPort), 'sluice_policy_violations_total', { reason });
}

t.test('clone works, and a push to an owned branch lands with the injected token', async (t) => {
  const { dir, head } = await cloneWithCommit(t, 'allowed');
  const posts = receivePackPosts();
  const r = await git(dir, TOOL, TOKEN, 'push', 'origin', 'HEAD:refs/heads/agent/one');
  t.equal(r.code, 0, `the push succeeds (${r.stderr.trim()})`);
  t.equal(await serverRef('refs/heads/agent/one'), head, 'the branch landed on the server');
  t.equal(receivePackPosts(), posts + 1, 'the server got one receive-pack POST');
  const post = server.requests.filter((q) => q.path.endsWith('/git-receive-pack')).at(-1)!;
  t.ok(post.authExpected, 'the allowed push carried the injected token');
});

t.test('a push to main is refused per ref, before a byte reaches the server', async (t) => {
  const { dir } = await cloneWithCommit(t, 'tomain');
  const before = await serverRef('refs/heads/main');
  const posts = receivePackPosts();
  const violationsBefore = await violations('git_ref_not_allowed');
  const mark = await auditMark(sluice);
  const r = await git(dir, TOOL, TOKEN, 'push', 'origin', 'HEAD:main');
  t.not(r.code, 0, 'git reports the push failed');
  t.match(r.stderr, '! [remote rejected] HEAD -> main (sluice: push to refs/heads/main not allowed)', 'git prints the ref and sluice reason');
  t.match(r.stderr, /remote: sluice: push refused by rule web-fetch\.allow\[0\]/, 'and sluice’s side-band line');
  t.equal(await serverRef('refs/heads/main'), before, 'main did not move on the server');
  t.equal(receivePackPosts(), posts, 'no receive-pack POST (so no token) reached the server');
  const records = await canonicalSince(sluice, mark, 3);
  const refused = records.find((rec) => rec.reason === 'git_ref_not_allowed');
  t.ok(refused, 'the refusal is audited');
  t.equal(refused?.type, 'policy.violation');
  t.equal(refused?.decision, 'deny');
  t.equal(refused?.status, 200, 'answered with git report-status (200)');
  t.match(refused?.detail, 'push to refs/heads/main not allowed');
  t.equal(await violations('git_ref_not_allowed'), violationsBefore + 1, 'sluice_policy_violations_total counts it');
});

t.test('deletes follow the delete flag', async (t) => {
  const { dir, head } = await cloneWithCommit(t, 'deletes');
  t.equal((await git(dir, TOOL, TOKEN, 'push', 'origin', 'HEAD:refs/heads/agent/doomed')).code, 0, 'the branch is pushed');
  const posts = receivePackPosts();
  const r = await git(dir, TOOL, TOKEN, 'push', 'origin', ':refs/heads/agent/doomed');
  t.not(r.code, 0, 'delete: false refuses the deletion');
  t.match(r.stderr, '(sluice: deleting refs/heads/agent/doomed not allowed)');
  t.equal(await serverRef('refs/heads/agent/doomed'), head, 'the branch is still there');
  t.equal(receivePackPosts(), posts, 'nothing reached the server');
  const allowed = await git(dir, RELEASER, RELEASER_TOKEN, 'push', 'origin', ':refs/heads/agent/doomed');
  t.equal(allowed.code, 0, `delete: true allows it (${allowed.stderr.trim()})`);
  t.equal(await serverRef('refs/heads/agent/doomed'), null, 'the branch is gone');
});

t.test('push options (git push -o): refused unless the rule lists them, before a byte reaches the server', async (t) => {
  const advertise = await runGit(['--git-dir', bare, 'config', 'receive.advertisePushOptions', 'true'], { cwd: root, env: gitEnv(home) });
  t.equal(advertise.code, 0, 'the server advertises push-options');
  t.teardown(() => runGit(['--git-dir', bare, 'config', '--unset', 'receive.advertisePushOptions'], { cwd: root, env: gitEnv(home) }));
  const { dir, head } = await cloneWithCommit(t, 'options');
  const posts = receivePackPosts();
  const violationsBefore = await violations('git_push_option_not_allowed');
  const mark = await auditMark(sluice);
  const r = await git(dir, TOOL, TOKEN, 'push', '-o', 'ci.variable=DEPLOY_KEY=x', 'origin', 'HEAD:refs/heads/agent/options');
  t.not(r.code, 0, 'no options allowed: git reports the push failed');
  t.match(r.stderr, '(sluice: push option "ci.variable=DEPLOY_KEY=x" not allowed)', 'git prints the ref rejected, the option named');
  t.equal(await serverRef('refs/heads/agent/options'), null, 'the branch was not created');
  t.equal(receivePackPosts(), posts, 'no receive-pack POST reached the server');
  const records = await canonicalSince(sluice, mark, 3);
  const refused = records.find((rec) => rec.reason === 'git_push_option_not_allowed');
  t.equal(refused?.type, 'policy.violation', 'audited');
  t.equal(await violations('git_push_option_not_allowed'), violationsBefore + 1, 'counted');

  const listed = await git(dir, RELEASER, RELEASER_TOKEN, 'push', '-o', 'ci.skip', 'origin', 'HEAD:refs/heads/agent/options');
  t.equal(listed.code, 0, `an option the rule lists passes (${listed.stderr.trim()})`);
  t.equal(await serverRef('refs/heads/agent/options'), head, 'and the push landed');
  const other = await git(
    dir,
    RELEASER,
    RELEASER_TOKEN,
    'push',
    '-o',
    'ci.skip',
    '-o',
    'merge_request.create',
    'origin',
    'HEAD:refs/heads/agent/options2',
  );
  t.not(other.code, 0, 'one unlisted option among listed ones refuses the push');
  t.match(other.stderr, '(sluice: push option "merge_request.create" not allowed)');
  t.equal(await serverRef('refs/heads/agent/options2'), null);
  const without = await git(dir, TOOL, TOKEN, 'push', 'origin', 'HEAD:refs/heads/agent/options3');
  t.equal(without.code, 0, 'a push with no option passes, the capability absent');
});

t.test('tags follow the tags flag; moving a tag needs a glob naming it', async (t) => {
  const { dir, head } = await cloneWithCommit(t, 'tags');
  await git(dir, TOOL, TOKEN, 'tag', 'v1');
  const refused = await git(dir, TOOL, TOKEN, 'push', 'origin', 'refs/tags/v1');
  t.not(refused.code, 0, 'tags: false refuses a tag');
  t.match(refused.stderr, '! [remote rejected] v1 -> v1 (sluice: pushing tag refs/tags/v1 not allowed)');
  t.equal(await serverRef('refs/tags/v1'), null, 'no tag on the server');
  const allowed = await git(dir, RELEASER, RELEASER_TOKEN, 'push', 'origin', 'refs/tags/v1');
  t.equal(allowed.code, 0, `tags: true allows creating it (${allowed.stderr.trim()})`);
  t.equal(await serverRef('refs/tags/v1^{commit}'), head, 'the tag landed');
  // Move v1 (no glob names it) and "moving" (a glob names it).
  await git(dir, TOOL, TOKEN, 'commit', '-qm', 'later', '--allow-empty');
  await git(dir, TOOL, TOKEN, 'tag', '-f', 'v1');
  const moved = await git(dir, RELEASER, RELEASER_TOKEN, 'push', '-f', 'origin', 'refs/tags/v1');
  t.not(moved.code, 0, 'moving an existing tag is refused');
  t.match(moved.stderr, '(sluice: moving tag refs/tags/v1 not allowed)');
  t.equal(await serverRef('refs/tags/v1^{commit}'), head, 'the tag did not move');
  await git(dir, TOOL, TOKEN, 'tag', 'moving', 'HEAD~1');
  t.equal((await git(dir, RELEASER, RELEASER_TOKEN, 'push', 'origin', 'refs/tags/moving')).code, 0, 'a tag is created');
  await git(dir, TOOL, TOKEN, 'tag', '-f', 'moving');
  const named = await git(dir, RELEASER, RELEASER_TOKEN, 'push', '-f', 'origin', 'refs/tags/moving');
  t.equal(named.code, 0, `a tag a glob names may move (${named.stderr.trim()})`);
});

t.test('a mixed push (one allowed ref, one refused) changes nothing', async (t) => {
  const { dir } = await cloneWithCommit(t, 'mixed');
  const main = await serverRef('refs/heads/main');
  const posts = receivePackPosts();
  const r = await git(dir, TOOL, TOKEN, 'push', 'origin', 'HEAD:refs/heads/agent/mixed', 'HEAD:refs/heads/main');
  t.not(r.code, 0, 'the push fails');
  t.match(r.stderr, '! [remote rejected] HEAD -> main (sluice: push to refs/heads/main not allowed)');
  t.match(r.stderr, '! [remote rejected] HEAD -> agent/mixed (sluice: push refused whole: refs/heads/main was refused)');
  t.equal(await serverRef('refs/heads/agent/mixed'), null, 'the allowed ref was not created either');
  t.equal(await serverRef('refs/heads/main'), main, 'main did not move');
  t.equal(receivePackPosts(), posts, 'nothing reached the server');
});

t.test('fetch: false refuses clone and fetch, and still allows a push', async (t) => {
  const mark = await auditMark(sluice);
  const parent = mkdtempSync(path.join(tmpdir(), 'sluice-git-reader-'));
  const r = await git(parent, READER, READER_TOKEN, 'clone', '-q', remote, path.join(parent, 'c'));
  t.not(r.code, 0, 'the clone fails');
  t.match(r.stderr, 'remote error: sluice: fetch not allowed (rule reader.allow[0])', 'git prints sluice’s ERR line');
  const records = await canonicalSince(sluice, mark, 1);
  t.ok(
    records.some((rec) => rec.reason === 'git_fetch_not_allowed' && rec.type === 'policy.violation'),
    'the refusal is audited as git_fetch_not_allowed',
  );
  const { dir, head } = await cloneWithCommit(t, 'reader');
  const pushed = await git(dir, READER, READER_TOKEN, 'push', 'origin', 'HEAD:refs/heads/agent/reader');
  t.equal(pushed.code, 0, `the reader may still push its branch (${pushed.stderr.trim()})`);
  t.equal(await serverRef('refs/heads/agent/reader'), head);
});

t.test('a push body sluice cannot read is refused, never passed', async (t) => {
  const posts = receivePackPosts();
  const zero = '0'.repeat(40);
  const line = `${zero} ${'1'.repeat(40)} refs/heads/agent/x\0report-status\n`;
  const list = `${(line.length + 4).toString(16).padStart(4, '0')}${line}0000`;
  const body = path.join(mkdtempSync(path.join(tmpdir(), 'sluice-git-body-')), 'body');
  const cases: Array<[string, string, string[]]> = [
    ['a compressed body', list, ['-H', 'Content-Encoding: gzip']],
    ['a bad pkt-line length', `zzzz${list}`, []],
    ['a body cut inside the command list', list.slice(0, 20), []],
  ];
  for (const [what, bytes, extra] of cases) {
    writeFileSync(body, bytes);
    const r = await curl([
      '-x',
      sluice.proxyUrl(),
      '--cacert',
      sluiceCaFile,
      '-H',
      'Content-Type: application/x-git-receive-pack-request',
      ...extra,
      '--data-binary',
      `@${body}`,
      `${remote}/git-receive-pack`,
    ]);
    t.equal(r.status, 400, `${what}: 400`);
    t.equal(r.headers['x-sluice-deny'], 'uninspectable_body', `${what}: uninspectable_body`);
  }
  t.equal(receivePackPosts(), posts, 'none of them reached the server');
});

t.test('a large push: decided on its command list, the pack streamed after it', async (t) => {
  const { dir } = await cloneWithCommit(t, 'large');
  // Incompressible and over git's 1 MiB http.postBuffer: git probes with a lone flush, then sends chunked.
  writeFileSync(path.join(dir, 'blob.bin'), randomBytes(3 << 20));
  await git(dir, TOOL, TOKEN, 'add', '.');
  await git(dir, TOOL, TOKEN, 'commit', '-qm', 'large');
  const head = (await git(dir, TOOL, TOKEN, 'rev-parse', 'HEAD')).stdout.trim();
  const main = await serverRef('refs/heads/main');
  const refused = await git(dir, TOOL, TOKEN, 'push', 'origin', 'HEAD:main');
  t.not(refused.code, 0, 'a large push to main is refused');
  t.match(refused.stderr, '! [remote rejected] HEAD -> main (sluice: push to refs/heads/main not allowed)', 'git still reads the report');
  t.equal(await serverRef('refs/heads/main'), main, 'main did not move');
  const pushed = await git(dir, TOOL, TOKEN, 'push', 'origin', 'HEAD:refs/heads/agent/large');
  t.equal(pushed.code, 0, `a large push to an owned branch lands (${pushed.stderr.trim()})`);
  t.equal(await serverRef('refs/heads/agent/large'), head, 'with the whole pack');
});

t.test('an Upgrade to a path the git rule reads is refused', async (t) => {
  const r = await curl([
    '-x',
    sluice.proxyUrl(),
    '--cacert',
    sluiceCaFile,
    '-H',
    'Connection: Upgrade',
    '-H',
    'Upgrade: websocket',
    '-H',
    'Sec-WebSocket-Version: 13',
    '-H',
    'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==',
    `${remote}/git-receive-pack`,
  ]);
  t.equal(r.status, 400);
  t.equal(r.headers['x-sluice-deny'], 'uninspectable_body');
});

t.test('the token reached the server only with requests sluice let through', async (t) => {
  const posts = server.requests.filter((r) => r.method === 'POST' && r.path.endsWith('/git-receive-pack'));
  t.ok(posts.length > 0, 'pushes reached the server');
  t.ok(
    posts.every((p) => p.authExpected),
    'every receive-pack POST the server saw carried the injected token (the refused ones never arrived: see above)',
  );
});

t.test('the same push rules over every transport git uses: intercepted CONNECT and plain http:// (absolute-form)', async (t) => {
  const transports = [
    { name: 'intercepted CONNECT', tool: TOOL, token: TOKEN, url: remote, posts: () => receivePackPosts() },
    {
      name: 'absolute-form',
      tool: PLAIN,
      token: PLAIN_TOKEN,
      url: `http://upstream.test:${plainServer.port}/repo.git`,
      posts: () => plainServer.requests.filter((r) => r.method === 'POST' && r.path.endsWith('/git-receive-pack')).length,
    },
  ];
  for (const [i, via] of transports.entries()) {
    const dir = path.join(mkdtempSync(path.join(tmpdir(), 'sluice-git-clone-')), `every${i}`);
    const cloned = await git(path.dirname(dir), via.tool, via.token, 'clone', '-q', via.url, dir);
    t.equal(cloned.code, 0, `${via.name}: clone (${cloned.stderr.trim()})`);
    writeFileSync(path.join(dir, 'every.txt'), `${via.name}\n`);
    await git(dir, via.tool, via.token, 'add', '.');
    await git(dir, via.tool, via.token, 'commit', '-qm', via.name);
    const head = (await git(dir, via.tool, via.token, 'rev-parse', 'HEAD')).stdout.trim();
    const before = await serverRef('refs/heads/main');
    const posts = via.posts();
    const toMain = await git(dir, via.tool, via.token, 'push', 'origin', 'HEAD:main');
    t.not(toMain.code, 0, `${via.name}: a push to main fails`);
    t.match(toMain.stderr, '(sluice: push to refs/heads/main not allowed)', `${via.name}: git prints sluice's reason`);
    t.equal(await serverRef('refs/heads/main'), before, `${via.name}: main did not move`);
    t.equal(via.posts(), posts, `${via.name}: no receive-pack POST reached the server`);
    const tag = await git(dir, via.tool, via.token, 'push', 'origin', `HEAD:refs/tags/every${i}`);
    t.match(tag.stderr, `(sluice: pushing tag refs/tags/every${i} not allowed)`, `${via.name}: tags: false`);
    const owned = await git(dir, via.tool, via.token, 'push', 'origin', `HEAD:refs/heads/agent/every${i}`);
    t.equal(owned.code, 0, `${via.name}: a push to an owned branch lands (${owned.stderr.trim()})`);
    t.equal(await serverRef(`refs/heads/agent/every${i}`), head);
  }
});
