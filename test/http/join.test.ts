// joinStreams (src/http/join.ts) against stream.pipeline: the same flow and the same teardown, on
// real streams, for each way one side can end.
import { PassThrough, pipeline, Transform, type Duplex, type Readable } from 'node:stream';
import { once } from 'node:events';
import t from 'tap';
import { joinStreams } from '../../src/http/join.js';

type Join = (source: Readable, sink: Duplex) => void;
const joins: Array<[string, Join]> = [
  ['joinStreams', joinStreams],
  ['stream.pipeline', (source, sink) => pipeline(source, sink, () => undefined)],
];

/** until `stream` has closed (its errors are what the tests read, not thrown) */
const settled = (stream: Readable | Duplex): Promise<void> => {
  stream.on('error', () => undefined);
  return stream.closed ? Promise.resolve() : new Promise((resolve) => stream.once('close', () => resolve()));
};

for (const [name, join] of joins) {
  t.test(`${name}: bytes flow and both ends finish without being destroyed by an error`, async (t) => {
    const source = new PassThrough();
    const sink = new PassThrough();
    join(source, sink);
    const chunks: Buffer[] = [];
    sink.on('data', (c: Buffer) => chunks.push(c));
    source.write('abc');
    source.end('def');
    await once(sink, 'end');
    t.equal(Buffer.concat(chunks).toString(), 'abcdef');
    t.equal(sink.errored, null);
    t.equal(source.errored, null);
  });

  t.test(`${name}: a source error destroys the sink with it`, async (t) => {
    const source = new PassThrough();
    const sink = new PassThrough();
    join(source, sink);
    sink.resume();
    source.destroy(new Error('request_too_large'));
    await settled(sink);
    t.equal(sink.errored?.message, 'request_too_large');
  });

  t.test(`${name}: a sink error (a filter's refusal) destroys the source`, async (t) => {
    const source = new PassThrough();
    const sink = new Transform({ transform: (_c, _e, done) => done(new Error('secret_leak')) });
    sink.on('error', () => undefined);
    join(source, sink);
    source.write('x');
    await settled(source);
    t.equal(source.destroyed, true);
    t.equal(source.errored?.message, 'secret_leak');
  });

  t.test(`${name}: a sink closed early (its reader gone) destroys the source`, async (t) => {
    const source = new PassThrough();
    const sink = new PassThrough();
    source.on('error', () => undefined);
    join(source, sink);
    source.write('x');
    sink.destroy();
    await settled(source);
    t.equal(source.destroyed, true);
    t.match(source.errored, { code: 'ERR_STREAM_PREMATURE_CLOSE' });
  });

  t.test(`${name}: a source read to its end is not destroyed when the sink closes later`, async (t) => {
    const source = new PassThrough();
    const sink = new PassThrough();
    join(source, sink);
    source.end('done');
    await once(source, 'end');
    // the reader of the sink goes away after the whole body was taken
    sink.destroy();
    await settled(sink);
    t.equal(source.errored, null);
  });
}
