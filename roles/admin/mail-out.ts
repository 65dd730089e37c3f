/**
 * `espra-node admin mail send|show|queue|…`: outbound mail from the command
 * line, over the seed's meta port (the datastore and the outbound queue, or
 * Redis with `--redis`). docs/mail.md, "Outbound".
 */
import { EspraError } from '../../lib/core/errors.js'
import { createLogger } from '../../lib/core/log.js'
import { redisUrl } from '../../lib/core/options-tasks.js'
import { checkOutMessage, composeOutMessage, newOutId, recipientsByDomain } from '../../lib/mail/outbound.js'
import { enqueueOutbound } from '../../lib/mail/outbound-store.js'
import { openOutboundQueue } from '../../lib/mail/outbound-queue.js'
import { createDatastoreClient } from '../../lib/storage/datastore-client.js'
import type { Datastore } from '../../lib/storage/datastore.js'
import type { TaskQueue } from '../../lib/tasks/queue.js'
import { connect, type ConnectOptions } from './cli.js'

export interface MailOutOptions extends ConnectOptions {
  redis?: string
}

const usage = (option: string, message: string): EspraError => new EspraError('ESPRA_ERR_CONFIG_INVALID', `${option}: ${message}`, { option })

/** The datastore and outbound queue of the cluster the options name. */
export async function openOutbound(opts: MailOutOptions): Promise<{ datastore: Datastore; queue: TaskQueue; close(): Promise<void> }> {
  const url = opts.redis ?? (process.env['ESPRA_REDIS'] || undefined)
  let redis: string | null = null
  if (url !== undefined) {
    try {
      redis = redisUrl(url)
    } catch (reason) {
      throw usage('--redis', String(reason))
    }
  }
  const client = await connect(opts)
  const queue = await openOutboundQueue(redis, createLogger('silent', { role: 'admin-cli', node: 'cli' }), client)
  return { datastore: createDatastoreClient(client), queue, close: async () => void (await Promise.all([queue.close(), client.close()])) }
}

/** A field error of the message, in the words of the command line. */
function asUsage(err: unknown): unknown {
  const e = err as EspraError
  if (e.code !== 'ESPRA_ERR_MAIL_INVALID' && e.code !== 'ESPRA_ERR_MAIL_HEADER_INJECTION') return err
  const field = String((e.details as { field?: string } | undefined)?.field ?? '')
  const option = `--${field.replace(/\[.*$/, '').replace(/\..*$/, '').replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`
  return new EspraError(e.code, `${option}: ${e.message}`, { ...(e.details as object), option })
}

export async function adminMailSend(opts: MailOutOptions & { from?: string; to?: string; cc?: string; bcc?: string; subject?: string; text?: string; html?: string }): Promise<void> {
  if (opts.from === undefined) throw usage('--from', 'is required (the sender address)')
  if (opts.to === undefined && opts.cc === undefined && opts.bcc === undefined) throw usage('--to', 'is required (recipient addresses, comma-separated)')
  if (opts.text !== undefined && opts.html !== undefined) throw usage('--html', 'give --text or --html, not both')
  let m
  try {
    m = checkOutMessage({ from: opts.from, to: opts.to, cc: opts.cc, bcc: opts.bcc, subject: opts.subject, text: opts.text ?? (opts.html === undefined ? '' : undefined), html: opts.html })
  } catch (err) {
    throw asUsage(err)
  }
  const id = newOutId()
  const { raw, messageId } = await composeOutMessage(m, id, async () => null)
  const out = await openOutbound(opts)
  try {
    const queued = await enqueueOutbound({ datastore: out.datastore, queue: out.queue, blobs: null }, { id, from: m.from.address, rcptsByDomain: recipientsByDomain(m), raw, subject: m.subject, messageId, kind: 'message' })
    process.stdout.write(`${queued}\n`)
  } finally {
    await out.close()
  }
}
