/**
 * The disk cache's file format: `<dir>/objects/<sha256 of the key>`, each
 * file self-describing: a first line `espra-cache-1`, a JSON line of
 * metadata (key, size, etag, content type and encoding, last-modified, user
 * metadata), then the object's bytes as stored (compressed objects stay
 * compressed). Names are hashes, so no request path ever becomes a file
 * path. The parent writes them (disk-cache.ts); children read them.
 */
import { createHash } from 'node:crypto'
import { constants } from 'node:fs'
import { open, type FileHandle } from 'node:fs/promises'
import { join } from 'node:path'

const MAGIC = 'espra-cache-1\n'
/** The metadata line is small (a key is at most 1 KB); this bounds what a reader reads to find it. */
const HEAD_MAX = 8192

export interface CachedMeta {
  readonly key: string
  readonly size: number
  readonly etag: string
  readonly contentType: string
  readonly contentEncoding: string | null
  /** Milliseconds since the epoch. */
  readonly lastModified: number
  /** The object's user metadata (an upload's `inline` and `filename`, upload-headers.ts); absent in files of earlier versions. */
  readonly metadata?: Readonly<Record<string, string>>
}

/** An open cached object: read the body from `offset` (the bytes after the metadata lines). */
export interface CachedFile {
  readonly fh: FileHandle
  readonly meta: CachedMeta
  readonly offset: number
}

export const cacheName = (key: string): string => createHash('sha256').update(key).digest('hex')
export const objectPath = (dir: string, name: string): string => join(dir, 'objects', name)

/** The lines a cache file starts with; the object's bytes follow. */
export const cacheFileHead = (meta: CachedMeta): Buffer => Buffer.from(MAGIC + JSON.stringify(meta) + '\n')

/**
 * Opens the cached copy of `key`, or null when there is none (or it is not a
 * whole, valid cache file: then the parent fills it again).
 */
export async function openCached(dir: string, key: string): Promise<CachedFile | null> {
  let fh
  try {
    fh = await open(objectPath(dir, cacheName(key)), constants.O_RDONLY | constants.O_NOFOLLOW)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null
    throw err
  }
  try {
    const buf = Buffer.alloc(HEAD_MAX)
    const { bytesRead } = await fh.read(buf, 0, HEAD_MAX, 0)
    const head = buf.subarray(0, bytesRead)
    const end = head.indexOf(10, MAGIC.length)
    if (head.subarray(0, MAGIC.length).toString('latin1') !== MAGIC || end < 0) throw new Error('not a cache file')
    const meta = JSON.parse(head.subarray(MAGIC.length, end).toString('utf8')) as CachedMeta
    const offset = end + 1
    const st = await fh.stat()
    // A hash collision or a short file is a miss, never wrong bytes.
    if (meta.key !== key || st.size !== offset + meta.size) throw new Error('cache file does not match')
    return { fh, meta, offset }
  } catch {
    await fh.close()
    return null
  }
}
