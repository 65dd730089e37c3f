/**
 * What the proxy says itself: quick answers (built once, at start-up, as
 * whole response buffers) and the few facts it reads from a Live node's
 * response head to frame it.
 */
import { STATUS_CODES } from 'node:http'
import { ERRORS, type ErrorCode } from '../../lib/core/errors.js'
import { hasToken, nameIs } from './head-scan.js'

/** A whole JSON response, ready to write. */
export function jsonResponse(status: number, body: unknown, opts: { close?: boolean; headers?: Record<string, string> } = {}): Buffer {
  const text = JSON.stringify(body)
  let head = `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Unknown'}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(text)}\r\nCache-Control: no-store\r\n`
  for (const [name, value] of Object.entries(opts.headers ?? {})) head += `${name}: ${value}\r\n`
  if (opts.close) head += 'Connection: close\r\n'
  return Buffer.from(`${head}\r\n${text}`, 'utf8')
}

/** A coded error answer: `{code, message}` with the status from the error table. */
export function errorResponse(code: ErrorCode, message: string = ERRORS[code].message, opts: { close?: boolean; headers?: Record<string, string> } = {}): Buffer {
  return jsonResponse(ERRORS[code].status, { code, message }, opts)
}

export interface ResponseHead {
  readonly status: number
  /** -1 when absent. */
  readonly contentLength: number
  readonly chunked: boolean
  /** The Live node will close after this response. */
  readonly close: boolean
}

const isDigit = (c: number): boolean => c >= 0x30 && c <= 0x39
const isBlank = (c: number): boolean => c === 0x20 || c === 0x09

/** A Content-Length value head[from, to): 1 to 15 digits, blanks around; -1 when it is anything else. */
function contentLengthValue(head: string, from: number, to: number): number {
  while (from < to && isBlank(head.charCodeAt(from))) from++
  while (to > from && isBlank(head.charCodeAt(to - 1))) to--
  if (to === from || to - from > 15) return -1
  let n = 0
  for (let i = from; i < to; i++) {
    const c = head.charCodeAt(i)
    if (!isDigit(c)) return -1
    n = n * 10 + (c - 48)
  }
  return n
}

/**
 * Parses the response head head[0, headEnd), which ends with CRLF CRLF (the
 * string may go on with the body: that costs less than parsing a slice). Null
 * when it is not HTTP/1.x or its framing is ambiguous (a bad or a second
 * Content-Length): the caller answers 502 rather than guess where the body ends.
 */
export function parseResponseHead(head: string, headEnd = head.length): ResponseHead | null {
  if (!head.startsWith('HTTP/1.') || !isDigit(head.charCodeAt(7)) || head.charCodeAt(8) !== 0x20) return null
  const d0 = head.charCodeAt(9)
  const d1 = head.charCodeAt(10)
  const d2 = head.charCodeAt(11)
  const after = head.charCodeAt(12)
  if (!isDigit(d0) || !isDigit(d1) || !isDigit(d2) || (after !== 0x20 && after !== 0x0d)) return null
  const status = (d0 - 48) * 100 + (d1 - 48) * 10 + (d2 - 48)
  if (status < 100) return null
  let contentLength = -1
  let transferEncoding: string | undefined
  let close = head.charCodeAt(7) === 0x30 // HTTP/1.0: close unless it says keep-alive
  let pos = head.indexOf('\r\n') + 2
  const end = headEnd - 2
  while (pos < end) {
    const eol = head.indexOf('\r\n', pos)
    const colon = head.indexOf(':', pos)
    if (colon <= pos || colon > eol) return null
    const n = colon - pos
    if (n === 14 && nameIs(head, pos, 'content-length')) {
      if (contentLength !== -1) return null
      contentLength = contentLengthValue(head, colon + 1, eol)
      if (contentLength === -1) return null
    } else if (n === 17 && nameIs(head, pos, 'transfer-encoding')) {
      const value = head.slice(colon + 1, eol)
      transferEncoding = transferEncoding === undefined ? value : `${transferEncoding},${value}`
    } else if (n === 10 && nameIs(head, pos, 'connection')) {
      const value = head.slice(colon + 1, eol)
      if (hasToken(value, 'close')) close = true
      else if (hasToken(value, 'keep-alive')) close = false
    }
    pos = eol + 2
  }
  // Transfer-Encoding wins over Content-Length (RFC 9112 §6.3): chunked last frames the body, any other coding runs to the close.
  const chunked = transferEncoding !== undefined && /(^|,)\s*chunked\s*$/i.test(transferEncoding)
  if (transferEncoding !== undefined) contentLength = -1
  return { status, contentLength, chunked, close }
}

/** The same head saying `Connection: close` (any Connection header replaced). Rare path: strings are fine. */
export function withConnectionClose(head: string): Buffer {
  const stripped = head.slice(0, -2).replace(/^connection:[^\r]*\r\n/gim, '')
  return Buffer.from(`${stripped}Connection: close\r\n\r\n`, 'latin1')
}
