// Builds test policies as PolicyDoc values with the loader's defaults filled in, so each test
// writes only what it is about.
import { DEFAULT_LIMITS, type PolicyDoc, type SecretDoc, type ToolDoc } from '../../src/config/types.js';
import { compilePolicy, type CompiledPolicy } from '../../src/policy/compile.js';
import type { DecisionRequest } from '../../src/policy/types.js';

export type ToolSpec = Partial<ToolDoc> & Pick<ToolDoc, 'allow'>;
export type SecretSpec = Partial<SecretDoc> & Pick<SecretDoc, 'hosts'>;

export interface PolicySpec {
  tools: Record<string, ToolSpec>;
  secrets?: Record<string, SecretSpec>;
  on_violation?: PolicyDoc['on_violation'];
  allow_ports?: number[];
  limits?: Partial<PolicyDoc['limits']>;
}

export function makeDoc(spec: PolicySpec): PolicyDoc {
  return {
    version: 1,
    strict: false,
    on_violation: spec.on_violation ?? 'block',
    network: { private_ip: 'deny', allow_private_cidrs: [], dns_servers: [], allow_ports: spec.allow_ports ?? [80, 443] },
    tls: { upstream_ca: null },
    limits: { ...DEFAULT_LIMITS, ...spec.limits },
    secrets: Object.fromEntries(
      Object.entries(spec.secrets ?? {}).map(([alias, s]) => [
        alias,
        {
          from: { env: `SECRET_${alias.toUpperCase()}` },
          require: false,
          placeholder: `__sluice_secret_${alias}__`,
          swap_in: ['header:Authorization'],
          allow_plaintext: false,
          ...s,
        },
      ]),
    ),
    tools: Object.fromEntries(Object.entries(spec.tools).map(([name, t]) => [name, { token_sha256: 'a'.repeat(64), secrets: [], ...t }])),
  };
}

export function makePolicy(spec: PolicySpec): CompiledPolicy {
  return compilePolicy(makeDoc(spec), 'f'.repeat(64));
}

export function connect(host: string, port = 443): DecisionRequest {
  return { phase: 'connect', host, port, method: 'CONNECT' };
}

export function request(method: string, host: string, path: string, port = 443): DecisionRequest {
  return { phase: 'request', host, port, method, path };
}
