// The deployment files, checked without Docker or Kubernetes:
//   - docker-compose.yml passes `docker-compose config` (a missing docker-compose fails: .ci/run
//     installs it) and has the sidecar shape (tool only on the internal network, CA variables),
//     cap_drop ALL and no-new-privileges on every service, depends_on by condition;
//   - deploy/compose/publish-ca.mjs run bare in a checkout, as README.md shows it;
//   - the same topology as processes on loopback: the ca-publish step (deploy/compose/publish-ca.mjs),
//     `node dist/cli.js serve` configured by the container's environment, a tool process (curl) with
//     the compose file's own tool environment, loopback upstreams standing in for the policy's hosts,
//     /metrics scraped as Prometheus would, the image's HEALTHCHECK command, SIGTERM drain;
//   - the Dockerfile's settings match what `sluice serve` reads;
//   - deploy/k8s/*.yaml parse, and the pod keeps the properties README.md relies on.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createServer, type AddressInfo } from 'node:net';
import { rootCertificates } from 'node:tls';
import t from 'tap';
import { parse, parseAllDocuments, stringify } from 'yaml';
import { cleanEnv } from '../helpers/clients.js';
import { startDns, type DnsServer } from '../helpers/dns.js';
import { issueLeaf, testCaFile } from '../helpers/pki.js';
import { startUpstream, type EchoReply, type Upstream } from '../helpers/upstream.js';

const ROOT = path.resolve(import.meta.dirname, '../..');
const CLI = path.join(ROOT, 'dist/cli.js');
const read = (file: string) => readFileSync(path.join(ROOT, file), 'utf8');
const TOKEN = 'topology-test-token';

interface ComposeService {
  networks?: string[] | Record<string, unknown>;
  environment?: Record<string, string | null>;
  /** docker-compose 1.x prints the short form: "source:target[:ro|:rw]" */
  volumes?: string[];
  user?: string;
  read_only?: boolean;
  depends_on?: unknown;
  cap_drop?: string[];
  security_opt?: string[];
  healthcheck?: unknown;
}
interface ComposeFile {
  services: Record<string, ComposeService>;
  networks: Record<string, { internal?: boolean } | null>;
}

const networksOf = (service: ComposeService): string[] =>
  Array.isArray(service.networks) ? service.networks : Object.keys(service.networks ?? {});

function dockerCompose(args: string[], env: Record<string, string>) {
  const result = spawnSync('docker-compose', ['-f', 'docker-compose.yml', ...args], { cwd: ROOT, env: cleanEnv(env), encoding: 'utf8' });
  if (result.error) throw new Error(`docker-compose is required (Debian package docker-compose; .ci/run installs it): ${result.error.message}`);
  return result;
}

t.test('docker-compose config accepts docker-compose.yml', async (t) => {
  const quiet = dockerCompose(['config', '-q'], { SLUICE_TOKEN_WEB_FETCH: TOKEN });
  t.equal(quiet.status, 0, quiet.stderr);

  const missing = dockerCompose(['config', '-q'], {});
  t.not(missing.status, 0, 'the token is mandatory');
  t.match(missing.stderr, /SLUICE_TOKEN_WEB_FETCH/);

  const resolved = dockerCompose(['config'], { SLUICE_TOKEN_WEB_FETCH: TOKEN });
  t.equal(resolved.status, 0, resolved.stderr);
  const compose = parse(resolved.stdout) as ComposeFile;
  t.same(compose.networks.sandbox, { internal: true }, 'the sandbox network has no route out');
  t.notOk(compose.networks.egress?.internal);
  t.same(networksOf(compose.services.sluice!).sort(), ['egress', 'sandbox']);
  t.same(networksOf(compose.services.tool!), ['sandbox'], 'the tool reaches only sluice');
  t.same(networksOf(compose.services.prometheus!), ['egress']);
  t.equal(compose.services.sluice!.user, '10001:10001');
  t.equal(compose.services.sluice!.read_only, true);

  // Hardening on every service, and start order by condition, never by mere start.
  t.same(Object.keys(compose.services).sort(), ['ca-publish', 'prometheus', 'sluice', 'tool']);
  for (const [name, service] of Object.entries(compose.services)) {
    t.same(service.cap_drop, ['ALL'], `${name}: cap_drop ALL`);
    t.same(service.security_opt, ['no-new-privileges:true'], `${name}: no-new-privileges`);
    t.notOk(Array.isArray(service.depends_on), `${name}: depends_on names a condition`);
  }
  t.same(compose.services.sluice!.depends_on, { 'ca-publish': { condition: 'service_completed_successfully' } });
  for (const name of ['tool', 'prometheus']) {
    t.same(compose.services[name]!.depends_on, { sluice: { condition: 'service_healthy' } }, `${name} waits for a healthy sluice`);
  }
  // service_healthy needs a health check: the image's HEALTHCHECK, not replaced or disabled here.
  t.equal(compose.services.sluice!.healthcheck, undefined);
  t.match(read('Dockerfile'), /^HEALTHCHECK .*\\\n\s+CMD \["node", "-e", .*\/healthz/m);

  const env = compose.services.tool!.environment!;
  const proxy = `http://web-fetch:${TOKEN}@sluice:3128`;
  for (const name of ['HTTPS_PROXY', 'HTTP_PROXY', 'https_proxy', 'http_proxy']) t.equal(env[name], proxy, name);
  t.equal(env.NO_PROXY, 'localhost,127.0.0.1', 'no external name bypasses sluice');
  t.equal(env.NODE_EXTRA_CA_CERTS, '/etc/sluice-ca/ca.pem');
  for (const name of ['SSL_CERT_FILE', 'REQUESTS_CA_BUNDLE', 'CURL_CA_BUNDLE', 'GIT_SSL_CAINFO'])
    t.equal(env[name], '/etc/sluice-ca/ca-bundle.pem', name);
  t.same(
    compose.services.tool!.volumes,
    ['sluice-ca-public:/etc/sluice-ca:ro'],
    'the tool mounts the published CA read-only, never the key volume',
  );
  t.ok(compose.services.prometheus!.volumes!.includes(`${path.join(ROOT, 'deploy/prometheus/alerts.yml')}:/etc/prometheus/alerts.yml:ro`));
  const prometheus = parse(read('deploy/compose/prometheus.yml')) as {
    rule_files: string[];
    scrape_configs: Array<{ metrics_path: string; static_configs: Array<{ targets: string[] }> }>;
  };
  t.same(prometheus.rule_files, ['/etc/prometheus/alerts.yml']);
  t.same(prometheus.scrape_configs[0]?.static_configs[0]?.targets, ['sluice:9090']);
  t.equal(prometheus.scrape_configs[0]?.metrics_path, '/metrics');
});

t.test('the Dockerfile configures serve through the variables it reads', async (t) => {
  const dockerfile = read('Dockerfile');
  const serveSource = read('src/commands/serve.ts');
  const envBlock = /^ENV ((?:.*\\\n)*.*)$/m.exec(dockerfile.split('FROM ${NODE_IMAGE} AS runtime')[1] ?? '')?.[1] ?? '';
  const settings = Object.fromEntries([...envBlock.matchAll(/(SLUICE_[A-Z_]+)=(\S+)/g)].map((m) => [m[1]!, m[2]!]));
  t.same(Object.keys(settings).sort(), ['SLUICE_ADMIN', 'SLUICE_AUDIT', 'SLUICE_CA_DIR', 'SLUICE_LISTEN', 'SLUICE_POLICY']);
  for (const name of Object.keys(settings)) t.ok(serveSource.includes(`env.${name}`), `serve reads ${name}`);
  t.equal(settings.SLUICE_LISTEN, '0.0.0.0:3128');
  t.equal(settings.SLUICE_ADMIN, '0.0.0.0:9090');
  t.match(dockerfile, /^USER 10001:10001$/m);
  t.match(dockerfile, /^STOPSIGNAL SIGTERM$/m);
  t.match(dockerfile, /^ENTRYPOINT \["node", "\/app\/dist\/cli\.js"\]$/m);
  t.match(dockerfile, /^CMD \["serve"\]$/m);
  // Every build-context COPY source is let through by .dockerignore (which ignores everything else).
  const allowed = read('.dockerignore')
    .split('\n')
    .filter((line) => line.startsWith('!'))
    .map((line) => line.slice(1).replace(/\/$/, ''));
  const copied = [...dockerfile.matchAll(/^COPY (?!--from)(.+) \S+$/gm)]
    .flatMap((m) => m[1]!.split(/\s+/))
    .map((s) => s.replace(/^\.\/|\/$/g, ''));
  t.ok(copied.length >= 4);
  for (const source of copied) t.ok(allowed.includes(source), `.dockerignore lets ${source} into the build context`);
});

/** The HEALTHCHECK's node -e program, taken from the Dockerfile. */
function healthcheckArgs(): string[] {
  const match = /^HEALTHCHECK .*\\\n\s+CMD (\[.*\])$/m.exec(read('Dockerfile'));
  if (!match) throw new Error('no HEALTHCHECK CMD in exec form');
  const command = JSON.parse(match[1]!) as string[];
  if (command[0] !== 'node') throw new Error(`the healthcheck must run node, not ${command[0]}`);
  return command.slice(1);
}

interface Serving {
  child: ChildProcess;
  listenPort: number;
  adminPort: number;
  exited: Promise<number | null>;
}

/** A port free right now on 127.0.0.1 (serve's --listen takes no port 0). */
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen({ host: '127.0.0.1', port: 0 }, resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** `node dist/cli.js serve` with the given environment; resolves once it logs "sluice serving". */
async function serve(env: Record<string, string>): Promise<Serving> {
  const child = spawn(process.execPath, [CLI, 'serve'], { env: cleanEnv(env), cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  let log = '';
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`sluice did not start: ${log}`)), 15_000);
    child.stdout.resume();
    child.stderr.on('data', (chunk: Buffer) => {
      log += chunk.toString('utf8');
      for (const line of log.split('\n')) {
        if (!line.includes('"sluice serving"')) continue;
        const { listen, admin } = JSON.parse(line) as { listen: string; admin: string };
        clearTimeout(timer);
        resolve({ child, exited, listenPort: Number(listen.split(':').at(-1)), adminPort: Number(admin.split(':').at(-1)) });
        return;
      }
    });
    void exited.then((code) => reject(new Error(`sluice exited (${code}) before serving: ${log}`)));
  });
}

function runTool(command: string, args: string[], env: Record<string, string>) {
  return new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
    const child = spawn(command, args, { env: cleanEnv(env), stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString('utf8')));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
    child.once('error', (error) => resolve({ code: null, stdout, stderr: `${error.message}\n${stderr}` }));
    child.once('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** Sample values of a metric from Prometheus text exposition, keyed by the label block. */
function samples(exposition: string, metric: string): Map<string, number> {
  const found = new Map<string, number>();
  for (const line of exposition.split('\n')) {
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)/.exec(line);
    if (match && match[1] === metric) found.set(match[2] ?? '', Number(match[3]));
  }
  return found;
}

t.test('publish-ca.mjs needs no environment when run from a checkout, as README.md shows it', async (t) => {
  t.match(read('README.md'), /^\s*`node deploy\/compose\/publish-ca\.mjs` writes both files/m, 'the README runs it bare');
  const cwd = mkdtempSync(path.join(tmpdir(), 'sluice-publish-'));
  const env = cleanEnv();
  for (const name of ['SLUICE_CA_DIR', 'SLUICE_CA_PUBLIC_DIR', 'SLUICE_CLI']) delete env[name];
  const run = () =>
    new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
      const child = spawn(process.execPath, [path.join(ROOT, 'deploy/compose/publish-ca.mjs')], { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString('utf8')));
      child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
      child.once('close', (code) => resolve({ code, stdout, stderr }));
    });
  const first = await run();
  t.equal(first.code, 0, first.stderr);
  // The CA where `sluice serve` (and `npm start`) look by default; the public files beside the recipes.
  t.same(readdirSync(path.join(cwd, 'certs')).sort(), ['ca-key.pem', 'ca.pem']);
  t.same(readdirSync(cwd).sort(), ['ca-bundle.pem', 'ca.pem', 'certs'], 'no key outside certs/');
  const caPem = readFileSync(path.join(cwd, 'certs/ca.pem'), 'utf8');
  t.equal(readFileSync(path.join(cwd, 'ca.pem'), 'utf8'), caPem);
  const bundle = readFileSync(path.join(cwd, 'ca-bundle.pem'), 'utf8');
  t.equal(bundle.match(/-----BEGIN CERTIFICATE-----/g)?.length, rootCertificates.length + 1);
  t.ok(bundle.endsWith(caPem));
  // Run again: the CA is kept (tools keep trusting it), the files rewritten alike.
  const second = await run();
  t.equal(second.code, 0, second.stderr);
  t.equal(readFileSync(path.join(cwd, 'certs/ca.pem'), 'utf8'), caPem);
  t.equal(readFileSync(path.join(cwd, 'ca.pem'), 'utf8'), caPem);
});

t.test('the compose topology as processes on loopback', async (t) => {
  const work = mkdtempSync(path.join(tmpdir(), 'sluice-topology-'));
  const testCa = await testCaFile();

  // ca-publish: the one-shot service, run the way the compose file runs it.
  const caDir = path.join(work, 'certs');
  const publicDir = path.join(work, 'public');
  const publish = await runTool(process.execPath, [path.join(ROOT, 'deploy/compose/publish-ca.mjs')], {
    SLUICE_CA_DIR: caDir,
    SLUICE_CA_PUBLIC_DIR: publicDir,
    SLUICE_CLI: CLI,
  });
  t.equal(publish.code, 0, publish.stderr);
  t.same(readdirSync(publicDir).sort(), ['ca-bundle.pem', 'ca.pem'], 'the key is not published');
  const sluiceCaPem = readFileSync(path.join(caDir, 'ca.pem'), 'utf8');
  t.equal(readFileSync(path.join(publicDir, 'ca.pem'), 'utf8'), sluiceCaPem);
  const bundle = readFileSync(path.join(publicDir, 'ca-bundle.pem'), 'utf8');
  t.equal(bundle.match(/-----BEGIN CERTIFICATE-----/g)?.length, rootCertificates.length + 1, 'public roots plus the sluice CA');
  t.ok(bundle.endsWith(sluiceCaPem));

  // The policy's hosts, served on loopback: DNS answers 127.0.0.2 and the upstream's certificate
  // (from the test CA, standing in for a public CA) names them.
  const leaf = await issueLeaf(['en.wikipedia.org', 'api.github.com']);
  const upstream: Upstream = await startUpstream({ host: '127.0.0.2', tls: leaf });
  const dns: DnsServer = await startDns({
    'en.wikipedia.org': [{ type: 'A', address: '127.0.0.2' }],
    'api.github.com': [{ type: 'A', address: '127.0.0.2' }],
  });
  t.teardown(async () => {
    await upstream.close();
    await dns.close();
  });

  // deploy/compose/policy.yaml unchanged but for the network: the test's DNS, loopback allowed.
  const policy = parse(read('deploy/compose/policy.yaml')) as Record<string, unknown> & { network: Record<string, unknown> };
  policy.network = { ...policy.network, dns_servers: [dns.address], allow_private_cidrs: ['127.0.0.2/32'], allow_ports: [upstream.port] };
  policy.tls = { upstream_ca: testCa };
  const policyFile = path.join(work, 'policy.yaml');
  writeFileSync(policyFile, stringify(policy));
  const auditFile = path.join(work, 'audit', 'audit.log');

  // sluice, configured like the container; the ports it logs at startup are the ones the test uses.
  const compose = parse(read('docker-compose.yml')) as ComposeFile;
  const sluiceEnv = compose.services.sluice!.environment!;
  t.equal(sluiceEnv.SLUICE_LISTEN, '0.0.0.0:3128');
  const serving = await serve({
    SLUICE_POLICY: policyFile,
    SLUICE_LISTEN: `127.0.0.1:${await freePort()}`,
    SLUICE_ADMIN: `127.0.0.1:${await freePort()}`,
    SLUICE_CA_DIR: caDir,
    SLUICE_AUDIT: auditFile,
    SLUICE_TOKEN_WEB_FETCH: TOKEN,
  });
  t.teardown(() => void serving.child.kill('SIGKILL'));

  // The tool: curl with the compose file's tool environment, names mapped to loopback.
  const toolCaDir = path.join(work, 'tool-ca');
  cpSync(publicDir, toolCaDir, { recursive: true });
  writeFileSync(path.join(toolCaDir, 'ca-bundle.pem'), `${bundle}${readFileSync(testCa, 'utf8')}`);
  const toolEnv: Record<string, string> = {};
  for (const [name, value] of Object.entries(compose.services.tool!.environment!)) {
    toolEnv[name] = String(value)
      .replace('${SLUICE_TOKEN_WEB_FETCH}', TOKEN)
      .replace('@sluice:3128', `@127.0.0.1:${serving.listenPort}`)
      .replace('/etc/sluice-ca/', `${toolCaDir}/`);
  }
  const tool = (url: string) => runTool('curl', ['-q', '-sS', '-w', '\n%{http_code}', url], toolEnv);

  const tunnelled = await tool(`https://en.wikipedia.org:${upstream.port}/anything/wiki/Main_Page`);
  t.equal(tunnelled.code, 0, tunnelled.stderr);
  const [tunnelledBody, tunnelledStatus] = tunnelled.stdout.split('\n');
  t.equal(tunnelledStatus, '200');
  t.equal((JSON.parse(tunnelledBody!) as EchoReply).url, '/anything/wiki/Main_Page');

  const intercepted = await tool(`https://api.github.com:${upstream.port}/repos/acme/widgets`);
  t.equal(intercepted.code, 0, intercepted.stderr);
  t.equal(intercepted.stdout.split('\n').at(-1), '404', "the upstream's own answer (no such route), through interception");

  const denied = await tool(`https://api.github.com:${upstream.port}/gists`);
  t.equal(denied.code, 0, denied.stderr);
  t.equal(denied.stdout.split('\n').at(-1), '403');
  t.match(JSON.parse(denied.stdout.split('\n')[0]!), { error: 'denied', reason: 'path_not_allowed' });

  t.equal(upstream.requests.filter((r) => r.url === '/gists').length, 0, 'the denied request never reached the upstream');

  // Prometheus' scrape: the same Accept header, text exposition back.
  const admin = `http://127.0.0.1:${serving.adminPort}`;
  const scrape = await fetch(`${admin}/metrics`, {
    headers: { accept: 'application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1' },
  });
  t.equal(scrape.status, 200);
  t.match(scrape.headers.get('content-type'), /^(text\/plain; version=0\.0\.4|application\/openmetrics-text)/);
  const exposition = await scrape.text();
  const requests = samples(exposition, 'sluice_requests_total');
  const allowed = [...requests].filter(([labels]) => labels.includes('tool="web-fetch"') && labels.includes('decision="allow"'));
  const allowedCount = allowed.reduce((sum, [, value]) => sum + value, 0);
  // Intercepted CONNECTs count too (a tunnel event each), so compare with the audit below.
  t.ok(allowedCount >= 2);
  const pathDenials = [...requests].filter(([labels]) => labels.includes('decision="deny"') && labels.includes('reason="path_not_allowed"'));
  t.same(
    pathDenials.map(([, value]) => value),
    [1],
  );
  t.same([...samples(exposition, 'sluice_policy_info').values()], [1]);
  t.ok(samples(exposition, 'process_cpu_seconds_total').size > 0, "prom-client's default metrics");

  // The image's HEALTHCHECK, as Docker would run it inside the container (admin on 0.0.0.0).
  const healthArgs = healthcheckArgs();
  const healthy = await runTool(process.execPath, healthArgs, { SLUICE_ADMIN: `0.0.0.0:${serving.adminPort}` });
  t.equal(healthy.code, 0, `healthy: ${healthy.stderr}`);

  // docker stop: SIGTERM drains and flushes the audit, then exit 0.
  serving.child.kill('SIGTERM');
  t.equal(await serving.exited, 0);
  const audit = readFileSync(auditFile, 'utf8')
    .trim()
    .split('\n')
    .map((line) => JSON.parse(line) as { type: string; decision: string | null; host: string | null });
  t.ok(audit.some((e) => e.type === 'net.tunnel' && e.host === 'en.wikipedia.org' && e.decision === 'allow'));
  t.ok(audit.some((e) => e.type === 'net.req' && e.host === 'api.github.com' && e.decision === 'allow'));
  t.ok(audit.some((e) => e.type === 'policy.violation' && e.host === 'api.github.com' && e.decision === 'deny'));
  const auditedAllows = audit.filter((e) => (e.type === 'net.req' || e.type === 'net.tunnel') && e.decision === 'allow').length;
  t.equal(allowedCount, auditedAllows, 'one metric increment per audited decision');

  const unhealthy = await runTool(process.execPath, healthArgs, { SLUICE_ADMIN: `0.0.0.0:${serving.adminPort}` });
  t.equal(unhealthy.code, 1, 'the healthcheck fails once sluice is gone');
});

interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string };
  [field: string]: unknown;
}
interface Container {
  name: string;
  image: string;
  args?: string[];
  restartPolicy?: string;
  env?: Array<{ name: string; value?: string }>;
  securityContext?: {
    runAsUser?: number;
    runAsNonRoot?: boolean;
    readOnlyRootFilesystem?: boolean;
    capabilities?: { drop?: string[]; add?: string[] };
  };
  volumeMounts?: Array<{ name: string; mountPath: string; readOnly?: boolean }>;
}

function k8s(): Map<string, K8sObject> {
  const objects = new Map<string, K8sObject>();
  const dir = path.join(ROOT, 'deploy/k8s');
  for (const file of readdirSync(dir).filter((f) => f.endsWith('.yaml'))) {
    for (const doc of parseAllDocuments(readFileSync(path.join(dir, file), 'utf8'))) {
      if (doc.errors.length > 0) throw new Error(`${file}: ${doc.errors[0]!.message}`);
      const object = doc.toJS() as K8sObject;
      objects.set(object.kind, object);
    }
  }
  return objects;
}

t.test('deploy/k8s: every manifest parses and names its kind', async (t) => {
  const objects = k8s();
  t.same([...objects.keys()].sort(), ['ConfigMap', 'NetworkPolicy', 'Pod', 'Secret', 'Service', 'ServiceMonitor']);
  for (const object of objects.values()) {
    t.ok(object.apiVersion && object.metadata.name, `${object.kind} has apiVersion and name`);
  }
});

t.test('deploy/k8s: the policy in the ConfigMap is valid', async (t) => {
  const configMap = k8s().get('ConfigMap') as K8sObject & { data: Record<string, string> };
  const file = path.join(mkdtempSync(path.join(tmpdir(), 'sluice-k8s-')), 'policy.yaml');
  writeFileSync(file, configMap.data['policy.yaml']!);
  const check = spawnSync(process.execPath, [CLI, 'check', file], { encoding: 'utf8' });
  t.equal(check.status, 0, check.stderr);
  const policy = parse(configMap.data['policy.yaml']!) as { secrets: Record<string, { from: { file?: string } }> };
  const secretFile = policy.secrets.github?.from.file ?? '';
  const pod = k8s().get('Pod') as K8sObject & { spec: { initContainers: Container[] } };
  const sluice = pod.spec.initContainers.find((c) => c.name === 'sluice')!;
  t.ok(
    sluice.volumeMounts!.some((m) => secretFile.startsWith(`${m.mountPath}/`) && m.name === 'secrets'),
    'the secret file is mounted where the policy reads it',
  );
});

t.test('deploy/k8s: the pod confines the tool to sluice', async (t) => {
  const pod = k8s().get('Pod') as K8sObject & {
    spec: { initContainers: Container[]; containers: Container[]; volumes: Array<Record<string, unknown>> };
  };
  const [lockdown, sluice] = pod.spec.initContainers;
  t.equal(lockdown?.name, 'egress-lockdown', 'iptables runs before anything else starts');
  t.equal(sluice?.name, 'sluice');
  t.equal(sluice?.restartPolicy, 'Always', 'sluice is a native sidecar');
  t.match(sluice?.securityContext, { runAsUser: 10001, runAsNonRoot: true, readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'] } });

  const script = (lockdown?.args ?? []).join('\n');
  t.match(script, /-m owner --uid-owner 10001 -j ACCEPT/);
  t.match(script, /iptables -w -A OUTPUT -o lo -d 127\.0\.0\.1\/32 -p tcp --dport 3128 -j ACCEPT/);
  t.match(script, /iptables -w -A OUTPUT -j REJECT/);
  t.match(script, /ip6tables -w -A OUTPUT -j REJECT/);
  t.same(lockdown?.securityContext?.capabilities, { drop: ['ALL'], add: ['NET_ADMIN', 'NET_RAW'] });

  const tool = pod.spec.containers.find((c) => c.name === 'tool')!;
  t.not(tool.securityContext?.runAsUser, 10001, "the tool never runs as sluice's UID");
  t.same(tool.securityContext?.capabilities, { drop: ['ALL'] }, 'the tool cannot change the iptables rules');
  const env = Object.fromEntries(tool.env!.map((e) => [e.name, e.value]));
  t.equal(env.HTTPS_PROXY, 'http://web-fetch:$(SLUICE_TOKEN_WEB_FETCH)@127.0.0.1:3128');
  t.equal(env.NO_PROXY, 'localhost,127.0.0.1');
  t.same(
    tool.volumeMounts,
    [{ name: 'ca-public', mountPath: '/etc/sluice-ca', readOnly: true }],
    'the tool sees the CA certificate, not its key or the secrets',
  );
  const caVolume = pod.spec.volumes.find((v) => v.name === 'ca');
  t.match(caVolume, { secret: { secretName: 'sluice-ca' } }, 'the CA persists across restarts as a Secret');
});

t.test('deploy/k8s: the NetworkPolicy allows DNS and 80/443 only', async (t) => {
  const policy = k8s().get('NetworkPolicy') as K8sObject & {
    spec: { policyTypes: string[]; egress: Array<{ ports: Array<{ protocol: string; port: number }> }> };
  };
  t.same(policy.spec.policyTypes.sort(), ['Egress', 'Ingress']);
  const ports = policy.spec.egress.flatMap((rule) => rule.ports.map((p) => `${p.protocol}/${p.port}`)).sort();
  t.same(ports, ['TCP/443', 'TCP/53', 'TCP/80', 'UDP/53']);
});

t.test('deploy/k8s: the ServiceMonitor scrapes the Service port that targets the admin port', async (t) => {
  const objects = k8s();
  const service = objects.get('Service') as K8sObject & { spec: { ports: Array<{ name: string; port: number; targetPort: string }> } };
  const monitor = objects.get('ServiceMonitor') as K8sObject & { spec: { endpoints: Array<{ port: string; path: string }> } };
  t.same(
    service.spec.ports.map((p) => [p.name, p.port, p.targetPort]),
    [['metrics', 9090, 'admin']],
  );
  t.same(
    monitor.spec.endpoints.map((e) => [e.port, e.path]),
    [['metrics', '/metrics']],
  );
});

t.test('the compose example policy is valid', async (t) => {
  t.ok(existsSync(path.join(ROOT, 'deploy/compose/policy.yaml')));
  const check = spawnSync(process.execPath, [CLI, 'check', path.join(ROOT, 'deploy/compose/policy.yaml')], { encoding: 'utf8' });
  t.equal(check.status, 0, check.stderr);
});
