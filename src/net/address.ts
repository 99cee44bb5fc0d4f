/**
 * Which IP addresses sluice may connect to. Pure: no I/O, no DNS, no clock.
 *
 * Denied by default (every range that is not globally reachable, IANA special-purpose registries,
 * RFC 6890 / RFC 8190), named as in the verdict's `range`:
 *
 * IPv4
 *   unspecified              0.0.0.0/32          RFC 1122 §3.2.1.3 (Linux connects it to localhost)
 *   thisNetwork              0.0.0.0/8           RFC 791, RFC 1122 §3.2.1.3
 *   private                  10/8 172.16/12 192.168/16   RFC 1918
 *   carrierGradeNat          100.64.0.0/10       RFC 6598
 *   loopback                 127.0.0.0/8         RFC 1122 §3.2.1.3
 *   linkLocal                169.254.0.0/16      RFC 3927 (cloud metadata 169.254.169.254)
 *   ietfProtocolAssignments  192.0.0.0/24        RFC 6890 §2.2.2
 *   documentation            192.0.2/24 198.51.100/24 203.0.113/24   RFC 5737
 *   6to4Relay                192.88.99.0/24      RFC 7526 (deprecated 6to4 relay anycast)
 *   benchmarking             198.18.0.0/15       RFC 2544
 *   multicast                224.0.0.0/4         RFC 5771
 *   broadcast                255.255.255.255/32  RFC 919, RFC 8190
 *   reserved                 240.0.0.0/4         RFC 1112 §4
 *
 * IPv6
 *   unspecified              ::/128              RFC 4291 §2.5.2
 *   loopback                 ::1/128             RFC 4291 §2.5.3
 *   ipv4Mapped(…)            ::ffff:0:0/96       RFC 4291 §2.5.5.2, judged by the IPv4 inside
 *   ipv4Translated(…)        ::ffff:0:0:0/96     RFC 7915 (SIIT, translator-internal), always denied
 *   ipv4Compatible(…)        ::/96               RFC 4291 §2.5.5.1 (deprecated), always denied
 *   nat64(…)                 64:ff9b::/96        RFC 6052, judged by the IPv4 inside
 *   nat64Local               64:ff9b:1::/48      RFC 8215 (local-use; embedding position unknown)
 *   discard                  100::/64            RFC 6666
 *   teredo(…)                2001::/32           RFC 4380, judged by the server and client IPv4
 *   benchmarking             2001:2::/48         RFC 5180
 *   orchidV2                 2001:20::/28        RFC 7343
 *   ietfProtocolAssignments  2001::/23 (rest)    RFC 2928, RFC 6890
 *   documentation            2001:db8::/32 3fff::/20   RFC 3849, RFC 9637
 *   6to4(…)                  2002::/16           RFC 3056, judged by the IPv4 inside
 *   segmentRouting           5f00::/16           RFC 9602
 *   uniqueLocal              fc00::/7            RFC 4193
 *   linkLocal                fe80::/10           RFC 4291 §2.5.6
 *   siteLocal                fec0::/10           RFC 3879 (deprecated)
 *   multicast                ff00::/8            RFC 4291 §2.7
 *   reserved                 outside 2000::/3    RFC 4291 §2.4 (not assigned for unicast)
 *
 * Everything else is 'unicast' and allowed. `private_ip: allow` allows the non-global ranges, and an
 * `allow_private_cidrs` entry allows the addresses inside it; neither ever allows unspecified,
 * multicast or broadcast (connecting there reaches this host or many hosts, never one service).
 */
import { isIP } from 'node:net';
import { createRequire } from 'node:module';
import type IpAddr from 'ipaddr.js';

// required, not imported: Node's import of a CommonJS module scans its source for exports first (a start pays it)
const ipaddr = createRequire(import.meta.url)('ipaddr.js') as typeof IpAddr;

type IPv4 = IpAddr.IPv4;
type IPv6 = IpAddr.IPv6;

export type AddressVerdict =
  { allowed: true; ip: string; range: string; exception: string | null } | { allowed: false; ip: string; range: string };

/** An `allow_private_cidrs` entry, parsed once. */
export interface CidrException {
  readonly entry: string;
  readonly network: IPv4 | IPv6;
  readonly prefix: number;
}

export interface AddressPolicy {
  readonly privateIp: 'deny' | 'allow';
  /** IPv4 entries (including IPv6 entries inside ::ffff:0:0/96, converted to IPv4) */
  readonly ipv4Exceptions: readonly CidrException[];
  readonly ipv6Exceptions: readonly CidrException[];
}

/**
 * global: reachable on the internet, always allowed.
 * nonGlobal: allowed only by `private_ip: allow` or an exception.
 * never: denied whatever the policy says.
 */
type Reach = 'global' | 'nonGlobal' | 'never';

interface Classification {
  range: string;
  reach: Reach;
  /** the IPv4 address an IPv4-mapped IPv6 address stands for: the socket really goes there */
  mappedIpv4?: IPv4;
}

interface NamedRange<T> {
  name: string;
  reach: Reach;
  cidrs: [T, number][];
}

function v4(cidr: string): [IPv4, number] {
  return ipaddr.IPv4.parseCIDR(cidr);
}

function v6(cidr: string): [IPv6, number] {
  return ipaddr.IPv6.parseCIDR(cidr);
}

// First match wins, so a narrower range comes before the range that contains it.
const IPV4_RANGES: NamedRange<IPv4>[] = [
  // A connect to 0.0.0.0 reaches the proxy host itself on Linux and macOS ("0.0.0.0 day").
  { name: 'unspecified', reach: 'never', cidrs: [v4('0.0.0.0/32')] },
  { name: 'thisNetwork', reach: 'nonGlobal', cidrs: [v4('0.0.0.0/8')] },
  // Internal services, admin panels, databases: the classic SSRF target.
  { name: 'private', reach: 'nonGlobal', cidrs: [v4('10.0.0.0/8'), v4('172.16.0.0/12'), v4('192.168.0.0/16')] },
  // Provider-internal space behind carrier NAT; also used by Tailscale and some clouds.
  { name: 'carrierGradeNat', reach: 'nonGlobal', cidrs: [v4('100.64.0.0/10')] },
  // Services bound to localhost, including sluice's own admin port.
  { name: 'loopback', reach: 'nonGlobal', cidrs: [v4('127.0.0.0/8')] },
  // Cloud metadata at 169.254.169.254 hands out instance credentials.
  { name: 'linkLocal', reach: 'nonGlobal', cidrs: [v4('169.254.0.0/16')] },
  { name: 'ietfProtocolAssignments', reach: 'nonGlobal', cidrs: [v4('192.0.0.0/24')] },
  {
    name: 'documentation',
    reach: 'nonGlobal',
    cidrs: [v4('192.0.2.0/24'), v4('198.51.100.0/24'), v4('203.0.113.0/24')],
  },
  { name: '6to4Relay', reach: 'nonGlobal', cidrs: [v4('192.88.99.0/24')] },
  // Lab networks; sometimes used for internal test infrastructure.
  { name: 'benchmarking', reach: 'nonGlobal', cidrs: [v4('198.18.0.0/15')] },
  { name: 'multicast', reach: 'never', cidrs: [v4('224.0.0.0/4')] },
  { name: 'broadcast', reach: 'never', cidrs: [v4('255.255.255.255/32')] },
  { name: 'reserved', reach: 'nonGlobal', cidrs: [v4('240.0.0.0/4')] },
];

type Ipv6Rule =
  { kind: 'named'; range: NamedRange<IPv6> } | { kind: 'embedded'; cidr: [IPv6, number]; classify: (address: IPv6) => Classification };

function named(name: string, reach: Reach, ...cidrs: string[]): Ipv6Rule {
  return { kind: 'named', range: { name, reach, cidrs: cidrs.map(v6) } };
}

function embedded(cidr: string, classify: (address: IPv6) => Classification): Ipv6Rule {
  return { kind: 'embedded', cidr: v6(cidr), classify };
}

/** The IPv4 address held in two 16-bit groups of an IPv6 address. */
function ipv4FromGroups(high: number, low: number): IPv4 {
  return new ipaddr.IPv4([high >> 8, high & 0xff, low >> 8, low & 0xff]);
}

/** The IPv4 in the last 32 bits (mapped, translated, compatible, NAT64 /96). */
function lastIpv4(address: IPv6): IPv4 {
  return ipv4FromGroups(address.parts[6]!, address.parts[7]!);
}

/** An IPv6 form whose packets end up at the embedded IPv4: as safe as that IPv4. */
function judgedByInner(label: string, inner: IPv4): Classification {
  const innerClass = classifyIpv4(inner);
  return { range: `${label}(${innerClass.range})`, reach: innerClass.reach };
}

/** A form no host is reached at: never global, and never allowed when the IPv4 inside never is. */
function deniedWithInner(label: string, inner: IPv4): Classification {
  const innerClass = classifyIpv4(inner);
  return { range: `${label}(${innerClass.range})`, reach: innerClass.reach === 'never' ? 'never' : 'nonGlobal' };
}

// An IPv6 literal that embeds 127.0.0.1 or 10.0.0.1 is the usual way around an IPv4-only blocklist,
// so every form that carries an IPv4 is judged by it (or denied outright when it cannot be dialled).
const IPV6_RULES: Ipv6Rule[] = [
  named('unspecified', 'never', '::/128'),
  named('loopback', 'nonGlobal', '::1/128'),
  embedded('::ffff:0:0/96', (address) => {
    const inner = lastIpv4(address);
    return { ...judgedByInner('ipv4Mapped', inner), mappedIpv4: inner };
  }),
  embedded('::ffff:0:0:0/96', (address) => deniedWithInner('ipv4Translated', lastIpv4(address))),
  embedded('::/96', (address) => deniedWithInner('ipv4Compatible', lastIpv4(address))),
  embedded('64:ff9b::/96', (address) => judgedByInner('nat64', lastIpv4(address))),
  // RFC 6052 lets the operator put the IPv4 at one of several offsets (skipping the u-octet),
  // and nothing in the address says which one, so the whole local-use prefix is denied.
  named('nat64Local', 'nonGlobal', '64:ff9b:1::/48'),
  named('discard', 'nonGlobal', '100::/64'),
  embedded('2001::/32', (address) => {
    // Server IPv4 in bits 32-63, client IPv4 in the last 32 bits, inverted.
    const server = classifyIpv4(ipv4FromGroups(address.parts[2]!, address.parts[3]!));
    const client = classifyIpv4(ipv4FromGroups(~address.parts[6]! & 0xffff, ~address.parts[7]! & 0xffff));
    if (client.reach !== 'global') return { range: `teredo(client:${client.range})`, reach: client.reach };
    if (server.reach !== 'global') return { range: `teredo(server:${server.range})`, reach: server.reach };
    return { range: 'teredo(unicast)', reach: 'global' };
  }),
  named('benchmarking', 'nonGlobal', '2001:2::/48'),
  named('orchidV2', 'nonGlobal', '2001:20::/28'),
  named('ietfProtocolAssignments', 'nonGlobal', '2001::/23'),
  named('documentation', 'nonGlobal', '2001:db8::/32', '3fff::/20'),
  embedded('2002::/16', (address) => judgedByInner('6to4', ipv4FromGroups(address.parts[1]!, address.parts[2]!))),
  named('segmentRouting', 'nonGlobal', '5f00::/16'),
  // The IPv6 equivalents of RFC 1918 and of the metadata service's link-local range.
  named('uniqueLocal', 'nonGlobal', 'fc00::/7'),
  named('linkLocal', 'nonGlobal', 'fe80::/10'),
  named('siteLocal', 'nonGlobal', 'fec0::/10'),
  named('multicast', 'never', 'ff00::/8'),
];

const GLOBAL_UNICAST_V6 = v6('2000::/3');

function classifyIpv4(address: IPv4): Classification {
  for (const range of IPV4_RANGES) {
    if (range.cidrs.some((cidr) => address.match(cidr))) return { range: range.name, reach: range.reach };
  }
  return { range: 'unicast', reach: 'global' };
}

function classifyIpv6(address: IPv6): Classification {
  for (const rule of IPV6_RULES) {
    if (rule.kind === 'named') {
      const { name, reach, cidrs } = rule.range;
      if (cidrs.some((cidr) => address.match(cidr))) return { range: name, reach };
    } else if (address.match(rule.cidr)) {
      return rule.classify(address);
    }
  }
  if (!address.match(GLOBAL_UNICAST_V6)) return { range: 'reserved', reach: 'nonGlobal' };
  return { range: 'unicast', reach: 'global' };
}

/** Parses a strict IP literal: dotted quad or IPv6, no zone id, no brackets, no shorthand IPv4. */
function parseLiteral(text: string): IPv4 | IPv6 | null {
  // node:net's isIP rejects the forms ipaddr.js would otherwise accept (127.1, 0x7f.0.0.1, 2130706433).
  const family = isIP(text);
  if (family === 0 || text.includes('%')) return null;
  if (family === 4) return ipaddr.IPv4.parse(text);
  // ipaddr.js 2.5 reads "::8.8.8.8" as ::ffff:8.8.8.8 (mapped) rather than ::808:808 (compatible),
  // so a dotted-quad tail is rewritten as two hex groups first.
  const hexOnly = text.replace(
    /(\d+)\.(\d+)\.(\d+)\.(\d+)$/,
    (_match, a: string, b: string, c: string, d: string) =>
      `${((Number(a) << 8) | Number(b)).toString(16)}:${((Number(c) << 8) | Number(d)).toString(16)}`,
  );
  return ipaddr.IPv6.parse(hexOnly);
}

const MAPPED_V4_PREFIX = v6('::ffff:0:0/96');

function compileException(entry: string, index: number): CidrException {
  const where = `network.allow_private_cidrs[${index}] "${entry}"`;
  const slash = entry.lastIndexOf('/');
  const network = slash > 0 ? parseLiteral(entry.slice(0, slash)) : null;
  const prefixText = entry.slice(slash + 1);
  if (slash < 0) throw new Error(`${where}: not a CIDR; write a single address as "10.1.2.3/32" or "fd00::1/128"`);
  if (network === null) throw new Error(`${where}: "${entry.slice(0, slash)}" is not an IP address`);
  const maxPrefix = network.kind() === 'ipv4' ? 32 : 128;
  const prefix = /^\d{1,3}$/.test(prefixText) ? Number(prefixText) : NaN;
  if (!(prefix >= 0 && prefix <= maxPrefix)) throw new Error(`${where}: prefix length must be 0-${maxPrefix}`);
  // "10.1.2.3/8" means all of 10/8: almost always a typo for /32, so it must be written out.
  const canonical = `${network.toString()}/${prefix}`;
  const base = network instanceof ipaddr.IPv4 ? ipaddr.IPv4.networkAddressFromCIDR(canonical) : ipaddr.IPv6.networkAddressFromCIDR(canonical);
  if (base.toString() !== network.toString()) {
    throw new Error(`${where}: has bits set past the prefix; did you mean "${base.toString()}/${prefix}"?`);
  }
  // An IPv6 entry inside ::ffff:0:0/96 names IPv4 addresses; keep it with the IPv4 entries.
  if (network instanceof ipaddr.IPv6 && prefix >= 96 && network.match(MAPPED_V4_PREFIX)) {
    return { entry, network: lastIpv4(network), prefix: prefix - 96 };
  }
  return { entry, network, prefix };
}

/** Compiles the policy's network section; throws with the entry and a fix on a bad CIDR. */
export function compileAddressPolicy(network: { private_ip: 'deny' | 'allow'; allow_private_cidrs: readonly string[] }): AddressPolicy {
  const exceptions = network.allow_private_cidrs.map(compileException);
  return {
    privateIp: network.private_ip,
    ipv4Exceptions: exceptions.filter((e) => e.network.kind() === 'ipv4'),
    ipv6Exceptions: exceptions.filter((e) => e.network.kind() === 'ipv6'),
  };
}

function findException(address: IPv4 | IPv6, policy: AddressPolicy): string | null {
  const list = address.kind() === 'ipv4' ? policy.ipv4Exceptions : policy.ipv6Exceptions;
  return list.find((e) => address.match(e.network, e.prefix))?.entry ?? null;
}

/** Decides whether sluice may connect to `ip`, a canonical IP literal (IPv6 without brackets). */
export function classifyAddress(ip: string, policy: AddressPolicy): AddressVerdict {
  const address = parseLiteral(ip);
  if (address === null) return { allowed: false, ip, range: 'invalid' };
  const { range, reach, mappedIpv4 } = address instanceof ipaddr.IPv4 ? classifyIpv4(address) : classifyIpv6(address);
  if (reach === 'global') return { allowed: true, ip, range, exception: null };
  if (reach === 'never') return { allowed: false, ip, range };
  // A socket to ::ffff:a.b.c.d goes to a.b.c.d, so IPv4 exceptions cover the mapped form too.
  const exception = findException(mappedIpv4 ?? address, policy);
  if (exception !== null) return { allowed: true, ip, range, exception };
  if (policy.privateIp === 'allow') return { allowed: true, ip, range, exception: null };
  return { allowed: false, ip, range };
}
