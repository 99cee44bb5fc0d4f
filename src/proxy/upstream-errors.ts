// Upstream failures mapped once to the error codes a client sees in X-Sluice-Error.
import type { Limits } from '../config/types.js';
import type { ErrorCode } from '../policy/reasons.js';

const TLS_CODES = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'ERR_TLS_CERT_ALTNAME_INVALID',
  'ERR_SSL_WRONG_VERSION_NUMBER',
  'EPROTO',
]);

const TIMEOUT_CODES = new Set(['UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', 'ETIMEDOUT']);

/** The error code and sentence for a failure on the way upstream; `limits` names the limit that ran out. */
export function classifyUpstreamError(err: unknown, limits?: Limits): { code: ErrorCode; detail: string } {
  const code = (err as { code?: string }).code ?? '';
  if (TIMEOUT_CODES.has(code)) {
    const limit = limits ? timeoutLimit(code, limits) : null;
    return { code: 'upstream_timeout', detail: `the upstream did not answer in time${limit ? `: ${limit}` : ''} (${code})` };
  }
  if (TLS_CODES.has(code) || code.startsWith('ERR_TLS_') || code.startsWith('ERR_SSL_')) {
    return { code: 'upstream_tls', detail: `the upstream's TLS certificate could not be verified (${code})` };
  }
  if (code.startsWith('HPE_') || code === 'UND_ERR_INFO' || code === 'UND_ERR_RES_CONTENT_LENGTH_MISMATCH') {
    return { code: 'upstream_protocol', detail: `the upstream sent a malformed HTTP response (${code})` };
  }
  return { code: 'upstream_unreachable', detail: `the upstream could not be reached (${code || 'connection failed'})` };
}

function timeoutLimit(code: string, limits: Limits): string | null {
  switch (code) {
    case 'UND_ERR_HEADERS_TIMEOUT':
      return `no response headers within header_timeout_ms (${limits.header_timeout_ms} ms)`;
    case 'UND_ERR_BODY_TIMEOUT':
      return `the response body was silent for idle_timeout_ms (${limits.idle_timeout_ms} ms)`;
    case 'UND_ERR_CONNECT_TIMEOUT':
    case 'ETIMEDOUT':
      return `no connection within connect_timeout_ms (${limits.connect_timeout_ms} ms)`;
    default:
      return null;
  }
}
