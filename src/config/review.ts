// issue 16: a tool's review window (on_violation: review with review_until). Read by the loader's
// checks (strict mode bounds the window) and by the compiler (the decision core compares it with the
// evaluation time it is given); pure.

/** The longest review strict mode accepts: learning is a rollout step, not a standing way to run. */
export const MAX_REVIEW_DAYS = 14;

/** review_until as ms since the epoch; null when it is not a real RFC 3339 time (the schema checked the form). */
export function parseReviewUntil(text: string): number | null {
  const ms = Date.parse(text.toUpperCase());
  if (!Number.isFinite(ms)) return null;
  // Date.parse rolls "2026-02-30" over to March; a time that does not round-trip its date is not real.
  const date = /^(\d{4})-(\d{2})-(\d{2})/.exec(text);
  if (!date) return null;
  const [, y, m, d] = date.map(Number) as [number, number, number, number];
  const check = new Date(Date.UTC(y, m - 1, d));
  if (check.getUTCFullYear() !== y || check.getUTCMonth() !== m - 1 || check.getUTCDate() !== d) return null;
  return ms;
}
