// A DNS server of the test's own on 127.0.0.1 (UDP and TCP on the same port), so sluice's resolver
// can be pointed at it (network.dns_servers) and a test decides every answer, including DNS
// rebinding: a function entry answers differently on each query; SILENT never answers (DNS timeouts).
import dgram from 'node:dgram';
import net from 'node:net';
import dnsPacket from 'dns-packet';

export interface DnsRecord {
  type: 'A' | 'AAAA';
  address: string;
  /** Seconds; default 60. Tests of rebinding use 0. */
  ttl?: number;
}

/**
 * Per name: fixed records, or a function of the query index, which counts earlier queries for the
 * same name AND type (0 for the first A query, 0 for the first AAAA query, 1 for the second A ...).
 */
export type DnsZoneEntry = DnsRecord[] | ((queryIndex: number) => DnsRecord[]) | typeof SILENT;

/** A zone entry for a name whose queries are received (and counted) but never answered. */
export const SILENT = 'silent';
export type DnsZone = Record<string, DnsZoneEntry>;

export interface DnsServer {
  /** "127.0.0.1:PORT", as network.dns_servers and Resolver.setServers take it. */
  address: string;
  port: number;
  /** Queries received (all types), for one name or in total. */
  queries(name?: string): number;
  close(): Promise<void>;
}

const DEFAULT_TTL = 60;
const NXDOMAIN = 3;
const FORMERR = 1;

function normalizeName(name: string): string {
  return name.toLowerCase().replace(/\.$/, '');
}

/** Answers one query packet; pure but for the query log it appends to. SILENT: leave it unanswered. */
function answer(zone: Map<string, DnsZoneEntry>, log: Array<{ name: string; type: string }>, query: Buffer): Buffer | null | typeof SILENT {
  let packet: dnsPacket.DecodedPacket;
  try {
    packet = dnsPacket.decode(query);
  } catch {
    return null;
  }
  if (packet.type !== 'query') return null;
  const question = packet.questions?.[0];
  const reply = {
    id: packet.id,
    type: 'response' as const,
    flags: dnsPacket.AUTHORITATIVE_ANSWER | dnsPacket.RECURSION_AVAILABLE | ((packet.flags ?? 0) & dnsPacket.RECURSION_DESIRED),
    questions: packet.questions ?? [],
    answers: [] as dnsPacket.Answer[],
  };
  if (!question) return dnsPacket.encode({ ...reply, flags: reply.flags | FORMERR });

  const name = normalizeName(question.name);
  const queryIndex = log.filter((entry) => entry.name === name && entry.type === question.type).length;
  log.push({ name, type: question.type });
  const entry = zone.get(name);
  if (entry === undefined) return dnsPacket.encode({ ...reply, flags: reply.flags | NXDOMAIN });
  if (entry === SILENT) return SILENT;

  const records = typeof entry === 'function' ? entry(queryIndex) : entry;
  for (const record of records) {
    if (record.type !== question.type) continue;
    reply.answers.push({
      type: record.type,
      class: 'IN',
      name: question.name,
      ttl: record.ttl ?? DEFAULT_TTL,
      data: record.address,
    });
  }
  // A known name without records of the asked type is NODATA: NOERROR with no answers.
  return dnsPacket.encode(reply);
}

/** Starts the server on 127.0.0.1, a free port shared by UDP and TCP. */
export async function startDns(zoneRecords: DnsZone): Promise<DnsServer> {
  const zone = new Map(Object.entries(zoneRecords).map(([name, entry]) => [normalizeName(name), entry]));
  const log: Array<{ name: string; type: string }> = [];
  const tcpSockets = new Set<net.Socket>();

  const onTcpConnection = (socket: net.Socket): void => {
    tcpSockets.add(socket);
    socket.on('close', () => tcpSockets.delete(socket));
    socket.on('error', () => {});
    let pending = Buffer.alloc(0);
    socket.on('data', (chunk: Buffer) => {
      pending = Buffer.concat([pending, chunk]);
      // TCP DNS: each message is prefixed by its 16-bit length.
      while (pending.length >= 2 && pending.length >= 2 + pending.readUInt16BE(0)) {
        const length = pending.readUInt16BE(0);
        const response = answer(zone, log, pending.subarray(2, 2 + length));
        pending = pending.subarray(2 + length);
        if (response === SILENT) continue;
        if (!response) return void socket.destroy();
        const framed = Buffer.alloc(2 + response.length);
        framed.writeUInt16BE(response.length, 0);
        response.copy(framed, 2);
        socket.write(framed);
      }
    });
  };
  const onUdpMessage =
    (udp: dgram.Socket) =>
    (message: Buffer, remote: dgram.RemoteInfo): void => {
      const response = answer(zone, log, message);
      if (response && response !== SILENT) udp.send(response, remote.port, remote.address);
    };

  const { tcp, udp, port } = await bindSamePort(onTcpConnection, onUdpMessage);
  return {
    address: `127.0.0.1:${port}`,
    port,
    queries: (name?: string) => (name === undefined ? log.length : log.filter((entry) => entry.name === normalizeName(name)).length),
    close: async () => {
      for (const socket of tcpSockets) socket.destroy();
      await Promise.all([
        new Promise<void>((resolve) => tcp.close(() => resolve())),
        new Promise<void>((resolve) => udp.close(() => resolve())),
      ]);
    },
  };
}

/** TCP takes a free port, UDP binds the same number; another process may hold it on UDP, so retry. */
async function bindSamePort(
  onTcpConnection: (socket: net.Socket) => void,
  onUdpMessage: (udp: dgram.Socket) => (message: Buffer, remote: dgram.RemoteInfo) => void,
): Promise<{ tcp: net.Server; udp: dgram.Socket; port: number }> {
  let lastError: unknown;
  for (let attempt = 0; attempt < 10; attempt += 1) {
    const tcp = net.createServer(onTcpConnection);
    await new Promise<void>((resolve, reject) => {
      tcp.once('error', reject);
      tcp.listen({ host: '127.0.0.1', port: 0, exclusive: true }, () => resolve());
    });
    const port = (tcp.address() as net.AddressInfo).port;
    const udp = dgram.createSocket('udp4');
    try {
      await new Promise<void>((resolve, reject) => {
        udp.once('error', reject);
        udp.bind(port, '127.0.0.1', () => resolve());
      });
      udp.on('message', onUdpMessage(udp));
      return { tcp, udp, port };
    } catch (error) {
      lastError = error;
      try {
        udp.close();
      } catch {
        // A socket whose bind failed may already be released.
      }
      await new Promise<void>((resolve) => tcp.close(() => resolve()));
    }
  }
  throw new Error(`DNS test server: found no port free for both TCP and UDP: ${String(lastError)}`);
}
