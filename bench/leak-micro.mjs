// Micro-bench of the leak detector alone (no proxy): CPU per body for the layered detector
// (src/leak/stream.ts, as the body path runs it) against the plain shape scan that came before it
// (LEAK_PATTERNS over the text as sent). Needs a build (npm run build). `node bench/leak-micro.mjs`
// prints ms per body; run it under `node --cpu-prof` to see where the time goes.
import { randomBytes } from 'node:crypto';
import { json4k, upload1m } from './bodies.mjs';

// LEAK_DIST=/path/to/dist: another build (an A/B against an older detector)
const dist = process.env.LEAK_DIST ? `file://${process.env.LEAK_DIST.replace(/\/$/, '')}` : new URL('../dist', import.meta.url).href;
const { DecodeBudget } = await import(`${dist}/leak/detect.js`);
const { LeakScan } = await import(`${dist}/leak/stream.js`);
const { LEAK_PATTERNS } = await import(`${dist}/secrets/leak-patterns.js`);

const bodies = {
  json_4k: json4k(),
  random_1m: upload1m(),
  base64_1m: Buffer.from(randomBytes(768 * 1024).toString('base64')),
  text_1m: Buffer.from(
    ('lorem ipsum dolor sit amet, consectetur adipiscing elit; key=value&token=abc ' + '\n').repeat(13500).slice(0, 1024 * 1024),
  ),
};

function layered(body) {
  const scan = new LeakScan({ budget: new DecodeBudget(8 * 1024 * 1024), where: 'body' });
  for (let at = 0; at < body.length; at += 64 * 1024) scan.push(body.subarray(at, at + 64 * 1024));
  scan.end();
}

function plain(body) {
  const text = body.toString('latin1');
  for (const p of LEAK_PATTERNS) if (p.regex.test(text)) throw new Error('hit');
}

/**
 * ms of CPU per call of fn(body): warmed up for a second, then the best of ten 200 ms trials (the
 * machine is shared: the best trial is the one least disturbed by the others).
 */
function measure(fn, body) {
  const trial = (ms) => {
    const end = performance.now() + ms;
    const start = process.cpuUsage();
    let n = 0;
    while (performance.now() < end) {
      fn(body);
      n++;
    }
    const used = process.cpuUsage(start);
    return (used.user + used.system) / 1000 / n;
  };
  trial(1000);
  let best = Infinity;
  for (let i = 0; i < 10; i++) best = Math.min(best, trial(200));
  return best;
}

const main = import.meta.url === `file://${process.argv[1]}`;
const only = process.argv[2];
for (const [name, body] of main ? Object.entries(bodies) : []) {
  if (only && !name.includes(only)) continue;
  const figures = {};
  for (const [kind, fn] of [
    ['plain', plain],
    ['layered', layered],
  ])
    figures[kind] = process.env.LEAK_MICRO_ONLY && process.env.LEAK_MICRO_ONLY !== kind ? NaN : measure(fn, body);
  console.log(
    `${name.padEnd(10)} plain ${figures.plain.toFixed(3)} ms  layered ${figures.layered.toFixed(3)} ms  layered/plain ${(figures.layered / figures.plain).toFixed(2)}`,
  );
}
