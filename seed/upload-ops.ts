/**
 * `upload.commit` (docs/meta-protocol.md, "Uploads"): the datastore work of
 * one upload in one round trip instead of four (`ds.consume` of the token,
 * `ds.get` and `ds.put` of the file record, `files.changed`):
 *
 * 1. in one transaction of the datastore (one LMDB write transaction; one
 *    PostgreSQL transaction with the op id's record), the upload token's
 *    record is consumed and, only if it was there, the file record is
 *    inserted unless the same bytes were recorded before (that record is
 *    answered instead);
 * 2. when a record was inserted, fileservers are told its blob key
 *    (`files.changed`, pushed to the subscribers of this seed, the leader).
 *
 * A token that is gone (used before) is answered `{used: true}` and nothing
 * is written. Either part may be absent: no token for a tus upload (its token
 * was spent when it was created) and for the fileserver's retry job; no file
 * for an upload kept pending (its token is spent at once, its record written
 * once its bytes are stored). The op id (`opId`) makes a resend after a lost
 * answer get the first answer instead of `{used: true}`.
 */
import { createError } from '../lib/core/errors.js'
import { keyProblem, valueProblem, type Datastore, type DatastoreValue, type Problem } from '../lib/storage/datastore.js'
import { opIdProblem } from '../lib/storage/op-id.js'
import type { MetaPeer } from '../lib/transport/meta-server.js'
import type { RequestHandler } from '../lib/transport/meta-session.js'
import { isMap } from '../lib/transport/meta-shapes.js'
import { storeRemembers, type OpOnce } from './op-memory.js'

const SHA256 = /^[0-9a-f]{64}$/

/** The body of `upload.commit`, checked. */
export interface UploadCommit {
  /** The upload token's id (its `uploadTokens` record); null: none to spend. */
  readonly token: string | null
  /** The file record (`files`, key: the sha256) and the blob key to announce; null: none to write. */
  readonly file: { readonly sha256: string; readonly record: DatastoreValue; readonly blobKey: string } | null
  readonly opId: string | undefined
}

/** The answer: the token was gone, or what is recorded now (`fresh`: written by this op). */
export type UploadCommitAnswer = { used: true } | { used: false; record: DatastoreValue | null; fresh: boolean }

function bad(problem: Problem): Error {
  return createError('ESPRA_ERR_META_BAD_REQUEST', { field: problem.field, reason: `must be ${problem.allowed}` })
}

/** Checks a body: `ESPRA_ERR_META_BAD_REQUEST` naming the first bad field. */
export function parseUploadCommit(body: unknown): UploadCommit {
  if (!isMap(body)) throw bad({ field: 'body', allowed: 'a map' })
  const { token, file, opId } = body
  if (token !== null && token !== undefined && keyProblem(token)) throw bad(keyProblem(token, 'token')!)
  const idProblem = opIdProblem(opId)
  if (idProblem) throw bad(idProblem)
  let parsed: UploadCommit['file'] = null
  if (file !== null && file !== undefined) {
    if (!isMap(file)) throw bad({ field: 'file', allowed: 'a map {sha256, record, blobKey} or null' })
    const { sha256, record, blobKey } = file
    if (typeof sha256 !== 'string' || !SHA256.test(sha256)) throw bad({ field: 'file.sha256', allowed: '64 lowercase hex digits' })
    const problem = valueProblem(record)
    if (problem) throw bad({ field: 'file.record', allowed: problem.allowed })
    if ((record as DatastoreValue)['sha256'] !== sha256) throw bad({ field: 'file.record', allowed: 'a record whose sha256 is file.sha256' })
    if (typeof blobKey !== 'string' || blobKey.length === 0 || blobKey.length > 1024) throw bad({ field: 'file.blobKey', allowed: 'a string of 1 to 1024 characters' })
    parsed = { sha256, record: record as DatastoreValue, blobKey }
  }
  if ((token === null || token === undefined) && parsed === null) throw bad({ field: 'body', allowed: 'a token, a file or both' })
  return { token: (token ?? null) as string | null, file: parsed, opId: (opId ?? undefined) as string | undefined }
}

/**
 * The op, for the seed's table. `store` must have `consumeAndInsert` (both
 * seed stores do); `announce` pushes `files.changed` for the keys.
 */
export function uploadHandlers(store: Datastore, announce: (keys: readonly string[]) => void, once: OpOnce = storeRemembers): [string, RequestHandler<MetaPeer>][] {
  const consumeAndInsert = store.consumeAndInsert?.bind(store)
  if (consumeAndInsert === undefined) throw createError('ESPRA_ERR_INTERNAL', { reason: 'the seed datastore cannot consume and insert in one transaction' })
  return [
    ['upload.commit', async (body) => {
      const { token, file, opId } = parseUploadCommit(body)
      const answer = await once('upload.commit', opId, async (id): Promise<UploadCommitAnswer> => {
        const done = await consumeAndInsert(
          token === null ? null : { kind: 'uploadTokens', key: token },
          file === null ? null : { kind: 'files', key: file.sha256, value: file.record },
          id,
        )
        if (!done.taken) return { used: true }
        return { used: false, record: done.current, fresh: done.inserted }
      })
      // After the commit. A resend answered from the op id's record pushes again: harmless (fileservers forget a miss twice).
      if (file !== null && !answer.used && answer.fresh) announce([file.blobKey])
      return answer
    }],
  ]
}
