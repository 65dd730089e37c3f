/**
 * The request headers every file answer reads the same way (the fileserver's
 * app assets, blob-store files and vhost files): validators (`If-None-Match`,
 * `If-Modified-Since`, `If-Range`), byte ranges (`Range`, one or several,
 * answered as `multipart/byteranges`) and `Accept-Encoding`.
 */
import { randomBytes } from 'node:crypto'

/** At most this many ranges (after merging) are answered as parts; a request for more gets the whole body (200). */
export const MAX_RANGES = 16

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec']
const DAY = '(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)'
const LONG_DAY = '(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday)'
const MONTH = '(?<mon>Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)'
const TIME = '(?<h>\\d{2}):(?<m>\\d{2}):(?<s>\\d{2})'
// RFC 9110 5.6.7: IMF-fixdate, and the two obsolete forms a recipient must still accept.
const FORMS = [
  new RegExp(`^${DAY}, (?<d>\\d{2}) ${MONTH} (?<y>\\d{4}) ${TIME} GMT$`),
  new RegExp(`^${LONG_DAY}, (?<d>\\d{2})-${MONTH}-(?<yy>\\d{2}) ${TIME} GMT$`),
  new RegExp(`^${DAY} ${MONTH} (?<d>[ \\d]\\d) ${TIME} (?<y>\\d{4})$`),
]

/**
 * An HTTP-date (RFC 9110 5.6.7) in ms since the epoch, or null when `value`
 * is not one: any other text (a five-digit year that `Date.parse` would
 * take, say), day 31 of a 30-day month, hour 24. Only the three forms HTTP
 * allows.
 */
export function parseHttpDate(value: string, now = Date.now()): number | null {
  const g = FORMS.map((re) => re.exec(value)?.groups).find((x) => x !== undefined)
  if (g === undefined) return null
  let year = Number(g['y'])
  if (g['yy'] !== undefined) {
    // RFC 9110: a two-digit year more than 50 years in the future is the most recent past year with those digits.
    const current = new Date(now).getUTCFullYear()
    year = Math.floor(current / 100) * 100 + Number(g['yy'])
    if (year > current + 50) year -= 100
  }
  const [d, h, m, s] = [Number(g['d']!.trim()), Number(g['h']), Number(g['m']), Number(g['s'])]
  if (h > 23 || m > 59 || s > 60 || year < 1900) return null
  const ms = Date.UTC(year, MONTHS.indexOf(g['mon']!), d, h, m, Math.min(s, 59))
  // Date.UTC rolls 31 Feb over into March: such a date is not a date.
  return new Date(ms).getUTCDate() === d ? ms : null
}

/**
 * Whether `If-Modified-Since` says the client's copy is current: a valid
 * HTTP-date no earlier than `lastModified` (to the second) and not in the
 * future (RFC 9110 13.1.3: anything else is ignored, so the answer is 200).
 */
export function notModifiedSince(header: string, lastModified: number, now = Date.now()): boolean {
  if (header === '') return false
  const since = parseHttpDate(header, now)
  return since !== null && since <= now && Math.floor(lastModified / 1000) * 1000 <= since
}

/** Weak comparison (RFC 9110 13.1.2) of an `If-None-Match` list against any of `tags`; `*` matches. */
export function noneMatch(header: string, tags: readonly string[]): boolean {
  for (const raw of header.split(',')) {
    const tag = raw.trim().replace(/^W\//, '')
    if (tag === '*' || tags.includes(tag)) return true
  }
  return false
}

/**
 * Whether `If-Range` lets a range be answered: empty, the strong ETag of the
 * representation, or an HTTP-date no earlier than Last-Modified. A weak tag or
 * an invalid date means the whole representation.
 */
export function ifRangeMatches(header: string, etag: string, lastModified: number): boolean {
  if (header === '') return true
  if (header.startsWith('"')) return header === etag
  if (header.startsWith('W/')) return false
  const date = parseHttpDate(header)
  return date !== null && date >= Math.floor(lastModified / 1000) * 1000
}

/** Inclusive byte offsets. */
export interface ByteSpan {
  readonly start: number
  readonly end: number
}

/**
 * The ranges a `Range` header asks of a body of `size` bytes (RFC 9110 14.2):
 * - 'ignore': answer the whole body, 200: not `bytes=`, malformed (any bad
 *   spec makes the whole header invalid), or more than {@link MAX_RANGES}
 *   ranges once merged (several small overlapping ranges are a known way to
 *   make a server work hard);
 * - 'unsatisfiable': 416, no range overlaps the body;
 * - otherwise the satisfiable ranges, sorted, overlapping and adjacent ones
 *   merged (so one request never sends the same byte twice).
 */
export function parseRanges(header: string, size: number): ByteSpan[] | 'unsatisfiable' | 'ignore' {
  const m = /^bytes\s*=\s*(.*)$/i.exec(header.trim())
  if (m === null) return 'ignore'
  const specs = m[1]!.split(',').map((s) => s.trim()).filter((s) => s !== '')
  if (specs.length === 0 || specs.length > 100) return 'ignore'
  const spans: ByteSpan[] = []
  for (const spec of specs) {
    const r = /^(\d*)\s*-\s*(\d*)$/.exec(spec)
    if (r === null) return 'ignore'
    const [, a, b] = r as unknown as [string, string, string]
    if (a === '' && b === '') return 'ignore'
    if (a === '') {
      const n = Number(b)
      if (n > 0 && size > 0) spans.push({ start: Math.max(0, size - n), end: size - 1 })
      continue
    }
    const start = Number(a)
    if (b !== '' && Number(b) < start) return 'ignore'
    if (start < size) spans.push({ start, end: b === '' ? size - 1 : Math.min(Number(b), size - 1) })
  }
  if (spans.length === 0) return 'unsatisfiable'
  spans.sort((x, y) => x.start - y.start)
  const merged: ByteSpan[] = [spans[0]!]
  for (const s of spans.slice(1)) {
    const last = merged[merged.length - 1]!
    if (s.start <= last.end + 1) merged[merged.length - 1] = { start: last.start, end: Math.max(last.end, s.end) }
    else merged.push(s)
  }
  return merged.length > MAX_RANGES ? 'ignore' : merged
}

/** The layout of a `multipart/byteranges` body: each part's head, then its bytes, then the closing delimiter. */
export interface Multipart {
  readonly contentType: string
  readonly parts: readonly { readonly head: Buffer; readonly span: ByteSpan }[]
  readonly tail: Buffer
  /** Bytes of the whole body. */
  readonly length: number
}

/** Lays out a `multipart/byteranges` answer (RFC 9110 14.6) of `spans` of a body of `size` bytes typed `type`. */
export function multipartLayout(spans: readonly ByteSpan[], size: number, type: string): Multipart {
  const boundary = `espra-${randomBytes(12).toString('hex')}`
  let length = 0
  const parts = spans.map((span, i) => {
    const head = Buffer.from(`${i === 0 ? '' : '\r\n'}--${boundary}\r\nContent-Type: ${type}\r\nContent-Range: bytes ${span.start}-${span.end}/${size}\r\n\r\n`, 'latin1')
    length += head.length + span.end - span.start + 1
    return { head, span }
  })
  const tail = Buffer.from(`\r\n--${boundary}--\r\n`, 'latin1')
  length += tail.length
  return { contentType: `multipart/byteranges; boundary=${boundary}`, parts, tail, length }
}

/** The whole `multipart/byteranges` body of an in-memory `body`. */
export function multipartBody(layout: Multipart, body: Buffer): Buffer {
  return Buffer.concat([...layout.parts.flatMap((p) => [p.head, body.subarray(p.span.start, p.span.end + 1)]), layout.tail])
}

/** Whether `Accept-Encoding` allows `encoding` (q > 0, named or through `*`). */
export function accepts(acceptEncoding: string, encoding: string): boolean {
  let star = 0
  for (const part of acceptEncoding.toLowerCase().split(',')) {
    const [name, ...params] = part.trim().split(';')
    const q = params.map((p) => /^\s*q=([0-9.]+)\s*$/.exec(p)).find(Boolean)
    const weight = q ? Number(q[1]) : 1
    const named = name!.trim()
    if (named === encoding || (encoding === 'gzip' && named === 'x-gzip')) return weight > 0
    if (named === '*') star = weight
  }
  return star > 0
}
