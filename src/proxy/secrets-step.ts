// The credentials step of the data path: swap placeholders for values toward a secret's own
// hosts, only where the secret's swap_in allows and only over TLS sluice verified (the exchange's
// scheme is https), refuse what may not leave, record each use, and scrub values out of what comes back.
import type { Duplex, Transform } from 'node:stream';
import type { Observer } from '../observe/events.js';
import type { Decision } from '../policy/types.js';
import { createBodySwapper } from '../secrets/body.js';
import { planRequestSecrets, type RequestSecretsPlan } from '../secrets/placeholders.js';
import { createDecodingScrubber, scrubHeaders, scrubText } from '../secrets/scrub.js';
import type { PolicyRuntime } from './context.js';
import type { Answer } from './answers.js';
import type { Exchange } from './exchange.js';

/**
 * The credentials step for a request's head (plain, intercepted or an upgrade): placeholders
 * swapped and injections made toward the secret's hosts, each use recorded; or the answer that
 * refuses the request. With on_violation: review a leak is recorded and the request goes on as sent.
 */
export function secretsForHead(
  observer: Observer,
  runtime: PolicyRuntime,
  ex: Exchange,
  tool: string,
  decision: Decision,
  headers: Array<[string, string]>,
  target: string,
): { ok: true; headers: Array<[string, string]>; target: string } | { ok: false; answer: Answer } {
  const plan = planSecrets(runtime, tool, decision, headers, target, ex.scheme === 'https');
  if (plan.ok) {
    for (const use of plan.uses) recordUse(observer, ex, use.alias, use.where);
    return { ok: true, headers: plan.headers, target: plan.target };
  }
  if (plan.reason === 'secret_leak' && runtime.loaded.doc.on_violation === 'review') {
    ex.reviewed('secret_leak', plan.detail);
    return { ok: true, headers, target };
  }
  return { ok: false, answer: ex.answer(plan.reason, plan.detail) };
}

function planSecrets(
  runtime: PolicyRuntime,
  tool: string,
  decision: Decision,
  headers: Array<[string, string]>,
  target: string,
  tls: boolean,
): RequestSecretsPlan {
  const store = runtime.secrets;
  return planRequestSecrets({
    tls,
    tool,
    granted: runtime.compiled.tools.get(tool)?.secrets ?? [],
    inScope: decision.secrets,
    headers,
    target,
    secrets: runtime.loaded.doc.secrets,
    values: (alias) => store.get(alias),
    known: store.knownValues(),
  });
}

/** A secret.use event per alias and place it was used. */
export function recordUse(observer: Observer, ex: Exchange, alias: string, where: string): void {
  observer.event({
    type: 'secret.use',
    request_id: ex.requestId,
    tool: ex.tool,
    decision: 'allow',
    method: ex.method,
    scheme: ex.scheme,
    host: ex.host,
    port: ex.port,
    path: ex.path,
    ip: ex.ip,
    rule: ex.rule,
    secret: alias,
    where,
  });
}

/**
 * The request body as it must go upstream: placeholders swapped, anything forbidden refused
 * mid-stream; a body with a Content-Encoding decoded (within the request limit) and checked whole
 * first. `headers` are the request's, for its Content-Encoding.
 */
export function bodySwapper(
  runtime: PolicyRuntime,
  tool: string,
  decision: Decision,
  observer: Observer,
  ex: Exchange,
  headers: ReadonlyArray<readonly [string, string]>,
): Transform {
  const store = runtime.secrets;
  return createBodySwapper({
    tls: ex.scheme === 'https',
    headers,
    maxDecodedBytes: decision.limits.max_request_bytes,
    tool,
    granted: runtime.compiled.tools.get(tool)?.secrets ?? [],
    inScope: decision.secrets,
    secrets: runtime.loaded.doc.secrets,
    values: (alias) => store.get(alias),
    known: store.knownValues(),
    onUse: (alias) => recordUse(observer, ex, alias, 'body'),
  });
}

/**
 * Scrubbing for a response from a host that may have received a secret value. Returns null when no
 * secret can be in play (nothing to scrub), or 'undecodable' for a content coding sluice can not
 * read (then the response is refused rather than passed unscrubbed).
 */
export function responseScrubber(
  runtime: PolicyRuntime,
  decision: Decision,
  headers: Array<[string, string]>,
): { headers: Array<[string, string]>; body: Duplex } | 'undecodable' | null {
  if (decision.secrets.length === 0) return null;
  const known = runtime.secrets.knownValues();
  if (known.length === 0) return null;
  const encoding = headers.find(([n]) => n.toLowerCase() === 'content-encoding')?.[1] ?? null;
  const body = createDecodingScrubber(encoding, known);
  if (!body) return 'undecodable';
  // The body is decoded and its length may change: it goes to the client uncompressed and chunked.
  const kept = scrubHeaders(headers, known).filter(([n]) => !['content-length', 'content-encoding'].includes(n.toLowerCase()));
  return { headers: kept, body };
}

/** The reason phrase of an upstream status line, scrubbed of every known secret value. */
export function scrubStatusText(runtime: PolicyRuntime, text: string): string {
  const known = runtime.secrets.knownValues();
  return known.length === 0 || text.length === 0 ? text : scrubText(text, known);
}
