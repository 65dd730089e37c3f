/**
 * The local-directory blob store (the default under `up`).
 *
 * Layout: key `a/b/c` lives in directory `<root>/a/b` as two files, its
 * metadata sidecar `c#meta` (JSON) and its bytes `c#d-<random>`. `#` is not
 * allowed in keys, so object files never collide with the directories of
 * longer keys (`a` and `a/b` can both exist, as on S3).
 *
 * A put writes the bytes to a fresh file and the sidecar to a temp file,
 * fsyncs both, then renames the temp file over `c#meta` and fsyncs the
 * directory: that rename is the one commit point, so readers see the old
 * object or the new one, never a mix. The old bytes file is removed after the
 * commit; a reader that loses that race re-reads the sidecar. `stage` and
 * `commit` split a put in two so that a group of them is synced together
 * (group commit: the mail node's inbound messages).
 *
 * Nothing outside the root is read or written: keys are checked (no `..`,
 * no absolute paths), every directory on the way is `lstat`ed and a symlink
 * is refused, reads check the directory's real path, and files are opened
 * with O_NOFOLLOW.
 *
 * Limits: concurrent puts of one key from several processes may leave an
 * unreferenced bytes file behind (never a broken object); deleting leaves
 * empty directories in place.
 *
 * The on-disk format is in local-blob-sidecar.ts, the file-system calls in
 * local-blob-fs.ts, where a key's files are (and the root's confinement) in
 * local-blob-paths.ts.
 */
import { createHash, randomBytes } from 'node:crypto'
import { constants, renameSync, unlinkSync } from 'node:fs'
import { chmod, copyFile, link, lstat, mkdir, open, realpath, unlink, type FileHandle } from 'node:fs/promises'
import { join } from 'node:path'
import type { Readable } from 'node:stream'
import { createError } from '../core/errors.js'
import { checkKey, checkPrefix, checkPutOptions, checkRange, resolveRange, type ByteRange, type PutOptions } from './blob-key.js'
import type { BlobInfo, BlobListEntry, BlobObject, BlobStore, PutFileOptions, PutResult, StagedPut } from './blob-store.js'
import { closeFds, fsFailure, fsyncFd, isErrno, READ_FLAGS, syncDir, syncFile, withFile, writeSmallFile } from './local-blob-fs.js'
import { ensureKeyDir, locateKey } from './local-blob-paths.js'
import { info, META, previousData, readSidecar, walk, type Sidecar } from './local-blob-sidecar.js'

/** A body that ends within this many bytes is written with synchronous calls (see writeSmallFile). */
const SMALL_WRITE = 256 * 1024
/** What a caller may give as a put's version tag (a hex digest, typically). */
const ETAG = /^[0-9A-Za-z_-]{1,128}$/

/** The md5 hex of a file's bytes: the version tag of a file put without one. */
async function md5OfFile(path: string): Promise<string> {
  const md5 = createHash('md5')
  const fh = await open(path, READ_FLAGS)
  for await (const chunk of fh.createReadStream({ highWaterMark: 1024 * 1024 })) md5.update(chunk as Buffer)
  return md5.digest('hex')
}

/** Opens (creating it if needed) the store rooted at `dir`. */
export async function createLocalBlobStore(dir: string): Promise<BlobStore> {
  try {
    await mkdir(dir, { recursive: true, mode: 0o750 })
    return new LocalBlobStore(await realpath(dir))
  } catch (err) {
    throw fsFailure(err, `cannot open ${dir}`)
  }
}

/** Where a staged put's files are, until it is committed or discarded. */
interface StagedFiles {
  readonly dir: string
  readonly name: string
  readonly dataName: string
  readonly dataPath: string
  readonly tmpPath: string
  /** Descriptors of the bytes and sidecar files still open since they were written (small bodies), so the commit fsyncs them without opening them again; null: open them. */
  fds: readonly number[] | null
  committed: boolean
}

class LocalBlobStore implements BlobStore {
  readonly kind = 'local' as const
  private closed = false
  private readonly staged = new WeakMap<StagedPut, StagedFiles>()

  constructor(private readonly root: string) {}

  async put(key: string, body: Readable | Buffer, options?: PutOptions): Promise<PutResult> {
    const staged = await this.stage(key, body, options)
    try {
      await this.commit([staged])
    } catch (err) {
      await this.discard([staged])
      throw err
    }
    return { key: staged.key, size: staged.size, etag: staged.etag }
  }

  /** Writes the bytes and the sidecar's temp file, neither synced: {@link commit} syncs, renames and syncs the directory. */
  async stage(key: string, body: Readable | Buffer, options?: PutOptions): Promise<StagedPut> {
    this.checkOpen()
    checkKey(key)
    const opts = checkPutOptions(options)
    const segments = key.split('/')
    const name = segments.pop()!
    const dir = await ensureKeyDir(this.root, segments)
    const dataName = `${name}#d-${randomBytes(8).toString('hex')}`
    const dataPath = join(dir, dataName)
    let size = 0
    let dataFd: number | null = null
    const md5 = createHash('md5')
    const count = (chunk: Buffer) => {
      md5.update(chunk)
      size += chunk.length
    }
    try {
      // The first SMALL_WRITE bytes are gathered; a body that ends within them is written by synchronous calls.
      const source = Buffer.isBuffer(body) ? null : body[Symbol.asyncIterator]()
      const head: Buffer[] = Buffer.isBuffer(body) ? [body] : []
      let ended = source === null
      while (!ended && size < SMALL_WRITE) {
        const next = await source!.next()
        if (next.done) ended = true
        else {
          const chunk = typeof next.value === 'string' ? Buffer.from(next.value) : (next.value as Buffer)
          count(chunk)
          head.push(chunk)
        }
      }
      if (Buffer.isBuffer(body)) count(body)
      if (ended) dataFd = writeSmallFile(dataPath, head)
      else {
        await withFile(dataPath, async (fh) => {
          const write = async (chunk: Buffer) => {
            for (let off = 0; off < chunk.length; ) off += (await fh.write(chunk, off)).bytesWritten
          }
          for (const chunk of head) await write(chunk)
          for (let next = await source!.next(); !next.done; next = await source!.next()) {
            const chunk = typeof next.value === 'string' ? Buffer.from(next.value) : (next.value as Buffer)
            count(chunk)
            await write(chunk)
          }
        })
      }
    } catch (err) {
      closeFds([dataFd])
      await unlink(dataPath).catch(() => {})
      throw Buffer.isBuffer(body) || (err as NodeJS.ErrnoException)?.syscall ? fsFailure(err, `writing ${key}`) : err
    }
    return this.stageSidecar({ key, dir, name, dataName, dataPath, dataFd }, { size, etag: md5.digest('hex'), ...opts })
  }

  /**
   * Takes the finished file at `path` by a hard link into the store (a copy,
   * by copy_file_range, when the store is on another file system) instead of
   * streaming its bytes again; `path` stays where it is. Durable as a put:
   * the file, its sidecar and the directory are synced before this resolves.
   */
  async putFile(key: string, path: string, options?: PutFileOptions): Promise<PutResult> {
    this.checkOpen()
    checkKey(key)
    const opts = checkPutOptions(options)
    const given = options?.etag
    if (given !== undefined && !ETAG.test(given)) throw createError('ESPRA_ERR_STORAGE_INVALID', { field: 'etag', reason: 'must be 1 to 128 letters, digits, - or _' })
    const segments = key.split('/')
    const name = segments.pop()!
    const dir = await ensureKeyDir(this.root, segments)
    const dataName = `${name}#d-${randomBytes(8).toString('hex')}`
    const dataPath = join(dir, dataName)
    let size: number
    let etag: string
    try {
      try {
        await link(path, dataPath)
      } catch (err) {
        if (!isErrno(err, 'EXDEV')) throw err
        await copyFile(path, dataPath, constants.COPYFILE_EXCL)
      }
      // A link shares the received file's inode: it gets the store's mode, and must be a plain file (not a symlink's target).
      const st = await lstat(dataPath)
      if (!st.isFile()) throw createError('ESPRA_ERR_STORAGE_INVALID', { field: 'path', reason: 'must be a plain file' })
      await chmod(dataPath, 0o640)
      size = st.size
      etag = given ?? await md5OfFile(dataPath)
    } catch (err) {
      await unlink(dataPath).catch(() => {})
      throw fsFailure(err, `storing ${path} as ${key}`)
    }
    const staged = this.stageSidecar({ key, dir, name, dataName, dataPath, dataFd: null }, { size, etag, ...opts })
    try {
      await this.commit([staged])
    } catch (err) {
      await this.discard([staged])
      throw err
    }
    return { key, size, etag }
  }

  /** Writes the sidecar's temp file beside a bytes file already written, and records the staged put. */
  private stageSidecar(
    at: { key: string; dir: string; name: string; dataName: string; dataPath: string; dataFd: number | null },
    about: { size: number; etag: string; contentType: string; contentEncoding: string | null; metadata: Record<string, string> },
  ): StagedPut {
    const { key, dir, name, dataName, dataPath, dataFd } = at
    const { size, etag } = about
    const sidecar: Sidecar = { v: 1, key, data: dataName, ...about, lastModified: Date.now() }
    const tmpPath = join(dir, `${name}#tmp-${randomBytes(8).toString('hex')}`)
    let tmpFd: number
    try {
      tmpFd = writeSmallFile(tmpPath, [Buffer.from(JSON.stringify(sidecar))])
    } catch (err) {
      closeFds([dataFd])
      try {
        unlinkSync(tmpPath)
      } catch {
        // never created
      }
      try {
        unlinkSync(dataPath)
      } catch {
        // gone already
      }
      throw fsFailure(err, `writing the sidecar of ${key}`)
    }
    const staged: StagedPut = { key, size, etag }
    // A body written in one go keeps both files open until its commit or discard (each open saved is a path lookup in a busy directory).
    const fds = dataFd === null ? null : [dataFd, tmpFd]
    if (fds === null) closeFds([tmpFd])
    this.staged.set(staged, { dir, name, dataName, dataPath, tmpPath, fds, committed: false })
    return staged
  }

  /**
   * Every file of the group is synced at once (concurrent fsyncs share the
   * file system's journal commits), then each sidecar is renamed into place
   * (the commit point of its object) and each directory synced once.
   */
  async commit(staged: readonly StagedPut[]): Promise<void> {
    this.checkOpen()
    const files = staged.map((s) => this.files(s))
    // Every fsync settles before any descriptor is closed (a descriptor closed under a running fsync could be reused).
    const synced = await Promise.allSettled(files.flatMap((f) => (f.fds !== null ? f.fds.map((fd) => fsyncFd(fd)) : [syncFile(f.dataPath), syncFile(f.tmpPath)])))
    for (const f of files) {
      closeFds(f.fds ?? [])
      f.fds = null
    }
    const failed = synced.find((r) => r.status === 'rejected')
    if (failed !== undefined) throw fsFailure(failed.reason, `syncing ${staged.length} object(s)`)
    const previous = files.map((f) => previousData(f.dir, f.name))
    try {
      for (const f of files) renameSync(f.tmpPath, join(f.dir, f.name + META))
      await Promise.all([...new Set(files.map((f) => f.dir))].map(syncDir))
    } catch (err) {
      throw fsFailure(err, `committing ${staged.length} object(s)`)
    }
    for (const [i, f] of files.entries()) {
      f.committed = true
      const old = previous[i]
      if (old && old !== f.dataName) await unlink(join(f.dir, old)).catch(() => {})
    }
  }

  async discard(staged: readonly StagedPut[]): Promise<void> {
    await Promise.all(staged.map(async (s) => {
      const f = this.staged.get(s)
      if (f === undefined) return
      this.staged.delete(s)
      closeFds(f.fds ?? [])
      f.fds = null
      // Its sidecar is in place (committed, or a commit that failed half way) unless the key was put again since.
      const current = await readSidecar(f.dir, f.name).catch(() => null)
      if (current?.data === f.dataName) {
        await unlink(join(f.dir, f.name + META)).catch(() => {})
        await syncDir(f.dir).catch(() => {})
      }
      await Promise.all([unlink(f.tmpPath).catch(() => {}), unlink(f.dataPath).catch(() => {})])
    }))
  }

  async get(key: string, options: { range?: ByteRange } = {}): Promise<BlobObject | null> {
    this.checkOpen()
    checkKey(key)
    const range = options.range === undefined ? null : checkRange(options.range)
    const [dir, name] = await locateKey(this.root, key)
    if (dir === null) return null
    // The sidecar may be replaced between reading it and opening its bytes: re-read it then.
    for (let attempt = 0; attempt < 5; attempt++) {
      const sidecar = await readSidecar(dir, name)
      if (sidecar === null) return null
      let fh: FileHandle
      try {
        fh = await open(join(dir, sidecar.data), READ_FLAGS)
      } catch (err) {
        if (isErrno(err, 'ENOENT')) continue
        throw fsFailure(err, `opening ${key}`)
      }
      try {
        const { size } = await fh.stat()
        if (size !== sidecar.size) throw createError('ESPRA_ERR_STORAGE_FAILED', { store: 'local blob store', problem: `${key} holds ${size} bytes, its sidecar says ${sidecar.size}`, key })
        const span = range === null ? null : resolveRange(range, size)
        const body = span === null
          ? fh.createReadStream({ autoClose: true })
          : fh.createReadStream({ autoClose: true, start: span.start, end: span.end })
        return { ...info(sidecar), body, range: span }
      } catch (err) {
        await fh.close()
        throw fsFailure(err, `reading ${key}`)
      }
    }
    throw createError('ESPRA_ERR_STORAGE_UNAVAILABLE', { store: 'local blob store', problem: `${key} kept changing while being read`, key })
  }

  async head(key: string): Promise<BlobInfo | null> {
    this.checkOpen()
    checkKey(key)
    const [dir, name] = await locateKey(this.root, key)
    const sidecar = dir === null ? null : await readSidecar(dir, name)
    return sidecar === null ? null : info(sidecar)
  }

  async delete(key: string): Promise<void> {
    this.checkOpen()
    checkKey(key)
    const [dir, name] = await locateKey(this.root, key)
    const sidecar = dir === null ? null : await readSidecar(dir, name)
    if (dir === null || sidecar === null) return
    try {
      await unlink(join(dir, name + META))
      await syncDir(dir)
    } catch (err) {
      if (!isErrno(err, 'ENOENT')) throw fsFailure(err, `deleting ${key}`)
    }
    await unlink(join(dir, sidecar.data)).catch(() => {})
  }

  async *list(prefix?: string): AsyncIterable<BlobListEntry> {
    this.checkOpen()
    const p = checkPrefix(prefix)
    const base = p.includes('/') ? p.slice(0, p.lastIndexOf('/')) : ''
    const [dir] = base === '' ? [this.root] : await locateKey(this.root, `${base}/x`)
    if (dir === null) return
    const keys: string[] = []
    await walk(dir, base, keys)
    // Keys are ASCII, so string order is S3's binary order.
    keys.sort()
    for (const key of keys) {
      if (!key.startsWith(p)) continue
      const slash = key.lastIndexOf('/')
      const sidecar = await readSidecar(join(this.root, key.slice(0, Math.max(slash, 0))), key.slice(slash + 1))
      if (sidecar !== null) yield { key, size: sidecar.size, etag: sidecar.etag, lastModified: new Date(sidecar.lastModified) }
    }
  }

  async close(): Promise<void> {
    this.closed = true
  }

  private checkOpen(): void {
    if (this.closed) throw createError('ESPRA_ERR_STORAGE_UNAVAILABLE', { store: 'local blob store', problem: 'closed' })
  }

  private files(staged: StagedPut): StagedFiles {
    const f = this.staged.get(staged)
    if (f === undefined || f.committed) throw createError('ESPRA_ERR_STORAGE_INVALID', { field: 'staged', reason: `must be a put staged in this local blob store and not yet committed or discarded (${staged.key} is not)`, key: staged.key })
    return f
  }
}
