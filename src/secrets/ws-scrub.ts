// WebSocket frames from the upstream, scrubbed before the client reads them (RFC 6455, RFC 7692).
// Text and binary messages are scrubbed as one stream per message, across fragments; a compressed
// message (permessage-deflate) is inflated, scrubbed and sent on uncompressed, which a client that
// negotiated the extension accepts; control frames (close reason, ping and pong payloads) are
// scrubbed too. Frames are re-framed because a placeholder is not as long as the value it replaces.
// Anything this parser does not understand (reserved bits or opcodes, a masked server frame, an
// extension other than permessage-deflate) ends the connection: what cannot be read is not passed.
import { constants, inflateRawSync } from 'node:zlib';
import { Scrubber, type ScrubPlan } from './scanner.js';

/** The upstream broke the WebSocket framing (or a limit): the connection must end. */
export class WsProtocolError extends Error {
  constructor(
    readonly code: 'upstream_protocol' | 'response_too_large' | 'request_too_large' | 'bad_request',
    message: string,
  ) {
    super(message);
    this.name = 'WsProtocolError';
  }
}

export interface WsDeflate {
  /** server_no_context_takeover: each message is compressed on its own */
  noContextTakeover: boolean;
  /** client_no_context_takeover: each message the client sends is compressed on its own */
  clientNoContextTakeover?: boolean;
}

export interface WsScrubOptions {
  /** permessage-deflate as the 101 accepted it, or null when no extension was agreed */
  deflate: WsDeflate | null;
  /** the largest message, inflated, that is accepted (max_response_bytes) */
  maxMessageBytes: number;
}

/**
 * What the 101's Sec-WebSocket-Extensions agreed: null for none, the deflate settings for
 * permessage-deflate alone, or a sentence when it names anything else (then the upgrade is refused).
 */
export function agreedExtensions(header: string | undefined): { deflate: WsDeflate | null } | string {
  if (header === undefined || header.trim() === '') return { deflate: null };
  const offers = header.split(',').map((offer) => offer.trim());
  if (offers.length !== 1) return `the upstream agreed to ${offers.length} WebSocket extensions; sluice reads only permessage-deflate`;
  const [name, ...params] = offers[0]!.split(';').map((part) => part.trim().toLowerCase());
  if (name !== 'permessage-deflate')
    return `the upstream agreed to the WebSocket extension ${JSON.stringify(name!.slice(0, 40))}, which sluice cannot read`;
  let noContextTakeover = false;
  let clientNoContextTakeover = false;
  for (const param of params) {
    const key = param.split('=')[0]!.trim();
    if (key === 'server_no_context_takeover') noContextTakeover = true;
    else if (key === 'client_no_context_takeover') clientNoContextTakeover = true;
    else if (!['server_max_window_bits', 'client_max_window_bits'].includes(key)) {
      return `the upstream agreed to permessage-deflate with ${JSON.stringify(key.slice(0, 40))}, which sluice cannot read`;
    }
  }
  return { deflate: { noContextTakeover, clientNoContextTakeover } };
}

/** The client's Sec-WebSocket-Extensions offer, cut to what sluice can read (null: offer nothing). */
export function readableOffer(header: string | undefined): string | null {
  if (header === undefined) return null;
  const kept = header
    .split(',')
    .map((offer) => offer.trim())
    .filter((offer) => offer.split(';')[0]!.trim().toLowerCase() === 'permessage-deflate');
  return kept.length > 0 ? kept.join(', ') : null;
}

const WINDOW = 32 * 1024;
const DEFLATE_TAIL = Buffer.from([0x00, 0x00, 0xff, 0xff]);
const EMPTY: Buffer = Buffer.alloc(0);

interface Message {
  opcode: 0x1 | 0x2;
  compressed: boolean;
  /** uncompressed messages are scrubbed as they stream */
  scrubber: Scrubber;
  /** compressed messages are held until their last frame */
  parts: Buffer[];
  bytes: number;
  /** an output frame was already sent for this message (later ones are continuations) */
  started: boolean;
}

export interface FrameHead {
  fin: boolean;
  rsv1: boolean;
  opcode: number;
  length: number;
  /** payload bytes still to come */
  left: number;
  /** control frames are collected whole */
  control: Buffer[] | null;
}

/** Which side sent the frames: a client must mask every frame, a server must not (RFC 6455 5.1). */
export type WsSender = 'upstream' | 'client';

/**
 * The RFC 6455 rules for the head of a data frame, whichever side sent it: a continuation only
 * inside a message and never with the compression bit, no message inside another, compression
 * only when permessage-deflate was agreed. True when the frame starts a message.
 */
export function startsMessage(head: FrameHead, inMessage: boolean, canInflate: boolean, from: WsSender): boolean {
  const code = from === 'client' ? 'bad_request' : 'upstream_protocol';
  const who = from === 'client' ? 'the client' : 'the upstream';
  if (head.opcode === 0x0) {
    if (!inMessage) throw new WsProtocolError(code, `${who} sent a WebSocket continuation frame outside a message`);
    if (head.rsv1) throw new WsProtocolError(code, `${who} set the compression bit on a WebSocket continuation frame`);
    return false;
  }
  if (inMessage) throw new WsProtocolError(code, `${who} started a WebSocket message inside another one`);
  if (head.rsv1 && !canInflate)
    throw new WsProtocolError(code, `${who} compressed a WebSocket message without having agreed permessage-deflate`);
  return true;
}

/**
 * One frame head at the start of `input`, or null while it is not all there; with the masking key
 * when the frame is masked. Throws WsProtocolError (naming `from`) on anything RFC 6455 forbids.
 */
export function parseFrameHead(input: Buffer, from: WsSender): { head: FrameHead; size: number; mask: Buffer | null } | null {
  if (input.length < 2) return null;
  const who = from === 'upstream' ? 'the upstream' : 'the client';
  const broken = from === 'upstream' ? 'upstream_protocol' : 'bad_request';
  const b0 = input[0]!;
  const b1 = input[1]!;
  let size = 2;
  let length = b1 & 0x7f;
  if (length === 126) {
    if (input.length < 4) return null;
    length = input.readUInt16BE(2);
    size = 4;
  } else if (length === 127) {
    if (input.length < 10) return null;
    const high = input.readUInt32BE(2);
    if (high > 0x1fffff) throw new WsProtocolError(broken, `${who} sent a WebSocket frame longer than 2^53 bytes`);
    length = high * 2 ** 32 + input.readUInt32BE(6);
    size = 10;
  }
  const masked = (b1 & 0x80) !== 0;
  if (from === 'upstream' && masked)
    throw new WsProtocolError('upstream_protocol', 'the upstream sent a masked WebSocket frame (a server must not mask)');
  if (from === 'client' && !masked) throw new WsProtocolError('bad_request', 'the client sent an unmasked WebSocket frame (a client must mask)');
  let mask: Buffer | null = null;
  if (masked) {
    if (input.length < size + 4) return null;
    mask = Buffer.from(input.subarray(size, size + 4));
    size += 4;
  }
  const fin = (b0 & 0x80) !== 0;
  const rsv1 = (b0 & 0x40) !== 0;
  const opcode = b0 & 0x0f;
  if (b0 & 0x30) throw new WsProtocolError(broken, `${who} set reserved bits of a WebSocket frame that no extension gave a meaning`);
  const control = opcode >= 0x8;
  if (control) {
    if (opcode > 0xa) throw new WsProtocolError(broken, `${who} sent a WebSocket frame with reserved opcode ${opcode}`);
    if (!fin || length > 125) throw new WsProtocolError(broken, `${who} sent a fragmented or oversized WebSocket control frame`);
    if (rsv1) throw new WsProtocolError(broken, `${who} compressed a WebSocket control frame`);
  } else if (opcode > 0x2) {
    throw new WsProtocolError(broken, `${who} sent a WebSocket frame with reserved opcode ${opcode}`);
  }
  return { head: { fin, rsv1, opcode, length, left: length, control: control ? [] : null }, size, mask };
}

/** XORs `payload` with the masking key in place; `offset` is where in the frame's payload it starts. */
export function unmask(payload: Buffer, mask: Buffer, offset: number): void {
  for (let i = 0; i < payload.length; i++) payload[i]! ^= mask[(offset + i) & 3]!;
}

/**
 * permessage-deflate's inflater for one direction: each message inflated under `max` bytes, with
 * the window of the messages before unless the side agreed no_context_takeover.
 */
export class WsInflater {
  readonly #takeover: boolean;
  readonly #max: number;
  #window: Buffer = EMPTY;

  constructor(noContextTakeover: boolean, max: number) {
    this.#takeover = !noContextTakeover;
    this.#max = max;
  }

  inflate(compressed: Buffer, from: WsSender): Buffer {
    const code = from === 'upstream' ? 'response_too_large' : 'request_too_large';
    const who = from === 'upstream' ? 'the upstream' : 'the client';
    let inflated: Buffer;
    try {
      inflated = inflateRawSync(Buffer.concat([compressed, DEFLATE_TAIL]), {
        finishFlush: constants.Z_SYNC_FLUSH,
        maxOutputLength: Math.max(1, this.#max),
        ...(this.#takeover && this.#window.length > 0 ? { dictionary: this.#window } : {}),
      });
    } catch (error) {
      if (error instanceof RangeError) {
        throw new WsProtocolError(code, `a compressed WebSocket message inflates past the limit of ${this.#max} bytes`);
      }
      throw new WsProtocolError(
        from === 'upstream' ? 'upstream_protocol' : 'bad_request',
        `${who} sent a WebSocket message that does not inflate`,
      );
    }
    if (inflated.length > this.#max) {
      throw new WsProtocolError(code, `a compressed WebSocket message inflates past the limit of ${this.#max} bytes`);
    }
    if (this.#takeover) {
      const joined = this.#window.length > 0 ? Buffer.concat([this.#window, inflated]) : inflated;
      this.#window = Buffer.from(joined.subarray(Math.max(0, joined.length - WINDOW)));
    }
    return inflated;
  }
}

/** Server-to-client frames in, scrubbed frames out. push() throws WsProtocolError. */
export class WsFrameScrubber {
  readonly #plan: ScrubPlan;
  readonly #deflate: WsDeflate | null;
  readonly #max: number;
  #buffer: Buffer = EMPTY;
  #frame: FrameHead | null = null;
  #message: Message | null = null;
  readonly #inflater: WsInflater | null;

  constructor(plan: ScrubPlan, options: WsScrubOptions) {
    this.#plan = plan;
    this.#deflate = options.deflate;
    this.#max = options.maxMessageBytes;
    this.#inflater = options.deflate ? new WsInflater(options.deflate.noContextTakeover, options.maxMessageBytes) : null;
  }

  push(chunk: Buffer): Buffer {
    const out: Buffer[] = [];
    let input = this.#buffer.length > 0 ? Buffer.concat([this.#buffer, chunk]) : chunk;
    this.#buffer = EMPTY;
    for (;;) {
      if (!this.#frame) {
        const parsed = parseFrameHead(input, 'upstream');
        if (!parsed) {
          this.#buffer = Buffer.from(input);
          break;
        }
        input = input.subarray(parsed.size);
        this.#frame = parsed.head;
        this.#startFrame(parsed.head);
      }
      const frame = this.#frame;
      const take = Math.min(frame.left, input.length);
      const payload = input.subarray(0, take);
      input = input.subarray(take);
      frame.left -= take;
      if (frame.control) frame.control.push(Buffer.from(payload));
      else if (take > 0) this.#payload(payload, out);
      if (frame.left > 0) break;
      this.#frame = null;
      this.#endFrame(frame, out);
      if (input.length === 0) break;
    }
    return out.length === 1 ? out[0]! : Buffer.concat(out);
  }

  #startFrame(head: FrameHead): void {
    if (head.control) return;
    if (!startsMessage(head, this.#message !== null, this.#deflate !== null, 'upstream')) return;
    this.#message = {
      opcode: head.opcode as 0x1 | 0x2,
      compressed: head.rsv1,
      scrubber: new Scrubber(this.#plan),
      parts: [],
      bytes: 0,
      started: false,
    };
  }

  #payload(payload: Buffer, out: Buffer[]): void {
    const message = this.#message!;
    message.bytes += payload.length;
    if (message.bytes > this.#max)
      throw new WsProtocolError('response_too_large', `a WebSocket message crossed the limit of ${this.#max} bytes`);
    if (message.compressed) {
      message.parts.push(Buffer.from(payload));
      return;
    }
    const scrubbed = message.scrubber.push(payload);
    if (scrubbed.length > 0) this.#emit(message, scrubbed, false, out);
  }

  #endFrame(frame: FrameHead, out: Buffer[]): void {
    if (frame.control) {
      out.push(encodeFrame(true, frame.opcode, this.#controlPayload(frame.opcode, Buffer.concat(frame.control))));
      return;
    }
    if (!frame.fin) return;
    const message = this.#message!;
    this.#message = null;
    let rest: Buffer;
    if (message.compressed) {
      const scrubber = message.scrubber;
      const inflated = this.#inflater!.inflate(Buffer.concat(message.parts), 'upstream');
      rest = Buffer.concat([scrubber.push(inflated), scrubber.end()]);
    } else {
      rest = message.scrubber.end();
    }
    this.#emit(message, rest, true, out);
  }

  #emit(message: Message, payload: Buffer, fin: boolean, out: Buffer[]): void {
    out.push(encodeFrame(fin, message.started ? 0x0 : message.opcode, payload));
    message.started = true;
  }

  /** A control frame's payload scrubbed, and cut back to what fits in a control frame. */
  #controlPayload(opcode: number, payload: Buffer): Buffer {
    if (payload.length === 0) return payload;
    const scrubber = new Scrubber(this.#plan);
    if (opcode === 0x8) {
      if (payload.length < 2) return payload;
      const reason = Buffer.concat([scrubber.push(payload.subarray(2)), scrubber.end()]);
      return Buffer.concat([payload.subarray(0, 2), utf8Prefix(reason, 123)]);
    }
    return utf8Prefix(Buffer.concat([scrubber.push(payload), scrubber.end()]), 125);
  }
}

/** At most `max` bytes, cut before a UTF-8 continuation byte so text stays whole characters. */
function utf8Prefix(bytes: Buffer, max: number): Buffer {
  if (bytes.length <= max) return bytes;
  let end = max;
  while (end > 0 && (bytes[end]! & 0xc0) === 0x80) end--;
  return bytes.subarray(0, end);
}

/** An unmasked frame, as a server sends it. */
export function encodeFrame(fin: boolean, opcode: number, payload: Buffer): Buffer {
  const b0 = (fin ? 0x80 : 0) | opcode;
  let head: Buffer;
  if (payload.length < 126) head = Buffer.from([b0, payload.length]);
  else if (payload.length < 0x10000) {
    head = Buffer.alloc(4);
    head[0] = b0;
    head[1] = 126;
    head.writeUInt16BE(payload.length, 2);
  } else {
    head = Buffer.alloc(10);
    head[0] = b0;
    head[1] = 127;
    head.writeUInt32BE(Math.floor(payload.length / 2 ** 32), 2);
    head.writeUInt32BE(payload.length % 2 ** 32, 6);
  }
  return Buffer.concat([head, payload]);
}
