// Two streams joined as stream.pipeline joins them, without its cost: Node 20's pipeline makes an
// AbortController for every call and aborts it when the pipeline finishes, which builds a
// DOMException with a stack trace each time (about 25 us a request with a body, measured through
// the proxy). A request body is joined to its filter once per request, so that cost is paid on
// every upload.
import { finished, type Duplex, type Readable } from 'node:stream';

/**
 * `source` piped into `sink`. As in stream.pipeline: an error or early close of either destroys the
 * other (with that error) unless the other has already finished its side (the source read to its
 * end, the sink's writable side finished). `sink` is the caller's to read.
 */
export function joinStreams(source: Readable, sink: Duplex): void {
  let sourceDone = false;
  let sinkDone = false;
  finished(source, { readable: true, writable: false }, (err) => {
    sourceDone = true;
    if (err && !sinkDone) sink.destroy(err);
  });
  finished(sink, { readable: false, writable: true }, (err) => {
    sinkDone = true;
    if (err && !sourceDone) source.destroy(err);
  });
  source.pipe(sink);
}
