// PLACEHOLDER until the gate branch lands (that branch owns this file).
export function lookalikeHeader(rawHeaders: readonly string[]): { name: string; looksLike: string } | null {
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i]!;
    const folded = name.toLowerCase().replace(/_/g, '-').replace(/[\s\x00-\x1f\x7f]/g, '');
    const framing = ['transfer-encoding', 'content-length', 'connection', 'upgrade', 'te', 'trailer', 'keep-alive', 'host'];
    const hit = framing.includes(folded) || folded.startsWith('proxy-');
    if (hit && name.toLowerCase() !== folded) return { name, looksLike: folded };
  }
  return null;
}
