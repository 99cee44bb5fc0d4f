// Publishes sluice's interception CA for tools, without its key: creates the CA when missing
// (`sluice ca init`), then writes to SLUICE_CA_PUBLIC_DIR
//   ca.pem         the sluice CA alone (for NODE_EXTRA_CA_CERTS, which adds to Node's roots)
//   ca-bundle.pem  Node's public roots plus the sluice CA (for SSL_CERT_FILE, REQUESTS_CA_BUNDLE,
//                  CURL_CA_BUNDLE, GIT_SSL_CAINFO, which replace the client's roots: passthrough
//                  HTTPS hosts present public certificates, intercepted ones sluice's)
// Run once before sluice starts (docker-compose.yml's ca-publish service).
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { rootCertificates } from 'node:tls';

const caDir = process.env.SLUICE_CA_DIR ?? '/var/lib/sluice/certs';
const publicDir = process.env.SLUICE_CA_PUBLIC_DIR ?? '/var/lib/sluice/public';
const cli = process.env.SLUICE_CLI ?? '/app/dist/cli.js';

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
