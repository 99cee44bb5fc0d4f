// PLACEHOLDER until the gate branch lands (that branch owns this file).
import { canonicalHost } from '../net/host.js';
import { readClientHello } from './client-hello.js';

export type GateResult =
  | { kind: 'need_more' }
  | { kind: 'refuse'; reason: 'bad_request' | 'sni_mismatch'; detail: string }
  | { kind: 'tls'; sni: string | null; alpn: string[] }
  | { kind: 'http' }
  | { kind: 'opaque' };

export function gateTunnelStart(bytes: Buffer, tunnel: { host: string; hostIsName: boolean; port: number }): GateResult {
  if (bytes.length === 0) return { kind: 'need_more' };
  if (bytes[0] === 0x16) {
    const hello = readClientHello(bytes);
    if (hello.state === 'need_more') return bytes.length > 17 * 1024 ? { kind: 'refuse', reason: 'bad_request', detail: 'too big' } : { kind: 'need_more' };
    if (hello.state === 'not_tls') return { kind: 'refuse', reason: 'bad_request', detail: 'the tunnel starts like TLS but is not a ClientHello sluice can read' };
    if (hello.sni === null) return tunnel.hostIsName ? { kind: 'refuse', reason: 'sni_mismatch', detail: `the TLS ClientHello names no server (SNI) but the tunnel is for ${tunnel.host}` } : { kind: 'tls', sni: null, alpn: hello.alpn };
    if (canonicalHost(hello.sni)?.host !== tunnel.host) return { kind: 'refuse', reason: 'sni_mismatch', detail: `the TLS ClientHello names ${hello.sni.slice(0, 100)} but the tunnel was allowed for ${tunnel.host}` };
    return { kind: 'tls', sni: hello.sni, alpn: hello.alpn };
  }
  if (tunnel.port === 443) return { kind: 'refuse', reason: 'bad_request', detail: `the tunnel to ${tunnel.host}:443 did not start with a TLS ClientHello` };
  const text = bytes.subarray(0, 4096).toString('latin1');
  if (/^[\r\n\t ]*[!#$%&'*+.^_`|~0-9A-Za-z-]+ +(\/|\*|\S*:\/\/)/.test(text)) return { kind: 'http' };
  if (!text.includes('\n') && bytes.length < 4096 && /^[\x20-\x7e\r\t]*$/.test(text)) return { kind: 'need_more' };
  return { kind: 'opaque' };
}
