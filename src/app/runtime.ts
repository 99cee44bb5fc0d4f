// Builds the immutable per-policy runtime: compiled decisions, tool tokens, the vetting resolver,
// upstream pools and trusted roots. A reload builds a new one; the old one drains.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { PolicyError } from '../config/errors.js';
import type { LoadedPolicy } from '../config/types.js';
import { compileAddressPolicy } from '../net/address.js';
import { UpstreamPools, upstreamRoots } from '../net/dial.js';
import { VettingResolver } from '../net/resolve.js';
import { compilePolicy } from '../policy/compile.js';
import { ToolTokens } from '../proxy/auth.js';
import type { PolicyRuntime } from '../proxy/context.js';
import { scrubText } from '../secrets/scrub.js';
import { SecretStore } from '../secrets/store.js';

/** Throws (naming the alias or file, never a value) when a granted secret or a token cannot be loaded. */
export async function buildRuntime(loaded: LoadedPolicy, env: NodeJS.ProcessEnv = process.env): Promise<PolicyRuntime> {
  const doc = loaded.doc;
  const compiled = compilePolicy(doc, loaded.digest);
  const tokens = new ToolTokens(doc, env);
  // Only secrets some tool is granted must load; a defined but ungranted one is never used.
  const granted = Object.values(doc.tools).flatMap((tool) => tool.secrets);
  const secrets = await SecretStore.open(doc.secrets, granted, env);
  const resolver = new VettingResolver({
    policy: compileAddressPolicy(doc.network),
    servers: doc.network.dns_servers,
    timeoutMs: doc.limits.dns_timeout_ms,
    maxTimeoutMs: Math.max(
      ...[...compiled.tools.values()].flatMap((t) => [t.limits.dns_timeout_ms, ...t.rules.map((r) => r.limits.dns_timeout_ms)]),
      0,
    ),
  });
  const upstreamCa = upstreamRoots(readUpstreamCa(loaded));
  const pools = new UpstreamPools({
    ca: upstreamCa,
    connectTimeoutMs: doc.limits.connect_timeout_ms,
    idleTimeoutMs: doc.limits.idle_timeout_ms,
  });
  return { loaded, compiled, tokens, resolver, pools, upstreamCa, secrets };
}

function readUpstreamCa(loaded: LoadedPolicy): string | null {
  const file = loaded.doc.tls.upstream_ca;
  if (!file) return null;
  const resolved = path.resolve(path.dirname(loaded.file), file);
  try {
    return readFileSync(resolved, 'utf8');
  } catch (err) {
    const why = (err as NodeJS.ErrnoException).code ?? 'error';
    throw new PolicyError(
      [{ code: 'upstream_ca_unreadable', file: loaded.file, path: ['tls', 'upstream_ca'], message: `cannot read ${resolved} (${why})` }],
      loaded.digest,
    );
  }
}

/** Replaces every secret value the runtime knows (and its encodings) in text bound for logs or audit. */
export function scrubSecrets(runtime: PolicyRuntime, text: string): string {
  const known = runtime.secrets.knownValues();
  return known.length === 0 ? text : scrubText(text, known);
}
