/**
 * Scanning helpers shared by the request- and response-head parsers. A head
 * is a latin1 string (one char per byte); these read it in place, without
 * slicing or regular expressions, because they run on every request.
 */

/** tchar (RFC 9110 §5.6.2) by char code: `!#$%&'*+-.^_\`|~`, digits and letters. */
const TCHAR = new Uint8Array(128)
for (const c of "!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz") TCHAR[c.charCodeAt(0)] = 1

/** Where the token (a method, a header name) starting at `from` ends: the index of the first other character. */
export function tokenEnd(head: string, from: number): number {
  let i = from
  for (; i < head.length; i++) {
    const c = head.charCodeAt(i)
    if (c > 0x7f || TCHAR[c] === 0) break
  }
  return i
}

/**
 * head[at, at + lower.length) is `lower` (lower-case letters and `-`),
 * ignoring case: `| 0x20` folds a letter's case and turns no other
 * character into a letter; `-` must be itself.
 */
export function nameIs(head: string, at: number, lower: string): boolean {
  for (let i = 0; i < lower.length; i++) {
    const want = lower.charCodeAt(i)
    const c = head.charCodeAt(at + i)
    if (want === 0x2d ? c !== 0x2d : (c | 0x20) !== want) return false
  }
  return true
}

/**
 * Where the line starting at `pos` ends (the index of its CR), or -1 when
 * the line holds a bare CR or a bare LF, which parsers could disagree on.
 */
export function lineEnd(head: string, pos: number): number {
  const cr = head.indexOf('\r', pos)
  return cr >= 0 && head.charCodeAt(cr + 1) === 0x0a && head.indexOf('\n', pos) === cr + 1 ? cr : -1
}

/** A comma-separated header value lists `token` (lower case), ignoring case and spaces. */
export function hasToken(value: string, token: string): boolean {
  if (value.length === token.length) return value.toLowerCase() === token
  for (const part of value.split(',')) if (part.trim().toLowerCase() === token) return true
  return false
}
