// Why a request carrying secrets (or what looks like one) is refused. The detail names an alias or
// a pattern, never a value.

/** Deny reasons a secret check can produce (all members of DenyReason). */
export type SecretRefusal = 'secret_not_granted' | 'secret_out_of_scope' | 'secret_required' | 'secret_leak';

/** A refusal, or the upstream error `secret_unavailable` (502) when an in-scope secret has no value now. */
export type SecretFailure = SecretRefusal | 'secret_unavailable';

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
