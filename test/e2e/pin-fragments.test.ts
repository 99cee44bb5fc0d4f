// A pinned policy with fragments: the pin covers every file, so a fragment edit is drift too;
// without a pin, a fragment edit reloads even though the base file did not change.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { loadPolicy } from '../../src/config/load.js';
import { curl } from '../helpers/clients.js';
import { startTestSluice, sha256, TOKEN, TOOL } from '../helpers/sluice.js';
import { startUpstream } from '../helpers/upstream.js';

const BASE = (port: number): string => `
version: 1
include: ["policy.d/*.yaml"]
network:
  allow_private_cidrs: ["127.0.0.2/32"]
  allow_ports: [${port}]
tools:
  ${TOOL}:
    token_sha256: "\${TOKEN_SHA}"
    allow:
      - host: 127.0.0.2
        paths: ["/anything/base/**"]
`;
const fragment = (paths: string): string =>
  `tools:\n  extra:\n    token_sha256: "${sha256(TOKEN)}"\n    allow:\n      - host: 127.0.0.2\n        paths: ["${paths}"]\n`;

t.test('without a pin, a fragment edit is picked up on reload', async (t) => {
  const upstream = await startUpstream({ host: '127.0.0.2' });
  const sluice = await startTestSluice({ policy: BASE(upstream.port) });
  t.teardown(async () => {
    await sluice.close();
    await upstream.close();
  });
  const port = upstream.port;
  const fragmentFile = path.join(path.dirname(sluice.policyFile), 'policy.d', 'extra.yaml');
  mkdirSync(path.dirname(fragmentFile), { recursive: true });
  writeFileSync(fragmentFile, fragment('/anything/one/**'));
  t.ok(await sluice.running.reload());
  const one = await curl(['-x', sluice.proxyUrl('extra'), `http://127.0.0.2:${port}/anything/one/x`]);
  t.equal(one.status, 200);
  writeFileSync(fragmentFile, fragment('/anything/two/**'));
  t.ok(await sluice.running.reload());
  const two = await curl(['-x', sluice.proxyUrl('extra'), `http://127.0.0.2:${port}/anything/one/x`]);
  t.equal(two.headers['x-sluice-deny'], 'path_not_allowed', 'the edited fragment is in force');
});

t.test('with a pin over all files, a fragment edit halts; a base-only pin does not start', async (t) => {
  const upstream = await startUpstream({ host: '127.0.0.2' });
  t.teardown(() => upstream.close());
  const dir = path.join((await import('node:os')).tmpdir(), `sluice-pin-${process.pid}-${Date.now()}`);
  mkdirSync(path.join(dir, 'policy.d'), { recursive: true });
  const policyFile = path.join(dir, 'policy.yaml');
  writeFileSync(policyFile, BASE(upstream.port).replaceAll('${TOKEN_SHA}', sha256(TOKEN)));
  writeFileSync(path.join(dir, 'policy.d', 'extra.yaml'), fragment('/anything/one/**'));
  const pin = loadPolicy(policyFile).digest;
  const baseOnly = sha256(readFileSync(policyFile, 'utf8'));
  t.not(pin, baseOnly, 'with fragments the pin is not the base file hash');

  const { startSluice, StartupError } = await import('../../src/app/serve.js');
  const { createLogger } = await import('../../src/observe/log.js');
  const options = (policySha256: string, onHalt?: (d: string) => void) => ({
    policyFile,
    listen: { host: '127.0.0.1', port: 0 },
    admin: null,
    caDir: path.join(dir, 'certs'),
    audit: null,
    auditFsync: 'never' as const,
    auditMaxBytes: 0,
    policySha256,
    watchPolicy: false,
    haltDrainMs: 100,
    logger: createLogger({ level: 'silent' }),
    env: process.env,
    ...(onHalt ? { onHalt } : {}),
  });
  const refused = await startSluice(options(baseOnly)).then(
    (s) => s.close().then(() => null),
    (e: unknown) => e,
  );
  t.ok(refused instanceof StartupError, 'pinning only the base file is refused when fragments exist');

  let halted: string | null = null;
  const running = await startSluice(options(pin, (d) => (halted = d)));
  t.teardown(() => running.close());
  writeFileSync(path.join(dir, 'policy.d', 'extra.yaml'), fragment('/anything/**'));
  t.notOk(await running.reload());
  t.match(halted, /changed at run time/);
  t.match(running.halted(), /sluice halted/);
});
