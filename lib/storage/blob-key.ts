/**
 * Checks shared by every blob-store backend, done once at the interface edge:
 * keys, prefixes, put options and byte ranges. A key valid here is safe as an
 * S3 key and as a relative path under the local backend's root.
 */
import { createError, EspraError } from '../core/errors.js'

/** Longest key in bytes (S3's own limit). */
export const MAX_KEY_BYTES = 1024
/** Longest `/`-separated segment: keeps every local path component under the 255-byte file-name limit. */
export const MAX_SEGMENT_BYTES = 200
/** Total size of user metadata (keys plus values), as S3 allows. */
export const MAX_METADATA_BYTES = 2048

/*
 * S3's "safe characters" (letters, digits, `!-_.*'()`) plus `/ = + , @ ~`.
 * No `%` (so `%2e%2e` cannot decode to `..` anywhere down the line), no
 * spaces, backslashes, colons, `#` (the local backend's own marker) or
 * control characters such as NUL.
 */
const KEY_CHARS = /^[A-Za-z0-9!_.*'()=+,@~/-]+$/
const META_KEY = /^[a-z0-9][a-z0-9-]{0,63}$/
const META_VALUE = /^[\x20-\x7e]{0,1024}$/
const CONTENT_TYPE = /^[\x21-\x7e][\x20-\x7e]{0,254}$/
const CONTENT_ENCODING = /^[A-Za-z0-9-]{1,32}$/

function badKey(key: unknown, reason: string): EspraError {
  const shown = typeof key === 'string' ? JSON.stringify(key.length > 80 ? `${key.slice(0, 80)}…` : key) : typeof key
  return createError('ESPRA_ERR_STORAGE_KEY', { key: shown, reason })
}

/**
 * Throws `ESPRA_ERR_STORAGE_KEY` unless `key` is 1–1024 bytes of safe
 * characters, relative (no leading `/`), without empty, `.` or `..` segments.
 */
export function checkKey(key: unknown): string {
  if (typeof key !== 'string' || key.length === 0) throw badKey(key, 'must be a non-empty string')
  if (Buffer.byteLength(key) > MAX_KEY_BYTES) throw badKey(key, `must be at most ${MAX_KEY_BYTES} bytes`)
  if (!KEY_CHARS.test(key)) throw badKey(key, "may only hold letters, digits and ! _ . * ' ( ) = + , @ ~ / -")
  if (key.startsWith('/')) throw badKey(key, 'must be relative (no leading /)')
  for (const segment of key.split('/')) {
    if (segment === '' || segment === '.' || segment === '..') throw badKey(key, 'must not have empty, "." or ".." segments')
    if (segment.length > MAX_SEGMENT_BYTES) throw badKey(key, `segments must be at most ${MAX_SEGMENT_BYTES} bytes`)
  }
  return key
}

/**
 * A list prefix: empty (everything), or the start of a valid key; it may end
 * in `/` or in the middle of a segment.
 */
export function checkPrefix(prefix: unknown): string {
  if (prefix === undefined || prefix === '') return ''
  if (typeof prefix !== 'string') throw badKey(prefix, 'a prefix must be a string')
  checkKey(prefix.endsWith('/') ? prefix.slice(0, -1) : prefix)
  return prefix
}

export interface PutOptions {
  /** Defaults to `application/octet-stream`. */
  readonly contentType?: string
  /** For example `gzip` or `br` when the body is stored compressed. */
  readonly contentEncoding?: string
  /** Lower-case keys (letters, digits, `-`), printable ASCII values, at most 2 KB in all. */
  readonly metadata?: Readonly<Record<string, string>>
}

const badOption = (field: string, allowed: string) =>
  createError('ESPRA_ERR_STORAGE_INVALID', { field, reason: `must be ${allowed}` })

/** Checks put options once; returns them with defaults filled in. */
export function checkPutOptions(opts: PutOptions = {}): { contentType: string; contentEncoding: string | null; metadata: Record<string, string> } {
  const contentType = opts.contentType ?? 'application/octet-stream'
  if (!CONTENT_TYPE.test(contentType)) throw badOption('contentType', 'printable ASCII, at most 255 characters')
  const contentEncoding = opts.contentEncoding ?? null
  if (contentEncoding !== null && !CONTENT_ENCODING.test(contentEncoding)) throw badOption('contentEncoding', 'a token such as gzip or br')
  const metadata: Record<string, string> = {}
  let bytes = 0
  for (const [k, v] of Object.entries(opts.metadata ?? {})) {
    if (!META_KEY.test(k)) throw badOption(`metadata.${k}`, 'a lower-case key of letters, digits and -')
    if (typeof v !== 'string' || !META_VALUE.test(v)) throw badOption(`metadata.${k}`, 'printable ASCII text')
    bytes += k.length + v.length
    metadata[k] = v
  }
  if (bytes > MAX_METADATA_BYTES) throw badOption('metadata', `at most ${MAX_METADATA_BYTES} bytes in all`)
  return { contentType, contentEncoding, metadata }
}

/** Bytes `start` to `end` inclusive (`end` defaults to the last byte), or the last `suffix` bytes. */
export type ByteRange = { readonly start: number; readonly end?: number } | { readonly suffix: number }

const isOffset = (n: unknown): n is number => typeof n === 'number' && Number.isSafeInteger(n) && n >= 0

/** Checks a range's shape before any I/O. */
export function checkRange(range: unknown): ByteRange {
  const r = (range ?? {}) as Record<string, unknown>
  if ('suffix' in r) {
    if (!isOffset(r['suffix']) || r['suffix'] === 0) throw badOption('range.suffix', 'a positive integer')
    return { suffix: r['suffix'] }
  }
  if (!isOffset(r['start'])) throw badOption('range.start', 'a non-negative integer')
  if (r['end'] !== undefined && (!isOffset(r['end']) || r['end'] < r['start'])) throw badOption('range.end', 'an integer ≥ start')
  return r['end'] === undefined ? { start: r['start'] } : { start: r['start'], end: r['end'] }
}

/**
 * Resolves a range against an object's size to inclusive offsets, as HTTP
 * does: an end past the last byte is clipped; a start at or past the size is
 * `ESPRA_ERR_STORAGE_RANGE` (416) with the size in the details.
 */
export function resolveRange(range: ByteRange, size: number): { start: number; end: number } {
  if ('suffix' in range) {
    if (size === 0) throw unsatisfiable('the object', size)
    return { start: Math.max(0, size - range.suffix), end: size - 1 }
  }
  if (range.start >= size) throw unsatisfiable('the object', size)
  return { start: range.start, end: Math.min(range.end ?? size - 1, size - 1) }
}

/** `ESPRA_ERR_STORAGE_RANGE` (416) naming what was asked for (`object`: 'the object', a key or a path) and its size. */
export function unsatisfiable(object: string, size: number): EspraError {
  return createError('ESPRA_ERR_STORAGE_RANGE', { object, size })
}
