// The content seam: the one place the forward path (absolute-form plain HTTP and every request inside
// an intercepted tunnel, which share forward.ts) reads a request body on behalf of a rule field that
// carries an inspector (`git:`, later `mcp:`). It runs after admission and BEFORE the credentials
// step, so a placeholder is swapped or a token injected only into a request the inspector passed.
//
// How the body is read: an inspector says how much it needs. It may decide on the head alone, or ask
// for the body up to the point where it can decide (`enough`), or to its end. sluice buffers only
// that prefix (bounded by the rule's max_request_bytes and timed by idle_timeout_ms), asks the pure
// inspector, and then either refuses with the inspector's protocol answer (nothing was sent
// upstream) or hands the prefix back to the forward path, which sends the prefix and then streams
// the rest of the client's body unchanged. So a git push is decided on its command list and its pack
// is never held in memory. Everything unreadable fails closed: a body over the cap is
// request_too_large, a client that stalls is client_timeout, and what the inspector cannot parse it
// refuses itself.
//
// An inspector may also return a response transform for an allowed request (MCP filters answers);
// the relay in forward.ts applies it to the upstream response.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { CompiledRule } from '../policy/compile.js';
import { OUTCOME, type Outcome } from '../policy/reasons.js';
import type { Decision } from '../policy/types.js';
import { gitInspector } from '../git/inspector.js';
import { sendAnswer } from './answers.js';
import type { PolicyRuntime } from './context.js';
import type { Exchange } from './exchange.js';
import { VIA } from './headers.js';
import { mcpInspector } from '../mcp/inspector.js';
import type { Observer } from '../observe/events.js';
import { boundedName } from '../mcp/jsonrpc.js';
import type { HeadStep, InspectedCall, Inspector, InspectHead, ProtocolAnswer, ResponseTransform, Verdict } from './inspector.js';

export type { HeadStep, InspectedCall, Inspector, InspectHead, ProtocolAnswer, ResponseTransform, Verdict };

interface Bound {
  readonly field: string;
  head(head: InspectHead): HeadStep;
  body(head: InspectHead, prefix: Buffer, ended: boolean): Verdict;
}

interface Entry {
  readonly field: string;
  bind(rule: CompiledRule): Bound | null;
}

export function register<C>(field: string, configOf: (rule: CompiledRule) => C | null, inspector: Inspector<C>): Entry {
  return {
    field,
    bind(rule) {
      const config = configOf(rule);
      if (config === null) return null;
      return {
        field,
        head: (head) => inspector.head(config, head),
        body: (head, prefix, ended) => inspector.body(config, head, prefix, ended),
      };
    },
  };
}

/** The registry, keyed by rule field: a new inspector is one more entry here. */
const REGISTRY: readonly Entry[] = [
  register('git', (rule) => rule.git, gitInspector),
  register('mcp', (rule) => (rule.mcp ? { mcp: rule.mcp, maxResponseBytes: rule.limits.max_response_bytes } : null), mcpInspector),
];

/** The body read so far: forward.ts sends it first, then streams the rest of the client's body. */
export interface ReadPrefix {
  prefix: Buffer;
  /** the client's body ended: nothing more to stream */
  ended: boolean;
}

export type Inspection =
  | { ok: true; read: ReadPrefix | null; transform: ResponseTransform | null }
  /** refused and answered (or the client went away): forward.ts does nothing more */
  | { ok: false };

const PASSED: Inspection = Object.freeze({ ok: true, read: null, transform: null });

/**
 * The inspector bound to the rule a request matched, or null (the common case: no await, no cost).
 * A reviewed request matched no rule, so nothing inspects it.
 */
export function inspectorFor(runtime: PolicyRuntime, tool: string, decision: Decision): Bound | null {
  if (decision.rule === null || decision.verdict !== 'allow') return null;
  const rule = runtime.compiled.tools.get(tool)?.rules.find((r) => r.id === decision.rule);
  if (!rule) return null;
  for (const entry of REGISTRY) {
    const bound = entry.bind(rule);
    if (bound) return bound;
  }
  return null;
}

/** The head an inspector sees, from the decision's normalized path and the raw target's query. */
export function inspectHead(req: IncomingMessage, decision: Decision, upstreamPath: string): InspectHead {
  const q = upstreamPath.indexOf('?');
  return {
    method: (req.method ?? 'GET').toUpperCase(),
    path: decision.path ?? (q < 0 ? upstreamPath : upstreamPath.slice(0, q)),
    query: q < 0 ? null : upstreamPath.slice(q + 1),
    headers: req.headers,
    ruleId: decision.rule ?? '',
  };
}

/**
 * For an Upgrade request, whose later bytes sluice never reads: null when the inspector passes it on
 * the head alone, else the refusal (its own, or uninspectable_body when it would need the body).
 */
export function upgradeRefusal(bound: Bound, head: InspectHead): { reason: Outcome; detail: string } | null {
  const step = bound.head(head);
  if ('read' in step)
    return {
      reason: 'uninspectable_body',
      detail: `the ${bound.field} rule ${head.ruleId} reads this request, which an upgraded connection cannot be`,
    };
  return step.pass ? null : { reason: step.reason, detail: step.detail };
}

/**
 * Runs the bound inspector on a request: decides on the head, or reads the prefix it needs and
 * decides on that. A refusal is settled on the exchange and answered here.
 */
export async function inspectRequest(
  bound: Bound,
  runtime: PolicyRuntime,
  ex: Exchange,
  tool: string,
  decision: Decision,
  head: InspectHead,
  req: IncomingMessage,
  res: ServerResponse,
  observer?: Observer,
): Promise<Inspection> {
  const step = bound.head(head);
  if (!('read' in step)) return conclude(step, null, runtime, ex, req, res, decision);
  const hasBody =
    (req.headers['content-length'] !== undefined && Number(req.headers['content-length']) > 0) || req.headers['transfer-encoding'] !== undefined;
  const read = hasBody
    ? await readPrefix(req, ex, tool, decision, step.enough)
    : ({ kind: 'read', prefix: Buffer.alloc(0), ended: true } as const);
  if (read.kind === 'failed') {
    sendAnswer(res, ex.answer(read.code, read.detail), true);
    return { ok: false };
  }
  if (read.kind === 'gone') {
    ex.settle('client_timeout', 'the client closed the connection in the middle of its request body');
    res.destroy();
    return { ok: false };
  }
  let verdict: Verdict;
  try {
    verdict = bound.body(head, read.prefix, read.ended);
  } catch (err) {
    // An inspector is pure and should not throw; if it does, nothing passes unchecked.
    verdict = { pass: false, reason: 'uninspectable_body', detail: `the ${bound.field} inspector failed: ${(err as Error).message}` };
  }
  if (observer && verdict.calls) reportCalls(observer, runtime, ex, verdict.calls);
  return conclude(verdict, read, runtime, ex, req, res, decision);
}

/** One mcp.call per call the body held; a refusal review lets through is recorded as review. */
function reportCalls(observer: Observer, runtime: PolicyRuntime, ex: Exchange, calls: readonly InspectedCall[]): void {
  const review = runtime.loaded.doc.on_violation === 'review';
  for (const call of calls) {
    const reviewed = !call.allowed && review && call.reason !== null && OUTCOME[call.reason].reviewable;
    observer.event({
      type: 'mcp.call',
      request_id: ex.requestId,
      tool: ex.tool,
      decision: call.allowed ? 'allow' : reviewed ? 'review' : 'deny',
      reason: call.reason,
      method: ex.method,
      scheme: ex.scheme,
      host: ex.host,
      port: ex.port,
      path: ex.path,
      ip: ex.ip,
      rule: ex.rule,
      mcp_method: boundedName(call.method),
      mcp_name: call.name === null ? null : boundedName(call.name),
      detail: call.detail,
    });
  }
}

function conclude(
  verdict: Verdict,
  read: ReadPrefix | null,
  runtime: PolicyRuntime,
  ex: Exchange,
  req: IncomingMessage,
  res: ServerResponse,
  decision: Decision,
): Inspection {
  if (verdict.pass) return verdict.transform || read ? { ok: true, read, transform: verdict.transform ?? null } : PASSED;
  // on_violation: review lets a reviewable refusal through, recorded (the same rule as decide's).
  if (runtime.loaded.doc.on_violation === 'review' && OUTCOME[verdict.reason].reviewable) {
    ex.reviewed(verdict.reason, `on_violation is review: allowed, but ${verdict.detail}`);
    return { ok: true, read, transform: null };
  }
  const complete = read?.ended ?? req.complete;
  // Read and drop the rest of the body before answering: a client still sending when the
  // connection is answered and closed could be reset before it reads the answer.
  const answerNow = (): void => {
    if (verdict.answer) sendProtocolAnswer(res, ex, verdict.reason, verdict.detail, verdict.answer);
    else sendAnswer(res, ex.answer(verdict.reason, verdict.detail));
  };
  ex.settle(verdict.reason, verdict.detail);
  if (complete) {
    answerNow();
    return { ok: false };
  }
  drainThen(req, ex, decision, answerNow, res);
  return { ok: false };
}

/** Answers in the client's protocol, with sluice's reason header so a person can still see why. */
function sendProtocolAnswer(res: ServerResponse, ex: Exchange, reason: Outcome, detail: string, answer: ProtocolAnswer): void {
  ex.settle(reason, detail);
  ex.status = answer.status;
  if (res.headersSent || res.destroyed) {
    res.destroy();
    return;
  }
  res.writeHead(answer.status, {
    ...answer.headers,
    [OUTCOME[reason].header]: reason,
    'X-Request-Id': ex.requestId,
    Via: VIA,
    'Content-Length': String(answer.body.length),
  });
  res.end(answer.body);
}

/** Drops what is left of a refused body (still counted and capped), then answers. */
function drainThen(req: IncomingMessage, ex: Exchange, decision: Decision, answer: () => void, res: ServerResponse): void {
  const max = decision.limits.max_request_bytes;
  const idleMs = decision.limits.idle_timeout_ms;
  let done = false;
  let timer: NodeJS.Timeout | null = null;
  const finish = (close: boolean): void => {
    if (done) return;
    done = true;
    if (timer) clearTimeout(timer);
    req.removeListener('data', onData);
    if (close) res.shouldKeepAlive = false;
    answer();
  };
  const arm = (): void => {
    if (timer) clearTimeout(timer);
    timer = setTimeout(() => finish(true), idleMs);
  };
  const onData = (chunk: Buffer): void => {
    ex.bytesUp += chunk.length;
    if (ex.bytesUp > max) finish(true);
    else arm();
  };
  req.on('data', onData);
  req.once('end', () => finish(false));
  req.once('close', () => finish(true));
  arm();
  req.resume();
}

type PrefixRead =
  | { kind: 'read'; prefix: Buffer; ended: boolean }
  | { kind: 'failed'; code: 'request_too_large' | 'client_timeout'; detail: string }
  | { kind: 'gone' };

/**
 * Reads the client's body until `enough` says the inspector can decide (or the body ends), counted
 * against max_request_bytes and timed by idle_timeout_ms. Leaves the request paused, with no
 * listener of its own, so the forward path can go on reading where this stopped.
 */
function readPrefix(
  req: IncomingMessage,
  ex: Exchange,
  tool: string,
  decision: Decision,
  enough: ((prefix: Buffer) => boolean) | undefined,
): Promise<PrefixRead> {
  const max = decision.limits.max_request_bytes;
  const idleMs = decision.limits.idle_timeout_ms;
  return new Promise<PrefixRead>((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let timer: NodeJS.Timeout | null = null;
    let settled = false;
    const finish = (result: PrefixRead): void => {
      if (settled) return;
      settled = true;
      if (timer) clearTimeout(timer);
      req.removeListener('data', onData);
      req.removeListener('end', onEnd);
      req.removeListener('close', onClose);
      if (result.kind === 'read' && !result.ended) req.pause();
      // A refused body is dropped, not left unread: see drainThen.
      if (result.kind === 'failed') req.resume();
      resolve(result);
    };
    const arm = (): void => {
      if (timer) clearTimeout(timer);
      timer = setTimeout(
        () => finish({ kind: 'failed', code: 'client_timeout', detail: `the request body stalled: no byte for idle_timeout_ms (${idleMs} ms)` }),
        idleMs,
      );
    };
    const onData = (chunk: Buffer): void => {
      ex.bytesUp += chunk.length;
      if (ex.bytesUp > max) {
        return finish({
          kind: 'failed',
          code: 'request_too_large',
          detail: `the request body crossed the limit of ${max} bytes for tool ${tool}`,
        });
      }
      chunks.push(chunk);
      size += chunk.length;
      arm();
      if (enough?.(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size))) {
        finish({ kind: 'read', prefix: Buffer.concat(chunks, size), ended: false });
      }
    };
    const onEnd = (): void => finish({ kind: 'read', prefix: Buffer.concat(chunks, size), ended: true });
    const onClose = (): void => {
      if (!req.complete) finish({ kind: 'gone' });
    };
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('close', onClose);
    arm();
    req.resume();
  });
}
