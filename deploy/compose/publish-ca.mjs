// Publishes sluice's interception CA for tools, without its key: creates the CA when missing
// (`sluice ca init`), then writes to SLUICE_CA_PUBLIC_DIR
//   ca.pem         the sluice CA alone (for NODE_EXTRA_CA_CERTS, which adds to Node's roots)
//   ca-bundle.pem  Node's public roots plus the sluice CA (for SSL_CERT_FILE, REQUESTS_CA_BUNDLE,
//                  CURL_CA_BUNDLE, GIT_SSL_CAINFO, which replace the client's roots: passthrough
//                  HTTPS hosts present public certificates, intercepted ones sluice's)
// Two places, told apart by where the script sits, so neither needs any environment:
//   - in a checkout (`node deploy/compose/publish-ca.mjs`, after `npm ci`): the checkout's
//     dist/cli.js, the CA in ./certs (where `sluice serve` and `npm start` keep it by default), and
//     ca.pem / ca-bundle.pem written to the current directory, as the README's recipes use them;
//   - in the container (docker-compose.yml's ca-publish service, mounted at /publish-ca.mjs):
//     /app/dist/cli.js, /var/lib/sluice/certs and /var/lib/sluice/public, the image's volumes.
// SLUICE_CA_DIR, SLUICE_CA_PUBLIC_DIR and SLUICE_CLI override either.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { rootCertificates } from 'node:tls';
import { fileURLToPath } from 'node:url';

const checkout = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const inCheckout = existsSync(join(checkout, 'package.json')) && existsSync(join(checkout, 'src/cli.ts'));
const caDir = process.env.SLUICE_CA_DIR ?? (inCheckout ? 'certs' : '/var/lib/sluice/certs');
const publicDir = process.env.SLUICE_CA_PUBLIC_DIR ?? (inCheckout ? '.' : '/var/lib/sluice/public');
const cli = process.env.SLUICE_CLI ?? (inCheckout ? join(checkout, 'dist/cli.js') : '/app/dist/cli.js');
if (!existsSync(cli)) {
  process.stderr.write(`publish-ca: ${cli} not found${inCheckout ? ' (run `npm ci` or `npm run build` first)' : ''}\n`);
  process.exit(1);
}

execFileSync(process.execPath, [cli, 'ca', 'init', '--dir', caDir], { stdio: 'inherit' });
const caPem = readFileSync(join(caDir, 'ca.pem'), 'utf8');
mkdirSync(publicDir, { recursive: true });

// Written aside and renamed, so a tool starting meanwhile never reads half a bundle.
function publish(name, text) {
  const target = join(publicDir, name);
  writeFileSync(`${target}.tmp`, text, { mode: 0o644 });
  renameSync(`${target}.tmp`, target);
}
publish('ca.pem', caPem);
publish('ca-bundle.pem', `${rootCertificates.join('\n')}\n${caPem}`);
process.stdout.write(`published ${join(publicDir, 'ca.pem')} and ca-bundle.pem (${rootCertificates.length} public roots + the sluice CA)\n`);
