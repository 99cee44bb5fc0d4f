#!/usr/bin/env node
// Bundles the compiled CLI (dist/cli.js, as tsc wrote it) and the packages it imports into a few
// files, written over dist/cli.js with its chunks beside it as dist/chunk-*.js (issue 20). A start
// of `sluice serve` otherwise resolves, reads and compiles some 130 ES modules and 550 CommonJS
// files one by one (yaml alone is 229); that per-file work was about a third of a start. The code
// is the same: nothing is minified or rewritten but module wrappers, the commands still load on
// demand (each its own chunk), and every other file tsc wrote stays in dist/ (the bundle does not
// use them; the tests run on src/). Run by `npm run build` after tsc; a dist/cli.js tsc alone wrote
// (`npm run prepare`) works the same, only slower to start.
//
// Usage: node scripts/bundle.mjs
import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { dirname, join, relative, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import commonjs from '@rollup/plugin-commonjs';
import json from '@rollup/plugin-json';
import { nodeResolve } from '@rollup/plugin-node-resolve';
import { transform } from 'esbuild';
import { rollup } from 'rollup';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const dist = join(root, 'dist');
const entry = join(dist, 'cli.js');
// a legal comment (/*! */): the layout pass keeps it
const MARK = '/*! sluice: bundled by scripts/bundle.mjs */';

// Left to Node at run time: undici is loaded in parts (src/net/dial.ts) or whole only by
// `sluice approvals`, and its optional node:sqlite cache must stay a lazy require.
const EXTERNAL = [/^node:/, /^undici(\/|$)/];

/**
 * Every chunk is written to dist/ itself, so a module's own URL is known from where it was: each
 * `import.meta.url` becomes the URL of the file tsc wrote (dist/config/schema.js and so on), and
 * the files read beside it (the schema, data/, package.json) and its createRequire() resolve as before.
 */
function ownUrls() {
  return {
    name: 'sluice-own-urls',
    transform(code, id) {
      if (!id.startsWith(dist + sep) || !code.includes('import.meta.url')) return null;
      const rel = relative(dist, id).split(sep).join('/');
      return { code: code.replaceAll('import.meta.url', `new URL(${JSON.stringify(rel)}, import.meta.url).href`), map: null };
    },
  };
}

/**
 * Writes every character outside ASCII as a \uXXXX escape. V8 keeps a script's source for as long
 * as the script lives, and one non-ASCII character anywhere (a comment's "…", tldts' list) makes
 * it a two-byte string: twice the memory, and slower to decode and scan. Such characters stand only
 * in comments, strings, templates and regular expressions here, where the escape means the same
 * character; one right after a backslash would not, and stops the build.
 */
function asciiOnly() {
  return {
    name: 'sluice-ascii-only',
    renderChunk(code, chunk) {
      if (/\\[^\x00-\x7f]/.test(code)) throw new Error(`bundle: ${chunk.fileName} has an escaped non-ASCII character`);
      if (/String\.raw/.test(code) && /[^\x00-\x7f]/.test(code)) throw new Error(`bundle: ${chunk.fileName} has String.raw and non-ASCII text`);
      return { code: code.replace(/[^\x00-\x7f]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`), map: null };
    },
  };
}

/**
 * Drops comments and layout (esbuild's minifyWhitespace; names and code stay as written). V8 keeps
 * every script's source in the heap for the life of the process: the chunks went from 2.6 to 1.6 MB
 * without comments and indentation, and the idle RSS of a fresh start fell by about 2.5 MiB
 * (issue 20). Licence comments stay. A stack trace from the bundle points
 * into long lines; the files tsc wrote beside it (`npm run prepare`, or the tests on src/) read as
 * the source does.
 */
function withoutLayout() {
  return {
    name: 'sluice-without-layout',
    async renderChunk(code) {
      const out = await transform(code, { format: 'esm', target: 'node20', minifyWhitespace: true, legalComments: 'inline', charset: 'ascii' });
      return { code: out.code, map: null };
    },
  };
}

export async function bundle() {
  if (!existsSync(entry)) throw new Error('dist/cli.js is missing: run tsc -p tsconfig.json first');
  if (readFileSync(entry, 'utf8').includes(MARK)) throw new Error('dist/cli.js is already bundled: run tsc -p tsconfig.json first');
  const build = await rollup({
    input: entry,
    external: (id) => EXTERNAL.some((re) => re.test(id)),
    plugins: [
      ownUrls(),
      nodeResolve({ exportConditions: ['node'], preferBuiltins: true }),
      // defaultIsModuleExports: a default import of a CommonJS module is its module.exports, as in Node
      commonjs({ defaultIsModuleExports: true, ignoreDynamicRequires: true }),
      json({ preferConst: true }),
      asciiOnly(),
      withoutLayout(),
    ],
    onwarn(warning, warn) {
      // the packages' own import cycles (yaml, asn1) are fine under Rollup as under Node
      if (warning.code === 'CIRCULAR_DEPENDENCY') return;
      throw new Error(`bundle: ${warning.message}`);
    },
  });
  for (const file of readdirSync(dist)) if (file.startsWith('chunk-')) rmSync(join(dist, file));
  await build.write({
    dir: dist,
    format: 'esm',
    entryFileNames: 'cli.js',
    chunkFileNames: 'chunk-[name]-[hash].js',
    // a require() the CommonJS plugin leaves (a dynamic one inside a package) still works
    banner: () => `${MARK}\nimport { createRequire as __sluiceRequire } from 'node:module';\nconst require = __sluiceRequire(import.meta.url);`,
  });
  await build.close();
}

if (process.argv[1] === fileURLToPath(import.meta.url)) await bundle();
