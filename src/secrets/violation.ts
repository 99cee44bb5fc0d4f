// Why a request carrying secrets (or what looks like one) is refused. The detail names an alias or
// a pattern, never a value.

/** Deny reasons a secret check can produce (all members of DenyReason). */
export type SecretRefusal =
  | 'secret_not_granted'
  | 'secret_out_of_scope'
  | 'secret_required'
  | 'secret_leak'
  | 'secret_misplaced'
  | 'secret_insecure'
  /** a request body sluice cannot decode to check it (an unknown or corrupt Content-Encoding) */
  | 'bad_request';

/**
 * A refusal; the upstream error `secret_unavailable` (502) when an in-scope secret has no value now;
 * or `request_too_large` when a request body decodes to more than the request limit.
 */
export type SecretFailure = SecretRefusal | 'secret_unavailable' | 'request_too_large';

/** The error a request-body stream fails with; match on `code`, then read `reason` and `alias`. */
export class SecretViolation extends Error {
  readonly code = 'SLUICE_SECRET_VIOLATION';
  constructor(
    readonly reason: SecretFailure,
    /** the alias concerned, or null for a credential shape or an unknown placeholder */
    readonly alias: string | null,
    detail: string,
  ) {
    super(detail);
    this.name = 'SecretViolation';
  }
}
