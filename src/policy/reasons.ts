// The closed set of outcomes an exchange can end with, and the one table that maps each to what
// the client sees (status, header, body kind), what the audit records (event type, verdict), what
// on_violation: review may turn into an allowed violation, and whether the client may retry.
// Everything that answers, audits or counts an outcome reads this table; nothing restates it.

/** Policy refusals (the design's closed list): sent as X-Sluice-Deny. */
export const DENY_REASONS = [
  'unauthenticated',
  'no_rule',
  'port_not_allowed',
  'method_not_allowed',
  'path_not_allowed',
  'private_ip',
  'dns_failure',
  'sni_mismatch',
  'secret_not_granted',
  'secret_out_of_scope',
  'secret_required',
  'secret_leak',
  'secret_misplaced',
  'secret_insecure',
  'request_too_large',
  'response_too_large',
  'tunnel_too_large',
  'digest_mismatch',
  'rate_limited',
  'bad_request',
  'policy_halted',
  // MCP-aware rules (issue 18): a JSON-RPC call the rule's mcp: lists do not allow
  'mcp_tool_not_allowed',
  'mcp_resource_not_allowed',
  'mcp_prompt_not_allowed',
  'mcp_method_not_allowed',
  // Content rules (issue 21: git push rules; the content seam in src/proxy/inspect.ts).
  'uninspectable_body',
  'git_ref_not_allowed',
  'git_fetch_not_allowed',
  'git_push_option_not_allowed',
  // issue 17: a tool with on_violation: ask waited for a supervisor
  'approval_timeout',
  'approval_denied',
  'approval_queue_full',
  // issue 22: a wildcard rule refused a hostname label that reads as encoded data
  'encoded_hostname',
] as const;
export type DenyReason = (typeof DENY_REASONS)[number];

/** Failures that are not policy decisions (the upstream or the client failed): sent as X-Sluice-Error. */
export const ERROR_CODES = [
  'upstream_unreachable',
  'upstream_timeout',
  'upstream_tls',
  'upstream_protocol',
  'secret_unavailable',
  'client_timeout',
  'headers_too_large',
  // sluice itself stopped (issue 15): a transfer still open when the drain timeout ran out.
  'shutdown',
] as const;
export type ErrorCode = (typeof ERROR_CODES)[number];

/** Every way an exchange can end other than success. */
export type Outcome = DenyReason | ErrorCode;
export const OUTCOMES: readonly Outcome[] = [...DENY_REASONS, ...ERROR_CODES];

export interface OutcomeEntry {
  status: number;
  /** the response header that names the outcome, and the `error` field of the JSON body */
  header: 'X-Sluice-Deny' | 'X-Sluice-Error';
  body: 'denied' | 'upstream' | 'client' | 'proxy';
  /**
   * The audit type of an exchange that ends this way; null = the exchange's own kind (net.req,
   * net.tunnel), for failures that are not violations.
   */
  audit: 'policy.violation' | 'limit.exceeded' | null;
  /**
   * The audit type when the request carried no credentials at all: the proxy-auth challenge that
   * libcurl (git, curl --proxy-anyauth) and others probe with before sending Basic. Answered by a
   * retry, it is no violation, so it is recorded and counted apart (issue 15). Null = as `audit`.
   */
  challengeAudit: 'auth.challenge' | null;
  /** whether the exchange's verdict becomes deny (a refusal or a limit) or stays as decided */
  denies: boolean;
  /** on_violation: review allows the request and records the violation */
  reviewable: boolean;
  /** the client may retry later: the answer carries Retry-After (seconds; the limiter may say more) */
  retryAfterSeconds: number | null;
}

const deny = (status: number, extra: Partial<OutcomeEntry> = {}): OutcomeEntry => ({
  status,
  header: 'X-Sluice-Deny',
  body: 'denied',
  audit: 'policy.violation',
  challengeAudit: null,
  denies: true,
  reviewable: false,
  retryAfterSeconds: null,
  ...extra,
});
const limit = (status: number, extra: Partial<OutcomeEntry> = {}): OutcomeEntry => deny(status, { audit: 'limit.exceeded', ...extra });
const upstream = (status: number): OutcomeEntry => ({
  status,
  header: 'X-Sluice-Error',
  body: 'upstream',
  audit: null,
  challengeAudit: null,
  denies: false,
  reviewable: false,
  retryAfterSeconds: null,
});
/** The client failed (too slow, too large a head): not a policy decision, recorded as the exchange itself. */
const client = (status: number): OutcomeEntry => ({
  status,
  header: 'X-Sluice-Error',
  body: 'client',
  audit: null,
  challengeAudit: null,
  denies: false,
  reviewable: false,
  retryAfterSeconds: null,
});

export const OUTCOME: Readonly<Record<Outcome, Readonly<OutcomeEntry>>> = Object.freeze({
  unauthenticated: deny(407, { challengeAudit: 'auth.challenge' }),
  no_rule: deny(403, { reviewable: true }),
  port_not_allowed: deny(403, { reviewable: true }),
  method_not_allowed: deny(403, { reviewable: true }),
  path_not_allowed: deny(403, { reviewable: true }),
  private_ip: deny(403),
  dns_failure: deny(502),
  sni_mismatch: deny(403),
  secret_not_granted: deny(403),
  secret_out_of_scope: deny(403),
  secret_required: deny(403),
  secret_leak: deny(403, { reviewable: true }),
  secret_misplaced: deny(403),
  secret_insecure: deny(403),
  request_too_large: limit(413),
  response_too_large: limit(502),
  tunnel_too_large: limit(502),
  digest_mismatch: deny(502),
  rate_limited: limit(429, { retryAfterSeconds: 1 }),
  bad_request: deny(400),
  policy_halted: deny(503, { retryAfterSeconds: 5 }),
  // Answered as JSON-RPC errors when the body holds a request (the client SDK surfaces them); the
  // status is what a body of notifications only, or the older HTTP+SSE transport, gets.
  mcp_tool_not_allowed: deny(403, { reviewable: true }),
  mcp_resource_not_allowed: deny(403, { reviewable: true }),
  mcp_prompt_not_allowed: deny(403, { reviewable: true }),
  mcp_method_not_allowed: deny(403, { reviewable: true }),
  // Content rules: a body a rule's inspector must read but cannot (compressed, malformed) is refused, never passed.
  uninspectable_body: deny(400),
  // A git push with a ref its rule refuses (answered in git report-status), and fetch: false.
  git_ref_not_allowed: deny(403, { reviewable: true }),
  git_fetch_not_allowed: deny(403, { reviewable: true }),
  git_push_option_not_allowed: deny(403, { reviewable: true }),
  // issue 17: held for a supervisor: nobody decided in time, a supervisor said no, or too many already wait
  approval_timeout: deny(403),
  approval_denied: deny(403),
  approval_queue_full: limit(429, { retryAfterSeconds: 5 }),
  // issue 22: reviewable like secret_leak, so a rollout can learn which names a tool uses (strict mode has no review).
  encoded_hostname: deny(403, { reviewable: true }),
  upstream_unreachable: upstream(502),
  upstream_timeout: upstream(504),
  upstream_tls: upstream(502),
  upstream_protocol: upstream(502),
  secret_unavailable: upstream(502),
  client_timeout: client(408),
  headers_too_large: client(431),
  // Not a failure of the tool or the upstream: recorded as the exchange itself, with bytes so far.
  shutdown: {
    status: 503,
    header: 'X-Sluice-Error',
    body: 'proxy',
    audit: null,
    challengeAudit: null,
    denies: false,
    reviewable: false,
    retryAfterSeconds: 5,
  },
});

export function isOutcome(code: string): code is Outcome {
  return Object.hasOwn(OUTCOME, code);
}

/** The reason phrase of each status sluice answers with itself. */
export const STATUS_TEXT: Readonly<Record<number, string>> = Object.freeze({
  400: 'Bad Request',
  403: 'Forbidden',
  407: 'Proxy Authentication Required',
  408: 'Request Timeout',
  413: 'Content Too Large',
  429: 'Too Many Requests',
  431: 'Request Header Fields Too Large',
  502: 'Bad Gateway',
  503: 'Service Unavailable',
  504: 'Gateway Timeout',
});
