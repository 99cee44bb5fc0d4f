// WebSocket framing (RFC 6455) and permessage-deflate (RFC 7692), for both directions: the frame
// head rules, unmasking, the inflater, the extension negotiation sluice can read, and the one frame
// reader both frame steps run on (src/secrets/ws-scrub.ts scrubs what the upstream sends,
// src/leak/ws-outbound.ts reads what the client sends for leaks). Anything this parser does not
// understand (reserved bits or opcodes, a frame masked the wrong way, an extension other than
// permessage-deflate) ends the connection: what cannot be read is not passed.
import { constants, inflateRawSync } from 'node:zlib';

/** A side broke the WebSocket framing (or a limit): the connection must end. */
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

/** What a frame reader hands on, in wire order. */
export interface FrameHandler {
  /** the bytes of the frames as read, heads and payloads (the leak gate holds them until its message is scanned) */
  raw?(bytes: Buffer): void;
  /** a data frame that starts a message: its head passed startsMessage */
  messageStart(head: FrameHead): void;
  /** payload bytes of the open message's data frames, unmasked, as they arrive; a view, valid only during the call */
  messageData(payload: Buffer): void;
  /** a data frame's last byte was read; head.fin says the message is complete */
  frameEnd(head: FrameHead): void;
  /** a whole control frame, unmasked */
  control(opcode: number, payload: Buffer): void;
}

/**
 * Frames from one side, read across any chunking: the head rules, the masking rule of the side,
 * one message at a time, and the message size limit (the payload bytes as sent, before inflating).
 * push() throws WsProtocolError: upstream_protocol or response_too_large for the upstream,
 * bad_request or request_too_large for the client.
 */
export class WsFrameReader {
  readonly #from: WsSender;
  readonly #canInflate: boolean;
  readonly #max: number;
  #buffer: Buffer = EMPTY;
  #frame: { head: FrameHead; mask: Buffer | null; offset: number } | null = null;
  #inMessage = false;
  #messageBytes = 0;

  constructor(from: WsSender, options: { canInflate: boolean; maxMessageBytes: number }) {
    this.#from = from;
    this.#canInflate = options.canInflate;
    this.#max = options.maxMessageBytes;
  }

  /** Whether a message is open (its last frame not read yet). */
  get inMessage(): boolean {
    return this.#inMessage;
  }

  push(chunk: Buffer, handler: FrameHandler): void {
    let input = this.#buffer.length > 0 ? Buffer.concat([this.#buffer, chunk]) : chunk;
    this.#buffer = EMPTY;
    for (;;) {
      if (!this.#frame) {
        const parsed = parseFrameHead(input, this.#from);
        if (!parsed) {
          this.#buffer = Buffer.from(input);
          return;
        }
        handler.raw?.(input.subarray(0, parsed.size));
        input = input.subarray(parsed.size);
        this.#frame = { head: parsed.head, mask: parsed.mask, offset: 0 };
        if (!parsed.head.control && startsMessage(parsed.head, this.#inMessage, this.#canInflate, this.#from)) {
          this.#inMessage = true;
          this.#messageBytes = 0;
          handler.messageStart(parsed.head);
        }
      }
      const frame = this.#frame;
      const head = frame.head;
      const take = Math.min(head.left, input.length);
      const raw = input.subarray(0, take);
      input = input.subarray(take);
      if (take > 0) {
        handler.raw?.(raw);
        let payload = raw;
        if (frame.mask) {
          payload = Buffer.from(raw);
          unmask(payload, frame.mask, frame.offset);
        }
        frame.offset += take;
        head.left -= take;
        if (head.control) head.control.push(frame.mask ? payload : Buffer.from(payload));
        else {
          this.#messageBytes += take;
          if (this.#messageBytes > this.#max) {
            throw new WsProtocolError(
              this.#from === 'upstream' ? 'response_too_large' : 'request_too_large',
              `a WebSocket message crossed the limit of ${this.#max} bytes`,
            );
          }
          handler.messageData(payload);
        }
      }
      if (head.left > 0) return;
      this.#frame = null;
      if (head.control) handler.control(head.opcode, Buffer.concat(head.control));
      else {
        if (head.fin) this.#inMessage = false;
        handler.frameEnd(head);
      }
      if (input.length === 0) return;
    }
  }
}
