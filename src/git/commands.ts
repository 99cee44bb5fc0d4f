// The command list at the start of a smart-HTTP push (POST …/git-receive-pack, gitprotocol-pack):
//   update-requests = *shallow ( command-list | push-cert )
//   command-list    = PKT-LINE(command NUL capability-list) *PKT-LINE(command) flush-pkt
//   command         = old-id SP new-id SP refname
//   push-options    = *PKT-LINE(push-option) flush-pkt   (only when the client asked for push-options)
// and then (only when there are commands) the pack, which sluice never needs to read. Pure and
// restartable: called on a growing prefix, it says "incomplete" until the flush that ends the list
// arrives, then gives the commands and where the list ended. Anything else is malformed: sluice
// refuses what it cannot read rather than guessing what git receive-pack would make of it.
import { printable, readPktLine } from './pkt-line.js';

export interface RefCommand {
  /** lower-case hex; all zeros when the push creates the ref */
  readonly oldId: string;
  /** lower-case hex; all zeros when the push deletes the ref */
  readonly newId: string;
  readonly ref: string;
}

export interface CommandList {
  readonly commands: readonly RefCommand[];
  /** the capabilities the client asked for, on the first command (report-status, side-band-64k, …) */
  readonly capabilities: readonly string[];
  /** the push options (`git push -o`), in order; empty when the client asked for none */
  readonly options: readonly string[];
  /** byte offset just after the flush that ends the list and its push options (the pack, if any, starts here) */
  readonly end: number;
}

export type CommandListParse = { state: 'incomplete' } | { state: 'malformed'; why: string } | { state: 'done'; list: CommandList };

const SHA1_HEX = 40;
const SHA256_HEX = 64;

/** Parses the command list at the start of `body`. Never throws. */
export function parseCommandList(body: Buffer): CommandListParse {
  const commands: RefCommand[] = [];
  let capabilities: string[] = [];
  let at = 0;
  let idLength: number | null = null;
  for (;;) {
    const read = readPktLine(body, at);
    if (read.state !== 'line') return read;
    at = read.next;
    const { line } = read;
    if (line.kind === 'flush') {
      // The options the client announced follow the list, each in a packet, up to a flush of their own.
      if (commands.length === 0 || !capabilities.includes('push-options'))
        return { state: 'done', list: { commands, capabilities, options: [], end: at } };
      return parsePushOptions(body, at, commands, capabilities);
    }
    if (line.kind !== 'data') return { state: 'malformed', why: `a ${line.kind} packet inside the command list` };
    const payload = withoutLf(line.payload);
    const nul = payload.indexOf(0);
    let text: string;
    if (nul >= 0) {
      if (commands.length > 0) return { state: 'malformed', why: 'capabilities on a command other than the first' };
      text = payload.subarray(0, nul).toString('latin1');
      capabilities = payload
        .subarray(nul + 1)
        .toString('latin1')
        .split(' ')
        .filter((c) => c !== '');
    } else {
      text = payload.toString('latin1');
    }
    if (text.startsWith('shallow ')) {
      // Shallow lines come before the commands; they name commits, never refs.
      if (commands.length > 0 || nul >= 0) return { state: 'malformed', why: 'a shallow line after the first command' };
      if (!isObjectId(text.slice('shallow '.length))) return { state: 'malformed', why: `bad shallow line ${JSON.stringify(printable(text))}` };
      continue;
    }
    if (text === 'push-cert') return { state: 'malformed', why: 'a signed push (push-cert) is not read by sluice' };
    idLength ??= objectIdLength(capabilities);
    const command = parseCommand(text, idLength);
    if (typeof command === 'string') return { state: 'malformed', why: command };
    commands.push(command);
  }
}

/** The push-option packets after the command list, up to their flush. */
function parsePushOptions(body: Buffer, start: number, commands: RefCommand[], capabilities: string[]): CommandListParse {
  const options: string[] = [];
  let at = start;
  for (;;) {
    const read = readPktLine(body, at);
    if (read.state !== 'line') return read;
    at = read.next;
    const { line } = read;
    if (line.kind === 'flush') return { state: 'done', list: { commands, capabilities, options, end: at } };
    if (line.kind !== 'data') return { state: 'malformed', why: `a ${line.kind} packet among the push options` };
    const payload = withoutLf(line.payload);
    // git refuses to send an option holding a newline or NUL; one that does is not an option sluice can judge.
    if (payload.includes(0) || payload.includes(0x0a)) return { state: 'malformed', why: 'a push option holding a NUL or newline' };
    options.push(payload.toString('latin1'));
  }
}

/** A pkt-line's payload without the LF git may end it with. */
function withoutLf(payload: Buffer): Buffer {
  return payload.length > 0 && payload[payload.length - 1] === 0x0a ? payload.subarray(0, payload.length - 1) : payload;
}

/** The hex length of object ids: 64 when the client said object-format=sha256, else 40. */
function objectIdLength(capabilities: readonly string[]): number {
  const format = capabilities.find((c) => c.startsWith('object-format='))?.slice('object-format='.length);
  return format === 'sha256' ? SHA256_HEX : SHA1_HEX;
}

function isObjectId(text: string): boolean {
  return (text.length === SHA1_HEX || text.length === SHA256_HEX) && /^[0-9a-fA-F]+$/.test(text);
}

/** "old new ref" → a command, or why it is not one. */
function parseCommand(text: string, idLength: number): RefCommand | string {
  const oldId = text.slice(0, idLength);
  const newId = text.slice(idLength + 1, 2 * idLength + 1);
  const ref = text.slice(2 * idLength + 2);
  if (
    text[idLength] !== ' ' ||
    text[2 * idLength + 1] !== ' ' ||
    !HEX.test(oldId) ||
    oldId.length !== idLength ||
    !HEX.test(newId) ||
    newId.length !== idLength
  ) {
    return `expected "old-id new-id refname", got ${JSON.stringify(printable(text))}`;
  }
  const why = refnameProblem(ref);
  if (why) return `the ref name ${JSON.stringify(printable(ref))} ${why}`;
  return { oldId: oldId.toLowerCase(), newId: newId.toLowerCase(), ref };
}

const HEX = /^[0-9a-fA-F]+$/;

/** git check-ref-format's rules (for a full name under refs/), as a sentence, or null when valid. */
export function refnameProblem(ref: string): string | null {
  if (!ref.startsWith('refs/')) return 'is not under refs/';
  // eslint-disable-next-line no-control-regex -- control bytes are what a ref name may not hold
  if (/[\x00-\x20\x7f~^:?*[\\]/.test(ref)) return 'contains a space, control or one of ~ ^ : ? * [ \\';
  if (ref.includes('..') || ref.includes('@{') || ref.includes('//')) return 'contains "..", "@{" or "//"';
  if (ref.endsWith('/') || ref.endsWith('.') || ref.endsWith('.lock')) return 'ends with "/", "." or ".lock"';
  if (ref.split('/').some((part) => part.startsWith('.') || part.endsWith('.lock')))
    return 'has a component starting with "." or ending with ".lock"';
  return null;
}

/** All zeros: the old id of a creation, the new id of a deletion. */
export function isZeroId(id: string): boolean {
  return /^0+$/.test(id);
}
