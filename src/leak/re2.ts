// Go RE2 patterns (gitleaks writes its rules in them) as JavaScript regex source. The two differ
// where it matters here: RE2 turns case-insensitivity on and off in the middle of a pattern
// (`ab(?i)cd`, `(?-i:x)`), which Node 20 cannot; RE2's `\z` is JS's `$` without the m flag; RE2's
// `.` stops only at LF; `[[:alnum:]]` is a POSIX class; `(?P<name>` is `(?<name>`. Case-insensitive
// parts are written out as explicit classes (`[aA]`), so the result needs no flag at all and every
// rule can share the same flags. Anything this does not know is passed as written; a rule whose
// result does not compile is reported by compileRe2 (and the rules test fails).

interface Scope {
  ci: boolean;
  dotAll: boolean;
}

const POSIX: Readonly<Record<string, string>> = {
  alnum: 'a-zA-Z0-9',
  alpha: 'a-zA-Z',
  digit: '0-9',
  lower: 'a-z',
  upper: 'A-Z',
  space: '\\s',
  xdigit: '0-9a-fA-F',
  word: '\\w',
  punct: '!-\\/:-@\\[-`{-~',
};

function isLetter(c: string): boolean {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

function otherCase(c: string): string {
  return c === c.toLowerCase() ? c.toUpperCase() : c.toLowerCase();
}

/** A character class's body (between [ and ]) with both cases of each letter and letter range. */
function foldClass(items: string[], ci: boolean): string {
  if (!ci) return items.join('');
  const out: string[] = [];
  for (const item of items) {
    out.push(item);
    if (item.length === 1 && isLetter(item)) out.push(otherCase(item));
    else if (/^[a-zA-Z]-[a-zA-Z]$/.test(item)) {
      const [from, , to] = item;
      if (from! <= 'Z' === to! <= 'Z') out.push(`${otherCase(from!)}-${otherCase(to!)}`);
    }
  }
  return out.join('');
}

/** Converts one RE2 pattern; throws on a construct it cannot carry over faithfully. */
export function re2ToJs(pattern: string): string {
  const stack: Scope[] = [{ ci: false, dotAll: false }];
  let out = '';
  let i = 0;
  const scope = (): Scope => stack[stack.length - 1]!;
  while (i < pattern.length) {
    const c = pattern[i]!;
    if (c === '\\') {
      const e = pattern[i + 1];
      if (e === undefined) throw new Error('pattern ends in a backslash');
      if (e === 'z') out += '$';
      else if (e === 'A') out += '^';
      else if (e === 'x' && pattern[i + 2] === '{') {
        const end = pattern.indexOf('}', i);
        const code = parseInt(pattern.slice(i + 3, end), 16);
        if (!(code <= 0xff)) throw new Error('a \\x{...} escape past 0xff needs the u flag');
        out += `\\x${code.toString(16).padStart(2, '0')}`;
        i = end + 1;
        continue;
      } else if (e === 'p' || e === 'P' || e === 'Q' || e === 'C') throw new Error(`unsupported escape \\${e}`);
      else out += `\\${e}`;
      i += 2;
      continue;
    }
    if (c === '[') {
      let j = i + 1;
      let negate = '';
      if (pattern[j] === '^') {
        negate = '^';
        j++;
      }
      const items: string[] = [];
      let first = true;
      while (j < pattern.length && (pattern[j] !== ']' || first)) {
        first = false;
        let item: string;
        if (pattern.startsWith('[:', j)) {
          const end = pattern.indexOf(':]', j);
          const name = pattern.slice(j + 2, end);
          const posix = POSIX[name];
          if (posix === undefined) throw new Error(`unknown POSIX class [:${name}:]`);
          item = posix;
          j = end + 2;
        } else if (pattern[j] === '\\') {
          item = pattern.slice(j, j + 2);
          j += 2;
        } else if (pattern[j] === '[') {
          item = '\\[';
          j++;
        } else {
          item = pattern[j]!;
          j++;
        }
        // a range: item-item
        if (pattern[j] === '-' && pattern[j + 1] !== ']' && pattern[j + 1] !== undefined && item.length === 1) {
          const to = pattern[j + 1] === '\\' ? pattern.slice(j + 1, j + 3) : pattern[j + 1]!;
          item = `${item}-${to}`;
          j += 1 + to.length;
        }
        items.push(item);
      }
      if (pattern[j] !== ']') throw new Error('unterminated character class');
      out += `[${negate}${foldClass(items, scope().ci)}]`;
      i = j + 1;
      continue;
    }
    if (c === '(') {
      if (pattern.startsWith('(?P<', i)) {
        stack.push({ ...scope() });
        out += '(?<';
        i += 4;
        continue;
      }
      const flags = /^\(\?([a-zA-Z]*)(?:-([a-zA-Z]*))?([:)])/.exec(pattern.slice(i, i + 12));
      if (flags && (flags[1] !== '' || flags[2] !== undefined || flags[3] === ':')) {
        const on = flags[1] ?? '';
        const off = flags[2] ?? '';
        for (const flag of on + off) if (flag !== 'i' && flag !== 's') throw new Error(`unsupported flag ${flag}`);
        const next: Scope = { ...scope() };
        if (on.includes('i')) next.ci = true;
        if (on.includes('s')) next.dotAll = true;
        if (off.includes('i')) next.ci = false;
        if (off.includes('s')) next.dotAll = false;
        if (flags[3] === ')') stack[stack.length - 1] = next;
        else {
          stack.push(next);
          out += '(?:';
        }
        i += flags[0].length;
        continue;
      }
      if (pattern[i + 1] === '?' && pattern[i + 2] !== ':') throw new Error(`unsupported group (?${pattern[i + 2] ?? ''}`);
      stack.push({ ...scope() });
      out += pattern[i + 1] === '?' ? '(?:' : '(';
      i += pattern[i + 1] === '?' ? 3 : 1;
      continue;
    }
    if (c === ')') {
      if (stack.length === 1) throw new Error('unbalanced )');
      stack.pop();
      out += ')';
      i++;
      continue;
    }
    if (c === '.') out += scope().dotAll ? '[\\s\\S]' : '[^\\n]';
    else if (c === '{') {
      // a quantifier is copied whole, so its digits are not read as literals
      const quantifier = /^\{\d+(?:,\d*)?\}/.exec(pattern.slice(i, i + 16));
      if (quantifier) {
        out += quantifier[0];
        i += quantifier[0].length;
        continue;
      }
      out += '\\{';
    } else if (c === '}') out += '\\}';
    else if (isLetter(c) && scope().ci) out += `[${c}${otherCase(c)}]`;
    else out += c;
    i++;
  }
  if (stack.length !== 1) throw new Error('unbalanced (');
  return out;
}

/** A global regex from an RE2 pattern, or the reason it cannot be had. */
export function compileRe2(pattern: string): RegExp | Error {
  try {
    return new RegExp(re2ToJs(pattern), 'g');
  } catch (error) {
    return error instanceof Error ? error : new Error(String(error));
  }
}
