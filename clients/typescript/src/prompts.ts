// The prompt file format (DESIGN.md section 6): one JSON object a line, blank lines skipped.
//
//   {"id": "p1", "messages": [{"role": "user", "content": "What is 2+2?"}], "answer": "4",
//    "rewards": [{"backend": "math", "weight": 1.0}], "metadata": {"task": "sum"}}
//
// A port of clients/python/grpo_client/prompts.py, rule for rule: the same problems, named by the same
// line and field path with the same words (JSON errors included: the reader below follows Python's json
// module, columns counted in characters), and batchRequestId gives the same request ids as Python's
// batch_request_id, so a file submitted from one client is recognised when submitted from another.
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';

import type { Prompt } from './generated/grpo/trainer/v1/Prompt';

/** How many problems a PromptFileError lists at most. */
export const MAX_PROMPT_ERRORS = 50;

/** One problem in a prompt file: the 1-based `line`, the `field` path in that line's object ('' for the
 * line as a whole) and what is wrong. */
export interface PromptError {
  line: number;
  field: string;
  message: string;
}

/** `SOURCE:LINE: FIELD: MESSAGE` (without `FIELD: ` when the field is empty). */
export function formatPromptError(e: PromptError, source: string): string {
  return e.field ? `${source}:${e.line}: ${e.field}: ${e.message}` : `${source}:${e.line}: ${e.message}`;
}

/** A prompt file with problems; `errors` lists them (at most MAX_PROMPT_ERRORS). Nothing of it is sent. */
export class PromptFileError extends Error {
  readonly source: string;
  readonly errors: PromptError[];

  constructor(source: string, errors: PromptError[]) {
    super(errors.map((e) => formatPromptError(e, source)).join('\n'));
    this.name = 'PromptFileError';
    this.source = source;
    this.errors = errors;
  }
}

/** A parsed prompt file: its `prompts` in file order and `lines[i]`, the 1-based line prompts[i] came
 * from (blank lines count). */
export interface PromptFile {
  source: string;
  prompts: Prompt[];
  lines: number[];
}

/** Read a prompt file (UTF-8 JSON Lines). Throws PromptFileError listing every problem (bytes that are
 * not UTF-8 included), or the fs error. */
export function loadPromptFile(path: string): PromptFile {
  return parsePromptFile(fs.readFileSync(path), path);
}

/** Parse the bytes of a prompt file; `source` names it in errors. Lines end at "\n", "\r\n" or "\r". */
export function parsePromptFile(data: Uint8Array, source = '<prompts>'): PromptFile {
  const out: PromptFile = { source, prompts: [], lines: [] };
  const problems: PromptError[] = [];
  const firstLine = new Map<string, number>();
  const lines = splitLines(data);
  for (let k = 0; k < lines.length; k++) {
    const number = k + 1;
    let raw = lines[k];
    if (number === 1 && raw.length >= 3 && raw[0] === 0xef && raw[1] === 0xbb && raw[2] === 0xbf) raw = raw.subarray(3);
    const errs = new Errors(number);
    const bad = undecodable(raw, number);
    if (bad) {
      errs.add('', bad); // never blank: a bad byte is not whitespace
    } else {
      const text = Array.from(Buffer.from(raw).toString('utf8'));
      if (text.every(isSpace)) continue;
      const decoded = decodeJsonLine(text);
      if (!decoded.ok) {
        errs.add('', decoded.message);
      } else {
        const prompt = parsePrompt(decoded.value, errs);
        if (errs.items.length === 0) {
          const id = prompt.id ?? '';
          const first = firstLine.get(id);
          if (first !== undefined) {
            errs.add('id', `${pyStrRepr(Array.from(id))} repeats the id of line ${first}`);
          } else {
            firstLine.set(id, number);
            out.prompts.push(prompt);
            out.lines.push(number);
          }
        }
      }
    }
    problems.push(...errs.items);
    if (problems.length >= MAX_PROMPT_ERRORS) break;
  }
  if (problems.length) throw new PromptFileError(source, problems.slice(0, MAX_PROMPT_ERRORS));
  return out;
}

function splitLines(data: Uint8Array): Uint8Array[] {
  const lines: Uint8Array[] = [];
  let start = 0;
  for (let i = 0; i < data.length; i++) {
    const c = data[i];
    if (c === 0x0a || c === 0x0d) {
      const line = new Uint8Array(i - start + 1);
      line.set(data.subarray(start, i));
      line[i - start] = 0x0a; // the break as "\n", as Python's universal newlines read it
      lines.push(line);
      if (c === 0x0d && data[i + 1] === 0x0a) i++;
      start = i + 1;
    }
  }
  if (start < data.length) lines.push(data.subarray(start));
  return lines;
}

/** Python's str.isspace for one character. */
function isSpace(c: string): boolean {
  const n = c.codePointAt(0)!;
  return (n >= 0x09 && n <= 0x0d) || (n >= 0x1c && n <= 0x20) || n === 0x85 || n === 0xa0 || n === 0x1680
    || (n >= 0x2000 && n <= 0x200a) || n === 0x2028 || n === 0x2029 || n === 0x202f || n === 0x205f || n === 0x3000;
}

/** Why a line is not UTF-8 (its first bad byte, by the Unicode well-formedness table), or ''. */
function undecodable(raw: Uint8Array, number: number): string {
  for (let i = 0; i < raw.length;) {
    const n = wellFormed(raw, i);
    if (n === 0) {
      const msg = `not valid UTF-8: byte 0x${raw[i].toString(16).padStart(2, '0')} at byte ${i + 1}`;
      if (number === 1 && raw.length >= 2 && ((raw[0] === 0xff && raw[1] === 0xfe) || (raw[0] === 0xfe && raw[1] === 0xff))) {
        return `${msg} (the file starts with a UTF-16 byte-order mark: save it as UTF-8)`;
      }
      return `${msg}; prompt files are UTF-8`;
    }
    i += n;
  }
  return '';
}

/** The length of the well-formed UTF-8 sequence at i, or 0. */
function wellFormed(b: Uint8Array, i: number): number {
  const c = b[i];
  if (c < 0x80) return 1;
  const cont = (k: number, lo = 0x80, hi = 0xbf) => i + k < b.length && b[i + k] >= lo && b[i + k] <= hi;
  if (c >= 0xc2 && c <= 0xdf) return cont(1) ? 2 : 0;
  if (c === 0xe0) return cont(1, 0xa0) && cont(2) ? 3 : 0;
  if ((c >= 0xe1 && c <= 0xec) || c === 0xee || c === 0xef) return cont(1) && cont(2) ? 3 : 0;
  if (c === 0xed) return cont(1, 0x80, 0x9f) && cont(2) ? 3 : 0;
  if (c === 0xf0) return cont(1, 0x90) && cont(2) && cont(3) ? 4 : 0;
  if (c >= 0xf1 && c <= 0xf3) return cont(1) && cont(2) && cont(3) ? 4 : 0;
  if (c === 0xf4) return cont(1, 0x80, 0x8f) && cont(2) && cont(3) ? 4 : 0;
  return 0;
}

// ------------------------------------------------------------------ JSON as Python's json module reads it

/** The string of `codes` made by `make` (String.fromCodePoint or fromCharCode) a slice at a time: as one
 * call's arguments, a long string overflows the stack. */
function fromCodes(codes: ArrayLike<number>, make: (...codes: number[]) => string): string {
  const parts: string[] = [];
  for (let i = 0; i < codes.length; i += 8192) parts.push(make(...Array.prototype.slice.call(codes, i, i + 8192)));
  return parts.join('');
}

/** A decoded string as code points (numbers); an unpaired surrogate escape stays a surrogate. */
class JString {
  constructor(readonly cps: number[]) {}
  // In slices: spreading every code point as an argument overflowed the stack past ~150k of them.
  toString(): string { return fromCodes(this.cps, String.fromCodePoint); }
  get key(): string { return this.cps.join(','); }
}
/** A JSON number: the text as written and its value (±Infinity beyond the range). */
class JNumber { constructor(readonly text: string, readonly value: number) {} }
/** NaN, Infinity or -Infinity, which Python's json reads and JSON does not have. */
class JConst { constructor(readonly name: string) {} }
/** An object in its keys' first-seen order; a repeated key keeps its place and takes the last value,
 * and is kept in `repeated` (by its `key`) to be refused. */
class JObject {
  readonly keys: JString[] = [];
  readonly vals: JValue[] = [];
  readonly index = new Map<string, number>();
  readonly repeated = new Set<string>();
  get(key: string): JValue | undefined {
    const i = this.index.get(Array.from(key).map((c) => c.codePointAt(0)).join(','));
    return i === undefined ? undefined : this.vals[i];
  }
  has(key: string): boolean { return this.get(key) !== undefined; }
}
type JValue = null | boolean | JNumber | JConst | JString | JObject | JValue[];

class JsonFail { constructor(readonly msg: string, readonly pos: number) {} }

/** How deep arrays and objects may be inside each other in a line (a prompt needs 4). */
const MAX_DEPTH = 64;
/** Python's REPEATED: the problem of a key a line gives more than once. */
const REPEATED = 'given more than once: JSON keeps only the last, write it once';

/** The 1-based column of the first [ or { nested deeper than MAX_DEPTH, brackets inside strings not
 * counted, or 0 (Python's _too_deep). */
function tooDeep(s: number[]): number {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    if (inString && c === 0x5c) i++;
    else if (c === 0x22) inString = !inString;
    else if (inString) continue;
    else if (c === 0x5b || c === 0x7b) {
      if (++depth > MAX_DEPTH) return i + 1;
    } else if (c === 0x5d || c === 0x7d) depth--;
  }
  return 0;
}

/** Decode one line (its line break is dropped first, as Python's reader does), or Python's message and
 * column. */
function decodeJsonLine(chars: string[]): { ok: true; value: JValue } | { ok: false; message: string } {
  const s = chars.map((c) => c.codePointAt(0)!);
  if (s.length > 0 && s[s.length - 1] === 0x0a) s.pop();
  const deep = tooDeep(s);
  if (deep > 0) return { ok: false, message: `not valid JSON: nested deeper than ${MAX_DEPTH} levels at column ${deep}` };
  try {
    if (s[0] === 0xfeff) throw new JsonFail('Unexpected UTF-8 BOM (decode using utf-8-sig)', 0);
    const r = new JsonReader(s);
    const [value, after] = r.scan(r.ws(0));
    const end = r.ws(after);
    if (end !== s.length) throw new JsonFail('Extra data', end);
    return { ok: true, value };
  } catch (err) {
    if (!(err instanceof JsonFail)) throw err;
    let col = err.pos + 1;
    for (let i = err.pos - 1; i >= 0; i--) {
      if (s[i] === 0x0a) { col = err.pos - i; break; }
    }
    return { ok: false, message: `not valid JSON: ${err.msg} at column ${col}` };
  }
}

const isDigit = (c: number | undefined) => c !== undefined && c >= 0x30 && c <= 0x39;

function hexValue(c: number | undefined): number {
  if (c === undefined) return -1;
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x61 && c <= 0x66) return c - 0x61 + 10;
  if (c >= 0x41 && c <= 0x46) return c - 0x41 + 10;
  return -1;
}

/** CPython's C scanner (scan_once, scanstring, _parse_object, _parse_array, _match_number), strict. */
class JsonReader {
  constructor(readonly s: number[]) {}

  ws(i: number): number {
    while (i < this.s.length && (this.s[i] === 0x20 || this.s[i] === 0x09 || this.s[i] === 0x0a || this.s[i] === 0x0d)) i++;
    return i;
  }

  private match(i: number, word: string): boolean {
    for (let k = 0; k < word.length; k++) if (this.s[i + k] !== word.charCodeAt(k)) return false;
    return true;
  }

  scan(idx: number): [JValue, number] {
    if (idx >= this.s.length) throw new JsonFail('Expecting value', idx);
    switch (this.s[idx]) {
      case 0x22: return this.str(idx + 1);
      case 0x7b: return this.object(idx + 1);
      case 0x5b: return this.array(idx + 1);
      case 0x6e: if (this.match(idx, 'null')) return [null, idx + 4]; break;
      case 0x74: if (this.match(idx, 'true')) return [true, idx + 4]; break;
      case 0x66: if (this.match(idx, 'false')) return [false, idx + 5]; break;
      case 0x4e: if (this.match(idx, 'NaN')) return [new JConst('NaN'), idx + 3]; break;
      case 0x49: if (this.match(idx, 'Infinity')) return [new JConst('Infinity'), idx + 8]; break;
      case 0x2d: if (this.match(idx, '-Infinity')) return [new JConst('-Infinity'), idx + 9]; break;
      default: break;
    }
    return this.number(idx);
  }

  private number(start: number): [JValue, number] {
    const s = this.s;
    const end = s.length - 1;
    let idx = start;
    if (s[idx] === 0x2d) {
      idx++;
      if (idx > end) throw new JsonFail('Expecting value', start);
    }
    if (s[idx] >= 0x31 && s[idx] <= 0x39) {
      idx++;
      while (idx <= end && isDigit(s[idx])) idx++;
    } else if (s[idx] === 0x30) {
      idx++;
    } else {
      throw new JsonFail('Expecting value', start);
    }
    if (idx < end && s[idx] === 0x2e && isDigit(s[idx + 1])) {
      idx += 2;
      while (idx <= end && isDigit(s[idx])) idx++;
    }
    if (idx < end && (s[idx] === 0x65 || s[idx] === 0x45)) {
      const eStart = idx;
      idx++;
      if (idx < end && (s[idx] === 0x2d || s[idx] === 0x2b)) idx++;
      while (idx <= end && isDigit(s[idx])) idx++;
      if (!isDigit(s[idx - 1])) idx = eStart;
    }
    const text = fromCodes(s.slice(start, idx), String.fromCharCode);
    return [new JNumber(text, Number(text)), idx];
  }

  private str(begin: number): [JString, number] {
    const s = this.s;
    const n = s.length;
    const out: number[] = [];
    let end = begin;
    for (;;) {
      let next = end;
      let c = 0;
      for (; next < n; next++) {
        c = s[next];
        if (c === 0x22 || c === 0x5c) break;
        if (c <= 0x1f) throw new JsonFail('Invalid control character at', next);
      }
      if (next >= n) throw new JsonFail('Unterminated string starting at', begin - 1);
      for (let k = end; k < next; k++) out.push(s[k]);
      next++;
      if (c === 0x22) return [new JString(out), next];
      if (next === n) throw new JsonFail('Unterminated string starting at', begin - 1);
      c = s[next];
      if (c !== 0x75) {
        end = next + 1;
        const simple: Record<number, number> = { 0x22: 0x22, 0x5c: 0x5c, 0x2f: 0x2f, 0x62: 8, 0x66: 12, 0x6e: 10, 0x72: 13, 0x74: 9 };
        if (!(c in simple)) throw new JsonFail('Invalid \\escape', end - 2);
        out.push(simple[c]);
        continue;
      }
      next++;
      end = next + 4;
      if (end >= n) throw new JsonFail('Invalid \\uXXXX escape', next - 1);
      c = 0;
      for (; next < end; next++) {
        const d = hexValue(s[next]);
        if (d < 0) throw new JsonFail('Invalid \\uXXXX escape', end - 5);
        c = (c << 4) | d;
      }
      if (c >= 0xd800 && c <= 0xdbff && end + 6 < n && s[end] === 0x5c && s[end + 1] === 0x75) {
        let c2 = 0;
        next = end + 2;
        end += 6;
        for (; next < end; next++) {
          const d = hexValue(s[next]);
          if (d < 0) throw new JsonFail('Invalid \\uXXXX escape', end - 5);
          c2 = (c2 << 4) | d;
        }
        if (c2 >= 0xdc00 && c2 <= 0xdfff) c = 0x10000 + ((c - 0xd800) << 10) + (c2 - 0xdc00);
        else end -= 6;
      }
      out.push(c);
    }
  }

  private object(start: number): [JObject, number] {
    const s = this.s;
    const end = s.length - 1;
    const obj = new JObject();
    let idx = this.ws(start);
    if (idx <= end && s[idx] === 0x7d) return [obj, idx + 1];
    for (;;) {
      if (idx > end || s[idx] !== 0x22) throw new JsonFail('Expecting property name enclosed in double quotes', idx);
      const [key, afterKey] = this.str(idx + 1);
      idx = this.ws(afterKey);
      if (idx > end || s[idx] !== 0x3a) throw new JsonFail("Expecting ':' delimiter", idx);
      idx = this.ws(idx + 1);
      const [val, afterVal] = this.scan(idx);
      const at = obj.index.get(key.key);
      if (at !== undefined) {
        obj.vals[at] = val;
        obj.repeated.add(key.key);
      } else {
        obj.index.set(key.key, obj.keys.length);
        obj.keys.push(key);
        obj.vals.push(val);
      }
      idx = this.ws(afterVal);
      if (idx <= end && s[idx] === 0x7d) return [obj, idx + 1];
      if (idx > end || s[idx] !== 0x2c) throw new JsonFail("Expecting ',' delimiter", idx);
      idx = this.ws(idx + 1);
    }
  }

  private array(start: number): [JValue[], number] {
    const s = this.s;
    const end = s.length - 1;
    const out: JValue[] = [];
    let idx = this.ws(start);
    if (idx <= end && s[idx] === 0x5d) return [out, idx + 1];
    for (;;) {
      const [val, after] = this.scan(idx);
      out.push(val);
      idx = this.ws(after);
      if (idx <= end && s[idx] === 0x5d) return [out, idx + 1];
      if (idx > end || s[idx] !== 0x2c) throw new JsonFail("Expecting ',' delimiter", idx);
      idx = this.ws(idx + 1);
    }
  }
}

// ------------------------------------------------------------------------------------ validation

class Errors {
  readonly items: PromptError[] = [];
  constructor(readonly line: number) {}
  add(field: string, message: string): void { this.items.push({ line: this.line, field, message }); }
}

const PROMPT_KEYS = ['answer', 'code', 'id', 'messages', 'metadata', 'rewards'];
const CODE_KEYS = ['entry_point', 'io_cases', 'language', 'test_code', 'timeout_seconds'];
// Fields other tools' datasets use for a prompt's text (TRL, verl, OpenAI chat files).
const TEXT_KEYS = new Set(['prompt', 'question', 'problem', 'query', 'input', 'instruction']);

function jsonType(v: JValue): string {
  if (v === null) return 'null';
  if (typeof v === 'boolean') return 'boolean';
  if (v instanceof JNumber) return 'number';
  if (v instanceof JString) return 'string';
  if (v instanceof JObject) return 'object';
  if (Array.isArray(v)) return 'array';
  return '_Constant';
}

/** Python's json.dumps of a string: ASCII only, lower-case \uXXXX escapes. */
function jsonDumps(cps: number[]): string {
  const named: Record<number, string> = { 0x22: '\\"', 0x5c: '\\\\', 0x0a: '\\n', 0x0d: '\\r', 0x09: '\\t', 0x08: '\\b', 0x0c: '\\f' };
  const hex4 = (n: number) => `\\u${n.toString(16).padStart(4, '0')}`;
  let out = '"';
  for (const c of cps) {
    if (c in named) out += named[c];
    else if (c >= 0x20 && c <= 0x7e) out += String.fromCharCode(c);
    else if (c > 0xffff) out += hex4(0xd800 | ((c - 0x10000) >> 10)) + hex4(0xdc00 | ((c - 0x10000) & 0x3ff));
    else out += hex4(c);
  }
  return `${out}"`;
}

/** A key in a field path: as it is when plain, else as a JSON string. */
function fieldKey(key: JString): string {
  const plain = key.cps.length > 0 && key.cps.every((c) => c >= 0x20 && c <= 0x7e && c !== 0x2e);
  return plain ? key.toString() : jsonDumps(key.cps);
}

function textProblem(cps: number[]): string {
  if (cps.includes(0)) return 'contains a NUL character (U+0000), which the trainer does not accept';
  const s = cps.find((c) => c >= 0xd800 && c <= 0xdfff);
  if (s !== undefined) {
    return `contains an unpaired surrogate (${jsonDumps([s])}), which is not valid UTF-8 text; `
      + 'write the character itself or its surrogate pair';
  }
  return '';
}

function checkValues(v: JValue, path: string, errs: Errors): void {
  if (v instanceof JConst) {
    errs.add(path, `${v.name} is not valid JSON (JSON numbers are finite): write a number, or the string "${v.name}"`);
  } else if (v instanceof JString) {
    const p = textProblem(v.cps);
    if (p) errs.add(path, p);
  } else if (v instanceof JObject) {
    v.keys.forEach((key, i) => {
      const sub = path ? `${path}.${fieldKey(key)}` : fieldKey(key);
      const p = textProblem(key.cps);
      if (p) errs.add(sub, `the key ${p}`);
      if (v.repeated.has(key.key)) errs.add(sub, REPEATED);
      checkValues(v.vals[i], sub, errs);
    });
  } else if (Array.isArray(v)) {
    v.forEach((item, i) => checkValues(item, `${path}[${i}]`, errs));
  }
}

function getString(obj: JObject, key: string, path: string, errs: Errors, required = false): string | undefined {
  const v = obj.get(key);
  if (v === undefined) {
    if (required) errs.add(path, 'required');
    return undefined;
  }
  if (!(v instanceof JString)) {
    errs.add(path, `must be a string, got ${jsonType(v)}`);
    return undefined;
  }
  return v.toString();
}

function getNumber(v: JValue, path: string, errs: Errors): number | undefined {
  if (!(v instanceof JNumber) || !Number.isFinite(v.value)) {
    errs.add(path, `must be a finite number, got ${pyRepr(v)}`);
    return undefined;
  }
  return v.value;
}

/** Code point order, as Python sorts strings (JS's default sort compares UTF-16 units). */
function byCodePoint(a: string, b: string): number {
  const x = Array.from(a).map((c) => c.codePointAt(0)!);
  const y = Array.from(b).map((c) => c.codePointAt(0)!);
  for (let i = 0; i < Math.min(x.length, y.length); i++) if (x[i] !== y[i]) return x[i] - y[i];
  return x.length - y.length;
}

function unknownFields(obj: JObject, allowed: string[], prefix: string, errs: Errors): void {
  const extra = obj.keys.map((k) => k.toString()).filter((k) => !allowed.includes(k)).sort(byCodePoint);
  for (const key of extra) {
    const hint = !prefix && TEXT_KEYS.has(key) && !obj.has('messages')
      ? '; the text goes in "messages": [{"role": "user", "content": ...}]' : '';
    errs.add(`${prefix}${key}`, `unknown field (allowed: ${allowed.join(', ')})${hint}`);
  }
}

function parsePrompt(v: JValue, errs: Errors): Prompt {
  // No prototype: a metadata key "__proto__" is a key like any other (on `{}` its assignment set the
  // object's prototype and the key was lost, as the Python and Go clients keep it).
  const prompt: Prompt = { id: '', messages: [], rewards: [], metadata: Object.create(null) as Record<string, string> };
  const before = errs.items.length;
  checkValues(v, '', errs);
  if (errs.items.length > before) return prompt;
  if (!(v instanceof JObject)) {
    errs.add('', `must be a JSON object, got ${jsonType(v)}`);
    return prompt;
  }
  const obj = v;
  unknownFields(obj, PROMPT_KEYS, '', errs);
  const id = getString(obj, 'id', 'id', errs, true);
  if (id !== undefined) {
    if (!id) errs.add('id', 'must not be empty');
    prompt.id = id;
  }
  const messages = obj.get('messages');
  if (!Array.isArray(messages) || messages.length === 0) {
    errs.add('messages', 'required: a non-empty list of {"role", "content"}');
  } else {
    messages.forEach((m, i) => {
      const path = `messages[${i}]`;
      if (!(m instanceof JObject)) {
        errs.add(path, 'must be an object with "role" and "content"');
        return;
      }
      unknownFields(m, ['content', 'role'], `${path}.`, errs);
      const role = getString(m, 'role', `${path}.role`, errs, true);
      const content = getString(m, 'content', `${path}.content`, errs, true);
      prompt.messages!.push({ role: role ?? '', content: content ?? '' });
    });
  }
  if (obj.has('answer') && obj.has('code')) {
    errs.add('answer', 'give either "answer" or "code", not both');
  } else if (obj.has('answer')) {
    const answer = obj.get('answer')!;
    if (answer instanceof JString) prompt.answer = answer.toString();
    else if (answer instanceof JNumber) prompt.answer = answer.text; // as written: the math verifier compares answers
    else errs.add('answer', `must be a string (or a number), got ${jsonType(answer)}`);
  } else if (obj.has('code')) {
    prompt.code = {};
    parseCode(obj.get('code')!, prompt.code, errs);
  }
  const rewards = obj.has('rewards') ? obj.get('rewards')! : [];
  if (!Array.isArray(rewards)) {
    errs.add('rewards', 'must be a list of {"backend", "weight"}');
  } else {
    rewards.forEach((r, i) => {
      const path = `rewards[${i}]`;
      if (!(r instanceof JObject)) {
        errs.add(path, 'must be an object with "backend" and optional "weight"');
        return;
      }
      unknownFields(r, ['backend', 'weight'], `${path}.`, errs);
      const backend = getString(r, 'backend', `${path}.backend`, errs, true);
      const weight = r.has('weight') ? getNumber(r.get('weight')!, `${path}.weight`, errs) : 1.0;
      if (weight !== undefined && weight <= 0) errs.add(`${path}.weight`, `must be > 0, got ${pyFloat(weight)}`);
      prompt.rewards!.push({ backend: backend ?? '', weight: weight ?? 0 });
    });
  }
  const metadata = obj.has('metadata') ? obj.get('metadata')! : new JObject();
  if (!(metadata instanceof JObject)) {
    errs.add('metadata', 'must be an object of string values');
  } else {
    metadata.keys.forEach((key, i) => {
      const value = metadata.vals[i];
      if (!(value instanceof JString)) errs.add(`metadata.${fieldKey(key)}`, `must be a string, got ${jsonType(value)}`);
      else prompt.metadata![key.toString()] = value.toString();
    });
  }
  return prompt;
}

function parseCode(v: JValue, out: NonNullable<Prompt['code']>, errs: Errors): void {
  if (!(v instanceof JObject)) {
    errs.add('code', 'must be an object with "test_code"/"entry_point" and/or "io_cases"');
    return;
  }
  unknownFields(v, CODE_KEYS, 'code.', errs);
  const language = getString(v, 'language', 'code.language', errs);
  if (language !== undefined) out.language = language;
  const testCode = getString(v, 'test_code', 'code.test_code', errs);
  if (testCode !== undefined) out.testCode = testCode;
  const entryPoint = getString(v, 'entry_point', 'code.entry_point', errs);
  if (entryPoint !== undefined) out.entryPoint = entryPoint;
  if (v.has('timeout_seconds')) {
    const t = getNumber(v.get('timeout_seconds')!, 'code.timeout_seconds', errs);
    if (t !== undefined) out.timeoutSeconds = t;
  }
  const cases = v.has('io_cases') ? v.get('io_cases')! : [];
  if (!Array.isArray(cases)) {
    errs.add('code.io_cases', 'must be a list of {"stdin", "expected_stdout"}');
    return;
  }
  out.ioCases = [];
  cases.forEach((c, i) => {
    const path = `code.io_cases[${i}]`;
    if (!(c instanceof JObject)) {
      errs.add(path, 'must be an object with "stdin" and "expected_stdout"');
      return;
    }
    unknownFields(c, ['expected_stdout', 'stdin'], `${path}.`, errs);
    const stdin = getString(c, 'stdin', `${path}.stdin`, errs);
    const expected = getString(c, 'expected_stdout', `${path}.expected_stdout`, errs, true);
    out.ioCases!.push({ stdin: stdin ?? '', expectedStdout: expected ?? '' });
  });
}

/** Python's repr() of a decoded value. */
function pyRepr(v: JValue): string {
  if (v === null) return 'None';
  if (v === true) return 'True';
  if (v === false) return 'False';
  if (v instanceof JNumber) return v.text;
  if (v instanceof JConst) return `_Constant(name='${v.name}')`;
  if (v instanceof JString) return pyStrRepr(v.cps);
  if (Array.isArray(v)) return `[${v.map(pyRepr).join(', ')}]`;
  return `{${v.keys.map((k, i) => `${pyStrRepr(k.cps)}: ${pyRepr(v.vals[i])}`).join(', ')}}`;
}

const PRINTABLE = /^[\p{L}\p{M}\p{N}\p{P}\p{S}]$/u;

function pyStrRepr(chars: number[] | string[]): string {
  const cps = chars.map((c) => (typeof c === 'string' ? c.codePointAt(0)! : c));
  const quote = cps.includes(0x27) && !cps.includes(0x22) ? 0x22 : 0x27;
  const hex = (n: number, w: number) => n.toString(16).padStart(w, '0');
  let out = String.fromCharCode(quote);
  for (const c of cps) {
    if (c === quote || c === 0x5c) out += `\\${String.fromCharCode(c)}`;
    else if (c === 0x09) out += '\\t';
    else if (c === 0x0a) out += '\\n';
    else if (c === 0x0d) out += '\\r';
    else if (c < 0x20 || c === 0x7f) out += `\\x${hex(c, 2)}`;
    else if (c < 0x7f) out += String.fromCharCode(c);
    else if (!(c >= 0xd800 && c <= 0xdfff) && PRINTABLE.test(String.fromCodePoint(c))) out += String.fromCodePoint(c);
    else if (c <= 0xff) out += `\\x${hex(c, 2)}`;
    else if (c <= 0xffff) out += `\\u${hex(c, 4)}`;
    else out += `\\U${hex(c, 8)}`;
  }
  return out + String.fromCharCode(quote);
}

/** Python's repr() of a float. */
export function pyFloat(f: number): string {
  if (Number.isNaN(f)) return 'nan';
  if (f === Infinity) return 'inf';
  if (f === -Infinity) return '-inf';
  const sign = f < 0 || Object.is(f, -0) ? '-' : '';
  const [mant, expText] = Math.abs(f).toExponential().split('e');
  const exp = Number(expText);
  const digits = mant.replace('.', '');
  const decpt = exp + 1;
  if (decpt > -4 && decpt <= 16) {
    if (decpt <= 0) return `${sign}0.${'0'.repeat(-decpt)}${digits}`;
    if (decpt >= digits.length) return `${sign}${digits}${'0'.repeat(decpt - digits.length)}.0`;
    return `${sign}${digits.slice(0, decpt)}.${digits.slice(decpt)}`;
  }
  const m = digits.length > 1 ? `${digits[0]}.${digits.slice(1)}` : digits;
  return `${sign}${m}e${exp < 0 ? '-' : '+'}${String(Math.abs(exp)).padStart(2, '0')}`;
}

// ------------------------------------------------------------------------------------ request ids

/** The request id of batch `index` (0-based) of a submission: with `prefix`, "<prefix>-<index>"; without,
 * "sub-" and the first 40 hex digits of a SHA-256 over "grpo-submit/v1/<index>/" and each prompt's length
 * (8 bytes, big-endian) and deterministic protobuf serialisation, as the Python and Go clients compute it:
 * the same file with the same batch size sends the same ids from any client, and the trainer answers a
 * repeat as a duplicate instead of queueing the prompts twice. */
export function batchRequestId(batch: Prompt[], index: number, prefix?: string): string {
  if (prefix) return `${prefix}-${index}`; // an empty prefix counts as none, as in the Python and Go clients
  const h = createHash('sha256');
  h.update(`grpo-submit/v1/${index}/`);
  for (const p of batch) {
    const data = marshalPrompt(p);
    const n = Buffer.alloc(8);
    n.writeBigUInt64BE(BigInt(data.length));
    h.update(n);
    h.update(data);
  }
  return `sub-${h.digest('hex').slice(0, 40)}`;
}

/** The deterministic serialisation of a Prompt (Python's SerializeToString(deterministic=True)): fields in
 * number order, proto3 defaults left out (a double only when its bits are zero: -0 is written), the
 * answer/code member written when set even if empty, map entries in upb's key order. */
export function marshalPrompt(p: Prompt): Buffer {
  const w = new Writer();
  w.string(1, p.id);
  for (const m of p.messages ?? []) w.message(2, (x) => { x.string(1, m.role); x.string(2, m.content); });
  if (p.answer !== undefined && p.answer !== null && p.reference !== 'code') {
    w.bytes(3, Buffer.from(p.answer, 'utf8'));
  } else if (p.code !== undefined && p.code !== null) {
    const c = p.code;
    w.message(4, (x) => {
      x.string(1, c.language);
      x.string(2, c.testCode);
      x.string(3, c.entryPoint);
      for (const io of c.ioCases ?? []) x.message(4, (y) => { y.string(1, io.stdin); y.string(2, io.expectedStdout); });
      x.double(5, Number(c.timeoutSeconds ?? 0));
    });
  }
  for (const r of p.rewards ?? []) w.message(5, (x) => { x.string(1, r.backend); x.double(2, Number(r.weight ?? 0)); });
  const metadata = p.metadata ?? {};
  // upb's order (Python's deterministic=True): bytes compared over the shorter length, and of two keys where
  // one begins the other, the longer first ("abc", "ab", "a", "b", ..., "" last).
  const keys = Object.keys(metadata).map((k) => Buffer.from(k, 'utf8')).sort((a, b) => {
    const n = Math.min(a.length, b.length);
    return Buffer.compare(a.subarray(0, n), b.subarray(0, n)) || b.length - a.length;
  });
  for (const k of keys) {
    w.message(6, (x) => { x.bytes(1, k); x.bytes(2, Buffer.from(metadata[k.toString('utf8')], 'utf8')); });
  }
  return w.finish();
}

class Writer {
  private parts: Buffer[] = [];

  private varint(v: number): void {
    const out: number[] = [];
    while (v >= 0x80) {
      out.push((v % 0x80) | 0x80);
      v = Math.floor(v / 0x80);
    }
    out.push(v);
    this.parts.push(Buffer.from(out));
  }

  bytes(field: number, data: Buffer): void {
    this.varint((field << 3) | 2);
    this.varint(data.length);
    this.parts.push(data);
  }

  string(field: number, s: string | undefined): void {
    if (s) this.bytes(field, Buffer.from(s, 'utf8'));
  }

  double(field: number, f: number): void {
    const b = Buffer.alloc(8);
    b.writeDoubleLE(f);
    if (b.every((x) => x === 0)) return;
    this.varint((field << 3) | 1);
    this.parts.push(b);
  }

  message(field: number, fill: (w: Writer) => void): void {
    const inner = new Writer();
    fill(inner);
    this.bytes(field, inner.finish());
  }

  finish(): Buffer {
    return Buffer.concat(this.parts);
  }
}
