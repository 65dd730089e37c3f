/**
 * Checks for the admin API's inputs: JSON body fields, query parameters and
 * path parameters. Every refusal is `ESPRA_ERR_ADMIN_BAD_REQUEST` whose
 * message and `details.field` name the field and say what is allowed, and
 * it is thrown before anything is asked of the seed.
 */
import { createError, EspraError } from '../../lib/core/errors.js'

export const badField = (field: string, allowed: string, details: Record<string, unknown> = {}): EspraError =>
  createError('ESPRA_ERR_ADMIN_BAD_REQUEST', { field, reason: allowed, ...details })

/** A JSON body that must be an object; `{}` when there was no body. */
export type Body = Record<string, unknown>

export function asObject(body: unknown): Body {
  if (body === undefined) return {}
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw badField('body', 'must be a JSON object')
  return body as Body
}

/** Refuses fields the route does not know: a typo must not be silently ignored. */
export function onlyFields(body: Body, known: readonly string[]): void {
  for (const key of Object.keys(body)) if (!known.includes(key)) throw badField(key, `unknown field (known: ${known.join(', ') || 'none'})`)
}

export function optString(body: Body, field: string, max = 1000): string | undefined {
  const v = body[field]
  if (v === undefined) return undefined
  if (typeof v !== 'string' || v.length > max) throw badField(field, `must be a string of at most ${max} characters`)
  return v
}

export function reqString(body: Body, field: string, max = 1000): string {
  const v = optString(body, field, max)
  if (v === undefined) throw badField(field, 'is required')
  return v
}

export function optBoolean(body: Body, field: string): boolean | undefined {
  const v = body[field]
  if (v === undefined) return undefined
  if (typeof v !== 'boolean') throw badField(field, 'must be true or false')
  return v
}

export function optStringList(body: Body, field: string, maxItems = 100, maxLength = 256): string[] | undefined {
  const v = body[field]
  if (v === undefined) return undefined
  if (!Array.isArray(v) || v.length > maxItems || v.some((x) => typeof x !== 'string' || x.length === 0 || x.length > maxLength)) {
    throw badField(field, `must be a list of at most ${maxItems} non-empty strings of at most ${maxLength} characters`)
  }
  return v as string[]
}

/** A duration as the CLI takes it (`90s`, `15m`, `1h`) or a number of milliseconds. */
export function optDurationText(body: Body, field: string): string | undefined {
  const v = body[field]
  if (v === undefined) return undefined
  if (typeof v === 'number' && Number.isInteger(v) && v >= 0) return `${v}ms`
  if (typeof v === 'string' && /^\d{1,10}(\.\d{1,3})?(ms|s|m|h)?$/.test(v)) return v
  throw badField(field, 'must be a duration such as 500ms, 30s, 15m or 1h, or a number of milliseconds')
}

/** A whole number as text (for the CLI's own parsers), from a JSON number or a string of digits. */
export function optIntegerText(body: Body, field: string): string | undefined {
  const v = body[field]
  if (v === undefined) return undefined
  if (typeof v === 'number' && Number.isSafeInteger(v)) return String(v)
  if (typeof v === 'string' && /^-?\d{1,15}$/.test(v)) return v
  throw badField(field, 'must be a whole number')
}

/** `?limit=`: from 1 to `max`, else `fallback`. */
export function queryLimit(query: URLSearchParams, max: number, fallback: number): number {
  const raw = query.get('limit')
  if (raw === null) return fallback
  if (!/^\d{1,7}$/.test(raw) || Number(raw) < 1 || Number(raw) > max) throw badField('limit', `must be an integer from 1 to ${max}`)
  return Number(raw)
}

/** `?flag=1` / `true`, `0` / `false`, or absent (false). */
export function queryFlag(query: URLSearchParams, name: string): boolean {
  const raw = query.get(name)
  if (raw === null) return false
  if (raw === '1' || raw === 'true') return true
  if (raw === '0' || raw === 'false') return false
  throw badField(name, 'must be 1, true, 0 or false')
}

/** Refuses query parameters the route does not read. */
export function onlyQuery(query: URLSearchParams, known: readonly string[]): void {
  for (const key of query.keys()) if (!known.includes(key)) throw badField(key, `unknown query parameter (known: ${known.join(', ') || 'none'})`)
}

/** A path parameter against its format (no traversal, no encoded slashes: the format allows neither). */
export function pathParam(value: string, field: string, format: RegExp, what: string): string {
  if (!format.test(value)) throw badField(field, `must be ${what} (got ${JSON.stringify(value.slice(0, 80))})`)
  return value
}

/**
 * Turns the CLI parsers' usage errors (`ESPRA_ERR_CONFIG_INVALID` naming an
 * option such as `--min-healthy`) into a bad request naming the body field
 * (`minHealthy`), so the API and the CLI share one set of rules.
 */
export function asBadRequest<T>(run: () => T): T {
  try {
    return run()
  } catch (err) {
    const e = err as EspraError
    if (e.code !== 'ESPRA_ERR_CONFIG_INVALID') throw err
    const option = String((e.details as { option?: unknown } | undefined)?.option ?? /^(--[a-z-]+):/.exec(e.message)?.[1] ?? '')
    const field = option.replace(/^--/, '').replace(/^<|>$/g, '').replace(/-([a-z])/g, (_, c: string) => c.toUpperCase()) || 'body'
    const why = e.message.startsWith(`${option}: `) ? e.message.slice(option.length + 2) : e.message
    throw badField(field, why)
  }
}
