// Credentials of each shape the layered detector must find (random, made up: they open nothing),
// encodings a tool can wrap them in, and ordinary traffic it must never refuse.
import { createHash, randomBytes } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import fc from '../helpers/fc.js';

const ALNUM = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
const UPPER_DIGIT = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789';
const URLSAFE = ALNUM + '_-';
const DIGITS = '0123456789';

const chars = (alphabet: string, n: number): fc.Arbitrary<string> =>
  fc.array(fc.constantFrom(...alphabet), { minLength: n, maxLength: n }).map((a) => a.join(''));

/** One arbitrary per credential shape class, named by what a refusal should say. */
export const CREDENTIALS: Record<string, fc.Arbitrary<string>> = {
  aws: chars(UPPER_DIGIT, 16).map((s) => `AKIA${s}`),
  github: chars(ALNUM, 36).map((s) => `ghp_${s}`),
  github_short: chars(ALNUM, 34).map((s) => `ghp_${s}`),
  github_pat: fc.tuple(chars(ALNUM, 22), chars(ALNUM, 59)).map(([a, b]) => `github_pat_${a}_${b}`),
  anthropic: chars(URLSAFE, 93).map((s) => `sk-ant-api03-${s}AA`),
  openai: fc.tuple(chars(URLSAFE, 20), chars(URLSAFE, 20)).map(([a, b]) => `sk-proj-${a}T3BlbkFJ${b}`),
  stripe: chars(ALNUM, 24).map((s) => `rk_live_${s}`),
  slack: fc.tuple(chars(DIGITS, 11), chars(DIGITS, 12), chars(ALNUM, 24)).map(([a, b, c]) => `xoxb-${a}-${b}-${c}`),
  google: chars(URLSAFE, 35).map((s) => `AIza${s}`),
  sendgrid: fc.tuple(chars(URLSAFE, 22), chars(URLSAFE, 43)).map(([a, b]) => `SG.${a}.${b}`),
  npm: chars(ALNUM, 36).map((s) => `npm_${s}`),
  pypi: chars(URLSAFE, 70).map((s) => `pypi-AgEIcHlwaS5vcmc${s}`),
  docker: chars(URLSAFE, 27).map((s) => `dckr_pat_${s}`),
};

export type Encoding = 'base64' | 'base64url' | 'hex' | 'hex:' | 'hex-' | 'percent' | 'wrapped-base64';

export function encode(text: string, encoding: Encoding): string {
  const bytes = Buffer.from(text, 'utf8');
  switch (encoding) {
    case 'base64':
      return bytes.toString('base64');
    case 'base64url':
      return bytes.toString('base64url');
    case 'hex':
      return bytes.toString('hex');
    case 'hex:':
      return bytes.toString('hex').replace(/..(?!$)/g, '$&:');
    case 'hex-':
      return bytes
        .toString('hex')
        .toUpperCase()
        .replace(/..(?!$)/g, '$&-');
    case 'percent':
      return Array.from(bytes, (b) => `%${b.toString(16).padStart(2, '0')}`).join('');
    case 'wrapped-base64':
      return (bytes.toString('base64').match(/.{1,64}/g) ?? []).join('\r\n');
  }
}

export const ENCODINGS: readonly Encoding[] = ['base64', 'base64url', 'hex', 'hex:', 'hex-', 'percent', 'wrapped-base64'];

/** An encoding chain of length 0 to 2, applied innermost first. */
export const chain = fc.array(fc.constantFrom(...ENCODINGS), { minLength: 0, maxLength: 2 });

export function applyChain(text: string, encodings: readonly Encoding[]): string {
  return encodings.reduce((out, encoding) => encode(out, encoding), text);
}

function uuid(): string {
  return crypto.randomUUID();
}

function tarball(): Buffer {
  // a tar header and a file body, gzip'd, as npm sends a package
  const header = Buffer.alloc(512);
  header.write('package/index.js', 0);
  header.write('0000644', 100);
  const body = Buffer.from(`module.exports = ${JSON.stringify(randomBytes(64).toString('hex'))};\n`);
  return gzipSync(Buffer.concat([header, body, Buffer.alloc(512 - (body.length % 512))]));
}

function png(): Buffer {
  return Buffer.concat([Buffer.from('89504e470d0a1a0a0000000d49484452', 'hex'), randomBytes(200 + Math.floor(Math.random() * 800))]);
}

/** Ordinary things a tool sends, by kind; the detector must refuse none of them. */
export const ORDINARY: Record<string, () => string | Buffer> = {
  uuid: () => `{"id":"${uuid()}","parent":"${uuid()}"}`,
  git_sha: () => `{"sha":"${randomBytes(20).toString('hex')}","tree":"${randomBytes(20).toString('hex')}"}`,
  sha256: () => `sha256=${createHash('sha256').update(randomBytes(16)).digest('hex')}`,
  md5_b64: () => `Content-MD5: ${createHash('md5').update(randomBytes(16)).digest('base64')}`,
  base64_random: () => randomBytes(16 + Math.floor(Math.random() * 600)).toString('base64'),
  base64url_random: () => `state=${randomBytes(32).toString('base64url')}&code=${randomBytes(24).toString('base64url')}`,
  oauth_token: () =>
    `{"access_token":"${randomBytes(30).toString('base64url')}","refresh_token":"${randomBytes(40).toString('hex')}","token_type":"bearer"}`,
  bearer: () => `Bearer ${randomBytes(32).toString('base64url')}`,
  image_data: () => png(),
  image_data_uri: () => `{"image":"data:image/png;base64,${png().toString('base64')}"}`,
  tarball: () => tarball(),
  tarball_b64: () => `{"_attachments":{"pkg.tgz":{"data":"${tarball().toString('base64')}"}}}`,
};
