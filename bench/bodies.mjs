// Request bodies for the leak-detector rows of the bench (post_json_4k, upload_1m) and for
// bench/leak-micro.mjs: the same shapes in both, so the micro-bench explains the proxy rows.
import { randomBytes } from 'node:crypto';

/** A 4 KiB JSON body of the kind an agent posts: ids, short text, hashes and a base64 blob per item. */
export function json4k() {
  const items = [];
  let n = 0;
  const uuid = () => {
    const h = randomBytes(16).toString('hex');
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-a${h.slice(17, 20)}-${h.slice(20)}`;
  };
  while (JSON.stringify({ items }).length < 4096 - 200) {
    items.push({
      id: uuid(),
      name: `item number ${n++}`,
      note: 'The quick brown fox jumps over the lazy dog, and the key to the api is a secret token.',
      sha: randomBytes(20).toString('hex'),
      blob: randomBytes(24).toString('base64'),
      tags: ['alpha', 'beta', 'gamma'],
    });
  }
  const body = JSON.stringify({ model: 'bench', items });
  return Buffer.from(body + ' '.repeat(4096 - body.length));
}

/** A 1 MiB upload: compressed or random bytes, what a file or tarball upload looks like. */
export function upload1m() {
  return randomBytes(1024 * 1024);
}
