// A fixed number of small GETs over keep-alive, for the bench rows that ask "after N requests"
// (wrk runs for a time, not a count). Through a forward proxy the requests are absolute-form,
// as clients send them; without --proxy they go straight to the target.
//
//   node count.mjs --url http://127.0.0.1:18080/small [--proxy PORT] [--auth user:pass] [--count 1000] [--conc 10] [--close]
//
// Prints one JSON line: {"ok","fail","first_error"}.
import http from 'node:http';
import { parseArgs } from 'node:util';

const { values: opt } = parseArgs({
  options: {
    url: { type: 'string' },
    proxy: { type: 'string' },
    auth: { type: 'string' },
    count: { type: 'string', default: '1000' },
    conc: { type: 'string', default: '10' },
    // a new connection per request, for a proxy that closes after each response (tinyproxy)
    close: { type: 'boolean', default: false },
  },
});
if (!opt.url) throw new Error('--url is required');
const target = new URL(opt.url);
const total = Number(opt.count);
const agent = new http.Agent({ keepAlive: !opt.close, maxSockets: Number(opt.conc) });
const headers = { host: target.host, ...(opt.close ? { connection: 'close' } : {}) };
if (opt.auth) headers['proxy-authorization'] = `Basic ${Buffer.from(opt.auth).toString('base64')}`;

let started = 0;
let ok = 0;
let fail = 0;
let firstError = null;

function one(retries = 0) {
  return new Promise((resolve) => {
    const req = http.request(
      opt.proxy
        ? { host: '127.0.0.1', port: Number(opt.proxy), path: target.href, headers, agent }
        : { host: target.hostname, port: target.port, path: target.pathname + target.search, headers, agent },
      (res) => {
        res.resume();
        res.once('end', () => {
          if (res.statusCode === 200) ok++;
          else {
            fail++;
            firstError ??= `status ${res.statusCode}`;
          }
          resolve();
        });
      },
    );
    req.once('error', (err) => {
      // a kept-alive socket the server closed meanwhile (tinyproxy closes after each response)
      if (req.reusedSocket && retries < 10) return void one(retries + 1).then(resolve);
      fail++;
      firstError ??= err.message;
      resolve();
    });
    req.end();
  });
}

async function worker() {
  while (started < total) {
    started++;
    await one();
  }
}

await Promise.all(Array.from({ length: Number(opt.conc) }, worker));
agent.destroy();
process.stdout.write(`${JSON.stringify({ ok, fail, first_error: firstError })}\n`);
