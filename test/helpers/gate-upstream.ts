// Upstreams that misbehave on purpose, for the "one gate" timeout and override tests (issue 13):
// one that accepts and never answers (recording what each connection received and whether it was
// closed, so a test sees an upstream request aborted), one that holds every request until the test
// releases it (a slot stays taken for exactly as long as the test says), and a listener whose accept
// queue is full, so a connect() to it hangs without a packet leaving the machine.
import { spawn, type ChildProcess } from 'node:child_process';
import http from 'node:http';
import net from 'node:net';
import tls from 'node:tls';
import { requireTool } from './clients.js';

export interface StallConnection {
  /** bytes received so far (plaintext for TLS), latin1 */
  received: string;
  /** the peer (sluice) closed or reset it */
  closed: boolean;
}

export interface StallUpstream {
  host: string;
  port: number;
  connections: StallConnection[];
  close(): Promise<void>;
}

/** Accepts connections (TCP, or TLS with `tls`), reads everything, never sends a byte. */
export async function startStallUpstream(options: { host?: string; tls?: { certPem: string; keyPem: string } } = {}): Promise<StallUpstream> {
  const host = options.host ?? '127.0.0.1';
  const connections: StallConnection[] = [];
  const sockets = new Set<net.Socket>();
  const onSocket = (socket: net.Socket): void => {
    const record: StallConnection = { received: '', closed: false };
    connections.push(record);
    sockets.add(socket);
    socket.on('data', (chunk: Buffer) => (record.received += chunk.toString('latin1')));
    socket.on('error', () => undefined);
    socket.on('close', () => {
      record.closed = true;
      sockets.delete(socket);
    });
  };
  const server = options.tls ? tls.createServer({ cert: options.tls.certPem, key: options.tls.keyPem }, onSocket) : net.createServer(onSocket);
  server.on('tlsClientError', () => undefined);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host, port: 0, exclusive: true }, () => resolve());
  });
  return {
    host,
    port: (server.address() as net.AddressInfo).port,
    connections,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

export interface HoldUpstream {
  host: string;
  port: number;
  /** requests received and not yet answered */
  held(): number;
  /** requests received in total, with their URLs */
  urls: string[];
  /** answers every held request 200 "released" */
  releaseAll(): void;
  close(): Promise<void>;
}

/** An HTTP server that answers nothing until releaseAll(): each held request keeps its slot in sluice. */
export async function startHoldUpstream(host = '127.0.0.1'): Promise<HoldUpstream> {
  const waiting: http.ServerResponse[] = [];
  const urls: string[] = [];
  const server = http.createServer((req, res) => {
    urls.push(req.url ?? '');
    req.resume();
    waiting.push(res);
    res.on('close', () => {
      const at = waiting.indexOf(res);
      if (at >= 0) waiting.splice(at, 1);
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host, port: 0, exclusive: true }, () => resolve());
  });
  const releaseAll = (): void => {
    for (const res of waiting.splice(0)) res.end('released\n');
  };
  return {
    host,
    port: (server.address() as net.AddressInfo).port,
    held: () => waiting.length,
    urls,
    releaseAll,
    close: () =>
      new Promise<void>((resolve) => {
        releaseAll();
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

export interface FullAcceptQueue {
  host: string;
  port: number;
  close(): Promise<void>;
}

// Listens with backlog 0 and never accepts (Node always accepts, so this is a python3 process).
const NEVER_ACCEPT = String.raw`
import socket, sys
s = socket.socket(socket.AF_INET6 if ':' in sys.argv[1] else socket.AF_INET, socket.SOCK_STREAM)
s.bind((sys.argv[1], 0))
s.listen(0)
print(s.getsockname()[1], flush=True)
sys.stdin.read()
`;

/**
 * A loopback listener whose accept queue is full: the kernel drops new SYNs, so connect() to it
 * hangs until the caller's own timeout. The queue is filled by connecting until one connect does not
 * complete. close() ends the listener; pending connects then fail with ECONNREFUSED.
 */
export async function startFullAcceptQueue(host = '127.0.0.1'): Promise<FullAcceptQueue> {
  requireTool('python3');
  const child: ChildProcess = spawn('python3', ['-c', NEVER_ACCEPT, host], { stdio: ['pipe', 'pipe', 'inherit'] });
  const port = await new Promise<number>((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (code) => reject(new Error(`the never-accepting listener exited (${code})`)));
    child.stdout!.once('data', (data: Buffer) => resolve(Number(String(data).trim())));
  });
  const fillers: net.Socket[] = [];
  const attempt = (): Promise<boolean> =>
    new Promise((resolve) => {
      const socket = net.connect({ host, port });
      socket.on('error', () => undefined);
      fillers.push(socket);
      const timer = setTimeout(() => resolve(false), 500);
      socket.once('connect', () => {
        clearTimeout(timer);
        resolve(true);
      });
    });
  let full = false;
  for (let i = 0; i < 16 && !full; i++) full = !(await attempt());
  const close = async (): Promise<void> => {
    for (const socket of fillers) socket.destroy();
    if (child.exitCode === null) {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.stdin!.end();
      child.kill('SIGTERM');
      await exited;
    }
  };
  if (!full) {
    await close();
    throw new Error(`could not fill the accept queue of ${host}:${port}: every connect completed`);
  }
  return { host, port, close };
}
