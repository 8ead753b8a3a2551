// Wording shared by the client's messages, spelled as the Python client's grpo_client/words.py spells it
// (and the Go client's grpoclient/words.go), so the three print the same lines.

/** The most characters of a server's message a one-line notice quotes. */
export const REASON_CHARS = 200;

/** `n` and `noun`, the noun plural unless n is 1: counted(1, 'batch') is "1 batch", counted(2, 'batch')
 * "2 batches", counted(0, 'queued prompt') "0 queued prompts". The last word takes "es" after s, x, ch or
 * sh, else "s" (the nouns the clients count are regular). */
export function counted(n: number, noun: string): string {
  if (n === 1) return `${n} ${noun}`;
  return /(s|x|ch|sh)$/.test(noun) ? `${n} ${noun}es` : `${n} ${noun}s`;
}

/** Items a..b of a kind as "lines 3-4", or "line 3" when a is b. */
export function span(word: string, a: number, b: number): string {
  return a === b ? `${word} ${a}` : `${word}s ${a}-${b}`;
}

/** A server's status message on one line (runs of spaces, tabs and line breaks become one space) and at
 * most REASON_CHARS characters (Unicode code points): a longer one is cut to REASON_CHARS - 3 and ends with
 * "..."; '' when the message has no text. */
export function shortReason(message: string): string {
  const text = message.replace(/[ \t\r\n]+/g, ' ').replace(/^ +| +$/g, '');
  const chars = Array.from(text);
  return chars.length <= REASON_CHARS ? text : `${chars.slice(0, REASON_CHARS - 3).join('')}...`;
}
