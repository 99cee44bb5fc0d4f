// Resolve-then-vet for every destination: the address returned here is the only one dialled.
import type { CanonicalHost } from '../net/host.js';
import type { DenyReason } from '../policy/reasons.js';
import type { PolicyRuntime, ProxyDeps } from './context.js';

export type Vetted = { ok: true; ip: string } | { ok: false; reason: DenyReason; detail: string };

export async function vetDestination(runtime: PolicyRuntime, self: ProxyDeps['self'], host: CanonicalHost, port: number): Promise<Vetted> {
  const resolution = host.kind === 'ip' ? runtime.resolver.vetLiteral(host.host) : await runtime.resolver.resolve(host.host);
  if (!resolution.ok) {
    if (resolution.reason === 'dns_failure') return { ok: false, reason: 'dns_failure', detail: resolution.error };
    const ranges = [...new Set(resolution.verdicts.map((v) => v.range))].join(', ');
    const what = host.kind === 'ip' ? host.host : `${host.host} resolves to ${resolution.verdicts.map((v) => v.ip).join(', ')}, which`;
    return {
      ok: false,
      reason: 'private_ip',
      detail: `${what} is a non-public address (${ranges}); sluice does not connect to internal networks`,
    };
  }
  const ip = resolution.addresses[0]!;
  if (self.some((s) => s.port === port && (s.host === ip || s.host === '0.0.0.0' || s.host === '::'))) {
    return { ok: false, reason: 'private_ip', detail: `${ip}:${port} is sluice itself; a request may not loop through the proxy` };
  }
  return { ok: true, ip };
}
