// One exchange = one request or one tunnel. The pipeline fills in the facts as it learns them (who,
// what, where, bytes); how the exchange ended is settled exactly once, from the closed Outcome
// union, and the canonical audit event is reported exactly once, when the connection or response
// closes. The audit type and verdict come from the outcome table, never from the call site.
import { randomUUID } from 'node:crypto';
import type { AuditInput, AuditType, Observer } from '../observe/events.js';
import { OUTCOME, type Outcome } from '../policy/reasons.js';
import type { Decision, Verdict } from '../policy/types.js';
import { outcomeAnswer, type Answer } from './answers.js';

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
  scheme: 'http' | 'https';
  host: string | null = null;
  port: number | null = null;
  path: string | null = null;
  ip: string | null = null;
  status: number | null = null;
  bytesUp = 0;
  bytesDown = 0;
  rule: string | null = null;
  /**
   * How sluice saw the exchange (issue 16), for a rule written from the record: a CONNECT relayed
   * untouched (passthrough) or opened up (intercept); a request read inside an intercepted TLS
   * tunnel (intercept) or inside a plain tunnel (tunnel). Null for a request on the proxy port.
   */
  via: 'passthrough' | 'intercept' | 'tunnel' | null = null;
  #verdict: Verdict | null = null;
  /** the violation a review verdict let through (decided, or found by the credentials step) */
  #reviewed: { reason: Outcome; detail: string } | null = null;
  #outcome: { code: Outcome; detail: string } | null = null;
  /** how an exchange that ended without a failure ended: a sentence for the audit record */
  #note: string | null = null;

  constructor(observer: Observer, scheme: 'http' | 'https') {
    this.#observer = observer;
    this.scheme = scheme;
  }

  /** Records the policy decision (allow, review or deny) and the facts it canonicalized. */
  decided(d: Decision): void {
    this.#verdict = d.verdict;
    this.rule = d.rule;
    this.host = d.host;
    this.port = d.port;
    if (d.verdict === 'review' && d.reason) this.#reviewed = { reason: d.reason, detail: d.detail };
  }

  /** on_violation: review let a violation found after the decision through (e.g. a secret leak). */
  reviewed(reason: Outcome, detail: string): void {
    this.#verdict = 'review';
    this.#reviewed = { reason, detail };
  }

  /** Settles how the exchange ended; only the first call counts. False when it was already settled. */
  settle(code: Outcome, detail: string): boolean {
    if (this.#outcome) return false;
    this.#outcome = { code, detail };
    return true;
  }

  /** A sentence on how an exchange without a failure ended (e.g. closed before its ClientHello). */
  note(sentence: string): void {
    this.#note ??= sentence;
  }

  get outcome(): Outcome | null {
    return this.#outcome?.code ?? null;
  }

  get settled(): boolean {
    return this.#outcome !== null;
  }

  /**
   * Settles the exchange and returns the answer the client gets for it. When the exchange was
   * already settled (a limit cut it first), the answer still names this outcome but the record keeps the first.
   */
  answer(code: Outcome, detail: string, retryAfterSeconds?: number): Answer {
    this.settle(code, detail);
    const answer = outcomeAnswer(code, detail, this.requestId, retryAfterSeconds, this.host);
    this.status = answer.status;
    return answer;
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
    this.#observer.event(this.toAudit(kind));
  }

  toAudit(kind: 'net.req' | 'net.tunnel'): AuditInput {
    const outcome = this.#outcome;
    const entry = outcome ? OUTCOME[outcome.code] : null;
    let type: AuditType = kind;
    if (entry?.audit) type = entry.audit;
    else if (this.#verdict === 'review' || this.#verdict === 'deny') type = 'policy.violation';
    const decision: Verdict | null = entry?.denies ? 'deny' : this.#verdict;
    return {
      type,
      request_id: this.requestId,
      tool: this.tool,
      decision,
      reason: outcome?.code ?? this.#reviewed?.reason ?? null,
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
      detail: outcome?.detail ?? this.#reviewed?.detail ?? this.#note,
      ...(this.via === null ? {} : { via: this.via }),
    };
  }
}
