// Loopback upstream for the side-by-side bench: HTTP on 127.0.0.1:18080, HTTPS on 127.0.0.1:18443
// (cert for localhost and 127.0.0.1 in tls/upstream.pem).
//   GET /small        -> 1 KiB body
//   GET /bulk?bytes=N -> N bytes streamed (default 1 GiB)
// Ports can be moved with UPSTREAM_HTTP_PORT / UPSTREAM_HTTPS_PORT.
import http from 'node:http';
import https from 'node:https';
import fs from 'node:fs';

const httpPort = Number(process.env.UPSTREAM_HTTP_PORT ?? 18080);
const httpsPort = Number(process.env.UPSTREAM_HTTPS_PORT ?? 18443);
const tlsDir = new URL('./tls/', import.meta.url);

const small = Buffer.alloc(1024, 'a');
const chunk = Buffer.alloc(256 * 1024, 'b');

function handler(req, res) {
  const url = new URL(req.url ?? '/', 'http://upstream');
  if (url.pathname === '/bulk') {
    let left = Number(url.searchParams.get('bytes') ?? 2 ** 30);
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': left });
    const pump = () => {
      while (left > 0) {
        const n = Math.min(left, chunk.length);
        left -= n;
        if (!res.write(n === chunk.length ? chunk : chunk.subarray(0, n))) return void res.once('drain', pump);
      }
      res.end();
    };
    return pump();
  }
  if (url.pathname === '/upload') {
    // the leak rows POST a body: read it all, answer a few bytes
    req.resume();
    req.once('end', () => {
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': 2 });
      res.end('ok');
    });
    return;
  }
  if (url.pathname === '/small') {
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': small.length });
    return void res.end(small);
  }
  res.writeHead(404, { 'content-length': 0 });
  res.end();
}

// Idle tunnels in the memory row sit on kept-alive connections for minutes: keep them open.
const serverOptions = { keepAliveTimeout: 600_000, headersTimeout: 60_000, requestTimeout: 0 };
const plain = http.createServer(serverOptions, handler);
const secure = https.createServer(
  {
    ...serverOptions,
    key: fs.readFileSync(new URL('upstream-key.pem', tlsDir)),
    cert: fs.readFileSync(new URL('upstream.pem', tlsDir)),
  },
  handler,
);

const listening = (server, port) =>
  new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', resolve);
  });
await Promise.all([listening(plain, httpPort), listening(secure, httpsPort)]);
console.log(`upstream ready http=${httpPort} https=${httpsPort}`);
