/**
 * `ctx.sendMail(message)` on an app child's main thread: the message is
 * checked again (the worker checked it first), composed with the uploaded
 * files it names read from the blob store, held to `--mail-max-size`, and
 * made durable on the outbound queue (lib/mail/outbound-store.ts). Resolves
 * with the message id.
 */
import type { NodeConfig } from '../../lib/core/config.js'
import { createError, EspraError } from '../../lib/core/errors.js'
import { checkOutMessage, composeOutMessage, contentBytes, newOutId, recipientsByDomain } from '../../lib/mail/outbound.js'
import { enqueueOutbound } from '../../lib/mail/outbound-store.js'
import type { BlobStore } from '../../lib/storage/blob-store.js'
import type { Datastore } from '../../lib/storage/datastore.js'
import type { TaskQueue } from '../../lib/tasks/queue.js'
import type { Logger } from '../../lib/core/log.js'
import { createEventSink } from '../../lib/mail/outbound-events.js'

export interface SendMailDeps {
  readonly config: NodeConfig
  /** The app's task queue, for the `queued` event (when --mail-events). */
  readonly tasks: TaskQueue
  readonly log: Logger
  readonly blobs: BlobStore
  readonly datastore: Datastore
  readonly queue: TaskQueue
}

const tooLarge = (size: number, max: number): EspraError =>
  createError('ESPRA_ERR_MAIL_TOO_LARGE', { limit: `--mail-max-size (${max} bytes)`, reason: `it has at least ${size}`, size, max })

export function createSendMail(deps: SendMailDeps): (message: unknown) => Promise<string> {
  const max = deps.config.mailMaxSize
  const onQueued = deps.config.mailEvents ? createEventSink(deps.tasks, deps.log) : undefined
  return async (input) => {
    const m = checkOutMessage(input)
    if (contentBytes(m) > max) throw tooLarge(contentBytes(m), max)
    const id = newOutId()
    const { raw, messageId } = await composeOutMessage(m, id, async (key) => (await deps.blobs.get(key))?.body ?? null)
    if (raw.length > max) throw tooLarge(raw.length, max)
    return enqueueOutbound({ datastore: deps.datastore, queue: deps.queue, blobs: deps.blobs, ...(onQueued ? { onQueued } : {}) }, { id, from: m.from.address, rcptsByDomain: recipientsByDomain(m), raw, subject: m.subject, messageId, kind: 'message' })
  }
}
