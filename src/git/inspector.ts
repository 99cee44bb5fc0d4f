// The git inspector of the content seam (src/proxy/inspect.ts), for rules that carry `git:`.
// Smart HTTP has three requests that matter (gitprotocol-http):
//   GET  …/info/refs?service=git-upload-pack | git-receive-pack   the advertisement
//   POST …/git-upload-pack                                          clone and fetch
//   POST …/git-receive-pack                                         push: command list, then the pack
// A push is decided on its command list alone: the inspector asks for the body only until the flush
// that ends the list, checks every command, and either passes the push unchanged or refuses it
// whole with a report-status git prints per ref; push options (`git push -o`) are read after the
// list and must match the rule's options globs. fetch: false refuses upload-pack and its
// advertisement (and the dumb-HTTP files a fetch could read instead). What sluice cannot read (a
// compressed body, a malformed list, a signed push) is refused, never passed unchecked.
import type { HeadStep, Inspector, InspectHead, Verdict } from '../proxy/inspector.js';
import { parseCommandList } from './commands.js';
import { readPktLine } from './pkt-line.js';
import { refusedAdvertisement, refusedPushReport, wantsReport } from './report.js';
import { checkPush, optionRefusal, type CompiledGitRule } from './rules.js';

const RECEIVE_PACK = /\/git-receive-pack$/i;
const UPLOAD_PACK = /\/git-upload-pack$/i;
const INFO_REFS = /\/info\/refs$/i;
/** What a dumb-HTTP fetch reads instead of upload-pack. */
const DUMB_FETCH =
  /\/(?:HEAD|objects\/(?:info\/(?:packs|alternates|http-alternates)|pack\/pack-[0-9a-f]+\.(?:pack|idx)|[0-9a-f]{2}\/[0-9a-f]{38,62}))$/i;

const PASS: Verdict = Object.freeze({ pass: true });

/**
 * The path as a lenient server routes it: `;parameters` off every segment (Jetty and Tomcat, under
 * Gerrit and Bitbucket Server, drop them: `git-receive-pack;x` is a push there) and trailing
 * slashes off the end (Express and other routers take `/git-receive-pack/` as the same route). A
 * push must not slip past the inspector by a spelling its server reads as the service.
 */
function servicePath(path: string): string {
  return path
    .split('/')
    .map((segment) => segment.split(';')[0]!)
    .join('/')
    .replace(/\/+$/, '');
}

export const gitInspector: Inspector<CompiledGitRule> = {
  head(rule, raw) {
    const head = { ...raw, path: servicePath(raw.path) };
    if (RECEIVE_PACK.test(head.path)) return receivePackHead(head);
    if (rule.fetch) return PASS;
    if (UPLOAD_PACK.test(head.path)) return fetchRefused(head, null);
    if (INFO_REFS.test(head.path)) {
      const services = new URLSearchParams(head.query ?? '').getAll('service');
      // Only an unambiguous push advertisement passes; one service named twice is read as a fetch.
      if (services.length === 1 && services[0] === 'git-receive-pack') return PASS;
      return fetchRefused(head, services.length === 1 && services[0] === 'git-upload-pack' ? 'git-upload-pack' : null);
    }
    if (DUMB_FETCH.test(head.path)) return fetchRefused(head, null);
    return PASS;
  },

  body(rule, head, prefix, ended) {
    const parsed = parseCommandList(prefix);
    if (parsed.state === 'incomplete') {
      // `ended` must be true here: the seam reads until the list is complete or the body ends.
      return unreadable(`the push body ended before its command list did (${ended ? 'end of body' : 'cut'})`);
    }
    if (parsed.state === 'malformed') return unreadable(`the push command list is malformed: ${parsed.why}`);
    const list = parsed.list;
    const optionRefusals = list.options.map((option) => optionRefusal(rule, option)).filter((why): why is string => why !== null);
    if (optionRefusals.length > 0) {
      const why = optionRefusals[0]!;
      const more = optionRefusals.length > 1 ? ` (and ${optionRefusals.length - 1} more)` : '';
      // Every ref is refused with the option's reason: the push goes nowhere.
      const check = { allowed: false, results: list.commands.map((command) => ({ command, refusal: why })) };
      return {
        pass: false,
        reason: 'git_push_option_not_allowed',
        detail: `git push refused whole by rule ${head.ruleId}: ${why}${more}`,
        ...(wantsReport(list) ? { answer: refusedPushReport(list, check, `push refused by rule ${head.ruleId}: ${why}${more}`) } : {}),
      };
    }
    const check = checkPush(rule, list.commands);
    if (check.allowed) return PASS;
    const refused = check.results.filter((r) => r.refusal !== null);
    const summary = refused
      .slice(0, 5)
      .map((r) => r.refusal!)
      .join('; ');
    const more = refused.length > 5 ? ` (and ${refused.length - 5} more)` : '';
    const detail = `git push refused whole by rule ${head.ruleId}: ${summary}${more}`;
    return {
      pass: false,
      reason: 'git_ref_not_allowed',
      detail,
      ...(wantsReport(list) ? { answer: refusedPushReport(list, check, `push refused by rule ${head.ruleId}: ${summary}${more}`) } : {}),
    };
  },
};

function receivePackHead(head: InspectHead): HeadStep {
  if (head.method !== 'POST') return unreadable(`a ${head.method} to git-receive-pack is not a push sluice can read`);
  const coding = head.headers['content-encoding'];
  if (coding !== undefined && coding.trim().toLowerCase() !== 'identity') {
    return unreadable(`a push with a compressed body (Content-Encoding: ${coding.slice(0, 40)}) cannot be read; send it uncompressed`);
  }
  // Enough once the flush that ends the list (or a malformed line) is in, and, when the client asked
  // for push-options, the flush after them: only pkt-line lengths are scanned here, from where the
  // last call stopped; the list is parsed at its flush (to see the capabilities) and once in body().
  let at = 0;
  let listEnded = false;
  return {
    read: true,
    enough: (prefix) => {
      for (;;) {
        const read = readPktLine(prefix, at);
        if (read.state === 'incomplete') return false;
        if (read.state === 'malformed') return true;
        at = read.next;
        if (read.line.kind === 'data') continue;
        if (read.line.kind !== 'flush' || listEnded) return true;
        listEnded = true;
        // Still incomplete after its flush: push options follow, up to a flush of their own.
        if (parseCommandList(prefix.subarray(0, at)).state !== 'incomplete') return true;
      }
    },
  };
}

function fetchRefused(head: InspectHead, service: string | null): Verdict {
  const detail = `git fetch and clone are not allowed by rule ${head.ruleId} (git: fetch: false)`;
  return {
    pass: false,
    reason: 'git_fetch_not_allowed',
    detail,
    ...(service ? { answer: refusedAdvertisement(service, `fetch not allowed (rule ${head.ruleId})`) } : {}),
  };
}

function unreadable(detail: string): Verdict {
  return { pass: false, reason: 'uninspectable_body', detail };
}
