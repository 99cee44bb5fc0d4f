// Where a secret's placeholder may be swapped (its swap_in), read once per secret declaration.
// Scrubbing is the last line; the first is not letting a value go where an upstream stores or
// echoes it: by default only a request header (Authorization, or the injected one) takes it.
import { swapInOf, type SecretDoc } from '../config/types.js';

export interface Places {
  /** lower-cased names of the headers a placeholder may be swapped in */
  readonly headers: ReadonlySet<string>;
  readonly query: boolean;
  readonly path: boolean;
  readonly body: boolean;
  /** the places as the policy names them, for details: "header:Authorization, query" */
  readonly text: string;
}

const cache = new WeakMap<SecretDoc, Places>();

export function placesOf(secret: SecretDoc): Places {
  let places = cache.get(secret);
  if (!places) {
    const list = swapInOf(secret);
    const headers = new Set(list.filter((p) => p.startsWith('header:')).map((p) => p.slice('header:'.length).toLowerCase()));
    places = Object.freeze({
      headers,
      query: list.includes('query'),
      path: list.includes('path'),
      body: list.includes('body'),
      text: list.length > 0 ? list.join(', ') : 'nowhere (sluice injects it)',
    });
    cache.set(secret, places);
  }
  return places;
}

/** Whether a placeholder found at `where` ('header:<Name>', 'query', 'path' or 'body') may be swapped there. */
export function mayGoIn(places: Places, where: string): boolean {
  if (where.startsWith('header:')) return places.headers.has(where.slice('header:'.length).toLowerCase());
  if (where === 'query') return places.query;
  if (where === 'path') return places.path;
  if (where === 'body') return places.body;
  return false;
}

/** The detail of a secret_misplaced refusal: where it was, and where it may go. */
export function misplacedDetail(alias: string, secret: SecretDoc, where: string): string {
  return `secret "${alias}" may be swapped only in ${placesOf(secret).text}; its placeholder was found in ${where} (add it to the secret's swap_in if it belongs there)`;
}

/** The detail of a secret_insecure refusal. */
export function insecureDetail(alias: string, what: string): string {
  return `secret "${alias}" is swapped and injected only over TLS sluice verified; ${what} over plain http:// is refused (use https://)`;
}
