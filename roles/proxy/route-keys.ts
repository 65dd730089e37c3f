/**
 * The table of routing-key handlers: each request's routing key is the first
 * non-empty value the handlers yield, in order. The key picks the Live node by
 * rendezvous hashing, so the same key always lands on the same node.
 *
 * Handlers (the `--route-keys` list):
 * - `path:/prefix/` the path segment right after `/prefix/` (e.g. a channel)
 * - `query:<name>`  a query parameter
 * - `cookie:<name>` a cookie (the default: the session cookie)
 * - `header:<name>` a request header
 * - `ip`            the client address (the default fallback)
 */
import { checkRouteKey } from '../../lib/core/options-proxy.js'
import { cookieValue, type RequestHead } from './request-head.js'

export type KeyHandler = (head: RequestHead, address: string) => string | undefined

export interface RouteKeys {
  /** The routing key of a request. */
  key(head: RequestHead, address: string): string
  /** Header names the request parser must capture for `header:` handlers. */
  readonly headerNames: readonly string[]
}

function decode(value: string): string {
  if (!value.includes('%')) return value
  try {
    return decodeURIComponent(value)
  } catch {
    return value
  }
}

function queryValue(target: string, name: string): string | undefined {
  const q = target.indexOf('?')
  if (q < 0) return undefined
  let at = q + 1
  while (at < target.length) {
    let amp = target.indexOf('&', at)
    if (amp < 0) amp = target.length
    if (target.startsWith(name, at) && target.charCodeAt(at + name.length) === 0x3d) {
      const value = target.slice(at + name.length + 1, amp)
      return value.length > 0 ? decode(value) : undefined
    }
    at = amp + 1
  }
  return undefined
}

function pathSegment(target: string, prefix: string): string | undefined {
  if (!target.startsWith(prefix)) return undefined
  let end = prefix.length
  while (end < target.length) {
    const c = target.charCodeAt(end)
    if (c === 0x2f || c === 0x3f || c === 0x23) break
    end++
  }
  return end > prefix.length ? decode(target.slice(prefix.length, end)) : undefined
}

/** Compiles the handler list once; the result runs per request without parsing the list again. */
export function compileRouteKeys(items: readonly string[]): RouteKeys {
  const headerNames: string[] = []
  const handlers: KeyHandler[] = items.map((raw) => {
    const item = checkRouteKey(raw)
    if (item === 'ip') return (_head, address) => address
    const colon = item.indexOf(':')
    const kind = item.slice(0, colon)
    const arg = item.slice(colon + 1)
    switch (kind) {
      case 'path':
        return (head) => pathSegment(head.target, arg)
      case 'query':
        return (head) => queryValue(head.target, arg)
      case 'cookie':
        return (head) => cookieValue(head.cookie, arg)
      default: {
        const slot = headerNames.push(arg.toLowerCase()) - 1
        return (head) => {
          const v = head.extra[slot]
          return v === undefined || v.length === 0 ? undefined : v
        }
      }
    }
  })
  return {
    headerNames,
    key(head, address) {
      for (let i = 0; i < handlers.length; i++) {
        const k = handlers[i]!(head, address)
        if (k !== undefined) return k
      }
      // No handler matched (no `ip` fallback configured): every such request shares one key.
      return ''
    },
  }
}
