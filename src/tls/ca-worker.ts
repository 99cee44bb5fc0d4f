// The thread a first start creates the interception CA on (issue 20): loading @peculiar/x509 and
// its ASN.1 stack, generating the key and signing the certificate run here, beside the rest of the
// start (policy, audit, ports) on the main thread. The worker writes the files itself; what it
// posts back says only whether it created them, never key material.
import { parentPort, workerData } from 'node:worker_threads';
import { initCa, type CaWorkerReply } from './ca.js';

const { dir } = workerData as { dir: string };
initCa(dir).then(
  (result): void => parentPort?.postMessage({ ok: true, ...result } satisfies CaWorkerReply),
  (err: unknown): void => {
    const e = err as { message?: unknown; code?: unknown };
    const reply: CaWorkerReply = { ok: false, message: String(e?.message ?? err) };
    if (typeof e?.code === 'string') reply.code = e.code;
    parentPort?.postMessage(reply);
  },
);
