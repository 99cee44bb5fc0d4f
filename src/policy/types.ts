import type { Limits } from '../config/types.js';
import type { RuleCaps } from './compile.js';
import type { DenyReason } from './reasons.js';

/** What the proxy knows about a request when it asks for a decision. */
export interface DecisionRequest {
  /** 'connect' = a CONNECT line (host and port only); 'request' = a full HTTP request */
  phase: 'connect' | 'request';
  /** as the client wrote it (any case, maybe a trailing dot, maybe IDN, IPv6 in brackets or not) */
  host: string;
  port: number;
  /** upper-case method; 'CONNECT' for the connect phase */
  method: string;
  /** raw request-target path with query (origin-form), absent for the connect phase */
  path?: string;
  /**
   * issue 16: the evaluation time (ms since the epoch), given by the caller so the decision stays a
   * pure function. Only a tool's review_until reads it; absent, a review window counts as ended.
   */
  now?: number;
}

export type Verdict = 'allow' | 'deny' | 'review';

/** An immutable decision: made once, never rewritten. */
export interface Decision {
  verdict: Verdict;
  /** null when allowed outright; the violated reason for deny and review */
  reason: DenyReason | null;
  /** one human sentence a person or an agent can act on */
  detail: string;
  tool: string;
  /** id of the matching rule, e.g. "web-fetch.allow[2]"; null when none matched */
  rule: string | null;
  /** canonical host (lower case, punycode, no trailing dot, IPv6 without brackets) */
  host: string;
  port: number;
  /** for https CONNECT: whether sluice must terminate TLS to enforce the caller's rules or secrets */
  intercept: boolean;
  /** limits in force: policy, then tool, then rule overrides */
  limits: Limits;
  /** artifact pin of the matching rule */
  sha256: string | null;
  /** normalized path used for matching (request phase) */
  path: string | null;
  /** the matching rule's own caps (per tool and rule, on top of the tool's); null = none */
  ruleCaps: RuleCaps | null;
  /** aliases granted to the tool whose hosts include this host (swap, inject, require apply) */
  secrets: readonly string[];
}
