// One exchange = one request or one tunnel. Fields are filled as the data path learns them and
// reported exactly once, as the canonical audit event for that exchange.
import { randomUUID } from 'node:crypto';
import type { AuditInput, AuditType, Observer } from '../observe/events.js';
import { denyAnswer, upstreamErrorAnswer, type Answer } from './answers.js';
import type { DenyReason, UpstreamError } from '../policy/reasons.js';
import type { Decision, Verdict } from '../policy/types.js';

export class Exchange {
  /**
   * Made on first use: an allowed tunnel needs its id only in the audit record at close, and
   * randomUUID() returns a rope of 14 string pieces (~450 bytes) that 10,000 idle tunnels would hold.
   */
  #requestId: string | null = null;
  readonly #started = performance.now();
  readonly #observer: Observer;
  #reported = false;
  tool: string | null = null;
  method: string | null = null;
  scheme: 'http' | 'https' | null;
  host: string | null = null;
  port: number | null = null;
  path: string | null = null;
  ip: string | null = null;
  status: number | null = null;
  bytesUp = 0;
  bytesDown = 0;
  rule: string | null = null;
  decision: Verdict | null = null;
  reason: DenyReason | UpstreamError | null = null;
  detail: string | null = null;
  /** 'limit' when a size or time limit ended the exchange */
  #limited = false;

  constructor(observer: Observer, scheme: 'http' | 'https') {
    this.#observer = observer;
    this.scheme = scheme;
  }

  applyDecision(d: Decision): void {
    this.decision = d.verdict;
    this.reason = d.reason;
    this.rule = d.rule;
    this.host = d.host;
    this.port = d.port;
    if (d.verdict !== 'allow') this.detail = d.detail;
  }

  deny(reason: DenyReason, detail: string, status: number): void {
    this.decision = 'deny';
    this.reason = reason;
    this.detail = detail;
    this.status = status;
  }

  /** Records a refusal and returns the answer the client gets for it. */
  refusal(reason: DenyReason, detail: string): Answer {
    const answer = denyAnswer(reason, detail, this.requestId);
    this.deny(reason, detail, answer.status);
    return answer;
  }

  /** Records a limit that refused the exchange and returns the answer (429s carry Retry-After). */
  limitRefusal(reason: DenyReason, detail: string, retryAfterSeconds?: number): Answer {
    const answer = denyAnswer(reason, detail, this.requestId);
    if (retryAfterSeconds !== undefined) answer.headers['Retry-After'] = String(retryAfterSeconds);
    this.limitExceeded(reason, detail);
    this.status = answer.status;
    return answer;
  }

  /** Records an upstream failure and returns the answer the client gets for it. */
  failure(code: UpstreamError, detail: string): Answer {
    const answer = upstreamErrorAnswer(code, detail, this.requestId);
    this.fail(code, detail, answer.status);
    return answer;
  }

  fail(code: UpstreamError, detail: string, status: number): void {
    this.reason = code;
    this.detail = detail;
    this.status = status;
  }

  /** A limit cut the exchange: whatever the policy allowed, the outcome is a denial. */
  limitExceeded(reason: DenyReason, detail: string): void {
    this.#limited = true;
    this.decision = 'deny';
    this.reason = reason;
    this.detail = detail;
  }

  get requestId(): string {
    return (this.#requestId ??= randomUUID());
  }

  get reported(): boolean {
    return this.#reported;
  }

  /** Reports the canonical event once; later calls are ignored. */
  report(kind: 'net.req' | 'net.tunnel'): void {
    if (this.#reported) return;
    this.#reported = true;
    const type: AuditType = this.#limited
      ? 'limit.exceeded'
      : this.decision === 'deny' || this.decision === 'review'
        ? 'policy.violation'
        : kind;
    this.#observer.event(this.toAudit(type));
  }

  toAudit(type: AuditType): AuditInput {
    return {
      type,
      request_id: this.requestId,
      tool: this.tool,
      decision: this.decision,
      reason: this.reason,
      method: this.method,
      scheme: this.scheme,
      host: this.host,
      port: this.port,
      path: this.path,
      ip: this.ip,
      status: this.status,
      bytes_up: this.bytesUp,
      bytes_down: this.bytesDown,
      duration_ms: Math.round((performance.now() - this.#started) * 1000) / 1000,
      rule: this.rule,
      detail: this.detail,
    };
  }
}
