/**
 * The on-disk format of the local blob store (lib/storage/local-blob-store.ts):
 * key `a/b/c` is the sidecar `<root>/a/b/c#meta` (JSON, this file's
 * {@link Sidecar}) naming its bytes file `c#d-<random>` beside it. Reads a
 * sidecar, finds the bytes file a key names now, and walks a directory for
 * the keys stored under it.
 */
import { closeSync, openSync, readFileSync } from 'node:fs'
import { open, readdir } from 'node:fs/promises'
import { join } from 'node:path'
import { createError } from '../core/errors.js'
import type { BlobInfo } from './blob-store.js'
import { escapes, fsFailure, isErrno, READ_FLAGS } from './local-blob-fs.js'

export const META = '#meta'
const DATA = /^#d-[0-9a-f]{16}$/

export interface Sidecar {
  v: 1
  key: string
  /** File name of the bytes, in the same directory. */
  data: string
  size: number
  etag: string
  contentType: string
  contentEncoding: string | null
  metadata: Record<string, string>
  lastModified: number
}

/** The sidecar of key file `name` in `dir`, or null when there is none; refuses a symlink and a malformed sidecar. */
export async function readSidecar(dir: string, name: string): Promise<Sidecar | null> {
  let text: string
  try {
    const fh = await open(join(dir, name + META), READ_FLAGS)
    try {
      text = await fh.readFile('utf8')
    } finally {
      await fh.close()
    }
  } catch (err) {
    if (isErrno(err, 'ENOENT', 'ENOTDIR')) return null
    if (isErrno(err, 'ELOOP')) throw escapes(`${name}${META}`)
    throw fsFailure(err, `reading ${name}${META}`)
  }
  const sidecar = JSON.parse(text) as Sidecar
  if (sidecar.v !== 1 || typeof sidecar.data !== 'string' || !sidecar.data.startsWith(name) || !DATA.test(sidecar.data.slice(name.length))) {
    throw createError('ESPRA_ERR_STORAGE_FAILED', { store: 'local blob store', problem: `${join(dir, name + META)} is not a valid sidecar` })
  }
  return sidecar
}

/** What a sidecar says about its object. */
export function info(s: Sidecar): BlobInfo {
  return {
    key: s.key, size: s.size, contentType: s.contentType, contentEncoding: s.contentEncoding,
    metadata: s.metadata, etag: s.etag, lastModified: new Date(s.lastModified),
  }
}

/** The bytes file the key's current sidecar names (null: none), read synchronously: a small file just written or absent. */
export function previousData(dir: string, name: string): string | null {
  let fd: number
  try {
    fd = openSync(join(dir, name + META), READ_FLAGS)
  } catch {
    return null
  }
  try {
    const sidecar = JSON.parse(readFileSync(fd, 'utf8')) as Partial<Sidecar>
    return typeof sidecar.data === 'string' && sidecar.data.startsWith(name) && DATA.test(sidecar.data.slice(name.length)) ? sidecar.data : null
  } catch {
    return null
  } finally {
    closeSync(fd)
  }
}

/** Collects every key under `dir` (whose key prefix is `base`); symlinks and foreign files are skipped. */
export async function walk(dir: string, base: string, out: string[]): Promise<void> {
  let entries
  try {
    entries = await readdir(dir, { withFileTypes: true })
  } catch (err) {
    if (isErrno(err, 'ENOENT', 'ENOTDIR')) return
    throw fsFailure(err, `listing ${dir}`)
  }
  for (const e of entries) {
    const key = base === '' ? e.name : `${base}/${e.name}`
    if (e.isDirectory()) await walk(join(dir, e.name), key, out)
    else if (e.isFile() && e.name.endsWith(META) && e.name.indexOf('#') === e.name.length - META.length) out.push(key.slice(0, -META.length))
  }
}
