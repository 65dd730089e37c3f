/**
 * Turns a stored raw message into what `handleMail` receives, as a stream:
 * mailparser's streaming `MailParser` reads the raw bytes from the blob
 * store (or, for a small message, from its datastore record), and every attachment streams to the blob store (sha256 and size
 * counted on the way) without ever being whole in memory. Text and HTML
 * bodies are kept (they are bounded by the mail node's `--mail-max-size`).
 *
 * Attachment keys are fixed by the message id and position, so a handoff that
 * runs again (a retry) writes the same objects again rather than new ones.
 */
import { createHash } from 'node:crypto'
import { Readable, Transform } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { MailParser, type AttachmentStream, type HeaderLines, type MessageText } from 'mailparser'
import { createError } from '../core/errors.js'
import type { BlobStore } from '../storage/blob-store.js'
import type { Datastore } from '../storage/datastore.js'
import { attachmentKey, inboundRawKey, type InboundMessage, type MailAttachment, type MailTaskPayload } from './inbound.js'

/** Header lines in order as `[name, value]`, folding removed. */
function headerPairs(lines: HeaderLines): [string, string][] {
  return lines.map(({ key, line }) => {
    const colon = line.indexOf(':')
    return [key.toLowerCase(), (colon === -1 ? '' : line.slice(colon + 1)).replace(/\r?\n[ \t]+/g, ' ').trim()]
  })
}

/**
 * A message's raw bytes: the datastore record `raw/<id>` for a small message
 * (`raw.store: 'ds'`), else the blob store's object. Rejects
 * `ESPRA_ERR_MAIL_HANDOFF` when they are gone.
 */
export async function readInboundRaw(stores: { blobs: BlobStore; datastore: Pick<Datastore, 'get'> }, payload: Pick<MailTaskPayload, 'id' | 'raw'>): Promise<Readable> {
  if (payload.raw.store === 'ds') {
    const record = await stores.datastore.get('mailInbound', inboundRawKey(payload.id))
    const bytes = record?.['bytes']
    if (!(bytes instanceof Uint8Array)) throw createError('ESPRA_ERR_MAIL_HANDOFF', { id: payload.id, reason: `its raw bytes (datastore ${inboundRawKey(payload.id)}) are not in the datastore`, key: inboundRawKey(payload.id) })
    return Readable.from([Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length)])
  }
  const object = await stores.blobs.get(payload.raw.key)
  if (object === null) throw createError('ESPRA_ERR_MAIL_HANDOFF', { id: payload.id, reason: `its raw bytes (${payload.raw.key}) are not in the blob store`, key: payload.raw.key })
  return object.body
}

/** Parses the message `payload` names; rejects `ESPRA_ERR_MAIL_HANDOFF` when its raw bytes are gone or unreadable. */
export async function parseInboundMessage(stores: { blobs: BlobStore; datastore: Pick<Datastore, 'get'> }, payload: MailTaskPayload): Promise<InboundMessage> {
  const { blobs } = stores
  const body = await readInboundRaw(stores, payload)
  const parser = new MailParser({ skipTextToHtml: true })
  let headers: [string, string][] = []
  let parsed = new Map<string, unknown>()
  let text: string | null = null
  let html: string | null = null
  const stored: Promise<MailAttachment>[] = []

  parser.on('headerLines', (lines: HeaderLines) => (headers = headerPairs(lines)))
  parser.on('headers', (map: Map<string, unknown>) => (parsed = map))
  parser.on('data', (data: AttachmentStream | MessageText) => {
    if (data.type === 'text') {
      text = data.text ?? null
      html = typeof data.html === 'string' ? data.html : null
      return
    }
    const att: AttachmentStream = data
    const key = attachmentKey(payload.raw, payload.id, stored.length)
    const hash = createHash('sha256')
    let size = 0
    const meter = new Transform({
      transform(chunk: Buffer, _enc, done) {
        hash.update(chunk)
        size += chunk.length
        done(null, chunk)
      },
    })
    ;(data.content as Readable).pipe(meter)
    const type = data.contentType || 'application/octet-stream'
    stored.push(blobs.put(key, meter, { contentType: type }).then(() => ({
      key, filename: data.filename ?? null, size, type, sha256: hash.digest('hex'),
      contentId: data.cid ?? null, disposition: data.contentDisposition ?? 'attachment',
    })).finally(() => (att.release as () => void)()))
  })
  await pipeline(body, parser)
  const attachments = await Promise.all(stored)
  const from = parsed.get('from') as { text?: string } | undefined
  const date = parsed.get('date')
  const messageId = parsed.get('message-id')
  const subject = parsed.get('subject')
  return {
    id: payload.id,
    envelope: payload.envelope,
    receivedAt: payload.receivedAt,
    raw: payload.raw,
    headers,
    messageId: typeof messageId === 'string' ? messageId.replace(/^<(.*)>$/, '$1') : null,
    subject: typeof subject === 'string' ? subject : '',
    from: from?.text ?? '',
    date: date instanceof Date && !Number.isNaN(date.getTime()) ? date.toISOString() : null,
    text,
    html,
    attachments,
  }
}
