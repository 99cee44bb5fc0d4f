import { readFileSync } from 'node:fs';
import { autoWorkers, reportToPrimary, runPrimary, workerAuditFile, workerIndex } from '../app/cluster.js';
import { scrubSecrets } from '../app/runtime.js';
import { startSluice, StartupError, type RunningSluice } from '../app/serve.js';
import { DEFAULT_CHECKPOINT_INTERVAL_MS, DEFAULT_CHECKPOINT_RECORDS, randomInstance, type FsyncMode } from '../observe/audit.js';
import { adminHostNames } from '../observe/admin.js';
import { createLogger, LOG_LEVELS } from '../observe/log.js';
import { VERSION } from '../version.js';
import { hostForUrl } from '../net/host.js';
import { parseEndpoint, parseFlags, UsageError, wholeNumber } from './usage.js';

const HELP = `Usage: sluice serve --policy FILE [options]

Runs the proxy. Every flag can also be given as an environment variable (shown in brackets).

  --policy FILE          policy file, YAML or JSON                         [SLUICE_POLICY]
  --listen HOST:PORT     proxy listen address (default 127.0.0.1:3128)     [SLUICE_LISTEN]
  --listen-tool NAME=HOST:PORT  one more proxy port, bound to tool NAME: requests on it are NAME's
                         without Proxy-Authorization (clients that cannot send Basic on CONNECT,
                         such as the JDK; a one-tool sidecar); repeatable  [SLUICE_LISTEN_TOOL, comma-separated]
  --admin HOST:PORT      admin address: /metrics /healthz /readyz /policy /audit/head /ca.pem
                         (default 127.0.0.1:9090; "off" disables it)       [SLUICE_ADMIN]
  --admin-host NAME      a name the admin port answers to besides IP addresses and localhost
                         (others get 421: DNS rebinding); repeatable  [SLUICE_ADMIN_HOSTS, comma-separated]
  --ca-dir DIR           interception CA directory, created when missing (default certs)
                                                                           [SLUICE_CA_DIR]
  --audit FILE|-         audit log (hash-chained JSON lines); - = stdout, the default; repeat
                         for both (--audit FILE --audit -)  [SLUICE_AUDIT, comma-separated]
  --audit-fsync MODE     never | interval | always (default interval)      [SLUICE_AUDIT_FSYNC]
  --audit-max-bytes N    rotate the audit file past N bytes (0 = never; default 100 MiB)
                                                                           [SLUICE_AUDIT_MAX_BYTES]
  --audit-key FILE       Ed25519 private key ("sluice audit keygen") signing audit checkpoints:
                         at start, every N records or T seconds, at each rotation, at shutdown
                                                                           [SLUICE_AUDIT_KEY]
  --audit-checkpoint-records N   a checkpoint after N records (default 1000)
                                                                 [SLUICE_AUDIT_CHECKPOINT_RECORDS]
  --audit-checkpoint-seconds T   and after T seconds with records (default 60)
                                                                 [SLUICE_AUDIT_CHECKPOINT_SECONDS]
  --audit-instance ID    the instance id in every record (default random per process; with
                         --workers ID.w1 … ID.wN)                          [SLUICE_AUDIT_INSTANCE]
  --policy-sha256 HEX    pin the policy: refuse to start on a mismatch, halt on drift
                                                                           [SLUICE_POLICY_SHA256]
  --log-level LEVEL      app log level (default info)                      [SLUICE_LOG_LEVEL]
  --max-connections N    client connections open at once, all tools together (0 = no cap, the
                         default; per-tool caps are in the policy)         [SLUICE_MAX_CONNECTIONS]
  --max-header-bytes N   largest request line plus headers accepted (default 32768); larger is
                         431 bad_request                                   [SLUICE_MAX_HEADER_BYTES]
  --workers N|auto       worker processes sharing the listen socket (default 1); the admin port
                         sums their metrics, each writes its own audit chain FILE.w1 … FILE.wN;
                         auto = one per usable core (affinity, cgroup quota), 1 on 2 cores or fewer
                                                                           [SLUICE_WORKERS]
  --deny-message TEXT    a sentence appended to the detail of every refusal's JSON body, e.g. who to
                         ask for access (the audit keeps sluice's own detail)  [SLUICE_DENY_MESSAGE]
  --drain-timeout SECONDS  at SIGTERM/SIGINT, how long open transfers may finish before they are
                         cut and audited as cut (reason shutdown; default 30)  [SLUICE_DRAIN_TIMEOUT]
  --no-watch             reload only on SIGHUP, not when a policy file or fragment changes
  --grants FILE          grants file approvals write (default POLICY-NAME.grants.json beside the
                         policy); its own digest, never part of --policy-sha256  [SLUICE_GRANTS]
  --admin-token-file FILE  the admin token POST /approvals/{id} needs (Authorization: Bearer)
                                                                           [SLUICE_ADMIN_TOKEN_FILE]
  --admin-token-env NAME   or the environment variable holding it      [SLUICE_ADMIN_TOKEN_ENV]
                         Without either, the approvals API and /ui are read-only (403 on changes).

Signals: SIGHUP reloads the policy; SIGTERM/SIGINT drain (up to --drain-timeout), flush the audit,
then exit 0; a second SIGTERM/SIGINT exits at once.
Exit codes: 2 when sluice refuses to start (reason on stderr), 3 after a pinned-policy halt.
`;

export async function runServe(args: string[]): Promise<number> {
  const parsed = parseFlags(
    args,
    {
      policy: { type: 'string' },
      listen: { type: 'string' },
      'listen-tool': { type: 'string', multiple: true },
      admin: { type: 'string' },
      'ca-dir': { type: 'string' },
      audit: { type: 'string', multiple: true },
      'audit-fsync': { type: 'string' },
      'audit-max-bytes': { type: 'string' },
      'audit-key': { type: 'string' },
      'audit-checkpoint-records': { type: 'string' },
      'audit-checkpoint-seconds': { type: 'string' },
      'audit-instance': { type: 'string' },
      'policy-sha256': { type: 'string' },
      'log-level': { type: 'string' },
      'max-connections': { type: 'string' },
      'max-header-bytes': { type: 'string' },
      workers: { type: 'string' },
      'drain-timeout': { type: 'string' },
      'deny-message': { type: 'string' },
      'no-watch': { type: 'boolean' },
      grants: { type: 'string' },
      'admin-token-file': { type: 'string' },
      'admin-token-env': { type: 'string' },
      'admin-host': { type: 'string', multiple: true },
    },
    HELP,
  );
  if (!parsed) return 0;
  const v = parsed.values as Record<string, string | undefined> & {
    'no-watch'?: boolean;
    audit?: string[];
    'listen-tool'?: string[];
    'admin-host'?: string[];
  };
  const env = process.env;
  const policyFile = v.policy ?? env.SLUICE_POLICY;
  if (!policyFile) throw new UsageError(`--policy FILE is required\n\n${HELP}`);
  const adminText = v.admin ?? env.SLUICE_ADMIN ?? '127.0.0.1:9090';
  const fsync = (v['audit-fsync'] ?? env.SLUICE_AUDIT_FSYNC ?? 'interval') as FsyncMode;
  if (!['never', 'interval', 'always'].includes(fsync)) throw new UsageError('--audit-fsync must be never, interval or always');
  const maxBytes = Number(v['audit-max-bytes'] ?? env.SLUICE_AUDIT_MAX_BYTES ?? 100 * 1024 * 1024);
  if (!Number.isInteger(maxBytes) || maxBytes < 0) throw new UsageError('--audit-max-bytes must be a whole number of bytes');
  const pinned = v['policy-sha256'] ?? env.SLUICE_POLICY_SHA256 ?? null;
  if (pinned !== null && !/^[0-9a-fA-F]{64}$/.test(pinned)) throw new UsageError('--policy-sha256 must be 64 hex digits');
  const workersText = v.workers ?? env.SLUICE_WORKERS ?? '1';
  const workers = workersText === 'auto' ? autoWorkers() : wholeNumber(workersText, '--workers');
  if (workers < 1) throw new UsageError('--workers must be at least 1');
  // The audit goes to stdout unless a file is named; a file and stdout together when both are.
  const auditTargets = v.audit ?? (env.SLUICE_AUDIT ? env.SLUICE_AUDIT.split(',').map((a) => a.trim()) : []);
  const auditFiles = [...new Set(auditTargets.filter((a) => a !== '-'))];
  if (auditFiles.length > 1) throw new UsageError(`--audit takes one file (and - for stdout as well); got ${auditFiles.join(', ')}`);
  const audit = auditFiles[0] ?? null;
  const auditStdout = auditTargets.length === 0 || auditTargets.includes('-');
  // Several processes writing whole batches to one stream could interleave records.
  if (workers > 1 && auditStdout) {
    throw new UsageError(
      auditTargets.length === 0
        ? '--workers above 1 needs --audit FILE (each worker writes FILE.wN); the default, stdout, cannot be shared by several processes'
        : '--audit - (stdout) cannot be used with --workers above 1; give a file',
    );
  }
  const auditKey = v['audit-key'] ?? env.SLUICE_AUDIT_KEY ?? null;
  const checkpointRecords = wholeNumber(
    v['audit-checkpoint-records'] ?? env.SLUICE_AUDIT_CHECKPOINT_RECORDS ?? String(DEFAULT_CHECKPOINT_RECORDS),
    '--audit-checkpoint-records',
  );
  const checkpointSeconds = wholeNumber(
    v['audit-checkpoint-seconds'] ?? env.SLUICE_AUDIT_CHECKPOINT_SECONDS ?? String(DEFAULT_CHECKPOINT_INTERVAL_MS / 1000),
    '--audit-checkpoint-seconds',
  );
  if (checkpointRecords < 1 || checkpointSeconds < 1)
    throw new UsageError('--audit-checkpoint-records and --audit-checkpoint-seconds must be at least 1');
  const instanceFlag = v['audit-instance'] ?? env.SLUICE_AUDIT_INSTANCE ?? null;
  if (instanceFlag !== null && !/^[A-Za-z0-9._:@-]{1,64}$/.test(instanceFlag)) {
    throw new UsageError('--audit-instance must be 1 to 64 of A-Z a-z 0-9 . _ : @ -');
  }
  const drainSeconds = wholeNumber(v['drain-timeout'] ?? env.SLUICE_DRAIN_TIMEOUT ?? '30', '--drain-timeout');
  const toolListeners = (v['listen-tool'] ?? (env.SLUICE_LISTEN_TOOL ? env.SLUICE_LISTEN_TOOL.split(',') : [])).map((spec) => {
    const m = /^\s*([^=\s]+)=(\S+)\s*$/.exec(spec);
    if (!m) throw new UsageError(`--listen-tool must be NAME=HOST:PORT (got "${spec}")`);
    return { tool: m[1]!, listen: parseEndpoint(m[2]!, '--listen-tool') };
  });
  const denyMessage = v['deny-message'] ?? env.SLUICE_DENY_MESSAGE ?? null;
  // One line for a JSON string the client reads: no control characters (code points below 0x20, and DEL).
  if (denyMessage !== null && (denyMessage.length < 1 || denyMessage.length > 500 || [...denyMessage].some((c) => c < ' ' || c === '\u007f'))) {
    throw new UsageError('--deny-message must be one line of 1 to 500 characters, no control characters');
  }
  const admin = adminText === 'off' ? null : parseEndpoint(adminText, '--admin');
  const listen = parseEndpoint(v.listen ?? env.SLUICE_LISTEN ?? '127.0.0.1:3128', '--listen');
  const caDir = v['ca-dir'] ?? env.SLUICE_CA_DIR ?? 'certs';
  let adminHosts: string[];
  try {
    adminHosts = adminHostNames(v['admin-host'] ?? (env.SLUICE_ADMIN_HOSTS ? env.SLUICE_ADMIN_HOSTS.split(',') : []));
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const adminToken = readAdminToken(
    v['admin-token-file'] ?? env.SLUICE_ADMIN_TOKEN_FILE,
    v['admin-token-env'] ?? env.SLUICE_ADMIN_TOKEN_ENV,
    env,
  );
  const index = workerIndex();
  // Until the policy (and so the secrets) is loaded there is nothing to scrub.
  let scrub = (text: string): string => text;
  const level = v['log-level'] ?? env.SLUICE_LOG_LEVEL ?? 'info';
  if (!(LOG_LEVELS as readonly string[]).includes(level))
    throw new UsageError(`--log-level must be one of ${LOG_LEVELS.join(', ')} (got "${level}")`);
  const logger = createLogger({ level, scrub: (text) => scrub(text) });

  if (workers > 1 && index === null) return runPrimary({ workers, admin, adminHosts, listen, caDir, logger });

  let running: RunningSluice | undefined;
  try {
    running = await startSluice({
      policyFile,
      listen,
      // Under --workers the primary serves the admin port; a worker still never dials it.
      admin: index === null ? admin : null,
      alsoSelf: index !== null && admin ? [admin] : [],
      caDir,
      audit: index !== null && audit !== null ? workerAuditFile(audit, index) : audit,
      auditStdout,
      auditFsync: fsync,
      auditMaxBytes: maxBytes,
      auditKey,
      // Each worker is a process of its own: its own instance, so each trail verifies on its own.
      auditInstance: instanceFlag === null ? randomInstance() : index !== null ? `${instanceFlag}.w${index}` : instanceFlag,
      auditCheckpointRecords: checkpointRecords,
      auditCheckpointMs: checkpointSeconds * 1000,
      worker: index,
      policySha256: pinned,
      watchPolicy: !v['no-watch'],
      maxConnections: wholeNumber(v['max-connections'] ?? env.SLUICE_MAX_CONNECTIONS ?? '0', '--max-connections'),
      maxHeaderBytes: wholeNumber(v['max-header-bytes'] ?? env.SLUICE_MAX_HEADER_BYTES ?? '32768', '--max-header-bytes'),
      haltDrainMs: 500,
      grantsFile: v.grants ?? env.SLUICE_GRANTS ?? null,
      adminToken,
      adminHosts,
      drainMs: drainSeconds * 1000,
      toolListeners,
      denyMessage,
      logger,
      env,
      onHalt: () => {
        setTimeout(() => {
          void running?.close().finally(() => process.exit(3));
        }, 750);
      },
    });
  } catch (err) {
    if (err instanceof StartupError || (err as NodeJS.ErrnoException).code === 'EADDRINUSE') {
      process.stderr.write(`sluice serve: refusing to start: ${(err as Error).message}\n`);
      // A worker's IPC channel to the primary would keep it alive (and the primary waiting) forever,
      // and a worker that disconnects exits 0: it exits 2 itself (stderr to a pipe is synchronous).
      if (index !== null) process.exit(2);
      return 2;
    }
    throw err;
  }
  const started = running;
  scrub = (text) => scrubSecrets(started.current(), text);
  const { proxy, admin: adminAddress } = started;
  // The banner: where to point clients and where the admin endpoints are, as URLs to paste. The
  // message stays "sluice serving" (scripts wait for it); listen and admin are kept as host:port.
  const proxyUrl = `http://${hostForUrl(proxy.address)}:${proxy.port}`;
  const adminUrl = adminAddress ? `http://${hostForUrl(adminAddress.address)}:${adminAddress.port}` : null;
  logger.info(
    {
      version: VERSION,
      proxy_url: proxyUrl,
      admin_url: adminUrl,
      listen: `${proxy.address}:${proxy.port}`,
      admin: adminAddress ? `${adminAddress.address}:${adminAddress.port}` : null,
      audit: [...(audit ? [audit] : []), ...(auditStdout ? ['stdout'] : [])],
      ...(started.toolListeners.length > 0
        ? { tool_listeners: started.toolListeners.map((l) => `${l.tool}=http://${hostForUrl(l.address.address)}:${l.address.port}`) }
        : {}),
      ...(index !== null ? { worker: index } : {}),
    },
    'sluice serving',
  );
  const reportStatus = index !== null ? reportToPrimary(started, started.registry) : () => {};
  process.on('SIGHUP', () => void started.reload().then(reportStatus));
  const stop = (): void => {
    void started.close().then(() => process.exit(0));
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
  return -1;
}

/** The admin token from a file (trailing newline trimmed) or an environment variable; null when neither is named. */
function readAdminToken(file: string | undefined, name: string | undefined, env: NodeJS.ProcessEnv): string | null {
  if (file !== undefined && name !== undefined) throw new UsageError('give --admin-token-file or --admin-token-env, not both');
  let token: string | undefined;
  if (file !== undefined) {
    try {
      token = readFileSync(file, 'utf8').replace(/\r?\n$/, '');
    } catch (err) {
      throw new UsageError(`--admin-token-file ${file}: cannot read it (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
    }
  } else if (name !== undefined) {
    token = env[name];
    if (token === undefined) throw new UsageError(`--admin-token-env ${name}: the variable is not set`);
  } else return null;
  if (token.length < 16 || /\s/.test(token)) throw new UsageError('the admin token must be at least 16 characters with no spaces');
  return token;
}
