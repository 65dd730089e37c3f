/**
 * Where a key's files are in the local blob store (lib/storage/local-blob-store.ts),
 * and the checks that keep every path inside its root: a key's directory is
 * found through its real path (a symlink on the way is refused), and a put's
 * directories are made one at a time, each `lstat`ed (not followed).
 */
import { lstatSync, mkdirSync } from 'node:fs'
import { realpath } from 'node:fs/promises'
import { join, sep } from 'node:path'
import { createError } from '../core/errors.js'
import { escapes, fsFailure, isErrno } from './local-blob-fs.js'

/** The key's directory (null when it does not exist) and file name; refuses a directory reached through a symlink. */
export async function locateKey(root: string, key: string): Promise<[string | null, string]> {
  const slash = key.lastIndexOf('/')
  const name = key.slice(slash + 1)
  const dir = slash < 0 ? root : join(root, key.slice(0, slash))
  let real: string
  try {
    real = await realpath(dir)
  } catch (err) {
    if (isErrno(err, 'ENOENT', 'ENOTDIR')) return [null, name]
    throw fsFailure(err, `resolving ${key}`)
  }
  if (real !== dir) throw escapes(`the directory of ${key}`)
  return [dir, name]
}

/** Creates the key's directories one at a time, refusing anything that is not a plain directory. */
export async function ensureKeyDir(root: string, segments: readonly string[]): Promise<string> {
  let dir = root
  for (const segment of segments) {
    dir = join(dir, segment)
    // Synchronous: metadata calls the page cache answers, not thread-pool round trips. The lstat first: the directory
    // is there nearly always, and a mkdir that fails EEXIST costs a thrown error on every put.
    let st = lstatSync(dir, { throwIfNoEntry: false })
    if (st === undefined) {
      try {
        mkdirSync(dir, { mode: 0o750 })
      } catch (err) {
        if (!isErrno(err, 'EEXIST')) throw fsFailure(err, `creating ${dir}`)
      }
      try {
        st = lstatSync(dir)
      } catch (err) {
        throw fsFailure(err, `checking ${dir}`)
      }
    }
    if (st.isSymbolicLink()) throw escapes(dir.slice(root.length + 1))
    if (!st.isDirectory()) throw createError('ESPRA_ERR_STORAGE_FAILED', { store: 'local blob store', problem: `${dir} is not a directory` })
  }
  if (!(dir === root || dir.startsWith(root + sep))) throw escapes(dir)
  return dir
}
