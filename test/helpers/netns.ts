// The private network namespace made by scripts/test-netns.mjs, and canaries on its denied addresses.
// Inside it only `lo` exists; the run adds the addresses below to `lo`, so a test can serve a
// "public" upstream and prove sluice never dials a private one, without a packet leaving the machine.
import net from 'node:net';
import { networkInterfaces } from 'node:os';

/** A public-looking address (example.com's old one) that sluice may dial: upstreams listen here. */
export const PUBLIC_UPSTREAM_IP = '93.184.216.34';
/** RFC 1918: a private address sluice must refuse. */
export const PRIVATE_CANARY_IP = '10.0.0.1';
/** Link-local cloud metadata endpoint, the classic SSRF target. */
export const METADATA_CANARY_IP = '169.254.169.254';
/** RFC 3849 documentation prefix; added only when the namespace has IPv6 (see hasNetnsIpv6). */
export const DOCUMENTATION_IPV6 = '2001:db8::1';

export const NETNS_SKIP_REASON = 'needs the private network namespace of `npm test` (SLUICE_TEST_NETNS=1, root and unshare -n)';

/** True when running inside the namespace made by scripts/test-netns.mjs. */
export function inNetns(): boolean {
  return process.env.SLUICE_TEST_NETNS === '1';
}

/** True when the namespace also carries DOCUMENTATION_IPV6. */
export function hasNetnsIpv6(): boolean {
  return inNetns() && process.env.SLUICE_TEST_NETNS_IPV6 === '1';
}

/** For tap's `skip` option: `t.test('...', { skip: netnsSkip() }, ...)`. */
export function netnsSkip(): false | string {
  return inNetns() ? false : NETNS_SKIP_REASON;
}

/** Names of the network interfaces this process sees (inside the namespace: only "lo"). */
export function interfaceNames(): string[] {
  return Object.keys(networkInterfaces()).sort();
}

export interface Canary {
  ip: string;
  port: number;
  /** TCP connections accepted so far. */
  connections(): number;
  close(): Promise<void>;
}

/**
 * A TCP listener on an address sluice must never dial. It counts and drops every connection, so a
 * test can assert `connections() === 0` after a denied request. Port 0 picks a free port.
 */
export async function startCanary(ip: string, port = 0): Promise<Canary> {
  let accepted = 0;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    accepted += 1;
    sockets.add(socket);
    socket.on('error', () => {});
    socket.on('close', () => sockets.delete(socket));
    socket.destroy();
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: ip, port, exclusive: true }, () => resolve());
  });
  const bound = server.address() as net.AddressInfo;
  return {
    ip,
    port: bound.port,
    connections: () => accepted,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}
