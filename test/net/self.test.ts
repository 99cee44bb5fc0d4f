import t from 'tap';
import { networkInterfaces } from 'node:os';
import { SelfEndpoints, type Endpoint } from '../../src/net/self.js';

/** A stub resolver that counts its calls, so "resolved once" can be asserted. */
function stubLookup(zone: Record<string, string[]>) {
  const calls: string[] = [];
  const lookup = async (name: string): Promise<readonly string[]> => {
    calls.push(name);
    const answers = zone[name];
    if (!answers) throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${name}`), { code: 'ENOTFOUND' });
    return answers;
  };
  return { lookup, calls };
}

const INTERFACES = ['127.0.0.1', '::1', '10.9.8.7', '93.184.216.34', 'fe80::1%eth0', '2001:db8::42'];

const ENDPOINTS: Endpoint[] = [
  { host: '127.0.0.1', port: 3128 }, // the proxy, --listen 127.0.0.1:3128
  { host: 'localhost', port: 9090 }, // --admin localhost:9090
  { host: '0.0.0.0', port: 8080 }, // an IPv4 wildcard
  { host: '::', port: 8443 }, // a dual-stack wildcard
  { host: 'sluice.internal', port: 7000 }, // a name: resolved once, to a mapped and an IPv6 form
  { host: '::ffff:127.0.0.2', port: 5000 }, // a mapped listen address is its IPv4
  { host: '[::1]', port: 6000 },
  { host: '10.1.2.3', port: 0 }, // not listening yet: adds nothing
];

const zone = { 'sluice.internal': ['::ffff:10.1.2.3', '2001:db8::5'] };

// [dialled ip, port, is sluice itself]
const TABLE: Array<[string, number, boolean]> = [
  // --listen 127.0.0.1:3128
  ['127.0.0.1', 3128, true],
  ['::ffff:127.0.0.1', 3128, true],
  ['::ffff:7f00:1', 3128, true],
  ['[::ffff:127.0.0.1]', 3128, true],
  ['0.0.0.0', 3128, true], // Linux connects 0.0.0.0 to loopback
  ['::ffff:0.0.0.0', 3128, true],
  ['127.0.0.2', 3128, false], // a 127.x listen is bound exactly
  ['::1', 3128, false], // another socket
  ['127.0.0.1', 3129, false],
  ['93.184.216.34', 3128, false],
  // --admin localhost:9090: both loopbacks, without DNS
  ['127.0.0.1', 9090, true],
  ['::1', 9090, true],
  ['0:0:0:0:0:0:0:1', 9090, true],
  ['::', 9090, true], // :: connects to ::1
  ['::ffff:127.0.0.1', 9090, true],
  ['127.0.0.3', 9090, false],
  ['::1', 9091, false],
  // 0.0.0.0:8080: every address of this host
  ['127.0.0.1', 8080, true],
  ['127.255.255.254', 8080, true],
  ['0.0.0.0', 8080, true],
  ['10.9.8.7', 8080, true],
  ['::ffff:10.9.8.7', 8080, true],
  ['93.184.216.34', 8080, true],
  ['fe80::1', 8080, true],
  ['fe80::1%lo', 8080, true],
  ['2001:db8::42', 8080, true],
  ['::1', 8080, true],
  ['10.9.8.8', 8080, false], // not an address of this host
  ['93.184.216.35', 8080, false],
  ['127.0.0.1', 8081, false],
  // [::]:8443 likewise
  ['127.0.0.9', 8443, true],
  ['2001:DB8:0::42', 8443, true],
  ['2001:db8::43', 8443, false],
  // sluice.internal:7000, resolved to ::ffff:10.1.2.3 and 2001:db8::5
  ['10.1.2.3', 7000, true],
  ['::ffff:10.1.2.3', 7000, true],
  ['2001:db8::5', 7000, true],
  ['2001:db8:0:0:0:0:0:5', 7000, true],
  ['10.1.2.4', 7000, false],
  ['10.1.2.3', 7001, false],
  // ::ffff:127.0.0.2:5000
  ['127.0.0.2', 5000, true],
  ['::ffff:127.0.0.2', 5000, true],
  ['127.0.0.1', 5000, false],
  // [::1]:6000
  ['::1', 6000, true],
  ['::', 6000, true],
  ['127.0.0.1', 6000, false],
  // NAT64 (64:ff9b::/96) is the IPv4 inside, as the gateway dials it
  ['64:ff9b::7f00:1', 3128, true],
  ['64:ff9b::93.184.216.34', 8080, true],
  ['64:ff9b::7f00:2', 3128, false],
  ['64:ff9b:1::7f00:1', 3128, true], // local-use NAT64 (RFC 8215) read the same way: fail-closed, and vetting denies it anyway
  // the port-0 endpoint was not added
  ['10.1.2.3', 0, false],
  // what cannot be read is never dialled
  ['not-an-ip', 1, true],
  ['127.1', 1, true],
  ['', 1, true],
];

t.test('isSelf: table of addresses and ports', async (t) => {
  const { lookup } = stubLookup(zone);
  const self = await SelfEndpoints.create(ENDPOINTS, { lookup, interfaceAddresses: () => INTERFACES });
  for (const [ip, port, expected] of TABLE) t.equal(self.isSelf(ip, port), expected, `${ip} port ${port}`);
});

t.test('names are resolved once, at add time; localhost and literals never ask', async (t) => {
  const { lookup, calls } = stubLookup(zone);
  const self = await SelfEndpoints.create(ENDPOINTS, { lookup, interfaceAddresses: () => INTERFACES });
  t.same(calls, ['sluice.internal']);
  for (const [ip, port] of TABLE) self.isSelf(ip, port);
  t.same(calls, ['sluice.internal'], 'isSelf never resolves');
  t.same(
    self.describe().sort(),
    [
      '10.1.2.3:7000',
      '127.0.0.1:3128',
      '127.0.0.1:9090',
      '127.0.0.2:5000',
      '[2001:db8::5]:7000',
      '[::1]:6000',
      '[::1]:9090',
      '*:8080',
      '*:8443',
    ].sort(),
  );
});

t.test('spellings of a listen host: canonical names, odd IPv4, empty host', async (t) => {
  const { lookup, calls } = stubLookup({ 'api.internal': ['192.0.2.10'] });
  const self = await SelfEndpoints.create(
    [
      { host: 'LOCALHOST.', port: 1000 },
      { host: '127.1', port: 2000 },
      { host: '', port: 3000 },
      { host: 'API.Internal', port: 4000 },
    ],
    { lookup, interfaceAddresses: () => [] },
  );
  t.same(calls, ['api.internal'], 'the name is asked in its canonical form');
  t.ok(self.isSelf('::1', 1000), 'LOCALHOST. is localhost');
  t.ok(self.isSelf('127.0.0.1', 2000), '127.1 is 127.0.0.1');
  t.notOk(self.isSelf('127.0.0.2', 2000));
  t.ok(self.isSelf('127.0.0.5', 3000), 'an empty host listens everywhere');
  t.ok(self.isSelf('::ffff:192.0.2.10', 4000));
});

t.test('an endpoint learned after listen on port 0', async (t) => {
  const { lookup } = stubLookup({});
  const self = await SelfEndpoints.create([{ host: '127.0.0.1', port: 0 }], { lookup, interfaceAddresses: () => [] });
  t.notOk(self.isSelf('127.0.0.1', 41000));
  await self.add({ host: '127.0.0.1', port: 41000 });
  t.ok(self.isSelf('::ffff:127.0.0.1', 41000));
  t.same(self.describe(), ['127.0.0.1:41000']);
});

t.test('interfaces are read when a wildcard is added, and again on refreshInterfaces', async (t) => {
  let addresses = ['198.51.100.7'];
  let reads = 0;
  const self = new SelfEndpoints({
    lookup: stubLookup({}).lookup,
    interfaceAddresses: () => {
      reads++;
      return addresses;
    },
  });
  await self.add({ host: '127.0.0.1', port: 80 });
  t.equal(reads, 0, 'no wildcard, no need to read interfaces');
  await self.add({ host: '0.0.0.0', port: 8080 });
  t.equal(reads, 1);
  t.ok(self.isSelf('198.51.100.7', 8080));
  addresses = ['198.51.100.8', 'not an address'];
  t.ok(self.isSelf('198.51.100.7', 8080), 'a snapshot until refreshed');
  self.refreshInterfaces();
  t.notOk(self.isSelf('198.51.100.7', 8080));
  t.ok(self.isSelf('198.51.100.8', 8080));
});

t.test('a listen host that cannot be read or resolved is an error, not an unguarded endpoint', async (t) => {
  const { lookup } = stubLookup({ 'empty.internal': [], 'odd.internal': ['127.0.0.1', 'not-an-ip'] });
  const options = { lookup, interfaceAddresses: () => [] };
  await t.rejects(
    SelfEndpoints.create([{ host: 'missing.internal', port: 1 }], options),
    /cannot resolve the listen host missing\.internal: getaddrinfo ENOTFOUND/,
  );
  await t.rejects(SelfEndpoints.create([{ host: 'empty.internal', port: 1 }], options), /resolved to no usable address \(none\)/);
  await t.rejects(SelfEndpoints.create([{ host: 'odd.internal', port: 1 }], options), /no usable address \(127\.0\.0\.1, not-an-ip\)/);
  await t.rejects(SelfEndpoints.create([{ host: 'a b', port: 1 }], options), /cannot read the listen host "a b"/);
  await t.rejects(SelfEndpoints.create([{ host: '127.0.0.1', port: 65536 }], options), RangeError);
  await t.rejects(SelfEndpoints.create([{ host: '127.0.0.1', port: 1.5 }], options), RangeError);
});

t.test('defaults: localhost without DNS, and the real interfaces for a wildcard', async (t) => {
  const self = await SelfEndpoints.create([
    { host: 'localhost', port: 9090 },
    { host: '::', port: 8080 },
  ]);
  t.ok(self.isSelf('::1', 9090));
  t.ok(self.isSelf('127.0.0.1', 9090));
  const real = Object.values(networkInterfaces()).flatMap((list) => (list ?? []).map((i) => i.address));
  t.ok(real.length > 0, 'this host has interfaces');
  for (const address of real) t.ok(self.isSelf(address, 8080), `${address} is this host`);
  t.notOk(self.isSelf('192.0.2.200', 8080), 'a documentation address is not on this host');
});
