/**
 * The proxy's request-head parser: just enough of HTTP/1.1 to route and to
 * frame a request (request line, Host, Cookie, the configured routing
 * headers, Content-Length / Transfer-Encoding, Connection / Upgrade, the
 * X-Forwarded-* lines). Everything else is forwarded as received. Strict
 * where framing is at stake (RFC 9112): a request that could be read two
 * ways is refused, never guessed.
 */

export interface RequestHead {
  readonly method: string
  /** The request target as sent (origin form: path and query). */
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
  /** Values of the extra headers asked for, by their index in `extraNames`. */
  readonly extra: readonly (string | undefined)[]
}

/** Header names the parser must look at, lower case; compiled once. */
export interface HeadSpec {
  readonly extraNames: readonly string[]
  /** lengths[n] is 1 when some wanted name is n characters long: other names are skipped unread. */
  readonly lengths: Uint8Array
}

const BUILT_IN = ['host', 'cookie', 'content-length', 'transfer-encoding', 'connection', 'upgrade', 'x-forwarded-for', 'x-forwarded-proto']

export function createHeadSpec(extraNames: readonly string[]): HeadSpec {
  const names = extraNames.map((n) => n.toLowerCase())
  const lengths = new Uint8Array(256)
  for (const n of [...BUILT_IN, ...names]) lengths[n.length] = 1
  return { extraNames: names, lengths }
}

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/
/**
 * Origin form (`/path?query`), absolute form (`http://host/path`) or `*`:
 * visible characters only (bytes past 0x7f pass, as browsers send UTF-8).
 * CONNECT's authority form is not served.
 */
const TARGET = /^(\/|https?:\/\/)[^\x00-\x20\x7f]*$|^\*$/i
// A bare CR or LF, or NUL, anywhere in a head is a request that parsers could disagree on.
const BAD_BYTES = /\r(?!\n)|(?<!\r)\n|\0/
const EMPTY: readonly (string | undefined)[] = []

function hasToken(value: string, token: string): boolean {
  if (value.length === token.length) return value.toLowerCase() === token
  for (const part of value.split(',')) if (part.trim().toLowerCase() === token) return true
  return false
}

/**
 * Parses one request head (`head` ends with the blank line's CRLF CRLF).
 * Returns null when the head is malformed (the caller answers 400).
 */
export function parseRequestHead(head: string, spec: HeadSpec): RequestHead | null {
  if (BAD_BYTES.test(head)) return null
  const lineEnd = head.indexOf('\r\n')
  const sp1 = head.indexOf(' ')
  const sp2 = sp1 < 0 ? -1 : head.indexOf(' ', sp1 + 1)
  if (sp1 <= 0 || sp2 < 0 || sp2 > lineEnd || lineEnd - sp2 !== 9) return null
  const method = head.slice(0, sp1)
  const target = head.slice(sp1 + 1, sp2)
  if (!TOKEN.test(method) || !TARGET.test(target)) return null
  if (!head.startsWith('HTTP/1.', sp2 + 1)) return null
  const minor = head.charCodeAt(lineEnd - 1)
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
  let extra: (string | undefined)[] | undefined
  const { lengths, extraNames } = spec

  let pos = lineEnd + 2
  const end = head.length - 2
  while (pos < end) {
    const eol = head.indexOf('\r\n', pos)
    const colon = head.indexOf(':', pos)
    if (colon <= pos || colon > eol) return null
    const first = head.charCodeAt(pos)
    const last = head.charCodeAt(colon - 1)
    // Obsolete line folding and whitespace before the colon are refused (RFC 9112 §5.1, §5.2).
    if (first === 0x20 || first === 0x09 || last === 0x20 || last === 0x09) return null
    const n = colon - pos
    if (lengths[n] === 1) {
      const name = head.slice(pos, colon).toLowerCase()
      const value = head.slice(colon + 1, eol).trim()
      switch (name) {
        case 'host':
          if (host !== undefined) return null
          host = value
          break
        case 'cookie':
          cookie = cookie === undefined ? value : `${cookie}; ${value}`
          break
        case 'content-length': {
          // A second Content-Length, even an equal one, is refused: parsers behind us disagree on it.
          if (contentLength !== -1 || !/^\d{1,15}$/.test(value)) return null
          contentLength = Number(value)
          break
        }
        case 'transfer-encoding':
          transferEncoding = transferEncoding === undefined ? value : `${transferEncoding}, ${value}`
          break
        case 'connection':
          connection = connection === undefined ? value : `${connection}, ${value}`
          break
        case 'upgrade':
          upgradeValue = value
          break
        case 'x-forwarded-for':
          if (xff !== undefined) return null
          xff = value
          xffStart = pos
          xffEnd = eol + 2
          break
        case 'x-forwarded-proto':
          hasProto = true
          break
        default:
          // Same length as a wanted name but not one: still checked like any other name.
          if (!TOKEN.test(name)) return null
          break
      }
      if (extraNames.length > 0) {
        const slot = extraNames.indexOf(name)
        if (slot >= 0) (extra ??= new Array(extraNames.length).fill(undefined))[slot] ??= value
      }
    } else if (!TOKEN.test(head.slice(pos, colon))) {
      return null
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
    close, xffStart, xffEnd, xff, hasProto, extra: extra ?? EMPTY,
  }
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
