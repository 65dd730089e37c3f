/**
 * Push-build uploads over HTTP (docs/admin-api.md, "Push a build"): what a
 * `POST /api/builds` planned, kept in the seed's datastore (kind
 * `adminJobs`, keys under `push/`) so that whichever admin child (or admin
 * node) takes the next call of the push finds it. The file bytes go where
 * the CLI's go: through the seed into the blob store, content-addressed.
 *
 * A datastore value holds at most 64 KB and a manifest may be larger, so a
 * push is several records, the header written last (an upload is complete
 * once its header exists):
 *
 * - `push/<id>/m/<nnnn>`: the manifest's files, in pages of about 40 KB;
 * - `push/<id>/n/<hh>`: the content hashes the blob store lacked when the
 *   push was planned (the ones it may upload), bucketed by their first two
 *   hex digits, each with its size: an upload reads one small record;
 * - `push/<id>`: `{id, operator, state, createdAt, expiresAt, message,
 *   canary, files, bytes, pages, missing, missingBytes, build}`.
 *
 * An upload lives {@link PUSH_TTL_MS}; the hourly sweep deletes what is past
 * that (and any part left by a child that died mid-way).
 */
import { randomBytes } from 'node:crypto'
import type { BuildFile, BuildManifest } from '../../lib/builds/manifest.js'
import type { CanaryPlan } from '../../lib/builds/canary.js'
import { createError } from '../../lib/core/errors.js'
import { listAll, type Datastore, type DatastoreValue } from '../../lib/storage/datastore.js'

export const PUSH_TTL_MS = 3_600_000
export const PUSH_ID = /^up-[0-9a-z]{8,12}-[0-9a-f]{8}$/
/** Bytes of JSON per manifest page: far under the datastore's 64 KB value limit, msgpack being no larger. */
const PAGE_BYTES = 40 * 1024
const KIND = 'adminJobs'

export interface PushHeader {
  id: string
  operator: string
  /** `open` while files are uploaded, `committing` during the commit, `committed` once the seed took it. */
  state: 'open' | 'committing' | 'committed'
  createdAt: number
  expiresAt: number
  message: string
  canary: CanaryPlan | null
  files: number
  bytes: number
  pages: number
  /** How many distinct contents the blob store lacked, and their bytes. */
  missing: number
  missingBytes: number
  /** The build the commit made. */
  build: string | null
}

const headerKey = (id: string) => `push/${id}`
const pageKey = (id: string, n: number) => `push/${id}/m/${String(n).padStart(4, '0')}`
const bucketKey = (id: string, hash: string) => `push/${id}/n/${hash.slice(0, 2)}`

export const newPushId = (now = Date.now()): string => `up-${now.toString(36)}-${randomBytes(4).toString('hex')}`

const notFound = (id: string) => createError('ESPRA_ERR_ADMIN_PUSH_NOT_FOUND', { upload: id })

/** Records a planned push: pages, buckets, then the header. */
export async function createPush(datastore: Datastore, header: PushHeader, manifest: BuildManifest, missing: ReadonlyMap<string, number>): Promise<void> {
  const pages: BuildFile[][] = [[]]
  let size = 0
  for (const f of manifest.files) {
    const bytes = JSON.stringify(f).length + 1
    if (size + bytes > PAGE_BYTES && pages.at(-1)!.length > 0) {
      pages.push([])
      size = 0
    }
    pages.at(-1)!.push(f)
    size += bytes
  }
  const buckets = new Map<string, Record<string, number>>()
  for (const [hash, bytes] of missing) {
    const key = bucketKey(header.id, hash)
    const bucket = buckets.get(key) ?? {}
    bucket[hash] = bytes
    buckets.set(key, bucket)
  }
  const writes: [string, DatastoreValue][] = [
    ...pages.map((files, n): [string, DatastoreValue] => [pageKey(header.id, n), { files }]),
    ...[...buckets].map(([key, hashes]): [string, DatastoreValue] => [key, { hashes }]),
  ]
  for (let i = 0; i < writes.length; i += 16) await Promise.all(writes.slice(i, i + 16).map(([key, value]) => datastore.put(KIND, key, value)))
  await datastore.put(KIND, headerKey(header.id), { ...header, pages: pages.length } as unknown as DatastoreValue)
}

/** The header of a live upload; 404 when there is none or it is past its hour. */
export async function readPush(datastore: Datastore, id: string, now = Date.now()): Promise<PushHeader> {
  const header = (await datastore.get(KIND, headerKey(id))) as unknown as PushHeader | null
  if (header === null || now >= header.expiresAt) throw notFound(id)
  return header
}

/** The size the push asked for `hash` with, or null when it did not ask for it. */
export async function askedSize(datastore: Datastore, id: string, hash: string): Promise<number | null> {
  const bucket = await datastore.get(KIND, bucketKey(id, hash))
  const size = (bucket?.['hashes'] as Record<string, unknown> | undefined)?.[hash]
  return typeof size === 'number' ? size : null
}

/** Every hash the push asked for, with its size. */
export async function askedHashes(datastore: Datastore, id: string): Promise<Map<string, number>> {
  const out = new Map<string, number>()
  for await (const e of listAll(datastore, KIND, `push/${id}/n/`)) {
    for (const [hash, size] of Object.entries(e.value['hashes'] as Record<string, number>)) out.set(hash, size)
  }
  return out
}

/** The manifest again, from its pages. */
export async function readManifest(datastore: Datastore, header: PushHeader): Promise<BuildManifest> {
  const files: BuildFile[] = []
  for await (const e of listAll(datastore, KIND, `push/${header.id}/m/`)) files.push(...(e.value['files'] as BuildFile[]))
  if (files.length !== header.files) throw createError('ESPRA_ERR_INTERNAL', { reason: `build upload ${header.id} has ${files.length} of its ${header.files} manifest files`, id: header.id })
  return { files }
}

/**
 * Moves the header from one state to another, atomically (of two commits at
 * once, one wins); resolves whether it moved. `patch` adds fields.
 */
export async function movePush(datastore: Datastore, header: PushHeader, to: PushHeader['state'], patch: Partial<PushHeader> = {}): Promise<boolean> {
  return datastore.putIf(KIND, headerKey(header.id), { ...header, ...patch, state: to } as unknown as DatastoreValue, { state: header.state })
}

/** Deletes the pages and buckets (the header too unless `keepHeader`). */
export async function deletePush(datastore: Datastore, id: string, keepHeader = false): Promise<void> {
  const keys: string[] = []
  for await (const e of listAll(datastore, KIND, `push/${id}/`)) keys.push(e.key)
  if (!keepHeader) keys.push(headerKey(id))
  for (let i = 0; i < keys.length; i += 16) await Promise.all(keys.slice(i, i + 16).map((key) => datastore.delete(KIND, key)))
}

/** The creation time written in an upload id (`up-<ms base 36>-…`). */
const createdAtOf = (id: string): number => parseInt(id.split('-')[1] ?? '0', 36)

/** Deletes uploads past their hour, and parts of uploads whose header was never written; resolves how many uploads. */
export async function sweepPushes(datastore: Datastore, now = Date.now()): Promise<number> {
  const old = new Set<string>()
  for await (const e of listAll(datastore, KIND, 'push/')) {
    const id = e.key.split('/')[1]!
    const expiresAt = e.key === headerKey(id) ? Number(e.value['expiresAt']) : createdAtOf(id) + PUSH_TTL_MS
    if (now >= expiresAt) old.add(id)
  }
  for (const id of old) await deletePush(datastore, id)
  return old.size
}
