/**
 * The tus 1.0.0 protocol's vocabulary for the fileserver (tus.ts serves it):
 * header parsing with precise errors, upload ids, the upload-state record
 * kept in the datastore (`tusUploads` kind) and where its parts live in the
 * blob store. No I/O here.
 *
 * State is shared by every fileserver: the record holds the offset, the
 * length, the accepted parts and what the token allowed; each accepted PATCH
 * body is one blob-store object `tus/<id>/<index>-<nonce>`. A PATCH advances
 * the offset with the datastore's compare-and-set (`putIf` matching the
 * offset it started from), so of two PATCHes racing for one offset exactly
 * one is recorded; the other gets 409 and its part is deleted.
 */
import { createHash, randomBytes, type Hash } from 'node:crypto'
import { createError } from '../../lib/core/errors.js'
import type { DatastoreValue } from '../../lib/storage/datastore.js'

export const TUS_VERSION = '1.0.0'
export const TUS_EXTENSIONS = 'creation,termination,checksum,expiration'
/** `Upload-Checksum` algorithms, as named in `Tus-Checksum-Algorithm`. */
export const CHECKSUM_ALGORITHMS = ['sha1', 'sha256', 'sha512', 'md5'] as const
export type ChecksumAlgorithm = (typeof CHECKSUM_ALGORITHMS)[number]
const DIGEST_BYTES: Record<ChecksumAlgorithm, number> = { sha1: 20, sha256: 32, sha512: 64, md5: 16 }
export const PATCH_CONTENT_TYPE = 'application/offset+octet-stream'
/** The creation URL; an upload is `/uploads/<id>`. */
export const TUS_PATH = '/uploads'
/** Accepted PATCH bodies per upload: keeps the state record far under the datastore's 64 KB. */
export const MAX_PARTS = 2000
/** Largest `Upload-Metadata` header accepted. */
export const MAX_METADATA_BYTES = 4096

const bad = (reason: string, header: string) => createError('ESPRA_ERR_TUS_BAD_REQUEST', { reason, header })

/** A fresh upload id: 128 random bits, hex. */
export const newUploadId = (): string => randomBytes(16).toString('hex')
/** Whether `id` is the shape {@link newUploadId} makes (anything else, traversal included, is a 400). */
export const isUploadId = (id: string): boolean => /^[0-9a-f]{32}$/.test(id)

/** `Tus-Resumable` of a request: 412 unless it is exactly 1.0.0. */
export function checkVersion(header: string): void {
  if (header !== TUS_VERSION) {
    throw createError('ESPRA_ERR_TUS_VERSION', { got: header === '' ? '(missing)' : header.slice(0, 40) })
  }
}

/** A non-negative integer header (`Upload-Length`, `Upload-Offset`, `Content-Length`): digits only, at most 2^53 - 1. */
export function parseCount(header: string, name: string): number {
  if (!/^\d{1,16}$/.test(header) || !Number.isSafeInteger(Number(header))) throw bad(`${name} must be a non-negative integer (got ${JSON.stringify(header.slice(0, 40))})`, name)
  return Number(header)
}

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/

/**
 * `Upload-Metadata`: comma-separated `key base64value` pairs (the value and
 * its space may be left out); keys unique, without spaces or commas. Values
 * are decoded as UTF-8.
 */
export function parseMetadata(header: string): Record<string, string> {
  const out: Record<string, string> = {}
  if (header === '') return out
  if (Buffer.byteLength(header) > MAX_METADATA_BYTES) throw bad(`Upload-Metadata must be at most ${MAX_METADATA_BYTES} bytes`, 'Upload-Metadata')
  for (const raw of header.split(',')) {
    const pair = raw.trim()
    const parts = pair.split(' ')
    const [key, value = ''] = parts
    if (pair === '' || parts.length > 2 || !/^[\x21-\x2b\x2d-\x7e]+$/.test(key!)) {
      throw bad(`Upload-Metadata: ${JSON.stringify(pair.slice(0, 40))} is not "key base64value" (keys: printable ASCII without spaces or commas)`, 'Upload-Metadata')
    }
    if (Object.hasOwn(out, key!)) throw bad(`Upload-Metadata: key ${key} appears twice`, 'Upload-Metadata')
    if (!BASE64.test(value)) throw bad(`Upload-Metadata: the value of ${key} is not base64`, 'Upload-Metadata')
    out[key!] = Buffer.from(value, 'base64').toString('utf8')
  }
  return out
}

export interface Checksum {
  readonly algorithm: ChecksumAlgorithm
  readonly digest: Buffer
}

/** `Upload-Checksum: <algorithm> <base64 digest>` (null when absent); an unsupported algorithm is a 400, as tus says. */
export function parseChecksum(header: string): Checksum | null {
  if (header === '') return null
  const m = /^(\S+) (\S+)$/.exec(header.trim())
  if (m === null) throw bad('Upload-Checksum must be "<algorithm> <base64 digest>"', 'Upload-Checksum')
  const algorithm = m[1]!.toLowerCase() as ChecksumAlgorithm
  if (!CHECKSUM_ALGORITHMS.includes(algorithm)) throw bad(`Upload-Checksum: algorithm ${m[1]!.slice(0, 20)} is not supported (${CHECKSUM_ALGORITHMS.join(', ')})`, 'Upload-Checksum')
  if (!BASE64.test(m[2]!)) throw bad('Upload-Checksum: the digest is not base64', 'Upload-Checksum')
  const digest = Buffer.from(m[2]!, 'base64')
  if (digest.length !== DIGEST_BYTES[algorithm]) throw bad(`Upload-Checksum: a ${algorithm} digest is ${DIGEST_BYTES[algorithm]} bytes, not ${digest.length}`, 'Upload-Checksum')
  return { algorithm, digest }
}

export const checksumHash = (c: Checksum): Hash => createHash(c.algorithm)

/** Blob-store prefix of an upload's parts. */
export const partsPrefix = (id: string): string => `tus/${id}/`
/** Blob-store key of part number `index` (0-based). */
export const partKey = (id: string, index: number, nonce: string): string => `${partsPrefix(id)}${String(index).padStart(5, '0')}-${nonce}`
export const newNonce = (): string => randomBytes(6).toString('hex')

/** What a finished upload answered, kept in its state until it expires (so a HEAD after a lost answer still learns it). */
export interface TusDone {
  readonly key: string
  readonly url: string
  readonly sha256: string
  readonly whirlpool: string
  readonly size: number
  readonly type: string
  readonly pending: boolean
}

/** The `tusUploads` record of one upload (key: its id). */
export interface TusState {
  readonly v: 1
  readonly offset: number
  readonly length: number
  /** Accepted parts in order: [nonce, size]; their sizes add up to `offset`. Emptied once done. */
  readonly parts: readonly (readonly [string, number])[]
  /** `Upload-Metadata` as the client sent it (echoed by HEAD), null when none. */
  readonly metadata: string | null
  /** From metadata `filetype` (else application/octet-stream) and `filename`. */
  readonly type: string
  readonly filename: string | null
  /** From the token: owner, Live channel, size limit. */
  readonly owner: string | null
  readonly channel: string | null
  /** The token allowed inline display of an active type (absent in earlier records: false). */
  readonly inline?: boolean
  readonly maxSize: number
  readonly createdAt: number
  /** Epoch ms after which the upload is gone (410, then swept). */
  readonly expires: number
  readonly done: TusDone | null
}

/** A stored record as state, or null when it is not one (a record from a newer version, damage). */
export function asTusState(value: DatastoreValue | null): TusState | null {
  if (value === null) return null
  const s = value as Partial<TusState>
  const ok = s.v === 1 && typeof s.offset === 'number' && typeof s.length === 'number' && Array.isArray(s.parts) &&
    typeof s.expires === 'number' && typeof s.type === 'string'
  return ok ? (value as unknown as TusState) : null
}

/** `Upload-Expires`: an RFC 7231 date. */
export const httpDate = (ms: number): string => new Date(ms).toUTCString()
