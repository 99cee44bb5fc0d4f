// "Is this address and port sluice itself?" — asked before every dial, so a tool cannot loop a
// request back into the proxy or reach the admin port through it. Comparing strings is not enough:
// the same socket answers to many spellings. This module compares addresses as the kernel does:
//  - every address is read with ipaddr.js and IPv4-mapped IPv6 is folded to IPv4
//    (`::ffff:127.0.0.1` is 127.0.0.1; a listen on 127.0.0.1 is reached through it);
//  - a listen host that is a name is resolved ONCE, when it is added, through an injected lookup
//    (default: the system resolver, all answers); `localhost` is 127.0.0.1 and ::1 without asking;
//  - a wildcard listen (0.0.0.0, ::, or an empty host) is "every address of this host": all of
//    127.0.0.0/8, ::1, the unspecified addresses, and every address of every interface (read from
//    an injectable source when the wildcard is added, again on refreshInterfaces());
//  - otherwise only the same address counts: Linux binds a 127.x listen to exactly that address,
//    so 127.0.0.2 does not reach a listen on 127.0.0.1, nor ::1 one on 127.0.0.1;
//  - dialling 0.0.0.0 (or ::) reaches the local loopback on Linux, so it counts as 127.0.0.1 (::1);
//  - a NAT64 address (64:ff9b::/96, and the local-use 64:ff9b:1::/48 read the same way) counts
//    as the IPv4 in its last 32 bits, which the gateway dials.
// Pure apart from the injected lookup and interface list: no sockets, no clock.
import { promises as dns } from 'node:dns';
import { networkInterfaces } from 'node:os';
import { isIP } from 'node:net';
import ipaddr from 'ipaddr.js';
import { canonicalHost } from './host.js';

export interface Endpoint {
  readonly host: string;
  readonly port: number;
}

export interface SelfOptions {
  /** Every address a listen host name resolves to. Default: dns.promises.lookup(name, { all: true }). */
  lookup?: (name: string) => Promise<readonly string[]>;
  /** Every address of this host's interfaces. Default: os.networkInterfaces(). */
  interfaceAddresses?: () => Iterable<string>;
}

type Address = ipaddr.IPv4 | ipaddr.IPv6;

const LOCALHOST = ['127.0.0.1', '::1'] as const;

export class SelfEndpoints {
  /** `${address} ${port}` for every exact listen. */
  readonly #exact = new Set<string>();
  readonly #wildcardPorts = new Set<number>();
  /** every port sluice listens on: a dial to any other port is never to sluice */
  readonly #ports = new Set<number>();
  readonly #lookup: (name: string) => Promise<readonly string[]>;
  readonly #interfaceAddresses: () => Iterable<string>;
  #local = new Set<string>();

  constructor(options: SelfOptions = {}) {
    this.#lookup = options.lookup ?? defaultLookup;
    this.#interfaceAddresses = options.interfaceAddresses ?? defaultInterfaceAddresses;
  }

  /** A set holding `endpoints`, names among them resolved now. Rejects when a host cannot be read or resolved. */
  static async create(endpoints: readonly Endpoint[], options: SelfOptions = {}): Promise<SelfEndpoints> {
    const self = new SelfEndpoints(options);
    for (const endpoint of endpoints) await self.add(endpoint);
    return self;
  }

  /**
   * Adds a listening endpoint, e.g. the real one after a listen on port 0. Port 0 (not listening
   * yet) adds nothing: add the bound endpoint once it is known. A name is resolved here, once;
   * a failure rejects rather than leaving the endpoint unguarded.
   */
  async add(endpoint: Endpoint): Promise<void> {
    const { port } = endpoint;
    if (!Number.isInteger(port) || port < 0 || port > 65535) throw new RangeError(`not a port: ${port}`);
    if (port === 0) return;
    this.#ports.add(port);
    for (const address of await this.#addressesOf(endpoint.host)) {
      if (address.range() === 'unspecified') {
        if (this.#wildcardPorts.size === 0) this.refreshInterfaces();
        this.#wildcardPorts.add(port);
      } else {
        this.#exact.add(`${address.toString()} ${port}`);
      }
    }
  }

  /** Re-reads this host's interface addresses (they matter only for wildcard listens). */
  refreshInterfaces(): void {
    const local = new Set<string>();
    for (const raw of this.#interfaceAddresses()) {
      const address = parseAddress(raw);
      if (address) local.add(address.toString());
    }
    this.#local = local;
  }

  /** True when dialling ip:port would reach one of sluice's own listeners. An address it cannot read counts as self. */
  isSelf(ip: string, port: number): boolean {
    // An address it cannot read counts as self; most dials are then to a port no listener of
    // sluice has, with nothing more to parse.
    if (isIP(ip) === 0) return true;
    if (!this.#ports.has(port)) return false;
    const address = parseAddress(ip);
    if (!address) return true;
    // A NAT64 gateway turns 64:ff9b::a.b.c.d into a.b.c.d, which may be this host's own address
    // (the vetting judges these by the IPv4 inside and lets a public one through).
    if (address.kind() === 'ipv6' && address.range() === 'rfc6052') {
      const embedded = new ipaddr.IPv4((address as ipaddr.IPv6).toByteArray().slice(12));
      if (this.#isSelfAddress(embedded, port)) return true;
    }
    return this.#isSelfAddress(address, port);
  }

  #isSelfAddress(address: Address, port: number): boolean {
    const range = address.range();
    if (this.#wildcardPorts.has(port) && (range === 'loopback' || range === 'unspecified' || this.#local.has(address.toString()))) {
      return true;
    }
    const dialled = range === 'unspecified' ? (address.kind() === 'ipv4' ? '127.0.0.1' : '::1') : address.toString();
    return this.#exact.has(`${dialled} ${port}`);
  }

  /** The endpoints as `address:port` and `*:port` (wildcards), for logs and /status. */
  describe(): string[] {
    const exact = [...this.#exact].map((entry) => {
      const [address, port] = entry.split(' ') as [string, string];
      return address.includes(':') ? `[${address}]:${port}` : `${address}:${port}`;
    });
    return [...exact, ...[...this.#wildcardPorts].map((port) => `*:${port}`)];
  }

  async #addressesOf(host: string): Promise<Address[]> {
    if (host === '') return [ipaddr.parse('::')]; // Node listens on :: (and 0.0.0.0) when no host is given
    const literal = parseAddress(host);
    if (literal) return [literal];
    const canonical = canonicalHost(host);
    if (canonical === null) throw new Error(`cannot read the listen host ${JSON.stringify(host.slice(0, 100))}`);
    if (canonical.kind === 'ip') return [parseAddress(canonical.host)!];
    if (canonical.host === 'localhost') return LOCALHOST.map((a) => parseAddress(a)!);
    let answers: readonly string[];
    try {
      answers = await this.#lookup(canonical.host);
    } catch (err) {
      throw new Error(`cannot resolve the listen host ${canonical.host}: ${(err as Error).message}`);
    }
    const addresses = answers.map((a) => parseAddress(a));
    if (addresses.length === 0 || addresses.some((a) => a === null)) {
      throw new Error(`the listen host ${canonical.host} resolved to no usable address (${answers.join(', ') || 'none'})`);
    }
    return addresses as Address[];
  }
}

/**
 * An IP literal as the kernel would take it: brackets and a zone dropped, IPv4-mapped IPv6 folded
 * to IPv4 (process() must come before range(), or a mapped loopback reads as 'ipv4Mapped').
 * Null for anything that is not strictly an IP literal (names, odd IPv4 spellings are the
 * resolver's business and never reach a dial).
 */
function parseAddress(raw: string): Address | null {
  let text = raw.startsWith('[') && raw.endsWith(']') ? raw.slice(1, -1) : raw;
  const zone = text.indexOf('%');
  if (zone !== -1 && text.includes(':')) text = text.slice(0, zone);
  if (!ipaddr.IPv6.isValid(text) && !ipaddr.IPv4.isValidFourPartDecimal(text)) return null;
  try {
    return ipaddr.process(text);
  } catch {
    return null;
  }
}

async function defaultLookup(name: string): Promise<readonly string[]> {
  const answers = await dns.lookup(name, { all: true });
  return answers.map((a) => a.address);
}

function defaultInterfaceAddresses(): string[] {
  return Object.values(networkInterfaces()).flatMap((list) => (list ?? []).map((i) => i.address));
}
