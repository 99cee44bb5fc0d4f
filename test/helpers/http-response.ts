// A careful parser for the HTTP/1.x responses a test reads off a raw socket. It never throws: bytes
// that are not a well-framed response end the parse and are reported (`malformed`, `rest`), because
// smuggling tests need to see exactly how many responses the proxy sent and where framing broke.

export type Framing = 'content-length' | 'chunked' | 'close' | 'none';

export interface ParsedResponse {
  statusLine: string;
  status: number;
  /** Header names lower-cased; repeated headers joined with ", ". */
  headers: Record<string, string>;
  /** Header lines as received: [name, value] with the value trimmed. */
  rawHeaders: Array<[string, string]>;
  /** The body after de-chunking, as utf8. */
  body: string;
  bodyBuffer: Buffer;
  framing: Framing;
}

export interface ParseResult {
  /** Complete responses, in order (interim 1xx responses included). */
  responses: ParsedResponse[];
  /** True when the bytes end inside a response that may still complete. */
  incomplete: boolean;
  /** Why parsing stopped on bytes that cannot be a valid response; null otherwise. */
  malformed: string | null;
  /** Bytes after the last complete response (tunnel or upgraded-protocol data, or the unparsed rest). */
  rest: Buffer;
}

export interface ParseOptions {
  /** The connection has ended, so a close-delimited body is complete. */
  closed?: boolean;
  /** The request method: HEAD answers have no body; a 2xx to CONNECT starts a tunnel. */
  requestMethod?: string;
}

const CRLF = Buffer.from('\r\n');
const HEAD_END = Buffer.from('\r\n\r\n');
const STATUS_LINE = /^HTTP\/\d(?:\.\d)? (\d{3})(?: .*)?$/;

interface Head {
  statusLine: string;
  status: number;
  headers: Record<string, string>;
  rawHeaders: Array<[string, string]>;
}

function parseHead(text: string): Head | string {
  const [statusLine = '', ...lines] = text.split('\r\n');
  const match = STATUS_LINE.exec(statusLine);
  if (!match) return `not a status line: ${JSON.stringify(statusLine.slice(0, 80))}`;
  const headers: Record<string, string> = {};
  const rawHeaders: Array<[string, string]> = [];
  for (const line of lines) {
    const colon = line.indexOf(':');
    if (colon <= 0) return `not a header line: ${JSON.stringify(line.slice(0, 80))}`;
    const name = line.slice(0, colon);
    const value = line.slice(colon + 1).trim();
    rawHeaders.push([name, value]);
    const key = name.toLowerCase();
    headers[key] = key in headers ? `${headers[key]}, ${value}` : value;
  }
  return { statusLine, status: Number(match[1]), headers, rawHeaders };
}

type BodyParse = { kind: 'done'; body: Buffer; end: number } | { kind: 'incomplete' } | { kind: 'malformed'; reason: string };

function parseChunked(buf: Buffer, start: number): BodyParse {
  const parts: Buffer[] = [];
  let pos = start;
  for (;;) {
    const lineEnd = buf.indexOf(CRLF, pos);
    if (lineEnd === -1) return { kind: 'incomplete' };
    const sizeText = buf.subarray(pos, lineEnd).toString('latin1').split(';')[0]!.trim();
    if (!/^[0-9a-fA-F]{1,8}$/.test(sizeText)) return { kind: 'malformed', reason: `bad chunk size ${JSON.stringify(sizeText.slice(0, 20))}` };
    const size = parseInt(sizeText, 16);
    pos = lineEnd + 2;
    if (size === 0) {
      // Trailers (usually none) end with an empty line.
      if (buf.length < pos + 2) return { kind: 'incomplete' };
      if (buf[pos] === 0x0d && buf[pos + 1] === 0x0a) return { kind: 'done', body: Buffer.concat(parts), end: pos + 2 };
      const trailerEnd = buf.indexOf(HEAD_END, pos);
      if (trailerEnd === -1) return { kind: 'incomplete' };
      return { kind: 'done', body: Buffer.concat(parts), end: trailerEnd + 4 };
    }
    if (buf.length < pos + size + 2) return { kind: 'incomplete' };
    parts.push(buf.subarray(pos, pos + size));
    if (buf[pos + size] !== 0x0d || buf[pos + size + 1] !== 0x0a) return { kind: 'malformed', reason: 'chunk data not followed by CRLF' };
    pos += size + 2;
  }
}

function framingOf(head: Head, options: ParseOptions): Framing | { malformed: string } {
  const method = options.requestMethod?.toUpperCase();
  if (method === 'HEAD' || head.status === 204 || head.status === 304 || head.status < 200) return 'none';
  if (method === 'CONNECT' && head.status < 300) return 'none';
  const transferEncoding = head.headers['transfer-encoding'];
  if (transferEncoding !== undefined) {
    // RFC 9112 6.3: chunked must be the final coding; anything else reads until close.
    return /(?:^|,)\s*chunked\s*$/i.test(transferEncoding) ? 'chunked' : 'close';
  }
  const contentLength = head.headers['content-length'];
  if (contentLength !== undefined) {
    const values = new Set(contentLength.split(',').map((value) => value.trim()));
    if (values.size !== 1 || !/^\d{1,15}$/.test([...values][0]!))
      return { malformed: `bad content-length ${JSON.stringify(contentLength.slice(0, 40))}` };
    return 'content-length';
  }
  return 'close';
}

/** Parses as many complete responses as `buf` holds. */
export function parseHttpResponses(buf: Buffer, options: ParseOptions = {}): ParseResult {
  const responses: ParsedResponse[] = [];
  let offset = 0;
  const result = (incomplete: boolean, malformed: string | null): ParseResult => ({
    responses,
    incomplete,
    malformed,
    rest: buf.subarray(offset),
  });

  while (offset < buf.length) {
    const headEnd = buf.indexOf(HEAD_END, offset);
    if (headEnd === -1) return result(true, null);
    const head = parseHead(buf.subarray(offset, headEnd).toString('latin1'));
    if (typeof head === 'string') return result(false, head);
    const framing = framingOf(head, options);
    if (typeof framing === 'object') return result(false, framing.malformed);
    const bodyStart = headEnd + 4;
    let body: BodyParse;
    if (framing === 'none') {
      body = { kind: 'done', body: Buffer.alloc(0), end: bodyStart };
    } else if (framing === 'content-length') {
      const length = Number(head.headers['content-length']!.split(',')[0]!.trim());
      body =
        buf.length >= bodyStart + length
          ? { kind: 'done', body: buf.subarray(bodyStart, bodyStart + length), end: bodyStart + length }
          : { kind: 'incomplete' };
    } else if (framing === 'chunked') {
      body = parseChunked(buf, bodyStart);
    } else {
      body = options.closed ? { kind: 'done', body: buf.subarray(bodyStart), end: buf.length } : { kind: 'incomplete' };
    }
    if (body.kind === 'incomplete') return result(true, null);
    if (body.kind === 'malformed') return result(false, body.reason);
    responses.push({ ...head, body: body.body.toString('utf8'), bodyBuffer: Buffer.from(body.body), framing });
    offset = body.end;
    // After a protocol switch or an opened tunnel the bytes that follow are not HTTP.
    const tunnelOpened = options.requestMethod?.toUpperCase() === 'CONNECT' && head.status >= 200 && head.status < 300;
    if (head.status === 101 || tunnelOpened) return result(false, null);
  }
  return result(false, null);
}

/** True once `responses` holds a final (non-1xx) response, or a 101. */
export function hasFinalResponse(responses: ParsedResponse[]): boolean {
  return responses.some((response) => response.status >= 200 || response.status === 101);
}
