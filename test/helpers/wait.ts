// Polls a condition that another socket's event loop turn will make true (a server-side counter
// moves a moment after the client's 'connect'), failing loudly instead of hanging.
export async function waitFor(condition: () => boolean, what: string, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** Polls like waitFor, but resolves false when the wait runs out, for a test to assert on (t.ok). */
export async function settles(condition: () => boolean, timeoutMs = 3_000): Promise<boolean> {
  return waitFor(condition, 'a condition', timeoutMs).then(
    () => true,
    () => false,
  );
}
