/**
 * The proxy's request-head parser: just enough of HTTP/1.1 to route and to
 * frame a request (request line, Host, Cookie, the configured routing
 * headers, Content-Length / Transfer-Encoding, Connection / Upgrade, the
 * X-Forwarded-* lines). Everything else is forwarded as received. Strict
 * where framing is at stake (RFC 9112): a request that could be read two
 * ways is refused, never guessed.
 */
import { hasToken, lineEnd, nameIs, tokenEnd } from './head-scan.js'

export interface RequestHead {
  readonly method: string
  /** The request target as sent: origin form (path and query), the only form served. */
  readonly target: string
  readonly http10: boolean
  readonly host: string | undefined
  readonly cookie: string | undefined
  /** -1 when absent. */
  readonly contentLength: number
  readonly chunked: boolean
  /** An Upgrade request (e.g. WebSocket): after a 101 the connection becomes a tunnel. */
  readonly upgrade: boolean
  readonly websocket: boolean
  /** The client asked to close after this response (or is HTTP/1.0 without keep-alive). */
  readonly close: boolean
  /** The client's X-Forwarded-For line [start, end) in the head (end past its CRLF); -1 when absent. */
  readonly xffStart: number
  readonly xffEnd: number
  readonly xff: string | undefined
  readonly hasProto: boolean
  /** Header lines in the head (the request line not counted). */
  readonly headerCount: number
  /** The Sec-WebSocket-Version value; undefined when absent. */
  readonly wsVersion: string | undefined
  /** Values of the extra headers asked for, by their index in `extraNames`. */
  readonly extra: readonly (string | undefined)[]
}

/** The routing headers the parser must also read (`--route-keys`), lower case; compiled once. */
export interface HeadSpec {
  readonly extraNames: readonly string[]
  /** lengths[n] is 1 when some extra name is n characters long: other names are not compared. */
  readonly lengths: Uint8Array
}

export function createHeadSpec(extraNames: readonly string[]): HeadSpec {
  const names = extraNames.map((n) => n.toLowerCase())
  const lengths = new Uint8Array(256)
  for (const n of names) lengths[n.length] = 1
  return { extraNames: names, lengths }
}

/** The headers the proxy reads itself. */
const enum Name {
  Other,
  Host,
  Cookie,
  ContentLength,
  TransferEncoding,
  Connection,
  Upgrade,
  XForwardedFor,
  XForwardedProto,
  SecWebSocketVersion,
}

/** Which built-in header the token head[at, at + n) names. */
function builtIn(head: string, at: number, n: number): Name {
  switch (n) {
    case 4: return nameIs(head, at, 'host') ? Name.Host : Name.Other
    case 6: return nameIs(head, at, 'cookie') ? Name.Cookie : Name.Other
    case 7: return nameIs(head, at, 'upgrade') ? Name.Upgrade : Name.Other
    case 10: return nameIs(head, at, 'connection') ? Name.Connection : Name.Other
    case 14: return nameIs(head, at, 'content-length') ? Name.ContentLength : Name.Other
    case 15: return nameIs(head, at, 'x-forwarded-for') ? Name.XForwardedFor : Name.Other
    case 17: return nameIs(head, at, 'transfer-encoding') ? Name.TransferEncoding : nameIs(head, at, 'x-forwarded-proto') ? Name.XForwardedProto : Name.Other
    case 21: return nameIs(head, at, 'sec-websocket-version') ? Name.SecWebSocketVersion : Name.Other
    default: return Name.Other
  }
}

/**
 * Origin form (`/path?query`) only: visible characters (bytes past 0x7f
 * pass, as browsers send UTF-8). A Live node (uWS) leaves the absolute form
 * (`http://host/path`), `*` and CONNECT's authority form unanswered, and
 * browsers send none of them to an origin server: they are refused.
 */
const TARGET = /^\/[^\x00-\x20\x7f]*$/
const EMPTY: readonly (string | undefined)[] = []

/**
 * Parses one request head (`head` ends with the blank line's CRLF CRLF).
 * Returns null when the head is malformed (the caller answers 400).
 */
export function parseRequestHead(head: string, spec: HeadSpec): RequestHead | null {
  // A bare CR or LF (checked line by line below), or another control byte in a value (checked below), is a request that
  // parsers could disagree on; a Live node (uWS) leaves one with a control byte in a value unanswered.
  const sp1 = tokenEnd(head, 0)
  if (sp1 === 0 || head.charCodeAt(sp1) !== 0x20) return null
  const sp2 = head.indexOf(' ', sp1 + 1)
  // The target's characters are checked below: no CR or LF before sp2.
  const firstEnd = sp2 < 0 ? -1 : lineEnd(head, sp2)
  if (firstEnd < 0 || firstEnd - sp2 !== 9) return null
  const method = head.slice(0, sp1)
  const target = head.slice(sp1 + 1, sp2)
  if (!TARGET.test(target)) return null
  if (!head.startsWith('HTTP/1.', sp2 + 1)) return null
  const minor = head.charCodeAt(firstEnd - 1)
  if (minor !== 0x31 && minor !== 0x30) return null
  const http10 = minor === 0x30

  let host: string | undefined
  let cookie: string | undefined
  let contentLength = -1
  let transferEncoding: string | undefined
  let connection: string | undefined
  let upgradeValue: string | undefined
  let xffStart = -1
  let xffEnd = -1
  let xff: string | undefined
  let hasProto = false
  let wsVersion: string | undefined
  let headerCount = 0
  let extra: (string | undefined)[] | undefined
  const { lengths, extraNames } = spec

  let pos = firstEnd + 2
  const end = head.length - 2
  while (pos < end) {
    // A name is a token right before the colon: this also refuses obsolete line folding and whitespace before the colon (RFC 9112 §5.1, §5.2).
    const colon = tokenEnd(head, pos)
    if (colon === pos || head.charCodeAt(colon) !== 0x3a) return null
    const eol = lineEnd(head, colon)
    if (eol < 0) return null
    // Control bytes other than HTAB in a value (CR and LF were checked by lineEnd): refused.
    for (let i = colon + 1; i < eol; i++) {
      const c = head.charCodeAt(i)
      if (c < 0x20 && c !== 0x09) return null
    }
    headerCount++
    const n = colon - pos
    const name = builtIn(head, pos, n)
    if (name !== Name.Other) {
      const value = head.slice(colon + 1, eol).trim()
      switch (name) {
        case Name.Host:
          if (host !== undefined) return null
          host = value
          break
        case Name.Cookie:
          cookie = cookie === undefined ? value : `${cookie}; ${value}`
          break
        case Name.ContentLength:
          // A second Content-Length, even an equal one, is refused: parsers behind us disagree on it.
          if (contentLength !== -1 || !/^\d{1,15}$/.test(value)) return null
          contentLength = Number(value)
          break
        case Name.TransferEncoding:
          transferEncoding = transferEncoding === undefined ? value : `${transferEncoding}, ${value}`
          break
        case Name.Connection:
          connection = connection === undefined ? value : `${connection}, ${value}`
          break
        case Name.Upgrade:
          upgradeValue = value
          break
        case Name.XForwardedFor:
          if (xff !== undefined) return null
          xff = value
          xffStart = pos
          xffEnd = eol + 2
          break
        case Name.XForwardedProto:
          hasProto = true
          break
        case Name.SecWebSocketVersion:
          wsVersion = value
          break
      }
    }
    if (lengths[n] === 1) {
      const slot = extraNames.indexOf(head.slice(pos, colon).toLowerCase())
      if (slot >= 0) (extra ??= new Array(extraNames.length).fill(undefined))[slot] ??= head.slice(colon + 1, eol).trim()
    }
    pos = eol + 2
  }

  let chunked = false
  if (transferEncoding !== undefined) {
    // Both framings at once is how requests get smuggled: refuse. Only chunked as the final coding frames a request.
    if (contentLength !== -1 || http10) return null
    const codings = transferEncoding.toLowerCase().split(',')
    if (codings[codings.length - 1]!.trim() !== 'chunked') return null
    chunked = true
  }
  if (!http10 && (host === undefined || host.length === 0)) return null
  const upgrade = upgradeValue !== undefined && connection !== undefined && hasToken(connection, 'upgrade')
  const close = connection !== undefined ? hasToken(connection, 'close') || (http10 && !hasToken(connection, 'keep-alive')) : http10
  return {
    method, target, http10, host, cookie, contentLength, chunked, upgrade,
    websocket: upgrade && upgradeValue!.toLowerCase() === 'websocket',
    close, xffStart, xffEnd, xff, hasProto, headerCount, wsVersion, extra: extra ?? EMPTY,
  }
}

/**
 * The methods a Live node (uWS) answers. It closes the connection without a
 * word on any other (`PROPFIND`, `FOO`, a lower-case `get`); TRACE and CONNECT
 * it would answer, but they are hop-level methods no Live route serves. The
 * proxy answers the rest 501 itself.
 */
export function methodServed(method: string): boolean {
  switch (method) {
    case 'GET':
    case 'POST':
    case 'HEAD':
    case 'OPTIONS':
    case 'PUT':
    case 'DELETE':
    case 'PATCH':
      return true
    default:
      return false
  }
}

/**
 * Most header lines a Live node (uWS, built with 50 header slots: the request
 * line, 48 headers, the end) reads; it leaves a request with more unanswered.
 * The X-Forwarded-* lines the proxy adds count.
 */
export const LIVE_MAX_HEADERS = 48

/** The header lines `head` will have when forwarded: its own and the X-Forwarded-* lines the proxy adds. */
export function forwardedHeaderCount(head: RequestHead): number {
  return head.headerCount + (head.xffStart < 0 ? 1 : 0) + (head.hasProto ? 0 : 1)
}

/** The value of cookie `name` in a Cookie header, or undefined. */
export function cookieValue(header: string | undefined, name: string): string | undefined {
  if (header === undefined) return undefined
  let at = 0
  for (;;) {
    const i = header.indexOf(name, at)
    if (i < 0) return undefined
    const before = i === 0 ? 0x3b : header.charCodeAt(i - 1)
    const after = header.charCodeAt(i + name.length)
    if ((before === 0x3b || before === 0x20) && after === 0x3d) {
      const start = i + name.length + 1
      const stop = header.indexOf(';', start)
      const value = (stop < 0 ? header.slice(start) : header.slice(start, stop)).trim()
      return value.length > 0 ? value : undefined
    }
    at = i + name.length
  }
}

/**
 * The first value of header `name` (lower case) in a whole request head, or
 * undefined. A scan of the text: for the rare answers that need a header the
 * parser does not read (the maintenance page's Accept), never the hot path.
 */
export function headerValue(head: string, name: string): string | undefined {
  const lower = head.toLowerCase()
  const at = lower.indexOf(`\r\n${name}:`)
  if (at < 0) return undefined
  const from = at + name.length + 3
  return head.slice(from, head.indexOf('\r\n', from)).trim()
}
