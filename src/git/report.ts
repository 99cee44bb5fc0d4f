// The answers sluice gives a git client in git's own protocol, so git prints them as it prints a
// server's: a refused push gets a report-status (the same lines serve report-status-v2) in which
// every ref is "ng" with sluice's reason, so git shows
//   ! [remote rejected] main -> main (sluice: push to refs/heads/main not allowed)
// and, when the client asked for side-band-64k, the report goes on band 1 with one line on band 2
// (git prints it as "remote: sluice: …"). A refused fetch advertisement is an "ERR" packet, which
// git prints as "fatal: remote error: sluice: …". Pure: values in, bytes out.
import type { CommandList } from './commands.js';
import { FLUSH_PKT, MAX_PKT_LEN, pktLine } from './pkt-line.js';
import type { PushCheck } from './rules.js';

export interface GitAnswer {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
}

/** Whether a client's capabilities let sluice answer in report-status (every real git asks for it). */
export function wantsReport(list: CommandList): boolean {
  return list.capabilities.includes('report-status') || list.capabilities.includes('report-status-v2');
}

/** A ref name or message inside a pkt-line: no LF or NUL (they would end the line early). */
function oneLine(text: string): string {
  // eslint-disable-next-line no-control-regex -- control bytes would break the pkt-line
  return text.replace(/[\x00-\x1f\x7f]/g, '?');
}

/** The report-status of a push refused whole: each refused ref with its reason, the others as refused along with it. */
export function refusedPushReport(list: CommandList, check: PushCheck, note: string): GitAnswer {
  const firstRefused = check.results.find((r) => r.refusal !== null)?.command.ref ?? '';
  const lines = [pktLine('unpack ok\n')];
  for (const { command, refusal } of check.results) {
    const why = refusal ?? `push refused whole: ${firstRefused} was refused`;
    // Ref names were read as latin1 bytes; written back the same way, so git matches them byte for byte.
    lines.push(pktLine(Buffer.from(`ng ${oneLine(command.ref)} sluice: ${oneLine(why)}\n`, 'latin1')));
  }
  lines.push(FLUSH_PKT);
  const report = Buffer.concat(lines);
  const body = list.capabilities.includes('side-band-64k') ? sideBand(report, `sluice: ${oneLine(note)}\n`) : report;
  return {
    status: 200,
    headers: { 'Content-Type': 'application/x-git-receive-pack-result', 'Cache-Control': 'no-cache' },
    body,
  };
}

/** The report on band 1 (split into packets git accepts), a progress line on band 2 first, then a flush. */
function sideBand(report: Buffer, progress: string): Buffer {
  const parts = [pktLine(Buffer.concat([Buffer.from([2]), Buffer.from(progress, 'latin1')]))];
  const max = MAX_PKT_LEN - 5;
  for (let at = 0; at < report.length; at += max) {
    parts.push(pktLine(Buffer.concat([Buffer.from([1]), report.subarray(at, at + max)])));
  }
  parts.push(FLUSH_PKT);
  return Buffer.concat(parts);
}

/** The answer to GET …/info/refs?service=git-upload-pack on a rule with fetch: false. */
export function refusedAdvertisement(service: string, message: string): GitAnswer {
  return {
    status: 200,
    headers: { 'Content-Type': `application/x-${service}-advertisement`, 'Cache-Control': 'no-cache' },
    body: pktLine(`ERR sluice: ${oneLine(message)}\n`),
  };
}
