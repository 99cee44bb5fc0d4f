// Resolve-then-vet for every destination: the address returned here is the only one dialled. An
// address of sluice itself is refused whatever its spelling (mapped IPv6, another name for it).
import type { CanonicalHost } from '../net/host.js';
import type { DenyReason } from '../policy/reasons.js';
import type { PolicyRuntime, SelfCheck } from './context.js';

export type Vetted = { ok: true; ip: string } | { ok: false; reason: DenyReason; detail: string };

export async function vetDestination(
  runtime: PolicyRuntime,
  self: SelfCheck,
  host: CanonicalHost,
  port: number,
  dnsTimeoutMs: number,
): Promise<Vetted> {
  const resolution = host.kind === 'ip' ? runtime.resolver.vetLiteral(host.host) : await runtime.resolver.resolve(host.host, dnsTimeoutMs);
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
  // Every address the name resolved to is checked, not only the one dialled: a later retry could pick another.
  const own = resolution.addresses.find((ip) => self.isSelf(ip, port));
  if (own !== undefined) {
    return { ok: false, reason: 'private_ip', detail: `${own}:${port} is sluice itself; a request may not loop through the proxy` };
  }
  return { ok: true, ip: resolution.addresses[0]! };
}
