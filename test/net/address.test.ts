import t from 'tap';
import fc from '../helpers/fc.js';
import ipaddr from 'ipaddr.js';
import { classifyAddress, compileAddressPolicy, type AddressVerdict } from '../../src/net/address.js';

const denyPrivate = compileAddressPolicy({ private_ip: 'deny', allow_private_cidrs: [] });
const allowPrivate = compileAddressPolicy({ private_ip: 'allow', allow_private_cidrs: [] });

// [address, allowed, range] under the default policy (private_ip: deny, no exceptions).
// Ranges are probed on both sides of each boundary.
const DEFAULT_TABLE: [string, boolean, string][] = [
  // 0.0.0.0/8 "this network", 0.0.0.0 unspecified
  ['0.0.0.0', false, 'unspecified'],
  ['0.0.0.1', false, 'thisNetwork'],
  ['0.255.255.255', false, 'thisNetwork'],
  ['1.0.0.0', true, 'unicast'],
  // 10/8
  ['9.255.255.255', true, 'unicast'],
  ['10.0.0.0', false, 'private'],
  ['10.255.255.255', false, 'private'],
  ['11.0.0.0', true, 'unicast'],
  // 100.64/10 CGNAT
  ['100.63.255.255', true, 'unicast'],
  ['100.64.0.0', false, 'carrierGradeNat'],
  ['100.127.255.255', false, 'carrierGradeNat'],
  ['100.128.0.0', true, 'unicast'],
  // 127/8
  ['126.255.255.255', true, 'unicast'],
  ['127.0.0.0', false, 'loopback'],
  ['127.0.0.1', false, 'loopback'],
  ['127.255.255.255', false, 'loopback'],
  ['128.0.0.0', true, 'unicast'],
  // 169.254/16 link-local and cloud metadata
  ['169.253.255.255', true, 'unicast'],
  ['169.254.0.0', false, 'linkLocal'],
  ['169.254.169.254', false, 'linkLocal'],
  ['169.254.255.255', false, 'linkLocal'],
  ['169.255.0.0', true, 'unicast'],
  // 172.16/12
  ['172.15.255.255', true, 'unicast'],
  ['172.16.0.0', false, 'private'],
  ['172.31.255.255', false, 'private'],
  ['172.32.0.0', true, 'unicast'],
  // 192.0.0/24 protocol assignments, 192.0.2/24 documentation
  ['191.255.255.255', true, 'unicast'],
  ['192.0.0.0', false, 'ietfProtocolAssignments'],
  ['192.0.0.255', false, 'ietfProtocolAssignments'],
  ['192.0.1.0', true, 'unicast'],
  ['192.0.1.255', true, 'unicast'],
  ['192.0.2.0', false, 'documentation'],
  ['192.0.2.255', false, 'documentation'],
  ['192.0.3.0', true, 'unicast'],
  // 192.88.99/24 6to4 relay anycast
  ['192.88.98.255', true, 'unicast'],
  ['192.88.99.0', false, '6to4Relay'],
  ['192.88.99.255', false, '6to4Relay'],
  ['192.88.100.0', true, 'unicast'],
  // 192.168/16
  ['192.167.255.255', true, 'unicast'],
  ['192.168.0.0', false, 'private'],
  ['192.168.255.255', false, 'private'],
  ['192.169.0.0', true, 'unicast'],
  // 198.18/15 benchmarking
  ['198.17.255.255', true, 'unicast'],
  ['198.18.0.0', false, 'benchmarking'],
  ['198.19.255.255', false, 'benchmarking'],
  ['198.20.0.0', true, 'unicast'],
  // 198.51.100/24 and 203.0.113/24 documentation
  ['198.51.99.255', true, 'unicast'],
  ['198.51.100.0', false, 'documentation'],
  ['198.51.100.255', false, 'documentation'],
  ['198.51.101.0', true, 'unicast'],
  ['203.0.112.255', true, 'unicast'],
  ['203.0.113.0', false, 'documentation'],
  ['203.0.113.255', false, 'documentation'],
  ['203.0.114.0', true, 'unicast'],
  // 224/4 multicast, 240/4 reserved, broadcast
  ['223.255.255.255', true, 'unicast'],
  ['224.0.0.0', false, 'multicast'],
  ['239.255.255.255', false, 'multicast'],
  ['240.0.0.0', false, 'reserved'],
  ['255.255.255.254', false, 'reserved'],
  ['255.255.255.255', false, 'broadcast'],
  // ordinary public addresses
  ['8.8.8.8', true, 'unicast'],
  ['1.1.1.1', true, 'unicast'],

  // IPv6 unspecified, loopback
  ['::', false, 'unspecified'],
  ['::1', false, 'loopback'],
  ['0:0:0:0:0:0:0:1', false, 'loopback'],
  // ::ffff:0:0/96 IPv4-mapped, judged by the IPv4 inside
  ['::ffff:7f00:1', false, 'ipv4Mapped(loopback)'],
  ['::ffff:127.0.0.1', false, 'ipv4Mapped(loopback)'],
  ['::ffff:a9fe:a9fe', false, 'ipv4Mapped(linkLocal)'],
  ['::ffff:0.0.0.0', false, 'ipv4Mapped(unspecified)'],
  ['::ffff:8.8.8.8', true, 'ipv4Mapped(unicast)'],
  ['::ffff:808:808', true, 'ipv4Mapped(unicast)'],
  ['::fffe:ffff:ffff', false, 'reserved'],
  ['::1:0:0:0', false, 'reserved'],
  // ::ffff:0:0:0/96 IPv4-translated and ::/96 IPv4-compatible: no host is reached there
  ['::ffff:0:a00:1', false, 'ipv4Translated(private)'],
  ['::ffff:0:808:808', false, 'ipv4Translated(unicast)'],
  ['::7f00:1', false, 'ipv4Compatible(loopback)'],
  ['::8.8.8.8', false, 'ipv4Compatible(unicast)'],
  ['::808:808', false, 'ipv4Compatible(unicast)'],
  ['::127.0.0.1', false, 'ipv4Compatible(loopback)'],
  ['::ffff:ffff', false, 'ipv4Compatible(broadcast)'],
  ['::1:0:0', false, 'reserved'],
  ['::2', false, 'ipv4Compatible(thisNetwork)'],
  // 64:ff9b::/96 NAT64, 64:ff9b:1::/48 local-use NAT64
  ['64:ff9b::a00:1', false, 'nat64(private)'],
  ['64:ff9b::7f00:1', false, 'nat64(loopback)'],
  ['64:ff9b::a9fe:a9fe', false, 'nat64(linkLocal)'],
  ['64:ff9b::808:808', true, 'nat64(unicast)'],
  ['64:ff9b::1:0:0', false, 'reserved'],
  ['64:ff9a:ffff:ffff:ffff:ffff:ffff:ffff', false, 'reserved'],
  ['64:ff9b:1::', false, 'nat64Local'],
  ['64:ff9b:1:ffff:ffff:ffff:ffff:ffff', false, 'nat64Local'],
  ['64:ff9b:1:808:8:800::', false, 'nat64Local'],
  ['64:ff9b:2::', false, 'reserved'],
  // 100::/64 discard
  ['100::', false, 'discard'],
  ['100::ffff:ffff:ffff:ffff', false, 'discard'],
  ['100:0:0:1::', false, 'reserved'],
  // 2000::/3 lower edge
  ['1fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', false, 'reserved'],
  ['2000::', true, 'unicast'],
  // 2001::/32 Teredo: server IPv4 in bits 32-63, client IPv4 inverted in the last 32 bits
  ['2001:0:4136:e378:8000:63bf:f5ff:fffe', false, 'teredo(client:private)'], // client 10.0.0.1
  ['2001:0:4136:e378:8000:63bf:80ff:fffe', false, 'teredo(client:loopback)'], // client 127.0.0.1
  ['2001:0:4136:e378:8000:63bf:f7f7:f7f7', true, 'teredo(unicast)'], // server 65.54.227.120, client 8.8.8.8
  ['2001:0:a00:1:8000:63bf:f7f7:f7f7', false, 'teredo(server:private)'], // server 10.0.0.1
  ['2001:0:a9fe:a9fe::f7f7:f7f7', false, 'teredo(server:linkLocal)'],
  ['2001:0:808:808::ffff:ffff', false, 'teredo(client:unspecified)'],
  // 2001::/23 special purpose: benchmarking, ORCHIDv2, the rest
  ['2001:1::1', false, 'ietfProtocolAssignments'],
  ['2001:2::', false, 'benchmarking'],
  ['2001:2:0:ffff:ffff:ffff:ffff:ffff', false, 'benchmarking'],
  ['2001:2:1::', false, 'ietfProtocolAssignments'],
  ['2001:1f:ffff:ffff:ffff:ffff:ffff:ffff', false, 'ietfProtocolAssignments'],
  ['2001:20::', false, 'orchidV2'],
  ['2001:2f:ffff:ffff:ffff:ffff:ffff:ffff', false, 'orchidV2'],
  ['2001:30::', false, 'ietfProtocolAssignments'],
  ['2001:1ff:ffff:ffff:ffff:ffff:ffff:ffff', false, 'ietfProtocolAssignments'],
  ['2001:200::', true, 'unicast'],
  // 2001:db8::/32 documentation
  ['2001:db7:ffff:ffff:ffff:ffff:ffff:ffff', true, 'unicast'],
  ['2001:db8::', false, 'documentation'],
  ['2001:db8:ffff:ffff:ffff:ffff:ffff:ffff', false, 'documentation'],
  ['2001:db9::', true, 'unicast'],
  // 2002::/16 6to4, IPv4 in bits 16-47
  ['2001:ffff:ffff:ffff:ffff:ffff:ffff:ffff', true, 'unicast'],
  ['2002:7f00:1::', false, '6to4(loopback)'],
  ['2002:a00:1::1', false, '6to4(private)'],
  ['2002:a9fe:a9fe::', false, '6to4(linkLocal)'],
  ['2002::', false, '6to4(unspecified)'],
  ['2002:808:808::', true, '6to4(unicast)'],
  ['2002:808:808:ffff:ffff:ffff:ffff:ffff', true, '6to4(unicast)'],
  ['2003::', true, 'unicast'],
  // 3fff::/20 documentation
  ['3ffe:ffff:ffff:ffff:ffff:ffff:ffff:ffff', true, 'unicast'],
  ['3fff::', false, 'documentation'],
  ['3fff:fff:ffff:ffff:ffff:ffff:ffff:ffff', false, 'documentation'],
  ['3fff:1000::', true, 'unicast'],
  ['3fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', true, 'unicast'],
  ['4000::', false, 'reserved'],
  // 5f00::/16 SRv6
  ['5f00::1', false, 'segmentRouting'],
  // fc00::/7 ULA
  ['fbff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', false, 'reserved'],
  ['fc00::', false, 'uniqueLocal'],
  ['fd12:3456::1', false, 'uniqueLocal'],
  ['fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', false, 'uniqueLocal'],
  // fe80::/10 link-local, fec0::/10 site-local
  ['fe7f:ffff:ffff:ffff:ffff:ffff:ffff:ffff', false, 'reserved'],
  ['fe80::', false, 'linkLocal'],
  ['fe80::a9fe:a9fe', false, 'linkLocal'],
  ['febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff', false, 'linkLocal'],
  ['fec0::', false, 'siteLocal'],
  ['feff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', false, 'siteLocal'],
  // ff00::/8 multicast
  ['ff00::', false, 'multicast'],
  ['ff02::1', false, 'multicast'],
  ['ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', false, 'multicast'],
  // ordinary public addresses
  ['2606:4700:4700::1111', true, 'unicast'],
  ['2a00:1450:4001:81c::200e', true, 'unicast'],
  ['3ffe::1', true, 'unicast'],
];

t.test('default policy: every range on both sides of its boundary', async (t) => {
  t.ok(DEFAULT_TABLE.length >= 80, `${DEFAULT_TABLE.length} rows`);
  for (const [ip, allowed, range] of DEFAULT_TABLE) {
    const expected: AddressVerdict = allowed ? { allowed, ip, range, exception: null } : { allowed, ip, range };
    t.same(classifyAddress(ip, denyPrivate), expected, ip);
  }
});

t.test('private_ip: allow allows non-global ranges and still names them', async (t) => {
  const table: [string, boolean, string][] = [
    ['10.0.0.1', true, 'private'],
    ['127.0.0.1', true, 'loopback'],
    ['169.254.169.254', true, 'linkLocal'],
    ['100.64.0.1', true, 'carrierGradeNat'],
    ['0.1.2.3', true, 'thisNetwork'],
    ['240.0.0.1', true, 'reserved'],
    ['::1', true, 'loopback'],
    ['fd00::1', true, 'uniqueLocal'],
    ['::ffff:10.0.0.1', true, 'ipv4Mapped(private)'],
    ['64:ff9b::a00:1', true, 'nat64(private)'],
    ['8.8.8.8', true, 'unicast'],
    // never a single service, whatever the policy says
    ['0.0.0.0', false, 'unspecified'],
    ['::', false, 'unspecified'],
    ['::ffff:0.0.0.0', false, 'ipv4Mapped(unspecified)'],
    ['224.0.0.1', false, 'multicast'],
    ['255.255.255.255', false, 'broadcast'],
    ['ff02::1', false, 'multicast'],
    ['::ffff:0:e000:1', false, 'ipv4Translated(multicast)'],
    ['2002:e000:1::', false, '6to4(multicast)'],
  ];
  for (const [ip, allowed, range] of table) {
    const expected: AddressVerdict = allowed ? { allowed, ip, range, exception: null } : { allowed, ip, range };
    t.same(classifyAddress(ip, allowPrivate), expected, ip);
  }
});

t.test('allow_private_cidrs allows addresses inside an entry and names it', async (t) => {
  const policy = compileAddressPolicy({
    private_ip: 'deny',
    allow_private_cidrs: ['10.1.2.3/32', '172.20.0.0/16', 'fd00:1::/32', '::ffff:192.168.7.0/120', '::a00:0/104', '0.0.0.0/0'],
  });
  const table: [string, string | null, string][] = [
    ['10.1.2.3', '10.1.2.3/32', 'private'],
    ['10.1.2.2', '0.0.0.0/0', 'private'],
    ['::ffff:10.1.2.3', '10.1.2.3/32', 'ipv4Mapped(private)'],
    ['::ffff:a01:203', '10.1.2.3/32', 'ipv4Mapped(private)'],
    ['172.20.0.0', '172.20.0.0/16', 'private'],
    ['172.20.255.255', '172.20.0.0/16', 'private'],
    ['fd00:1::5', 'fd00:1::/32', 'uniqueLocal'],
    // an IPv6 entry inside ::ffff:0:0/96 covers the plain IPv4 too
    ['192.168.7.9', '::ffff:192.168.7.0/120', 'private'],
    ['::ffff:192.168.7.9', '::ffff:192.168.7.0/120', 'ipv4Mapped(private)'],
    // an IPv4-compatible entry is an IPv6 range: it does not reach the plain IPv4
    ['::a00:5', '::a00:0/104', 'ipv4Compatible(private)'],
    ['10.0.0.5', '0.0.0.0/0', 'private'],
    ['8.8.8.8', null, 'unicast'],
  ];
  for (const [ip, exception, range] of table) {
    t.same(classifyAddress(ip, policy), { allowed: true, ip, range, exception }, ip);
  }
  // 0.0.0.0/0 still cannot open unspecified, multicast or broadcast
  for (const [ip, range] of [
    ['0.0.0.0', 'unspecified'],
    ['::ffff:0.0.0.0', 'ipv4Mapped(unspecified)'],
    ['224.0.0.251', 'multicast'],
    ['255.255.255.255', 'broadcast'],
  ] as const) {
    t.same(classifyAddress(ip, policy), { allowed: false, ip, range }, ip);
  }
});

t.test('allow_private_cidrs: just outside an entry stays denied', async (t) => {
  const policy = compileAddressPolicy({
    private_ip: 'deny',
    allow_private_cidrs: ['10.1.2.3/32', '172.20.0.0/16', 'fd00:1::/32', '127.0.0.1/32'],
  });
  const table: [string, string][] = [
    ['10.1.2.2', 'private'],
    ['10.1.2.4', 'private'],
    ['::ffff:10.1.2.4', 'ipv4Mapped(private)'],
    ['172.19.255.255', 'private'],
    ['172.21.0.0', 'private'],
    ['fd00:2::', 'uniqueLocal'],
    ['fd00:0:ffff:ffff:ffff:ffff:ffff:ffff', 'uniqueLocal'],
    // the exception is for the address itself, not for a translator's view of it
    ['64:ff9b::a01:203', 'nat64(private)'],
    ['2002:a01:203::', '6to4(private)'],
    ['::ffff:0:a01:203', 'ipv4Translated(private)'],
    ['::10.1.2.3', 'ipv4Compatible(private)'],
    ['::1', 'loopback'],
  ];
  for (const [ip, range] of table) {
    t.same(classifyAddress(ip, policy), { allowed: false, ip, range }, ip);
  }
  t.same(classifyAddress('127.0.0.1', policy), {
    allowed: true,
    ip: '127.0.0.1',
    range: 'loopback',
    exception: '127.0.0.1/32',
  });
});

t.test('compileAddressPolicy rejects a bad CIDR with the entry and a fix', async (t) => {
  const table: [string, RegExp][] = [
    ['10.1.2.3', /allow_private_cidrs\[0\] "10\.1\.2\.3": not a CIDR; write a single address as "10\.1\.2\.3\/32"/],
    ['10.1.2.3/8', /bits set past the prefix; did you mean "10\.0\.0\.0\/8"\?/],
    ['fd00::1/8', /did you mean "fd00::\/8"\?/],
    ['::10.1.2.3/96', /did you mean "::\/96"\?/],
    ['10.0.0.0/33', /prefix length must be 0-32/],
    ['fd00::/129', /prefix length must be 0-128/],
    ['10.0.0.0/', /prefix length must be 0-32/],
    ['10.0.0.0/08x', /prefix length must be 0-32/],
    ['10.0/8', /"10\.0" is not an IP address/],
    ['example.com/32', /"example\.com" is not an IP address/],
    ['/8', /"" is not an IP address/],
    ['fe80::%eth0/64', /is not an IP address/],
    ['', /not a CIDR/],
  ];
  for (const [entry, message] of table) {
    t.throws(() => compileAddressPolicy({ private_ip: 'deny', allow_private_cidrs: [entry] }), message, entry);
  }
  t.throws(() => compileAddressPolicy({ private_ip: 'deny', allow_private_cidrs: ['10.0.0.0/8', 'nope'] }), /allow_private_cidrs\[1\] "nope"/);
});

t.test('anything that is not a strict IP literal is invalid', async (t) => {
  for (const ip of [
    '',
    'localhost',
    '127.1',
    '2130706433',
    '0x7f.0.0.1',
    '0177.0.0.1',
    '127.0.0.1.',
    ' 127.0.0.1',
    '[::1]',
    'fe80::1%eth0',
    '::ffff:127.0.0.1%1',
    '10.0.0.0/8',
    '1.2.3.4:80',
    '256.0.0.1',
    ':::',
  ]) {
    t.same(classifyAddress(ip, allowPrivate), { allowed: false, ip, range: 'invalid' }, JSON.stringify(ip));
  }
});

const ipv4 = fc.tuple(fc.nat(255), fc.nat(255), fc.nat(255), fc.nat(255)).map((octets) => octets.join('.'));

const policies = [
  denyPrivate,
  allowPrivate,
  compileAddressPolicy({ private_ip: 'deny', allow_private_cidrs: ['10.0.0.0/9', '127.0.0.0/30', '0.0.0.0/0'] }),
];

t.test('property: ::ffff:a.b.c.d is judged exactly like a.b.c.d', async (t) => {
  for (const policy of policies) {
    fc.assert(
      fc.property(ipv4, (ip) => {
        const plain = classifyAddress(ip, policy);
        const mapped = classifyAddress(`::ffff:${ip}`, policy);
        const { ip: _plainIp, range: plainRange, ...plainRest } = plain;
        const { ip: _mappedIp, range: mappedRange, ...mappedRest } = mapped;
        return mappedRange === `ipv4Mapped(${plainRange})` && JSON.stringify(mappedRest) === JSON.stringify(plainRest);
      }),
      { numRuns: 3000 },
    );
  }
  t.pass('3 policies x 3000 addresses');
});

t.test('property: 64:ff9b::a.b.c.d (NAT64) is judged like a.b.c.d', async (t) => {
  for (const policy of [denyPrivate, allowPrivate]) {
    fc.assert(
      fc.property(ipv4, (ip) => {
        const plain = classifyAddress(ip, policy);
        const nat64 = classifyAddress(`64:ff9b::${ip}`, policy);
        return nat64.allowed === plain.allowed && nat64.range === `nat64(${plain.range})`;
      }),
      { numRuns: 3000 },
    );
  }
  t.pass('2 policies x 3000 addresses');
});

// ipaddr.js's own table as a cross-check: whatever it calls special is denied here, except the
// ranges IANA marks globally reachable (AS112 and AMT anycast outside 2001::/23).
const GLOBAL_IN_IPADDR = new Set(['unicast', 'as112', 'amt', 'as112v6', 'ipv4Mapped']);

t.test('property: every range ipaddr.js calls special is denied by default', async (t) => {
  fc.assert(
    fc.property(ipv4, (ip) => {
      const known = ipaddr.IPv4.parse(ip).range();
      return GLOBAL_IN_IPADDR.has(known) || !classifyAddress(ip, denyPrivate).allowed;
    }),
    { numRuns: 20000 },
  );
  // Random IPv6 hardly ever lands in a small range, so start from each special prefix.
  const prefixes = [
    '::',
    '::1',
    '::ffff:0:0:0',
    '64:ff9b:1::',
    '100::',
    '2001::',
    '2001:2::',
    '2001:3::',
    '2001:4:112::',
    '2001:10::',
    '2001:20::',
    '2001:30::',
    '2001:db8::',
    '3fff::',
    '5f00::',
    'fc00::',
    'fe80::',
    'fec0::',
    'ff00::',
  ];
  // A special prefix with its lowest `randomBits` bits replaced: lands inside the range or just past it.
  const ipv6Near = fc
    .tuple(fc.constantFrom(...prefixes), fc.array(fc.nat(0xffff), { minLength: 8, maxLength: 8 }), fc.nat(128))
    .map(([prefix, noise, randomBits]) => {
      const parts = ipaddr.IPv6.parse(prefix).parts.map((part, i) => {
        const bitsInGroup = Math.max(0, Math.min(16, randomBits - (128 - 16 * (i + 1))));
        const mask = (1 << bitsInGroup) - 1;
        return (part & ~mask) | (noise[i]! & mask);
      });
      return new ipaddr.IPv6(parts).toString();
    });
  fc.assert(
    fc.property(ipv6Near, (ip) => {
      const known = ipaddr.IPv6.parse(ip).range();
      const verdict = classifyAddress(ip, denyPrivate);
      // Teredo and 6to4 addresses are judged by the IPv4 inside, so they may be allowed.
      if (known === 'teredo' || known === '6to4') return true;
      return GLOBAL_IN_IPADDR.has(known) || !verdict.allowed;
    }),
    { numRuns: 20000 },
  );
  t.pass('20000 IPv4 and 20000 IPv6 addresses');
});

t.test('property: classifyAddress never throws and always returns a verdict', async (t) => {
  const hostile = fc.oneof(
    fc.string(),
    fc.string({ unit: fc.constantFrom(...'0123456789abcdefABCDEF:.%/[]x '.split('')) }),
    ipv4.map((ip) => `::ffff:${ip}`),
    fc.ipV6(),
    fc.ipV4Extended(),
  );
  fc.assert(
    fc.property(hostile, (input) => {
      const verdict = classifyAddress(input, denyPrivate);
      return verdict.ip === input && typeof verdict.range === 'string' && typeof verdict.allowed === 'boolean';
    }),
    { numRuns: 20000 },
  );
  t.pass('20000 hostile inputs');
});
