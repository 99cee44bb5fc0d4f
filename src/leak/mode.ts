// Which leak detector runs: the layered one (src/leak/detect.ts, the default) or the plain shape
// scan that came before it (src/secrets/leak-patterns.ts on the text as sent). The switch is read
// once from SLUICE_LEAK_DETECTOR=plain and exists so the bench can run both side by side in one
// run; it is not a policy setting, and the README says not to use it in production.
export type LeakDetectorMode = 'layered' | 'plain';

let mode: LeakDetectorMode | null = null;

export function leakDetectorMode(): LeakDetectorMode {
  mode ??= process.env.SLUICE_LEAK_DETECTOR === 'plain' ? 'plain' : 'layered';
  return mode;
}
