// The closed set of reasons a request is refused, and the one place each maps to an answer.

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
  'request_too_large',
  'response_too_large',
  'digest_mismatch',
  'rate_limited',
  'bad_request',
  'policy_halted',
] as const;
export type DenyReason = (typeof DENY_REASONS)[number];

/** Failures on the way upstream (not policy decisions): sent as X-Sluice-Error. */
export const UPSTREAM_ERRORS = ['upstream_unreachable', 'upstream_timeout', 'upstream_tls', 'upstream_protocol', 'secret_unavailable'] as const;
export type UpstreamError = (typeof UPSTREAM_ERRORS)[number];

/** HTTP status a client receives for each deny reason. */
export const DENY_STATUS: Record<DenyReason, number> = {
  unauthenticated: 407,
  no_rule: 403,
  port_not_allowed: 403,
  method_not_allowed: 403,
  path_not_allowed: 403,
  private_ip: 403,
  dns_failure: 502,
  sni_mismatch: 403,
  secret_not_granted: 403,
  secret_out_of_scope: 403,
  secret_required: 403,
  secret_leak: 403,
  request_too_large: 413,
  response_too_large: 502,
  digest_mismatch: 502,
  rate_limited: 429,
  bad_request: 400,
  policy_halted: 503,
};

export const UPSTREAM_ERROR_STATUS: Record<UpstreamError, number> = {
  upstream_unreachable: 502,
  upstream_timeout: 504,
  upstream_tls: 502,
  upstream_protocol: 502,
  secret_unavailable: 502,
};
