/**
 * Reading an admin API request: everything uWS lets us read only inside the
 * handler's own call (method, path, query, headers, peer address) is copied
 * out at once, and the body, when the method may carry one, is collected
 * from then on. Bodies are JSON only (415 otherwise) and capped at
 * `--admin-max-body` (413, refused from Content-Length before a byte is
 * read when it says so).
 */
import { createError } from '../../lib/core/errors.js'
import { forwardedClient, plainAddress, type TrustedProxies } from '../../lib/core/client-address.js'
import type { HttpRequest, HttpResponse } from '../../lib/http/uws.js'
import { badField } from './api-fields.js'

const decoder = new TextDecoder()

export interface ApiRequest {
  readonly method: string
  readonly path: string
  readonly query: URLSearchParams
  readonly authorization: string
  readonly idempotencyKey: string | null
  readonly address: string
  readonly contentType: string
  readonly contentLength: number | null
}

export function readRequest(res: HttpResponse, req: HttpRequest, trusted: TrustedProxies): ApiRequest {
  const length = req.getHeader('content-length')
  const key = req.getHeader('idempotency-key')
  return {
    method: req.getMethod().toUpperCase(),
    path: req.getUrl(),
    query: new URLSearchParams(req.getQuery() ?? ''),
    authorization: req.getHeader('authorization'),
    idempotencyKey: key === '' ? null : key,
    address: forwardedClient(plainAddress(decoder.decode(res.getRemoteAddressAsText())), req.getHeader('x-forwarded-for') || undefined, trusted),
    contentType: req.getHeader('content-type'),
    contentLength: /^\d{1,15}$/.test(length) ? Number(length) : null,
  }
}

/** Methods whose requests may carry a body here. */
export const BODY_METHODS = new Set(['POST', 'PUT', 'DELETE'])

/**
 * Collects the body (call it inside the handler's own call). Resolves the
 * raw text ('' when none) or rejects with 413 / 415; the caller parses.
 */
export function collectBody(res: HttpResponse, request: ApiRequest, maxBytes: number): Promise<string> {
  const isJson = /^application\/(?:[a-z0-9.+-]*\+)?json\s*(?:;.*)?$/i.test(request.contentType)
  if (request.contentLength !== null && request.contentLength > maxBytes) {
    return Promise.reject(createError('ESPRA_ERR_ADMIN_BODY_TOO_LARGE', { size: request.contentLength, limit: maxBytes }))
  }
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    let size = 0
    let done = false
    res.onData((chunk, last) => {
      if (done) return
      size += chunk.byteLength
      if (size > maxBytes) {
        done = true
        return reject(createError('ESPRA_ERR_ADMIN_BODY_TOO_LARGE', { size: `over ${maxBytes}`, limit: maxBytes }))
      }
      if (chunk.byteLength > 0) chunks.push(Buffer.from(chunk.slice(0)))
      if (!last) return
      done = true
      if (size > 0 && !isJson) return reject(createError('ESPRA_ERR_ADMIN_MEDIA_TYPE', { got: JSON.stringify(request.contentType.slice(0, 100) || 'none') }))
      resolve(Buffer.concat(chunks).toString('utf8'))
    })
  })
}

/** The body as a JSON value (undefined when empty); a malformed one is a bad request naming `body`. */
export function parseBody(text: string): unknown {
  if (text.trim() === '') return undefined
  try {
    return JSON.parse(text) as unknown
  } catch (err) {
    throw badField('body', `is not valid JSON (${(err as Error).message})`)
  }
}
