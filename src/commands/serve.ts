import { autoWorkers, reportToPrimary, runPrimary, workerAuditFile, workerIndex } from '../app/cluster.js';
import { scrubSecrets } from '../app/runtime.js';
import { startSluice, StartupError, type RunningSluice } from '../app/serve.js';
import { DEFAULT_CHECKPOINT_INTERVAL_MS, DEFAULT_CHECKPOINT_RECORDS, randomInstance, type FsyncMode } from '../observe/audit.js';
import { createLogger } from '../observe/log.js';
import { parseEndpoint, parseFlags, UsageError, wholeNumber } from './usage.js';

const HELP = `Usage: sluice serve --policy FILE [options]

Runs the proxy. Every flag can also be given as an environment variable (shown in brackets).

  --policy FILE          policy file, YAML or JSON                         [SLUICE_POLICY]
  --listen HOST:PORT     proxy listen address (default 127.0.0.1:3128)     [SLUICE_LISTEN]
  --admin HOST:PORT      admin address: /metrics /healthz /readyz /policy /audit/head /ca.pem
                         (default 127.0.0.1:9090; "off" disables it)       [SLUICE_ADMIN]
  --ca-dir DIR           interception CA directory, created when missing (default certs)
                                                                           [SLUICE_CA_DIR]
  --audit FILE|-         audit log (hash-chained JSON lines); - = stdout   [SLUICE_AUDIT]
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
  --no-watch             reload only on SIGHUP, not when a policy file or fragment changes

Signals: SIGHUP reloads the policy; SIGTERM/SIGINT drain and flush the audit, then exit 0.
Exit codes: 2 when sluice refuses to start (reason on stderr), 3 after a pinned-policy halt.
`;

export async function runServe(args: string[]): Promise<number> {
  const parsed = parseFlags(
    args,
    {
      policy: { type: 'string' },
      listen: { type: 'string' },
      admin: { type: 'string' },
      'ca-dir': { type: 'string' },
      audit: { type: 'string' },
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
      'no-watch': { type: 'boolean' },
    },
    HELP,
  );
  if (!parsed) return 0;
  const v = parsed.values as Record<string, string | undefined> & { 'no-watch'?: boolean };
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
  const audit = v.audit ?? env.SLUICE_AUDIT ?? null;
  // Several processes writing whole batches to one stream could interleave records.
  if (workers > 1 && audit === '-') throw new UsageError('--audit - (stdout) cannot be used with --workers above 1; give a file');
  const auditKey = v['audit-key'] ?? env.SLUICE_AUDIT_KEY ?? null;
  if (auditKey !== null && audit === null) throw new UsageError('--audit-key needs --audit FILE|- (there is no trail to sign)');
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
  const admin = adminText === 'off' ? null : parseEndpoint(adminText, '--admin');
  const listen = parseEndpoint(v.listen ?? env.SLUICE_LISTEN ?? '127.0.0.1:3128', '--listen');
  const caDir = v['ca-dir'] ?? env.SLUICE_CA_DIR ?? 'certs';
  const index = workerIndex();
  // Until the policy (and so the secrets) is loaded there is nothing to scrub.
  let scrub = (text: string): string => text;
  const logger = createLogger({ level: v['log-level'] ?? env.SLUICE_LOG_LEVEL ?? 'info', scrub: (text) => scrub(text) });

  if (workers > 1 && index === null) return runPrimary({ workers, admin, listen, caDir, logger });

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
      return 2;
    }
    throw err;
  }
  const started = running;
  scrub = (text) => scrubSecrets(started.current(), text);
  const { proxy, admin: adminAddress } = started;
  logger.info(
    {
      listen: `${proxy.address}:${proxy.port}`,
      admin: adminAddress ? `${adminAddress.address}:${adminAddress.port}` : null,
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
