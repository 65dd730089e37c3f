/**
 * Turns a stored raw message into what `handleMail` receives, as a stream:
 * mailparser's streaming `MailParser` reads the raw bytes from the blob
 * store, and every attachment streams to the blob store (sha256 and size
 * counted on the way) without ever being whole in memory. Text and HTML
 * bodies are kept (they are bounded by the mail node's `--mail-max-size`).
 *
 * Attachment keys are fixed by the message id and position, so a handoff that
 * runs again (a retry) writes the same objects again rather than new ones.
 */
import { createHash } from 'node:crypto'
import { Transform, type Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { MailParser, type AttachmentStream, type HeaderLines, type MessageText } from 'mailparser'
import { EspraError } from '../core/errors.js'
import type { BlobStore } from '../storage/blob-store.js'
import { attachmentKey, type InboundMessage, type MailAttachment, type MailTaskPayload } from './inbound.js'

/** Header lines in order as `[name, value]`, folding removed. */
function headerPairs(lines: HeaderLines): [string, string][] {
  return lines.map(({ key, line }) => {
    const colon = line.indexOf(':')
    return [key.toLowerCase(), (colon === -1 ? '' : line.slice(colon + 1)).replace(/\r?\n[ \t]+/g, ' ').trim()]
  })
}

/** Parses the message `payload` names; rejects `ESPRA_ERR_MAIL_HANDOFF` when its raw bytes are gone or unreadable. */
export async function parseInboundMessage(blobs: BlobStore, payload: MailTaskPayload): Promise<InboundMessage> {
  const object = await blobs.get(payload.raw.key)
  if (object === null) throw new EspraError('ESPRA_ERR_MAIL_HANDOFF', `inbound message ${payload.id}: its raw bytes (${payload.raw.key}) are not in the blob store`, { id: payload.id, key: payload.raw.key })
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
  await pipeline(object.body, parser)
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
