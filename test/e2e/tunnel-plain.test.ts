// undici tunnels http:// URLs through CONNECT by default: for a host whose rules need to see
// inside, sluice serves the plain HTTP in the tunnel and decides each request on its own.
import t from 'tap';
import { EnvHttpProxyAgent, fetch } from 'undici';
import { startTestSluice, TOKEN, TOOL, waitForAudit } from '../helpers/sluice.js';
import { startUpstream, type EchoReply } from '../helpers/upstream.js';

t.test('plain HTTP in a tunnel to an intercepted host', async (t) => {
  const upstream = await startUpstream({ host: '127.0.0.2' });
  const sluice = await startTestSluice({
    policy: `
version: 1
network:
  allow_private_cidrs: ["127.0.0.2/32"]
  allow_ports: [${upstream.port}]
tools:
  ${TOOL}:
    token_sha256: "\${TOKEN_SHA}"
    allow:
      - host: 127.0.0.2
        paths: ["/anything/ok/**"]
`,
  });
  t.teardown(async () => {
    await sluice.close();
    await upstream.close();
  });
  const proxy = `http://${TOOL}:${TOKEN}@127.0.0.1:${sluice.port}`;
  const dispatcher = new EnvHttpProxyAgent({ httpProxy: proxy, httpsProxy: proxy, noProxy: '' });
  t.teardown(() => dispatcher.close());
  const ok = await fetch(`http://127.0.0.2:${upstream.port}/anything/ok/1`, { dispatcher });
  t.equal(ok.status, 200);
  t.equal(((await ok.json()) as EchoReply).url, '/anything/ok/1');
  const denied = await fetch(`http://127.0.0.2:${upstream.port}/anything/no`, { dispatcher });
  t.equal(denied.status, 403);
  t.equal(denied.headers.get('x-sluice-deny'), 'path_not_allowed');
  await denied.arrayBuffer();
  const rec = await waitForAudit(sluice, (e) => e.type === 'net.req' && e.path === '/anything/ok/1');
  t.equal(rec.scheme, 'http');
  t.equal(rec.decision, 'allow');
});
