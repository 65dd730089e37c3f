/**
 * The fileserver's side of `upload.commit` (seed/upload-ops.ts,
 * docs/meta-protocol.md "Uploads"): an upload's token spent, its file
 * recorded and fileservers told, in one seed round trip. Each commit draws
 * one op id and is sent again with it after a dropped link or a seed that
 * does not lead (lib/transport/resend.ts), for as long as a datastore op
 * would be: the seed applies it once, and a resend after a lost answer gets
 * the first answer (not "token used").
 */
import { createError } from '../../lib/core/errors.js'
import { DATASTORE_RETRY_WINDOW_MS } from '../../lib/storage/datastore-client.js'
import { newOpId } from '../../lib/storage/op-id.js'
import { createResender, type MetaRequester } from '../../lib/transport/resend.js'
import type { FileRecord } from './upload-store.js'

/** What the seed answered: the token was gone (used before), or the record now (`fresh`: this commit wrote it). */
export type UploadCommitAnswer = { used: true } | { used: false; record: FileRecord | null; fresh: boolean }

export interface UploadCommitter {
  /**
   * Spends `token` (an upload token's id; null: none) and, when it was
   * unspent, records `file` (null: none) unless the same bytes were
   * recorded before. Throws what the link throws once the resend window
   * has passed (`ESPRA_ERR_META_CLOSED`, `_TIMEOUT`, ...).
   */
  commit(token: string | null, file: FileRecord | null): Promise<UploadCommitAnswer>
  close(): void
}

export function createUploadCommitter(link: MetaRequester, windowMs = DATASTORE_RETRY_WINDOW_MS): UploadCommitter {
  const resender = createResender(link)
  return {
    commit(token, file) {
      const body = {
        token, opId: newOpId(),
        file: file === null ? null : { sha256: file.sha256, record: { ...file }, blobKey: file.key },
      }
      return resender.send<UploadCommitAnswer>('upload.commit', body, windowMs)
    },
    close: () => resender.close(),
  }
}

/** `commit` for an upload with a token: a used token is `ESPRA_ERR_UPLOAD_TOKEN_USED` (403), a seed out of reach `ESPRA_ERR_UPLOAD_UNAVAILABLE` (503). */
export async function commitWithToken(committer: UploadCommitter, token: string, file: FileRecord | null): Promise<{ record: FileRecord | null; fresh: boolean }> {
  let answer: UploadCommitAnswer
  try {
    answer = await committer.commit(token, file)
  } catch (err) {
    throw createError('ESPRA_ERR_UPLOAD_UNAVAILABLE', { reason: (err as Error).message })
  }
  if (answer.used) throw createError('ESPRA_ERR_UPLOAD_TOKEN_USED')
  return answer
}
