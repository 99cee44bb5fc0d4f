// Every Kubernetes manifest under deploy/k8s/ (both layouts), checked without a cluster:
//   - validated against the Kubernetes OpenAPI schemas (kubernetes-models, and the Prometheus
//     Operator's CRD schemas for ServiceMonitor; alerts.yml as a PrometheusRule too), and a
//     broken copy is refused, so the validator is known to bite;
//   - the Pod Security Standards rules that matter, as a table: the gateway layout's pods meet
//     `restricted` (and each rule, broken on purpose, is caught), while the sidecar layout's pod
//     fails `baseline` and `restricted` for its iptables init container, as README.md says;
//   - the gateway layout's shape: HPA targets the Deployment, PDB and Service select its pods,
//     sandboxes may reach only the gateway's proxy port and have no DNS; its policy passes
//     `sluice check` (dist/ must be built); the memory requests match README's measured figure.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t from 'tap';
import { parse, parseAllDocuments } from 'yaml';
import { Deployment } from 'kubernetes-models/apps/v1/Deployment';
import { HorizontalPodAutoscaler } from 'kubernetes-models/autoscaling/v2/HorizontalPodAutoscaler';
import { NetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1/NetworkPolicy';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1/PodDisruptionBudget';
import { ConfigMap } from 'kubernetes-models/v1/ConfigMap';
import { Namespace } from 'kubernetes-models/v1/Namespace';
import { Pod } from 'kubernetes-models/v1/Pod';
import type { IPodSpec } from 'kubernetes-models/v1/PodSpec';
import { Secret } from 'kubernetes-models/v1/Secret';
import { Service } from 'kubernetes-models/v1/Service';
import { PrometheusRule } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PrometheusRule';
import { ServiceMonitor } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor';

const ROOT = path.resolve(import.meta.dirname, '../..');
const K8S = path.join(ROOT, 'deploy/k8s');

interface Manifest {
  file: string;
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string> };
  spec?: Record<string, unknown>;
  [field: string]: unknown;
}

/** One schema-validating model per apiVersion/kind the manifests use; any other kind fails the test. */
const MODELS: Record<string, new (data: never) => { validate(): void }> = {
  'v1/ConfigMap': ConfigMap,
  'v1/Namespace': Namespace,
  'v1/Pod': Pod,
  'v1/Secret': Secret,
  'v1/Service': Service,
  'apps/v1/Deployment': Deployment,
  'autoscaling/v2/HorizontalPodAutoscaler': HorizontalPodAutoscaler,
  'networking.k8s.io/v1/NetworkPolicy': NetworkPolicy,
  'policy/v1/PodDisruptionBudget': PodDisruptionBudget,
  'monitoring.coreos.com/v1/ServiceMonitor': ServiceMonitor,
};

function yamlFiles(dir: string): string[] {
  return readdirSync(dir)
    .flatMap((name) => {
      const full = path.join(dir, name);
      if (statSync(full).isDirectory()) return yamlFiles(full);
      return /\.ya?ml$/.test(name) ? [full] : [];
    })
    .sort();
}

function load(): Manifest[] {
  return yamlFiles(K8S).flatMap((full) =>
    parseAllDocuments(readFileSync(full, 'utf8')).map((doc) => {
      const file = path.relative(ROOT, full);
      if (doc.errors.length > 0) throw new Error(`${file}: ${doc.errors[0]!.message}`);
      return { ...(doc.toJS() as Omit<Manifest, 'file'>), file } as Manifest;
    }),
  );
}

/** Throws the schema errors of one manifest (the model's own message names the failing path). */
function validate(manifest: Manifest): void {
  const { file, ...object } = manifest;
  const Model = MODELS[`${object.apiVersion}/${object.kind}`];
  if (!Model) throw new Error(`${file}: no schema for ${object.apiVersion} ${object.kind}`);
  new Model(object as never).validate();
}

const manifests = load();
const layout = (dir: 'sidecar' | 'gateway') =>
  manifests.filter((m) => (dir === 'gateway' ? m.file.startsWith('deploy/k8s/gateway/') : !m.file.startsWith('deploy/k8s/gateway/')));
const find = (kind: string, name: string, where: 'sidecar' | 'gateway' = 'gateway') => {
  const found = layout(where).find((m) => m.kind === kind && m.metadata.name === name);
  if (!found) throw new Error(`no ${kind} ${name} in the ${where} layout`);
  return found;
};

t.test('every manifest validates against the Kubernetes schemas', async (t) => {
  t.ok(manifests.length >= 15, `${manifests.length} objects`);
  for (const manifest of manifests) {
    t.doesNotThrow(() => validate(manifest), `${manifest.file}: ${manifest.kind} ${manifest.metadata.name}`);
    t.ok(manifest.metadata.name, `${manifest.file}: ${manifest.kind} is named`);
  }
  t.same([...new Set(layout('gateway').map((m) => m.kind))].sort(), [
    'ConfigMap',
    'Deployment',
    'HorizontalPodAutoscaler',
    'Namespace',
    'NetworkPolicy',
    'Pod',
    'PodDisruptionBudget',
    'Secret',
    'Service',
    'ServiceMonitor',
  ]);
  for (const manifest of layout('gateway').filter((m) => m.kind !== 'Namespace')) {
    t.ok(manifest.metadata.namespace, `${manifest.file}: ${manifest.kind} ${manifest.metadata.name} names its namespace`);
  }
});

t.test('the validator refuses broken manifests', async (t) => {
  const deployment = structuredClone(find('Deployment', 'sluice-gateway'));
  (deployment.spec as { strategy: unknown }).strategy = { type: 'RollingUpdate', rollingUpdate: { maxSurge: [1] } };
  t.throws(() => validate(deployment), /maxSurge/, 'a wrong type deep inside a Deployment');
  const service = structuredClone(find('Service', 'sluice-gateway'));
  delete (service.spec as { ports: Array<{ port?: number }> }).ports[0]!.port;
  t.throws(() => validate(service), /port/, 'a Service port without its number');
  const monitor = structuredClone(find('ServiceMonitor', 'sluice-gateway'));
  (monitor.spec as { endpoints: unknown }).endpoints = 'metrics';
  t.throws(() => validate(monitor), /endpoints/, 'the CRD schema of ServiceMonitor');
  t.throws(() => validate({ ...find('Pod', 'sandboxed-tool'), kind: 'Pdo' }), /no schema/, 'an unknown kind');
});

t.test('deploy/prometheus/alerts.yml is a valid PrometheusRule spec', async (t) => {
  const spec = parse(readFileSync(path.join(ROOT, 'deploy/prometheus/alerts.yml'), 'utf8')) as Record<string, unknown>;
  t.doesNotThrow(() => new PrometheusRule({ metadata: { name: 'sluice' }, spec: spec }).validate());
});

// --- Pod Security Standards ---------------------------------------------------------------------
// The rules of https://kubernetes.io/docs/concepts/security/pod-security-standards/ that a pod
// spec can break, each a function returning what breaks it (empty: fine).

type Level = 'baseline' | 'restricted';
type Container = NonNullable<IPodSpec['containers']>[number];

const containersOf = (spec: IPodSpec): Container[] => [
  ...(spec.initContainers ?? []),
  ...spec.containers,
  ...((spec.ephemeralContainers ?? []) as Container[]),
];
const BASELINE_CAPABILITIES = new Set([
  'AUDIT_WRITE',
  'CHOWN',
  'DAC_OVERRIDE',
  'FOWNER',
  'FSETID',
  'KILL',
  'MKNOD',
  'NET_BIND_SERVICE',
  'SETFCAP',
  'SETGID',
  'SETPCAP',
  'SETUID',
  'SYS_CHROOT',
]);
const SAFE_SYSCTLS = new Set([
  'kernel.shm_rmid_forced',
  'net.ipv4.ip_local_port_range',
  'net.ipv4.ip_unprivileged_port_start',
  'net.ipv4.tcp_syncookies',
  'net.ipv4.ping_group_range',
  'net.ipv4.ip_local_reserved_ports',
  'net.ipv4.tcp_keepalive_time',
  'net.ipv4.tcp_fin_timeout',
  'net.ipv4.tcp_keepalive_intvl',
  'net.ipv4.tcp_keepalive_probes',
]);
const RESTRICTED_VOLUMES = new Set(['configMap', 'csi', 'downwardAPI', 'emptyDir', 'ephemeral', 'persistentVolumeClaim', 'projected', 'secret']);

interface Rule {
  name: string;
  level: Level;
  check(spec: IPodSpec): string[];
}

const RULES: Rule[] = [
  {
    name: 'host namespaces',
    level: 'baseline',
    check: (s) => (['hostNetwork', 'hostPID', 'hostIPC'] as const).filter((f) => s[f] === true),
  },
  {
    name: 'privileged containers',
    level: 'baseline',
    check: (s) => containersOf(s).flatMap((c) => (c.securityContext?.privileged === true ? [c.name] : [])),
  },
  {
    name: 'capabilities (baseline)',
    level: 'baseline',
    check: (s) => containersOf(s).flatMap((c) => (c.securityContext?.capabilities?.add ?? []).filter((cap) => !BASELINE_CAPABILITIES.has(cap))),
  },
  {
    name: 'hostPath volumes',
    level: 'baseline',
    check: (s) => (s.volumes ?? []).flatMap((v) => (v.hostPath ? [v.name] : [])),
  },
  {
    name: 'host ports',
    level: 'baseline',
    check: (s) => containersOf(s).flatMap((c) => (c.ports ?? []).flatMap((p) => (p.hostPort ? [`${c.name}:${p.hostPort}`] : []))),
  },
  {
    name: 'seccomp not Unconfined',
    level: 'baseline',
    check: (s) =>
      [s.securityContext?.seccompProfile?.type, ...containersOf(s).map((c) => c.securityContext?.seccompProfile?.type)].filter(
        (type) => type === 'Unconfined',
      ),
  },
  {
    name: 'AppArmor not Unconfined',
    level: 'baseline',
    check: (s) =>
      [s.securityContext?.appArmorProfile?.type, ...containersOf(s).map((c) => c.securityContext?.appArmorProfile?.type)].filter(
        (type) => type === 'Unconfined',
      ),
  },
  {
    name: 'SELinux type and no user or role',
    level: 'baseline',
    check: (s) =>
      [s.securityContext?.seLinuxOptions, ...containersOf(s).map((c) => c.securityContext?.seLinuxOptions)].flatMap((o) =>
        o && (o.user || o.role || (o.type && !['container_t', 'container_init_t', 'container_kvm_t', 'container_engine_t'].includes(o.type)))
          ? [JSON.stringify(o)]
          : [],
      ),
  },
  {
    name: '/proc mount Default',
    level: 'baseline',
    check: (s) => containersOf(s).flatMap((c) => (c.securityContext?.procMount && c.securityContext.procMount !== 'Default' ? [c.name] : [])),
  },
  {
    name: 'Windows HostProcess',
    level: 'baseline',
    check: (s) =>
      [s.securityContext?.windowsOptions?.hostProcess, ...containersOf(s).map((c) => c.securityContext?.windowsOptions?.hostProcess)].flatMap(
        (v) => (v === true ? ['hostProcess'] : []),
      ),
  },
  {
    name: 'safe sysctls only',
    level: 'baseline',
    check: (s) => (s.securityContext?.sysctls ?? []).map((x) => x.name).filter((name) => !SAFE_SYSCTLS.has(name)),
  },
  {
    name: 'volume types',
    level: 'restricted',
    check: (s) => (s.volumes ?? []).flatMap((v) => (Object.keys(v).some((k) => k !== 'name' && !RESTRICTED_VOLUMES.has(k)) ? [v.name] : [])),
  },
  {
    name: 'privilege escalation off',
    level: 'restricted',
    check: (s) => containersOf(s).flatMap((c) => (c.securityContext?.allowPrivilegeEscalation === false ? [] : [c.name])),
  },
  {
    name: 'runAsNonRoot',
    level: 'restricted',
    check: (s) =>
      containersOf(s).flatMap((c) => {
        const own = c.securityContext?.runAsNonRoot;
        return own === true || (own === undefined && s.securityContext?.runAsNonRoot === true) ? [] : [c.name];
      }),
  },
  {
    name: 'runAsUser not 0',
    level: 'restricted',
    check: (s) =>
      [s.securityContext?.runAsUser, ...containersOf(s).map((c) => c.securityContext?.runAsUser)].flatMap((uid) => (uid === 0 ? ['uid 0'] : [])),
  },
  {
    name: 'seccomp RuntimeDefault or Localhost',
    level: 'restricted',
    check: (s) =>
      containersOf(s).flatMap((c) => {
        const type = c.securityContext?.seccompProfile?.type ?? s.securityContext?.seccompProfile?.type;
        return type === 'RuntimeDefault' || type === 'Localhost' ? [] : [c.name];
      }),
  },
  {
    name: 'capabilities: drop ALL, add NET_BIND_SERVICE at most',
    level: 'restricted',
    check: (s) =>
      containersOf(s).flatMap((c) => {
        const caps = c.securityContext?.capabilities;
        const extra = (caps?.add ?? []).filter((cap) => cap !== 'NET_BIND_SERVICE');
        return caps?.drop?.includes('ALL') && extra.length === 0
          ? []
          : [`${c.name}${extra.length ? ` adds ${extra.join(',')}` : ' keeps capabilities'}`];
      }),
  },
];

/** The rules a pod spec breaks at `level` (restricted includes baseline), each with what breaks it. */
function podSecurity(spec: IPodSpec, level: Level): Map<string, string[]> {
  const broken = new Map<string, string[]>();
  for (const rule of RULES) {
    if (level === 'baseline' && rule.level === 'restricted') continue;
    const found = rule.check(spec);
    if (found.length > 0) broken.set(rule.name, found);
  }
  return broken;
}

const podSpecOf = (m: Manifest): IPodSpec =>
  m.kind === 'Pod' ? (m.spec as unknown as IPodSpec) : (m.spec as { template: { spec: IPodSpec } }).template.spec;
const gatewayPods = () => layout('gateway').filter((m) => m.kind === 'Pod' || m.kind === 'Deployment');

t.test('Pod Security restricted: every pod of the gateway layout meets it', async (t) => {
  t.same(
    gatewayPods().map((m) => `${m.kind}/${m.metadata.name}`),
    ['Deployment/sluice-gateway', 'Pod/sandboxed-tool'],
  );
  for (const m of gatewayPods()) t.same(Object.fromEntries(podSecurity(podSpecOf(m), 'restricted')), {}, `${m.file}: no rule broken`);
  // Both namespaces enforce it, so a pod that does not fit is refused at admission.
  for (const name of ['sluice-gateway', 'sandbox']) {
    t.equal(find('Namespace', name).metadata.labels?.['pod-security.kubernetes.io/enforce'], 'restricted', `namespace ${name}`);
  }
  // readOnlyRootFilesystem is not a Pod Security rule, but sluice writes nothing outside its mounts.
  const sluice = podSpecOf(find('Deployment', 'sluice-gateway')).containers[0]!;
  t.equal(sluice.securityContext?.readOnlyRootFilesystem, true);
});

/** Each rule, broken on purpose in a copy of the gateway's pod spec: the table catches it. */
const BREAKS: Array<[rule: string, breakIt: (s: IPodSpec) => void]> = [
  ['host namespaces', (s) => (s.hostNetwork = true)],
  ['privileged containers', (s) => (s.containers[0]!.securityContext!.privileged = true)],
  ['capabilities (baseline)', (s) => (s.containers[0]!.securityContext!.capabilities!.add = ['NET_ADMIN'])],
  ['hostPath volumes', (s) => s.volumes!.push({ name: 'host', hostPath: { path: '/' } })],
  ['host ports', (s) => (s.containers[0]!.ports![0]!.hostPort = 3128)],
  ['seccomp not Unconfined', (s) => (s.containers[0]!.securityContext!.seccompProfile = { type: 'Unconfined' })],
  ['AppArmor not Unconfined', (s) => (s.securityContext!.appArmorProfile = { type: 'Unconfined' })],
  ['SELinux type and no user or role', (s) => (s.securityContext!.seLinuxOptions = { user: 'system_u' })],
  ['/proc mount Default', (s) => (s.containers[0]!.securityContext!.procMount = 'Unmasked')],
  ['Windows HostProcess', (s) => (s.securityContext!.windowsOptions = { hostProcess: true })],
  ['safe sysctls only', (s) => (s.securityContext!.sysctls = [{ name: 'net.ipv4.ip_forward', value: '1' }])],
  ['volume types', (s) => s.volumes!.push({ name: 'nfs', nfs: { server: 'nfs.example', path: '/' } })],
  ['privilege escalation off', (s) => delete s.containers[0]!.securityContext!.allowPrivilegeEscalation],
  [
    'runAsNonRoot',
    (s) => {
      delete s.securityContext!.runAsNonRoot;
      delete s.containers[0]!.securityContext!.runAsNonRoot;
    },
  ],
  ['runAsUser not 0', (s) => (s.containers[0]!.securityContext!.runAsUser = 0)],
  [
    'seccomp RuntimeDefault or Localhost',
    (s) => {
      delete s.securityContext!.seccompProfile;
      delete s.containers[0]!.securityContext!.seccompProfile;
    },
  ],
  ['capabilities: drop ALL, add NET_BIND_SERVICE at most', (s) => (s.containers[0]!.securityContext!.capabilities = { drop: ['NET_RAW'] })],
];

t.test('Pod Security restricted: each rule, broken on purpose, is caught', async (t) => {
  t.same(BREAKS.map(([rule]) => rule).sort(), RULES.map((r) => r.name).sort(), 'every rule in the table has a breaking case');
  for (const [rule, breakIt] of BREAKS) {
    const spec = structuredClone(podSpecOf(find('Deployment', 'sluice-gateway')));
    breakIt(spec);
    const broken = podSecurity(spec, 'restricted');
    t.ok(broken.has(rule), `${rule}: caught (${JSON.stringify(broken.get(rule))})`);
    const level = RULES.find((r) => r.name === rule)!.level;
    t.equal(podSecurity(spec, 'baseline').has(rule), level === 'baseline', `${rule}: a ${level} rule`);
  }
});

t.test('Pod Security: the sidecar layout is refused under baseline and restricted (README says so)', async (t) => {
  const sidecar = find('Pod', 'sandboxed-tool', 'sidecar');
  t.equal(sidecar.file, 'deploy/k8s/pod.yaml');
  const baseline = podSecurity(podSpecOf(sidecar), 'baseline');
  t.same([...baseline.keys()], ['capabilities (baseline)']);
  t.same(baseline.get('capabilities (baseline)'), ['NET_ADMIN', 'NET_RAW'], 'the iptables init container');
  const restricted = podSecurity(podSpecOf(sidecar), 'restricted');
  t.same(restricted.get('runAsNonRoot'), ['egress-lockdown']);
  t.same(restricted.get('runAsUser not 0'), ['uid 0']);
  const readme = readFileSync(path.join(ROOT, 'README.md'), 'utf8');
  t.match(readme, /needs `NET_ADMIN`\s+as root,\s+so it is refused under\s+Pod\s+Security\s+`baseline`\s+and\s+`restricted`/);
});

// --- the gateway layout's shape -----------------------------------------------------------------

const gatewayLabels = { 'app.kubernetes.io/name': 'sluice', 'app.kubernetes.io/component': 'gateway' };

t.test('gateway: HPA, PDB, Service and ServiceMonitor fit the Deployment', async (t) => {
  const deployment = find('Deployment', 'sluice-gateway');
  const spec = deployment.spec as {
    replicas?: number;
    selector: { matchLabels: Record<string, string> };
    template: { metadata: { labels: Record<string, string> } };
  };
  t.same(spec.selector.matchLabels, gatewayLabels);
  t.match(spec.template.metadata.labels, gatewayLabels);
  t.equal(spec.replicas, undefined, 'the HPA owns the replica count');
  const hpa = find('HorizontalPodAutoscaler', 'sluice-gateway').spec as {
    scaleTargetRef: { kind: string; name: string };
    minReplicas: number;
    maxReplicas: number;
  };
  t.same(hpa.scaleTargetRef, { apiVersion: 'apps/v1', kind: 'Deployment', name: 'sluice-gateway' });
  t.ok(hpa.minReplicas >= 3 && hpa.maxReplicas > hpa.minReplicas, `${hpa.minReplicas}..${hpa.maxReplicas} replicas`);
  const pdb = find('PodDisruptionBudget', 'sluice-gateway').spec as {
    maxUnavailable: number;
    selector: { matchLabels: Record<string, string> };
  };
  t.same(pdb.selector.matchLabels, gatewayLabels);
  t.ok(pdb.maxUnavailable < hpa.minReplicas, 'a drain never takes every replica');
  const service = find('Service', 'sluice-gateway').spec as {
    selector: Record<string, string>;
    clusterIP: string;
    ports: Array<{ name: string; port: number; targetPort: string }>;
  };
  t.same(service.selector, gatewayLabels);
  t.same(
    service.ports.map((p) => [p.name, p.port, p.targetPort]),
    [
      ['proxy', 3128, 'proxy'],
      ['metrics', 9090, 'admin'],
    ],
  );
  const monitor = find('ServiceMonitor', 'sluice-gateway').spec as {
    selector: { matchLabels: Record<string, string> };
    endpoints: Array<{ port: string }>;
  };
  t.same(monitor.selector.matchLabels, gatewayLabels);
  t.same(
    monitor.endpoints.map((e) => e.port),
    ['metrics'],
  );
  // The sandbox pod reaches the gateway by the Service's fixed address, named through hostAliases.
  const sandbox = podSpecOf(find('Pod', 'sandboxed-tool'));
  t.same(sandbox.hostAliases, [{ ip: service.clusterIP, hostnames: ['sluice-gateway'] }]);
  const env = Object.fromEntries((sandbox.containers[0]!.env ?? []).map((e) => [e.name, e.value]));
  t.equal(env.HTTPS_PROXY, 'http://web-fetch:$(SLUICE_TOKEN)@sluice-gateway:3128');
  t.equal(env.NO_PROXY, 'localhost,127.0.0.1');
  t.equal(sandbox.dnsPolicy, 'None', 'no cluster DNS for the sandbox');
  t.same(sandbox.dnsConfig, { nameservers: ['127.0.0.1'] });
  // Every replica serves the same CA: one Secret, read-only.
  const podSpec = podSpecOf(deployment);
  t.match(
    podSpec.volumes?.find((v) => v.name === 'ca'),
    { secret: { secretName: 'sluice-ca' } },
  );
  const sluice = podSpec.containers[0]!;
  const sluiceEnv = Object.fromEntries((sluice.env ?? []).map((e) => [e.name, e.value ?? e.valueFrom]));
  t.equal(sluiceEnv.SLUICE_LISTEN, '0.0.0.0:3128');
  t.same(sluiceEnv.SLUICE_AUDIT_INSTANCE, { fieldRef: { fieldPath: 'metadata.name' } }, 'each replica its own audit instance');
  t.ok((podSpec.terminationGracePeriodSeconds ?? 30) > 30 + 5, 'the grace period covers preStop and the 30 s drain');
});

interface Peer {
  namespaceSelector?: { matchLabels?: Record<string, string> };
  podSelector?: { matchLabels?: Record<string, string> };
  ipBlock?: { cidr: string };
}
interface PolicyRule {
  to?: Peer[];
  from?: Peer[];
  ports?: Array<{ protocol: string; port: number }>;
}

t.test('gateway NetworkPolicies: sandboxes reach only the proxy port, without DNS', async (t) => {
  const sandbox = find('NetworkPolicy', 'sandbox-egress-only-gateway');
  t.equal(sandbox.metadata.namespace, 'sandbox');
  const spec = sandbox.spec as { podSelector: object; policyTypes: string[]; egress: PolicyRule[]; ingress: PolicyRule[] };
  t.same(spec.podSelector, {}, 'every pod in the namespace');
  t.same(spec.policyTypes.sort(), ['Egress', 'Ingress']);
  t.same(spec.ingress, [], 'nothing connects in');
  t.equal(spec.egress.length, 1);
  t.same(spec.egress[0]!.ports, [{ protocol: 'TCP', port: 3128 }], 'no port 53: no DNS');
  t.same(spec.egress[0]!.to, [
    {
      namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'sluice-gateway' } },
      podSelector: { matchLabels: gatewayLabels },
    },
  ]);

  const gateway = find('NetworkPolicy', 'sluice-gateway').spec as {
    podSelector: { matchLabels: object };
    ingress: PolicyRule[];
    egress: PolicyRule[];
  };
  t.same(gateway.podSelector.matchLabels, gatewayLabels);
  const sandboxNamespace = find('Namespace', 'sandbox').metadata.labels ?? {};
  const proxyIngress = gateway.ingress.find((r) => r.ports?.some((p) => p.port === 3128))!;
  for (const [label, value] of Object.entries(proxyIngress.from![0]!.namespaceSelector!.matchLabels!)) {
    t.equal(sandboxNamespace[label], value, `the sandbox namespace carries ${label}`);
  }
  const egressPorts = gateway.egress.flatMap((r) => (r.ports ?? []).map((p) => `${p.protocol}/${p.port}`)).sort();
  t.same(egressPorts, ['TCP/443', 'TCP/53', 'TCP/80', 'UDP/53'], 'sluice resolves (DNS) and dials 80/443');
  const publicRule = gateway.egress.find((r) => r.to?.some((p) => p.ipBlock))!;
  t.same(
    publicRule.to!.map((p) => p.ipBlock!.cidr),
    ['0.0.0.0/0', '::/0'],
  );
  t.match(JSON.stringify(publicRule.to), /10\.0\.0\.0\/8.*169\.254\.0\.0\/16/, 'private and metadata ranges excluded');
});

t.test('the memory requests are the measured figure README.md states', async (t) => {
  const readme = readFileSync(path.join(ROOT, 'README.md'), 'utf8');
  const stated = /\*\*Sizing\.\*\* Memory request (\d+) Mi per sluice container/.exec(readme)?.[1];
  t.ok(stated, 'README states the request');
  const sluiceContainers = [
    podSpecOf(find('Deployment', 'sluice-gateway')).containers[0]!,
    podSpecOf(find('Pod', 'sandboxed-tool', 'sidecar')).initContainers![1]!,
  ];
  for (const container of sluiceContainers) {
    t.equal(container.name, 'sluice');
    t.equal(container.resources?.requests?.memory, `${stated}Mi`, `${container.name}: request ${stated}Mi`);
  }
});

t.test("gateway: the ConfigMap's policy passes sluice check, and names the token the Deployment provides", async (t) => {
  const configMap = find('ConfigMap', 'sluice-policy') as Manifest & { data: Record<string, string> };
  const file = path.join(mkdtempSync(path.join(tmpdir(), 'sluice-gateway-')), 'policy.yaml');
  writeFileSync(file, configMap.data['policy.yaml']!);
  const check = spawnSync(process.execPath, [path.join(ROOT, 'dist/cli.js'), 'check', file], { encoding: 'utf8' });
  t.equal(check.status, 0, check.stdout + check.stderr);
  const policy = parse(configMap.data['policy.yaml']!) as { tools: Record<string, { token_env?: string }> };
  const provided = new Set((podSpecOf(find('Deployment', 'sluice-gateway')).containers[0]!.env ?? []).map((e) => e.name));
  for (const [tool, { token_env }] of Object.entries(policy.tools)) t.ok(token_env && provided.has(token_env), `${tool}: ${token_env} is set`);
});
