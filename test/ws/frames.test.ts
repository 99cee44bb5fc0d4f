// The one WebSocket frame reader (src/ws/frames.ts) under both frame steps: the client side's leak
// gate passes frames on byte for byte once their message is scanned, however the wire is cut; the
// size limit and the masking rule hold per side; a leak in any fragment stops the message before
// any of it goes on.
import { randomBytes } from 'node:crypto';
import { deflateRawSync, constants } from 'node:zlib';
import t from 'tap';
import { WsLeakGate } from '../../src/leak/ws-outbound.js';
import { scrubPlan } from '../../src/secrets/scrub.js';
import { SecretViolation } from '../../src/secrets/violation.js';
import { WsFrameScrubber } from '../../src/secrets/ws-scrub.js';
import { WsFrameReader, WsProtocolError, type FrameHandler } from '../../src/ws/frames.js';
import { cutAt } from '../helpers/embed.js';
import fc from '../helpers/fc.js';

/** A frame as a client sends it: masked with a random key. */
function clientFrame(fin: boolean, opcode: number, payload: Buffer, rsv1 = false): Buffer {
  const mask = randomBytes(4);
  const n = payload.length;
  const b0 = (fin ? 0x80 : 0) | (rsv1 ? 0x40 : 0) | opcode;
  const head = n < 126 ? Buffer.from([b0, 0x80 | n]) : Buffer.from([b0, 0x80 | 126, n >> 8, n & 0xff]);
  const masked = Buffer.from(payload);
  for (let i = 0; i < masked.length; i++) masked[i]! ^= mask[i & 3]!;
  return Buffer.concat([head, mask, masked]);
}

/** What fn threw, or null. */
function thrown(fn: () => unknown): unknown {
  try {
    fn();
  } catch (error) {
    return error;
  }
  return null;
}

/** The WsProtocolError code fn threw, or what else happened. */
function code(fn: () => unknown): string {
  const error = thrown(fn);
  return error instanceof WsProtocolError ? error.code : `not a WsProtocolError: ${String(error)}`;
}

const gate = (deflate = false): WsLeakGate =>
  new WsLeakGate({ deflate: deflate ? { noContextTakeover: false, clientNoContextTakeover: true } : null, maxMessageBytes: 1 << 20 });

t.test('the leak gate passes clean frames on unchanged, whatever the cuts, and never before their message is whole', async (t) => {
  fc.assert(
    fc.property(
      fc.array(
        fc.record({
          text: fc.string({ unit: 'grapheme-ascii', maxLength: 300 }),
          fragments: fc.array(fc.nat(), { maxLength: 4 }),
          ping: fc.boolean(),
          compress: fc.boolean(),
        }),
        { minLength: 1, maxLength: 4 },
      ),
      fc.array(fc.nat(), { maxLength: 20 }),
      (messages, cuts) => {
        const frames: Buffer[] = [];
        /** wire offsets after which no message is open: what may have gone on by then */
        const ends: number[] = [];
        let at = 0;
        const add = (frame: Buffer, closesMessage: boolean): void => {
          frames.push(frame);
          at += frame.length;
          if (closesMessage) ends.push(at);
        };
        for (const m of messages) {
          const plain = Buffer.from(m.text, 'utf8');
          const payload = m.compress ? deflateRawSync(plain, { finishFlush: constants.Z_SYNC_FLUSH }).subarray(0, -4) : plain;
          const pieces = cutAt(payload, m.fragments);
          for (const [i, piece] of pieces.entries()) {
            const last = i === pieces.length - 1;
            add(clientFrame(last, i === 0 ? 0x1 : 0x0, piece, m.compress && i === 0), last);
            // a ping inside a fragmented message waits for the message; after its last frame it goes alone
            if (m.ping && i === 0) add(clientFrame(true, 0x9, Buffer.from('are you there')), last);
          }
        }
        const wire = Buffer.concat(frames);
        const g = gate(true);
        let out = Buffer.alloc(0);
        let read = 0;
        for (const piece of cutAt(wire, cuts)) {
          out = Buffer.concat([out, g.push(piece)]);
          read += piece.length;
          // what went on is the wire up to the end of a whole message (or nothing)
          const whole = [0, ...ends.filter((end) => end <= read)];
          if (!whole.includes(out.length)) return false;
        }
        return out.equals(wire);
      },
    ),
    { numRuns: 300 },
  );
  t.pass('byte for byte');
});

t.test('a token in the last fragment: no frame of its message went on', async (t) => {
  const token = `ghp_${'aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3zA5'}`;
  const g = gate();
  const first = g.push(Buffer.concat([clientFrame(true, 0x1, Buffer.from('hello')), clientFrame(false, 0x1, Buffer.from('my key is '))]));
  t.equal(first.toString('latin1').includes('hello'), false, 'masked on the wire');
  t.ok(first.length > 0, 'the first, whole message went on');
  const held = first.length;
  const error = thrown(() => g.push(clientFrame(true, 0x0, Buffer.from(token))));
  t.ok(error instanceof SecretViolation && error.reason === 'secret_leak', 'refused as secret_leak');
  t.notOk(String(error).includes(token), 'the refusal does not carry the token');
  t.equal(held, clientFrame(true, 0x1, Buffer.from('hello')).length, 'only the clean message');
});

t.test('per side: the masking rule and the size limit, each with its own reason', async (t) => {
  const handler: FrameHandler = { messageStart: () => {}, messageData: () => {}, frameEnd: () => {}, control: () => {} };
  const unmasked = Buffer.from([0x81, 0x02, 0x68, 0x69]);
  const fromClient = new WsFrameReader('client', { canInflate: false, maxMessageBytes: 16 });
  t.equal(
    code(() => fromClient.push(unmasked, handler)),
    'bad_request',
    'a client frame must be masked',
  );
  const fromUpstream = new WsFrameReader('upstream', { canInflate: false, maxMessageBytes: 16 });
  t.equal(
    code(() => fromUpstream.push(clientFrame(true, 0x1, Buffer.from('hi')), handler)),
    'upstream_protocol',
    'a server frame must not be',
  );
  const big = new WsFrameReader('client', { canInflate: false, maxMessageBytes: 16 });
  big.push(clientFrame(false, 0x1, Buffer.alloc(10, 0x61)), handler);
  t.equal(
    code(() => big.push(clientFrame(true, 0x0, Buffer.alloc(10, 0x61)), handler)),
    'request_too_large',
    'the limit counts the whole message across fragments',
  );
  const bigDown = new WsFrameReader('upstream', { canInflate: false, maxMessageBytes: 16 });
  t.equal(
    code(() => bigDown.push(Buffer.concat([Buffer.from([0x81, 20]), Buffer.alloc(20, 0x61)]), handler)),
    'response_too_large',
  );
  const compressed = new WsFrameReader('client', { canInflate: false, maxMessageBytes: 16 });
  t.equal(
    code(() => compressed.push(clientFrame(true, 0x1, Buffer.from('x'), true), handler)),
    'bad_request',
    'compression without the extension agreed',
  );
});

t.test('any bytes at all: each frame step either reads them or fails with its own error, never another', async (t) => {
  const headish = fc.oneof(
    fc.uint8Array({ maxLength: 64 }),
    // well-formed heads with random flags and lengths, then random payload bytes
    fc
      .tuple(fc.integer({ min: 0, max: 255 }), fc.integer({ min: 0, max: 255 }), fc.uint8Array({ maxLength: 200 }))
      .map(([b0, b1, rest]) => Uint8Array.from([b0, b1, ...rest])),
  );
  fc.assert(
    fc.property(
      fc.array(headish, { minLength: 1, maxLength: 6 }),
      fc.array(fc.nat(), { maxLength: 8 }),
      fc.boolean(),
      (parts, cuts, deflate) => {
        const wire = Buffer.concat(parts.map((p) => Buffer.from(p)));
        const steps: Array<(chunk: Buffer) => Buffer> = [];
        const g = gate(deflate);
        steps.push((chunk) => g.push(chunk));
        const s = new WsFrameScrubber(scrubPlan([{ value: 'a-known-secret-value', placeholder: '__sluice_secret_x__' }]), {
          deflate: deflate ? { noContextTakeover: false } : null,
          maxMessageBytes: 1 << 16,
        });
        steps.push((chunk) => s.push(chunk));
        for (const step of steps) {
          try {
            for (const piece of cutAt(wire, cuts)) step(piece);
          } catch (error) {
            if (!(error instanceof WsProtocolError || error instanceof SecretViolation)) return false;
          }
        }
        return true;
      },
    ),
    { numRuns: 1000 },
  );
  t.pass('only WsProtocolError or SecretViolation');
});
