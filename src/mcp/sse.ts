// An incremental reader of text/event-stream (the WHATWG "server-sent events" format) that keeps
// each event's bytes as they came: MCP servers answer POSTs (Streamable HTTP) and push messages
// (the older HTTP+SSE transport's GET stream) as events whose data is one JSON-RPC message, and
// sluice rewrites only the events it filters. Lines end in CRLF, LF or CR, and any chunk split can
// fall anywhere (inside a CRLF, inside a UTF-8 sequence): a CR at the end of a chunk waits for the
// next byte. An event ends at an empty line; a pending event may grow to `maxEventChars` only.
import { StringDecoder } from 'node:string_decoder';

export interface SseLine {
  /** the line without its terminator */
  text: string;
  /** "\r\n", "\n" or "\r" */
  end: string;
  /** the field name ("data", "event", "id", "retry", ...); null for a comment */
  field: string | null;
  value: string;
}

export interface SseEvent {
  /** the event exactly as received, lines and the blank line that ended it */
  raw: string;
  lines: SseLine[];
  /** the data lines joined with "\n"; null when the event has no data line */
  data: string | null;
  /** the blank line's terminator */
  end: string;
}

export class SseTooLarge extends Error {}

export class SseSplitter {
  readonly #decoder = new StringDecoder('utf8');
  readonly #max: number;
  /** text from the start of the pending event */
  #buf = '';
  /** where scanning resumes in #buf (the start of the first unread line) */
  #pos = 0;
  #lines: SseLine[] = [];
  /** no text read yet: a byte order mark at the very start is not part of the first line */
  #first = true;

  constructor(maxEventChars: number) {
    this.#max = maxEventChars;
  }

  /** The events completed by this chunk. Throws SseTooLarge when a pending event outgrows the bound. */
  push(chunk: Buffer): SseEvent[] {
    this.#buf += this.#decoder.write(chunk);
    this.#skipBom();
    return this.#scan(false);
  }

  /**
   * A stream may begin with U+FEFF, which readers drop (WHATWG: "a single U+FEFF at the start of
   * the stream must be ignored"): read as part of the first line it would hide the first event's
   * data from the filter while the client reads it. It stays in the event's raw text.
   */
  #skipBom(): void {
    if (!this.#first || this.#buf.length === 0) return;
    this.#first = false;
    if (this.#buf.charCodeAt(0) === 0xfeff) this.#pos = 1;
  }

  /** At the end of the stream: the events still completed, then the raw text of an unfinished one. */
  end(): { events: SseEvent[]; rest: string } {
    this.#buf += this.#decoder.end();
    this.#skipBom();
    const events = this.#scan(true);
    const rest = this.#buf;
    this.#buf = '';
    this.#pos = 0;
    this.#lines = [];
    return { events, rest };
  }

  #scan(final: boolean): SseEvent[] {
    const events: SseEvent[] = [];
    const buf = this.#buf;
    let start = 0;
    let pos = this.#pos;
    for (;;) {
      const cr = buf.indexOf('\r', pos);
      const lf = buf.indexOf('\n', pos);
      const at = cr < 0 ? lf : lf < 0 ? cr : Math.min(cr, lf);
      if (at < 0) break;
      let end = buf[at]!;
      if (end === '\r') {
        // A CR at the very end may be the first half of a CRLF still on its way.
        if (at + 1 === buf.length && !final) break;
        if (buf[at + 1] === '\n') end = '\r\n';
      }
      const text = buf.slice(pos, at);
      pos = at + end.length;
      if (text.length === 0) {
        events.push(toEvent(buf.slice(start, pos), this.#lines, end));
        this.#lines = [];
        start = pos;
      } else {
        this.#lines.push(parseLine(text, end));
      }
    }
    this.#buf = buf.slice(start);
    this.#pos = pos - start;
    if (this.#buf.length > this.#max) throw new SseTooLarge(`an event of the MCP answer stream grew past ${this.#max} characters`);
    return events;
  }
}

function parseLine(text: string, end: string): SseLine {
  if (text.startsWith(':')) return { text, end, field: null, value: text.slice(1) };
  const colon = text.indexOf(':');
  if (colon < 0) return { text, end, field: text, value: '' };
  const value = text.slice(colon + 1);
  return { text, end, field: text.slice(0, colon), value: value.startsWith(' ') ? value.slice(1) : value };
}

function toEvent(raw: string, lines: SseLine[], end: string): SseEvent {
  const data = lines.filter((line) => line.field === 'data').map((line) => line.value);
  return { raw, lines, data: data.length === 0 ? null : data.join('\n'), end };
}

/** The event with its data replaced by one data line (placed where the first data line was). */
export function withData(event: SseEvent, data: string): string {
  let out = '';
  let placed = false;
  for (const line of event.lines) {
    if (line.field !== 'data') out += line.text + line.end;
    else if (!placed) {
      out += `data: ${data}${line.end}`;
      placed = true;
    }
  }
  return out + event.end;
}
