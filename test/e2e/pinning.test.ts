// Artifact pinning (threat #6): a rule with sha256 releases a body only when it hashes to the pin.
import { createHash } from 'node:crypto';
import path from 'node:path';
import t from 'tap';
import { curl } from '../helpers/clients.js';
import { startDns } from '../helpers/dns.js';
import { makeTestPki, testCaFile } from '../helpers/pki.js';
import { startTestSluice, waitForAudit, type TestSluice } from '../helpers/sluice.js';
import { patternBytes, startUpstream, type Upstream } from '../helpers/upstream.js';

let plain: Upstream;
let secure: Upstream;
let sluice: TestSluice;
let dns: Awaited<ReturnType<typeof startDns>>;
const good = createHash('sha256').update(patternBytes(1024)).digest('hex');
const wrong = createHash('sha256').update('something else').digest('hex');

t.before(async () => {
  plain = await startUpstream({ host: '127.0.0.2' });
  secure = await startUpstream({ host: '127.0.0.2', tls: (await makeTestPki()).server });
  dns = await startDns({ 'api.test': [{ type: 'A', address: '127.0.0.2' }], 'upstream.test': [{ type: 'A', address: '127.0.0.2' }] });
  sluice = await startTestSluice({
    policy: `
version: 1
network:
  allow_private_cidrs: ["127.0.0.2/32"]
  dns_servers: ["${dns.address}"]
  allow_ports: [${plain.port}, ${secure.port}]
tls:
  upstream_ca: ${await testCaFile()}
tools:
  web-fetch:
    token_sha256: "\${TOKEN_SHA}"
    allow:
      - host: api.test
        paths: ["/small"]
        sha256: "${good}"
      - host: upstream.test
        paths: ["/small"]
        sha256: "${wrong}"
`,
  });
});
t.teardown(async () => {
  await sluice.close();
  await plain.close();
  await secure.close();
  await dns.close();
});

t.test('plain HTTP: a matching body is released, a mismatching one is 502 digest_mismatch', async (t) => {
  const ok = await curl(['-x', sluice.proxyUrl(), `http://api.test:${plain.port}/small`]);
  t.equal(ok.status, 200);
  t.equal(ok.body, patternBytes(1024).toString());
  const bad = await curl(['-x', sluice.proxyUrl(), `http://upstream.test:${plain.port}/small`]);
  t.equal(bad.status, 502);
  t.equal(bad.headers['x-sluice-deny'], 'digest_mismatch');
  t.notOk(bad.body.includes('abcdefghij'), 'no byte of the unverified body reaches the tool');
  const rec = await waitForAudit(sluice, (e) => e.reason === 'digest_mismatch');
  t.equal(rec.type, 'policy.violation');
  t.equal(rec.rule, 'web-fetch.allow[1]');
});

t.test('intercepted HTTPS: the same pin holds inside TLS', async (t) => {
  const ca = path.join(sluice.caDir, 'ca.pem');
  const ok = await curl(['-x', sluice.proxyUrl(), '--cacert', ca, `https://api.test:${secure.port}/small`]);
  t.equal(ok.status, 200, ok.stderr);
  const bad = await curl(['-x', sluice.proxyUrl(), '--cacert', ca, `https://upstream.test:${secure.port}/small`]);
  t.equal(bad.status, 502);
  t.equal(bad.headers['x-sluice-deny'], 'digest_mismatch');
});
