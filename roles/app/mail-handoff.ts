/**
 * The app side of the mail handoff: a leased `espra.mail` task carries only
 * the message id, its raw bytes' blob key and the envelope; before a worker
 * runs `handleMail`, the child's main thread (which holds the blob store)
 * parses the raw message as a stream (attachments to the blob store) and
 * gives the worker the whole message instead of the small payload. Worker
 * messages are not bound by the queue's 64 KB payload limit.
 */
import { Packr } from 'msgpackr'
import { MAIL_TASK_NAME } from '../../lib/mail/inbound.js'
import type { AuthedInboundMessage, AuthedMailTaskPayload } from '../../lib/mail/inbound-auth.js'
import { parseInboundMessage } from '../../lib/mail/parse-message.js'
import type { BlobStore } from '../../lib/storage/blob-store.js'
import { decodePayload, type LeasedTask } from '../../lib/tasks/task.js'

// The same encoding as task payloads (lib/tasks/task.ts), so the worker decodes it as any payload.
const packr = new Packr({ useRecords: false, moreTypes: false })

/** For `espra.mail` tasks, the task with the parsed message as its payload; null for every other task. */
export function createMailPreparer(blobs: BlobStore): (task: LeasedTask) => Promise<LeasedTask> | null {
  return (task) => {
    if (task.name !== MAIL_TASK_NAME) return null
    return (async () => {
      const payload = decodePayload(task.payload) as AuthedMailTaskPayload
      // The mail node's SPF/DKIM/DMARC/ARC results ride on the task; null when it did not verify.
      const message: AuthedInboundMessage = { ...(await parseInboundMessage(blobs, payload)), auth: payload.auth ?? null }
      return { ...task, payload: packr.pack(message) }
    })()
  }
}
