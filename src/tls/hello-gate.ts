// The one gate every CONNECT tunnel's first bytes go through, passthrough and interception alike.
// Pure (sans-I/O): the I/O adapter owns the socket and the hello timer, buffers what the client has
// sent so far, and calls gateTunnelStart with all of it after each chunk until the answer is not
// `need_more`. It never has to buffer more than MAX_GATE_BYTES: at that size the answer is final.
//
// The rules, in order:
//  1. Anything that starts like TLS (a record of content type 20–24 with version 3.x, or an
//     SSLv2-style hello) must parse completely as one ClientHello, on every port, or it is refused
//     (bad_request). Fragmented into more than MAX_HELLO_RECORDS records, padded past 16 KiB, a
//     record over the TLS limit, an alert or change_cipher_spec first, a repeated extension, a
//     malformed server_name: all refused. Treating such bytes as "not TLS" and relaying them is
//     how the SNI check used to be skipped off port 443.
//  2. The SNI rule, for a hello that parsed: its server_name, canonicalised like any host
//     (net/host.ts), must equal the tunnel's host. No SNI is accepted only for a tunnel to an IP
//     literal (clients send none there). An SNI that is an IP literal is not a valid SNI (RFC 6066
//     §3) and is refused, whatever the tunnel. Failures are sni_mismatch.
//  3. Not TLS, to port 443: refused (bad_request). Port 443 carries TLS.
//  4. Not TLS, to any other port: `http` when the bytes are (or may still become) an HTTP/1.x
//     request, which the caller serves through the ordinary admission pipeline (Host checked);
//     `opaque` when they clearly are another protocol. Fail-closed about what counts as HTTP, since
//     an opaque tunnel is relayed unchecked:
//       - leading CR, LF, SP and HT are skipped, as lenient servers skip them;
//       - a first (significant) byte that is a control byte or ≥ 0x80 is opaque at once;
//       - a first line `TOKEN SP TARGET ...` (TOKEN of tchar in any case, SP one or more spaces or
//         tabs) is HTTP when TARGET starts with '/' or '*', or the rest of the line contains "://",
//         or the line ends in HTTP/<digit>; decided as soon as the bytes show it;
//       - a first line that cannot take that form (a non-tchar first byte, a TOKEN followed by
//         anything but SP/HT, a line that ends without meeting the rule) is opaque;
//       - printable bytes with no line end within MAX_FIRST_LINE_BYTES are refused (bad_request):
//         sluice cannot tell which protocol they are;
//       - otherwise need_more until the first line end.
//     Examples: `SSH-2.0-OpenSSH_9.6\r\n`, Redis RESP `*1\r\n$4\r\nPING\r\n`, a Postgres startup
//     message (`\0\0\0\x08...`) → opaque; `get /x HTTP/1.1`, `\r\nGET /`, `GET http://a/ HTTP/1.0`,
//     `OPTIONS * HTTP/1.1`, `GET a.test:80 HTTP/1.1` → http.
// A result other than need_more never changes as more bytes arrive, so the adapter may stop at the
// first one.
import { hostForUrl, canonicalHost } from '../net/host.js';
import { MAX_HELLO_WIRE_BYTES, scanClientHello } from './client-hello.js';

export { MAX_HELLO_RECORDS } from './client-hello.js';

export interface GateTunnel {
  /** Canonical: lower-case name, or IP literal without brackets. */
  host: string;
  hostIsName: boolean;
  port: number;
}

export type GateResult =
  | { kind: 'need_more' }
  | { kind: 'refuse'; reason: 'bad_request' | 'sni_mismatch'; detail: string }
  /** `sni` is canonical (so equal to the tunnel host) or null for an IP tunnel without SNI. */
  | { kind: 'tls'; sni: string | null; alpn: string[] }
  | { kind: 'http' }
  | { kind: 'opaque' };

/** How far a non-TLS first line may run before sluice gives up telling its protocol. */
export const MAX_FIRST_LINE_BYTES = 4096;
/** The most bytes the adapter ever needs to hold: with this many the answer is final. */
export const MAX_GATE_BYTES = Math.max(MAX_HELLO_WIRE_BYTES, MAX_FIRST_LINE_BYTES);

/** How much of a client-chosen SNI goes into a detail sentence. */
const MAX_SNI_IN_DETAIL = 100;

const NEED_MORE: GateResult = Object.freeze({ kind: 'need_more' });
const HTTP: GateResult = Object.freeze({ kind: 'http' });
const OPAQUE: GateResult = Object.freeze({ kind: 'opaque' });

export function gateTunnelStart(bytes: Buffer, tunnel: GateTunnel): GateResult {
  const scan = scanClientHello(bytes);
  switch (scan.state) {
    case 'need_more':
      return NEED_MORE;
    case 'malformed':
      return badRequest(`the tunnel's first bytes look like TLS but are not a ClientHello sluice can read (${scan.why})`);
    case 'tls':
      return checkSni(scan.sni, scan.alpn, tunnel);
    case 'not_tls':
      if (tunnel.port === 443) return badRequest(`the tunnel to ${authority(tunnel)} did not start with a TLS ClientHello`);
      return sniffPlain(bytes, tunnel);
  }
}

function checkSni(sni: string | null, alpn: string[], tunnel: GateTunnel): GateResult {
  if (sni === null) {
    if (!tunnel.hostIsName) return { kind: 'tls', sni: null, alpn };
    return sniMismatch(`the TLS ClientHello names no server (SNI) but the tunnel is for ${tunnel.host}`);
  }
  const canonical = canonicalHost(sni);
  if (canonical?.kind === 'ip') {
    return sniMismatch(
      `the TLS ClientHello names the IP address ${shown(sni)} as its server, which SNI may not carry (RFC 6066 §3); ` +
        `the tunnel is for ${tunnel.host}`,
    );
  }
  if (canonical === null || canonical.host !== tunnel.host) {
    return sniMismatch(`the TLS ClientHello names ${shown(sni)} but the tunnel was allowed for ${tunnel.host}`);
  }
  return { kind: 'tls', sni: canonical.host, alpn };
}

const CR = 0x0d;
const LF = 0x0a;
const SP = 0x20;
const HT = 0x09;
/** tchar (RFC 9110 §5.6.2): the bytes a method may be made of. */
const TCHAR = new Uint8Array(256);
for (const c of "!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz") TCHAR[c.charCodeAt(0)] = 1;
/** The line (trailing blanks dropped) ends in an HTTP version: the request-line of an authority-form target. */
const ENDS_IN_VERSION = /HTTP\/[0-9][0-9.]*[ \t]*$/i;

/** Rule 4 of the file comment. */
function sniffPlain(buf: Buffer, tunnel: GateTunnel): GateResult {
  const end = Math.min(buf.length, MAX_FIRST_LINE_BYTES);
  const undecided = (): GateResult =>
    buf.length >= MAX_FIRST_LINE_BYTES
      ? badRequest(
          `the tunnel to ${authority(tunnel)} sent ${MAX_FIRST_LINE_BYTES} bytes without a line end; ` +
            'sluice cannot tell which protocol it speaks',
        )
      : NEED_MORE;

  let at = 0;
  while (at < end && isBlankOrLineEnd(buf[at]!)) at++;
  if (at === end) return undecided();
  const first = buf[at]!;
  if (first < 0x20 || first >= 0x7f) return OPAQUE;

  const tokenStart = at;
  while (at < end && TCHAR[buf[at]!]) at++;
  if (at === end) return undecided();
  if (at === tokenStart) return OPAQUE; // printable, but no method starts with it
  if (buf[at] !== SP && buf[at] !== HT) return OPAQUE; // "PING\r\n", "SSH-2.0-x\r\n", "*1\r\n"
  while (at < end && (buf[at] === SP || buf[at] === HT)) at++;
  if (at === end) return undecided();
  const target = buf[at]!;
  if (target === 0x2f /* / */ || target === 0x2a /* * */) return HTTP;
  if (target === CR || target === LF) return OPAQUE;

  const restStart = at;
  while (at < end && buf[at] !== CR && buf[at] !== LF) at++;
  const rest = buf.toString('latin1', restStart, at);
  if (rest.includes('://')) return HTTP;
  if (at === end) return undecided();
  return ENDS_IN_VERSION.test(rest) ? HTTP : OPAQUE;
}

function isBlankOrLineEnd(b: number): boolean {
  return b === CR || b === LF || b === SP || b === HT;
}

function authority(tunnel: GateTunnel): string {
  return `${hostForUrl(tunnel.host)}:${tunnel.port}`;
}

function shown(sni: string): string {
  return sni.length > MAX_SNI_IN_DETAIL ? `${sni.slice(0, MAX_SNI_IN_DETAIL)}…` : sni;
}

function badRequest(detail: string): GateResult {
  return { kind: 'refuse', reason: 'bad_request', detail };
}

function sniMismatch(detail: string): GateResult {
  return { kind: 'refuse', reason: 'sni_mismatch', detail };
}
