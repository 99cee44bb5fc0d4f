// sluice never connects to itself, even when a policy's exceptions would allow its address.
import { readFileSync, writeFileSync } from 'node:fs';
import t from 'tap';
import { curl } from '../helpers/clients.js';
import { startTestSluice, TOOL, waitForAudit } from '../helpers/sluice.js';

t.test("a request to sluice's own listen or admin address is refused", async (t) => {
  const sluice = await startTestSluice({
    policy: `
version: 1
network:
  allow_private_cidrs: ["127.0.0.1/32"]
tools:
  ${TOOL}:
    token_sha256: "\${TOKEN_SHA}"
    allow:
      - host: 127.0.0.1
        ports: [80]
`,
  });
  t.teardown(() => sluice.close());
  // The ports are only known once sluice listens: allow both, then reload.
  writeFileSync(
    sluice.policyFile,
    readFileSync(sluice.policyFile, 'utf8').replace('ports: [80]', `ports: [${sluice.port}, ${sluice.adminPort}]`),
  );
  t.ok(await sluice.running.reload(), "a policy allowing sluice's own ports loaded");
  for (const port of [sluice.port, sluice.adminPort]) {
    const r = await curl(['-x', sluice.proxyUrl(), `http://127.0.0.1:${port}/metrics`]);
    t.equal(r.status, 403);
    t.equal(r.headers['x-sluice-deny'], 'private_ip');
    t.match(JSON.parse(r.body).detail, /sluice itself/);
  }
  await waitForAudit(sluice, (e) => e.reason === 'private_ip' && e.port === sluice.port);
});
