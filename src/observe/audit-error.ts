// The audit's error, shared by the sink and its tail recovery: a code a caller can act on and a
// sentence that names the file, never a record's content.
export class AuditError extends Error {
  readonly code: 'AUDIT_TORN_TAIL' | 'AUDIT_BAD_TAIL' | 'AUDIT_WRITE_FAILED' | 'AUDIT_CLOSED';
  constructor(code: AuditError['code'], message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'AuditError';
    this.code = code;
  }
}
