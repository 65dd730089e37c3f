/**
 * The file-system calls of the local blob store (lib/storage/local-blob-store.ts):
 * open flags that refuse symlinks, small files written with synchronous calls,
 * fsyncs of files and directories, and the store's coded errors.
 */
import { closeSync, constants, fsync, openSync, writeSync } from 'node:fs'
import { open, type FileHandle } from 'node:fs/promises'
import { promisify } from 'node:util'
import { createError, EspraError } from '../core/errors.js'

export const READ_FLAGS = constants.O_RDONLY | constants.O_NOFOLLOW
const CREATE_FLAGS = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW

export const isErrno = (err: unknown, ...codes: string[]) => codes.includes((err as NodeJS.ErrnoException)?.code ?? '')

export function fsFailure(err: unknown, what: string): EspraError {
  if (err instanceof EspraError) return err
  const code = (err as NodeJS.ErrnoException)?.code ?? 'error'
  return createError('ESPRA_ERR_STORAGE_FAILED', { store: 'local blob store', problem: `${what}: ${code}`, errno: code })
}

export const escapes = (what: string) =>
  createError('ESPRA_ERR_STORAGE_FAILED', { store: 'local blob store', problem: `${what} leads outside the store root (symlink)`, reason: 'symlink' })

/** Creates `path` exclusively, runs `fill` and closes (not synced: see {@link syncFile}). */
export async function withFile(path: string, fill: (fh: FileHandle) => Promise<void>): Promise<void> {
  const fh = await open(path, CREATE_FLAGS, 0o640)
  try {
    await fill(fh)
  } finally {
    await fh.close()
  }
}

export const fsyncFd = promisify(fsync)

/**
 * Makes a file written (and closed) earlier durable: Linux syncs the file,
 * not the descriptor. Only the fsync goes to the thread pool; the open and
 * close are synchronous (each a thread-pool round trip saved per file, which
 * on a busy machine is a wait for a core).
 */
export async function syncFile(path: string, flags = constants.O_WRONLY | constants.O_NOFOLLOW): Promise<void> {
  const fd = openSync(path, flags)
  try {
    await fsyncFd(fd)
  } finally {
    closeSync(fd)
  }
}

/**
 * Writes a small file in one go with synchronous calls (the bytes go to the
 * page cache: no disk wait, and no thread-pool round trips, which under load
 * cost more than the copy) and returns its descriptor, still open: the
 * caller closes it (after its fsync). Not synced: see {@link syncFile}.
 */
export function writeSmallFile(path: string, chunks: readonly Buffer[]): number {
  const fd = openSync(path, CREATE_FLAGS, 0o640)
  try {
    for (const chunk of chunks) for (let off = 0; off < chunk.length; ) off += writeSync(fd, chunk, off)
  } catch (err) {
    closeSync(fd)
    throw err
  }
  return fd
}

/** Closes descriptors, ignoring the ones already gone. */
export function closeFds(fds: readonly (number | null)[]): void {
  for (const fd of fds) {
    if (fd === null) continue
    try {
      closeSync(fd)
    } catch {
      // already closed
    }
  }
}

/** Makes a rename in `dir` durable. */
export function syncDir(dir: string): Promise<void> {
  return syncFile(dir, constants.O_RDONLY)
}
