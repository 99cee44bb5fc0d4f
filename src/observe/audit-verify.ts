// `sluice audit verify`: checks audit trails given as files in any order. The core is pure, over
// lines (verifyTrail); verifyAuditFiles reads real files into it, in chunks, never whole.
//
// How files are put together. A file follows another when its first record continues the other's
// last (seq + 1, prev = its hash); linked files make a segment. A segment must begin with the
// genesis (seq 1) or a checkpoint that opens a file (rotate, break); anything else means its first
// records were cut. Segments holding records of the same instance belong to one trail, and one trail
// must be one segment: a gap between two of them is a rotated file that was deleted (or not given).
// The oldest files of a trail may be missing (rotation prunes them): what is left then opens with a
// rotate checkpoint. Several trails (the workers of --workers) verify together.
//
// What a signed trail must also satisfy. Every checkpoint's signature verifies with a --key (and a
// checkpoint from a key not given is refused); within a run (from one checkpoint until a shutdown)
// every record carries the run's instance. A trail whose last record is not a shutdown checkpoint has
// an unsealed tail: a running instance has one, so does a crash, and so does a cut tail; it is
// reported apart (exit 3), and `--expect-seq N` (an anchor kept outside the file, e.g. Prometheus'
// sluice_audit_last_seq) tells a cut from the others. A break checkpoint in the middle of a trail
// marks a run that ended unsealed before it, reported the same way.
import fs from 'node:fs';
import { GENESIS_HASH, hashMatches, signedPart, splitLine } from './audit-chain.js';
import { signatureValid, type AuditVerifyKey } from './audit-key.js';
import { CHECKPOINT_KINDS, FILE_OPENING_KINDS, type CheckpointKind } from './audit-record.js';
import { readTail } from './audit-tail.js';

export interface AuditLine {
  text: string;
  /** false for a last line with no newline after it */
  terminated: boolean;
}

export interface TrailFile {
  name: string;
  lines(): Iterable<AuditLine>;
  /** the first and last line, when they can be had without reading every line (default: from lines()) */
  edges?(): { first: AuditLine | null; last: AuditLine | null };
}

export interface VerifyOptions {
  /** public keys the checkpoints must be signed with; none: signatures are not checked */
  keys?: AuditVerifyKey[];
  /** the trail must reach at least this seq (an anchor kept outside the files) */
  expectSeq?: number | null;
}

export interface VerifyProblem {
  file: string;
  /** 1-based, in the file as it is now; 0 when about the file as a whole */
  line: number;
  why: string;
}

export interface TrailReport {
  /** oldest first */
  files: string[];
  records: number;
  firstSeq: number;
  lastSeq: number;
  instances: string[];
  keyIds: string[];
  checkpoints: number;
  /** the last record is a shutdown checkpoint */
  sealed: boolean;
}

export type VerifyStatus = 'ok' | 'unsealed' | 'failed';

export interface VerifyReport {
  /** status === 'ok' */
  ok: boolean;
  status: VerifyStatus;
  /** each one fails the verification (exit 1) */
  problems: VerifyProblem[];
  /** unsealed runs: records no checkpoint seals (exit 3 when there is no problem) */
  unsealed: VerifyProblem[];
  notes: string[];
  trails: TrailReport[];
  /** the options do not fit the files (exit 2), e.g. one anchor for several trails */
  usage: string | null;
}

/** A line taken apart; checkpoint fields only on checkpoints. */
interface Parsed {
  seq: number;
  prev: string;
  hash: string;
  canonical: string;
  instance: string | null;
  kind: CheckpointKind | null;
  keyId: string | null;
  detail: string | null;
  signed: { message: string; signature: string } | null;
}

const KINDS: ReadonlySet<string> = new Set(CHECKPOINT_KINDS);

/** Takes a line apart, or says why it is not a record; the hash is not checked here. */
function parseLine(line: AuditLine): Parsed | string {
  if (!line.terminated) return 'incomplete last record (no newline)';
  if (line.text === '') return 'empty line';
  let parsed: unknown;
  try {
    parsed = JSON.parse(line.text);
  } catch {
    return 'not JSON';
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return 'not a JSON object';
  const fields = parsed as Record<string, unknown>;
  const parts = splitLine(line.text);
  if (!parts) return '"hash" is missing or not the last field';
  const { seq, prev, instance } = fields;
  if (typeof seq !== 'number' || !Number.isSafeInteger(seq) || seq < 1) return '"seq" is not a positive integer';
  if (typeof prev !== 'string' || !/^[0-9a-f]{64}$/.test(prev)) return '"prev" is not a sha256 hex';
  if (instance !== undefined && instance !== null && typeof instance !== 'string') return '"instance" is not a string';
  const result: Parsed = {
    seq,
    prev,
    hash: parts.hash,
    canonical: parts.canonical,
    instance: typeof instance === 'string' ? instance : null,
    kind: null,
    keyId: null,
    detail: null,
    signed: null,
  };
  if (fields.type !== 'audit.checkpoint') return result;
  if (typeof fields.checkpoint !== 'string' || !KINDS.has(fields.checkpoint)) return `"checkpoint" is not one of ${CHECKPOINT_KINDS.join(', ')}`;
  if (typeof fields.key_id !== 'string' || !/^[0-9a-f]{16}$/.test(fields.key_id)) return '"key_id" is not 16 hex digits';
  if (typeof instance !== 'string') return 'a checkpoint must name its instance';
  const signed = signedPart(parts.canonical);
  if (!signed) return '"signature" is missing, malformed or not the last field before "prev"';
  return {
    ...result,
    kind: fields.checkpoint as CheckpointKind,
    keyId: fields.key_id,
    detail: typeof fields.detail === 'string' ? fields.detail : null,
    signed,
  };
}

interface Edge {
  file: TrailFile;
  first: Parsed;
  last: Parsed;
  pred: Edge | null;
  succ: Edge | null;
}

/** What one segment (linked files) held, scanned in chain order. */
interface Segment {
  files: TrailFile[];
  records: number;
  firstSeq: number;
  lastSeq: number;
  lastAt: { file: string; line: number };
  instances: Set<string>;
  keyIds: Set<string>;
  checkpoints: number;
  sealed: boolean;
  problem: VerifyProblem | null;
  /** the first record is neither the genesis nor a file-opening checkpoint: records before it are missing */
  cutHead: VerifyProblem | null;
}

function firstAndLast(file: TrailFile): { first: AuditLine | null; last: AuditLine | null } {
  if (file.edges) return file.edges();
  let first: AuditLine | null = null;
  let last: AuditLine | null = null;
  for (const line of file.lines()) {
    first ??= line;
    last = line;
  }
  return { first, last };
}

/** Scans one segment's files in order: the chain, the checkpoints, the runs and what is left unsealed. */
function scanSegment(
  files: TrailFile[],
  keys: Map<string, AuditVerifyKey> | null,
  out: { unsealed: VerifyProblem[]; notes: string[] },
): Segment {
  const seg: Segment = {
    files,
    records: 0,
    firstSeq: 0,
    lastSeq: 0,
    lastAt: { file: files[0]!.name, line: 0 },
    instances: new Set(),
    keyIds: new Set(),
    checkpoints: 0,
    sealed: false,
    problem: null,
    cutHead: null,
  };
  let prev: { seq: number; hash: string; kind: CheckpointKind | null; file: string; line: number } | null = null;
  /** the instance of the run in progress: set by a checkpoint, ended by a shutdown checkpoint */
  let run: string | null = null;
  /** records were written since the last shutdown checkpoint (a rotate checkpoint changes nothing); null = not known yet */
  let runOpen: boolean | null = null;
  let lastCheckpoint: { seq: number; kind: CheckpointKind; file: string; line: number } | null = null;
  const unsealedRun = (): string =>
    lastCheckpoint
      ? `${prev!.seq - lastCheckpoint.seq} records after the last checkpoint (seq ${lastCheckpoint.seq}, ${lastCheckpoint.kind}, ${lastCheckpoint.file}:${lastCheckpoint.line})`
      : `${seg.records} records and no checkpoint`;

  for (const file of files) {
    let lineNo = 0;
    for (const line of file.lines()) {
      lineNo++;
      const fail = (why: string): Segment => {
        seg.problem = { file: file.name, line: lineNo, why };
        return seg;
      };
      const p = parseLine(line);
      if (typeof p === 'string') return fail(p);
      if (prev === null) {
        if (p.seq === 1 && p.prev !== GENESIS_HASH) return fail('first record (seq 1) must have prev of 64 zeros');
        // Reported once the trails are known: after an older segment of the same trail it is a missing file.
        if (p.seq !== 1 && !(p.kind !== null && FILE_OPENING_KINDS.has(p.kind))) {
          seg.cutHead = {
            file: file.name,
            line: lineNo,
            why:
              `first record (seq ${p.seq}) is neither the genesis nor a checkpoint that opens a file (rotate or break): ` +
              'the records before it are missing (a cut head, or an unsigned rotated file given without the files before it)',
          };
        }
        seg.firstSeq = p.seq;
      } else {
        if (p.seq !== prev.seq + 1) return fail(`seq ${p.seq} follows seq ${prev.seq} (a record is missing, added or out of order)`);
        if (p.prev !== prev.hash) return fail("prev does not match the previous record's hash");
      }
      if (!hashMatches(p.prev, p.canonical, p.hash)) return fail('hash mismatch (record altered)');
      if (p.kind !== null) {
        if (FILE_OPENING_KINDS.has(p.kind) && lineNo !== 1)
          return fail(`a ${p.kind} checkpoint opens a file, but this one is at line ${lineNo}`);
        if (keys) {
          const key = keys.get(p.keyId!);
          if (!key) return fail(`checkpoint signed by another key (key id ${p.keyId}; --key is ${[...keys.keys()].join(', ')})`);
          if (!signatureValid(key, p.signed!.message, p.signed!.signature))
            return fail('checkpoint signature does not verify (forged or altered)');
        }
        if (p.kind === 'start' && runOpen === true) {
          return fail('a start checkpoint continues a run that no shutdown checkpoint sealed');
        }
        if (p.kind === 'break') {
          const where = `${file.name}:${lineNo}`;
          if (prev === null) out.notes.push(`${where}: opens with a break: ${p.detail ?? '(no detail)'}`);
          else if (runOpen === true) {
            out.unsealed.push({
              file: prev.file,
              line: prev.line,
              why: `the run ended with no shutdown checkpoint: ${unsealedRun()}; ${where} records the break`,
            });
          }
        } else if (p.kind !== 'start' && run !== null && p.instance !== run) {
          return fail(`checkpoint of instance ${p.instance} in the run of instance ${run}`);
        }
        run = p.kind === 'shutdown' ? null : p.instance;
        lastCheckpoint = { seq: p.seq, kind: p.kind, file: file.name, line: lineNo };
        seg.checkpoints++;
        seg.keyIds.add(p.keyId!);
      } else if (run !== null && p.instance !== run) {
        return fail(`instance ${p.instance ?? 'null'} in the run of instance ${run} (records of two processes mixed)`);
      }
      if (p.kind === 'shutdown') runOpen = false;
      else if (p.kind !== 'rotate') runOpen = true;
      if (p.instance !== null) seg.instances.add(p.instance);
      seg.records++;
      prev = { seq: p.seq, hash: p.hash, kind: p.kind, file: file.name, line: lineNo };
    }
  }
  if (prev === null) return seg;
  seg.lastSeq = prev.seq;
  seg.lastAt = { file: prev.file, line: prev.line };
  seg.sealed = prev.kind === 'shutdown';
  if (seg.checkpoints > 0 && !seg.sealed) {
    out.unsealed.push({
      file: prev.file,
      line: prev.line,
      why: `${unsealedRun()} and no shutdown checkpoint: a running or crashed instance, or a cut tail (--expect-seq checks against an anchor)`,
    });
  }
  return seg;
}

/** Puts segments that share an instance together: one trail each. */
function groupByInstance(segments: Segment[]): Segment[][] {
  const parent = segments.map((_, i) => i);
  const find = (i: number): number => (parent[i] === i ? i : (parent[i] = find(parent[i]!)));
  const owner = new Map<string, number>();
  segments.forEach((seg, i) => {
    for (const instance of seg.instances) {
      const other = owner.get(instance);
      if (other === undefined) owner.set(instance, i);
      else parent[find(i)] = find(other);
    }
  });
  const groups = new Map<number, Segment[]>();
  segments.forEach((seg, i) => {
    const root = find(i);
    groups.set(root, [...(groups.get(root) ?? []), seg]);
  });
  return [...groups.values()].map((g) => g.sort((a, b) => a.firstSeq - b.firstSeq));
}

/** Verifies the trails in `files` (any order). Pure: everything it reads comes through TrailFile. */
export function verifyTrail(files: TrailFile[], opts: VerifyOptions = {}): VerifyReport {
  const keys = opts.keys && opts.keys.length > 0 ? new Map(opts.keys.map((k) => [k.keyId, k])) : null;
  const problems: VerifyProblem[] = [];
  const out = { unsealed: [] as VerifyProblem[], notes: [] as string[] };
  const report = (trails: TrailReport[], usage: string | null = null): VerifyReport => {
    const status: VerifyStatus = problems.length > 0 ? 'failed' : out.unsealed.length > 0 ? 'unsealed' : 'ok';
    return { ok: status === 'ok' && usage === null, status, problems, unsealed: out.unsealed, notes: out.notes, trails, usage };
  };

  // Pass 1: each file's first and last record, to put the files in chain order.
  const edges: Edge[] = [];
  const unlinked: TrailFile[] = [];
  for (const file of files) {
    const { first, last } = firstAndLast(file);
    if (first === null || last === null) {
      out.notes.push(`${file.name}: empty`);
      continue;
    }
    const a = parseLine(first);
    const b = parseLine(last);
    if (typeof a === 'string' || typeof b === 'string') unlinked.push(file);
    else edges.push({ file, first: a, last: b, pred: null, succ: null });
  }
  const byEnd = new Map<string, Edge>();
  for (const edge of edges) {
    const key = `${edge.last.seq}:${edge.last.hash}`;
    const twin = byEnd.get(key);
    if (twin)
      problems.push({ file: edge.file.name, line: 0, why: `ends with the same record (seq ${edge.last.seq}) as ${twin.file.name}: a copy` });
    else byEnd.set(key, edge);
  }
  for (const edge of edges) {
    const pred = byEnd.get(`${edge.first.seq - 1}:${edge.first.prev}`);
    if (!pred || pred === edge) continue;
    if (pred.succ) {
      problems.push({
        file: edge.file.name,
        line: 1,
        why: `continues seq ${pred.last.seq} of ${pred.file.name}, as ${pred.succ.file.name} does (a fork)`,
      });
      continue;
    }
    pred.succ = edge;
    edge.pred = pred;
  }
  if (problems.length > 0) return report([]);

  // Pass 2: every segment scanned in order.
  const segments: Segment[] = [];
  for (const head of edges.filter((e) => e.pred === null)) {
    const chain: TrailFile[] = [];
    for (let e: Edge | null = head; e; e = e.succ) chain.push(e.file);
    segments.push(scanSegment(chain, keys, out));
  }
  for (const file of unlinked) segments.push(scanSegment([file], keys, out));
  for (const seg of segments) if (seg.problem) problems.push(seg.problem);
  if (problems.length > 0) return report([]);

  const trails: TrailReport[] = [];
  for (const group of groupByInstance(segments.filter((s) => s.records > 0))) {
    if (group[0]!.cutHead) problems.push(group[0]!.cutHead);
    for (let i = 1; i < group.length; i++) {
      const [a, b] = [group[i - 1]!, group[i]!];
      const shared = [...b.instances].filter((x) => a.instances.has(x)).join(', ');
      const why =
        b.firstSeq > a.lastSeq + 1
          ? `seq ${a.lastSeq + 1}..${b.firstSeq - 1} are missing between ${a.lastAt.file} and ${b.files[0]!.name} (instance ${shared}): a rotated file was deleted or not given`
          : `does not continue ${a.lastAt.file} (seq ${a.firstSeq}..${a.lastSeq}) although both hold records of instance ${shared}: a copy, a fork, or two sluices sharing --audit-instance`;
      problems.push({ file: b.files[0]!.name, line: 1, why });
    }
    const seg = group[0]!;
    if (group.length === 1 && seg.checkpoints === 0 && keys) {
      problems.push({ file: seg.lastAt.file, line: 0, why: 'no checkpoint: this trail is not signed (written without --audit-key)' });
    }
    trails.push({
      files: group.flatMap((s) => s.files.map((f) => f.name)),
      records: group.reduce((n, s) => n + s.records, 0),
      firstSeq: seg.firstSeq,
      lastSeq: group.at(-1)!.lastSeq,
      instances: [...new Set(group.flatMap((s) => [...s.instances]))],
      keyIds: [...new Set(group.flatMap((s) => [...s.keyIds]))],
      checkpoints: group.reduce((n, s) => n + s.checkpoints, 0),
      sealed: group.at(-1)!.sealed,
    });
  }
  if (trails.length === 0 && keys) problems.push({ file: files[0]?.name ?? '-', line: 0, why: 'no records' });

  const anchor = opts.expectSeq ?? null;
  if (anchor !== null && trails.length > 1) {
    return report(trails, `--expect-seq anchors one trail, and ${trails.length} were given: verify each trail's files with its own anchor`);
  }
  const only = trails[0];
  if (anchor !== null && (only?.lastSeq ?? 0) < anchor) {
    const last = only?.lastSeq ?? 0;
    problems.push({
      file: only ? segments.find((s) => s.lastSeq === last)!.lastAt.file : (files[0]?.name ?? '-'),
      line: only ? segments.find((s) => s.lastSeq === last)!.lastAt.line : 0,
      why: `the last record is seq ${last} but the anchor says seq ${anchor}: records ${last + 1}..${anchor} are missing (a cut tail or a deleted newest file)`,
    });
  }
  return report(trails);
}

/** Lines of a file, read in chunks so a large audit file is never held in memory whole. */
function* fileLines(file: string): Generator<AuditLine> {
  const fd = fs.openSync(file, 'r');
  try {
    const chunk = Buffer.alloc(1 << 20);
    let pending = Buffer.alloc(0);
    for (;;) {
      const n = fs.readSync(fd, chunk, 0, chunk.length, null);
      if (n === 0) break;
      let data = Buffer.concat([pending, chunk.subarray(0, n)]);
      let nl: number;
      while ((nl = data.indexOf(0x0a)) >= 0) {
        yield { text: data.subarray(0, nl).toString('utf8'), terminated: true };
        data = data.subarray(nl + 1);
      }
      pending = Buffer.from(data);
    }
    if (pending.length > 0) yield { text: pending.toString('utf8'), terminated: false };
  } finally {
    fs.closeSync(fd);
  }
}

/** The first line of a file without reading the rest. */
function firstLine(file: string): AuditLine | null {
  for (const line of fileLines(file)) return line;
  return null;
}

/** Verifies audit files given by path (any order); an unreadable file is a problem of its own. */
export function verifyAuditFiles(paths: string[], opts: VerifyOptions = {}): VerifyReport {
  const files: TrailFile[] = [];
  const unreadable: VerifyProblem[] = [];
  for (const name of [...new Set(paths)]) {
    let why: string | null = null;
    try {
      fs.accessSync(name, fs.constants.R_OK);
      if (!fs.statSync(name).isFile()) why = 'cannot read (not a regular file)';
    } catch (err) {
      why = `cannot read (${(err as NodeJS.ErrnoException).code ?? 'error'})`;
    }
    if (why !== null) {
      unreadable.push({ file: name, line: 0, why });
      continue;
    }
    files.push({
      name,
      lines: () => fileLines(name),
      edges: () => {
        const first = firstLine(name);
        const tail = readTail(name);
        if (first === null || tail === null) return { first: null, last: null };
        // A torn last line is what the full scan must report: give it as the last line.
        const last: AuditLine | null = tail.torn
          ? { text: '', terminated: false }
          : tail.last === null
            ? null
            : { text: tail.last, terminated: true };
        return { first, last };
      },
    });
  }
  if (unreadable.length > 0) {
    return { ok: false, status: 'failed', problems: unreadable, unsealed: [], notes: [], trails: [], usage: null };
  }
  return verifyTrail(files, opts);
}

/** What `sluice audit verify` prints: problems and unsealed runs as `file:line: …` (stderr), a line per trail (stdout). */
export function formatVerifyReport(report: VerifyReport, opts: { keysGiven: boolean }): { stdout: string; stderr: string } {
  const at = (p: VerifyProblem): string => `${p.file}:${p.line}: `;
  const stderr = [...report.problems.map((p) => at(p) + p.why), ...report.unsealed.map((p) => `${at(p)}unsealed: ${p.why}`)];
  const stdout: string[] = [];
  if (report.problems.length === 0) {
    const unsealedFiles = new Set(report.unsealed.map((p) => p.file));
    for (const trail of report.trails) {
      const status = trail.files.some((f) => unsealedFiles.has(f)) ? 'unsealed' : 'ok';
      const files = trail.files.length > 1 ? ` in ${trail.files.length} files` : '';
      const signature =
        trail.checkpoints === 0
          ? 'unsigned (no checkpoints: written without --audit-key), so a cut tail cannot be detected'
          : `signed by key ${trail.keyIds.join(', ')} (${trail.checkpoints} checkpoints), ${trail.sealed ? 'sealed' : 'not sealed'}` +
            (opts.keysGiven ? '' : ' (signatures not checked: no --key)');
      const instances = trail.instances.length > 0 ? `; instance ${trail.instances.join(', ')}` : '';
      stdout.push(`${status}: ${trail.records} records, seq ${trail.firstSeq}..${trail.lastSeq}${files}; ${signature}${instances}`);
    }
    if (report.trails.length === 0) stdout.push('ok: 0 records');
    stdout.push(...report.notes.map((n) => `note: ${n}`));
  }
  const join = (lines: string[]): string => lines.map((l) => `${l}\n`).join('');
  return { stdout: join(stdout), stderr: join(stderr) };
}
