/**
 * Outbound mail: what `ctx.sendMail(message)` and `admin mail send` take,
 * checked once with the same rules wherever it is checked (the app's worker
 * thread, its main thread, the admin CLI), and turned into a raw RFC 5322
 * message by nodemailer's MailComposer. A field holding CR, LF or NUL is
 * header injection (`ESPRA_ERR_MAIL_HEADER_INJECTION`, `details.field` naming
 * it); anything else malformed is `ESPRA_ERR_MAIL_INVALID` naming the field.
 * docs/mail.md, "Outbound"; docs/app-api.md, "sendMail".
 */
import { randomBytes } from 'node:crypto'
import { Readable } from 'node:stream'
import { createError, EspraError } from '../core/errors.js'

/** Recipients (to + cc + bcc) of one message. */
export const MAX_OUT_RECIPIENTS = 100
export const MAX_ATTACHMENTS = 20
export const MAX_SUBJECT_CHARS = 998
export const MAX_CUSTOM_HEADERS = 50
/** The task that delivers one message to one recipient domain (outbound queue, `mailq.*`). */
export const OUT_TASK_NAME = 'espra.mail.out'

export interface OutAddress {
  readonly name: string | null
  /** `local@domain`, the domain lower-cased. */
  readonly address: string
}

export interface OutAttachment {
  readonly filename: string
  readonly contentType: string | null
  /** Inline bytes (strings are UTF-8). */
  readonly content?: Uint8Array
  /** Or an uploaded file in the blob store (`files/<sha256>`), read when the message is composed. */
  readonly key?: string
}

/** A checked message. */
export interface OutMessage {
  readonly from: OutAddress
  readonly to: readonly OutAddress[]
  readonly cc: readonly OutAddress[]
  readonly bcc: readonly OutAddress[]
  readonly replyTo: OutAddress | null
  readonly subject: string
  readonly text: string | null
  readonly html: string | null
  readonly headers: readonly (readonly [string, string])[]
  readonly attachments: readonly OutAttachment[]
}

const LOCAL = /^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*$/
const DOMAIN = /^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/
const HEADER_NAME = /^[A-Za-z0-9][A-Za-z0-9-]{0,75}$/
const CONTENT_TYPE = /^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}\/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}$/
const FILE_KEY = /^files\/[0-9a-f]{64}$/
// Set through their own fields, or the platform's to write.
const RESERVED_HEADERS = new Set(['from', 'to', 'cc', 'bcc', 'reply-to', 'subject', 'message-id', 'date', 'mime-version', 'content-type',
  'content-transfer-encoding', 'content-disposition', 'dkim-signature', 'return-path', 'received', 'sender'])

const invalid = (field: string, allowed: string): EspraError => createError('ESPRA_ERR_MAIL_INVALID', { field, allowed })
const injection = (field: string): EspraError =>
  createError('ESPRA_ERR_MAIL_HEADER_INJECTION', { field })

/** A string that goes into a header: CR, LF or NUL anywhere is header injection. */
function headerText(value: unknown, field: string, max: number): string {
  if (typeof value !== 'string') throw invalid(field, 'a string')
  if (/[\r\n\0]/.test(value)) throw injection(field)
  if (value.length > max) throw invalid(field, `at most ${max} characters`)
  return value
}

/** `local@domain` (≤ 254 bytes), the domain lower-cased; null when it is not one. */
export function normalAddress(raw: string): string | null {
  const at = raw.lastIndexOf('@')
  if (at <= 0 || Buffer.byteLength(raw) > 254) return null
  const local = raw.slice(0, at)
  const domain = raw.slice(at + 1).toLowerCase()
  if (local.length > 64 || !LOCAL.test(local) || !DOMAIN.test(domain)) return null
  return `${local}@${domain}`
}

function address(value: unknown, field: string): OutAddress {
  let name: string | null = null
  let raw: unknown = value
  if (typeof value === 'object' && value !== null && !Array.isArray(value)) {
    const o = value as Record<string, unknown>
    if (o['name'] !== undefined && o['name'] !== null) name = headerText(o['name'], `${field}.name`, 200)
    raw = o['address']
    field = `${field}.address`
  }
  const text = headerText(raw, field, 254).trim()
  const address = normalAddress(text)
  if (address === null) throw invalid(field, `an address local@domain (got ${JSON.stringify(text.slice(0, 80))})`)
  return { name, address }
}

/** One address, a list, or a comma-separated string of addresses. */
function addressList(value: unknown, field: string): OutAddress[] {
  if (value === undefined || value === null) return []
  if (typeof value === 'string') {
    if (/[\r\n\0]/.test(value)) throw injection(field)
    return value.split(',').filter((s) => s.trim() !== '').map((s, i) => address(s, `${field}[${i}]`))
  }
  const items = Array.isArray(value) ? value : [value]
  return items.map((v, i) => address(v, `${field}[${i}]`))
}

function optionalBody(value: unknown, field: string): string | null {
  if (value === undefined || value === null) return null
  if (typeof value !== 'string') throw invalid(field, 'a string')
  return value
}

function attachments(value: unknown): OutAttachment[] {
  if (value === undefined || value === null) return []
  if (!Array.isArray(value) || value.length > MAX_ATTACHMENTS) throw invalid('attachments', `a list of at most ${MAX_ATTACHMENTS}`)
  return value.map((a: unknown, i) => {
    const field = `attachments[${i}]`
    if (typeof a !== 'object' || a === null || Array.isArray(a)) throw invalid(field, 'a map {filename, contentType?, content | key}')
    const o = a as Record<string, unknown>
    const filename = headerText(o['filename'], `${field}.filename`, 255)
    if (filename.trim() === '') throw invalid(`${field}.filename`, 'a file name')
    const contentType = o['contentType'] === undefined || o['contentType'] === null ? null : headerText(o['contentType'], `${field}.contentType`, 255)
    if (contentType !== null && !CONTENT_TYPE.test(contentType)) throw invalid(`${field}.contentType`, 'a media type such as application/pdf')
    const { content, key } = o
    if ((content === undefined) === (key === undefined)) throw invalid(field, 'given content (string or bytes) or key (an uploaded file), one of them')
    if (key !== undefined) {
      if (typeof key !== 'string' || !FILE_KEY.test(key)) throw invalid(`${field}.key`, 'an uploaded file\'s key, files/<sha256>')
      return { filename, contentType, key }
    }
    if (typeof content === 'string') return { filename, contentType, content: new TextEncoder().encode(content) }
    if (content instanceof Uint8Array) return { filename, contentType, content }
    throw invalid(`${field}.content`, 'a string or bytes')
  })
}

/** Checks what the app (or the CLI) passed; throws the first problem, naming its field. */
export function checkOutMessage(input: unknown): OutMessage {
  if (typeof input !== 'object' || input === null || Array.isArray(input)) throw invalid('message', 'a map {from, to, cc?, bcc?, replyTo?, subject?, text?, html?, headers?, attachments?}')
  const o = input as Record<string, unknown>
  const known = new Set(['from', 'to', 'cc', 'bcc', 'replyTo', 'subject', 'text', 'html', 'headers', 'attachments'])
  const unknown = Object.keys(o).find((k) => !known.has(k) && o[k] !== undefined)
  if (unknown !== undefined) throw invalid(unknown, `absent (known: ${[...known].join(', ')})`)
  if (o['from'] === undefined || o['from'] === null) throw invalid('from', 'an address local@domain')
  const from = address(o['from'], 'from')
  const to = addressList(o['to'], 'to')
  const cc = addressList(o['cc'], 'cc')
  const bcc = addressList(o['bcc'], 'bcc')
  const count = to.length + cc.length + bcc.length
  if (count === 0) throw invalid('to', 'at least one recipient (to, cc or bcc)')
  if (count > MAX_OUT_RECIPIENTS) throw invalid('to', `at most ${MAX_OUT_RECIPIENTS} recipients in all (to, cc, bcc; got ${count})`)
  const replyTo = o['replyTo'] === undefined || o['replyTo'] === null ? null : address(o['replyTo'], 'replyTo')
  const subject = o['subject'] === undefined || o['subject'] === null ? '' : headerText(o['subject'], 'subject', MAX_SUBJECT_CHARS)
  const headers: [string, string][] = []
  if (o['headers'] !== undefined && o['headers'] !== null) {
    if (typeof o['headers'] !== 'object' || Array.isArray(o['headers'])) throw invalid('headers', 'a map of header name to string')
    for (const [name, value] of Object.entries(o['headers'] as Record<string, unknown>)) {
      if (/[\r\n\0]/.test(name)) throw injection(`headers[${JSON.stringify(name.slice(0, 40))}]`)
      if (!HEADER_NAME.test(name)) throw invalid(`headers[${JSON.stringify(name.slice(0, 40))}]`, 'a header name of letters, digits and -')
      if (RESERVED_HEADERS.has(name.toLowerCase())) throw invalid(`headers[${JSON.stringify(name)}]`, 'a header the platform does not write itself (use the message\'s own fields)')
      headers.push([name, headerText(value, `headers[${JSON.stringify(name)}]`, 998)])
    }
    if (headers.length > MAX_CUSTOM_HEADERS) throw invalid('headers', `at most ${MAX_CUSTOM_HEADERS} headers`)
  }
  return { from, to, cc, bcc, replyTo, subject, text: optionalBody(o['text'], 'text'), html: optionalBody(o['html'], 'html'), headers, attachments: attachments(o['attachments']) }
}

/** Bytes of the message before encoding (bodies and attachments), a floor for its raw size. */
export function contentBytes(m: OutMessage): number {
  return Buffer.byteLength(m.text ?? '') + Buffer.byteLength(m.html ?? '') + m.attachments.reduce((n, a) => n + (a.content?.length ?? 0), 0)
}

/** A new outbound message id: `o` + time (base 36, sortable) + 12 random hex digits. */
export function newOutId(now = Date.now()): string {
  return `o${now.toString(36)}${randomBytes(6).toString('hex')}`
}

export const OUT_ID = /^o[0-9a-z]{6,12}[0-9a-f]{12}$/

const domainOf = (address: string): string => address.slice(address.lastIndexOf('@') + 1)

const asHeader = (a: OutAddress): { name: string; address: string } | string => (a.name === null ? a.address : { name: a.name, address: a.address })

/**
 * The raw message (CRLF line ends) with `Message-ID: <id@from-domain>`;
 * `files` opens an attachment given by key (null: no such file).
 */
export async function composeOutMessage(m: OutMessage, id: string, files: (key: string) => Promise<Readable | null>): Promise<{ raw: Buffer; messageId: string }> {
  const attachments = []
  for (const [i, a] of m.attachments.entries()) {
    let content: Buffer | Readable
    if (a.key !== undefined) {
      const body = await files(a.key)
      if (body === null) throw invalid(`attachments[${i}].key`, `an uploaded file (${a.key} is not in the blob store)`)
      content = body
    } else content = Buffer.from(a.content!)
    attachments.push({ filename: a.filename, content, ...(a.contentType !== null ? { contentType: a.contentType } : {}) })
  }
  const messageId = `${id}@${domainOf(m.from.address)}`
  // nodemailer is loaded with the first message composed: checking one (checkOutMessage) needs none of it.
  const { default: MailComposer } = await import('nodemailer/lib/mail-composer')
  const composer = new MailComposer({
    from: asHeader(m.from),
    to: m.to.map(asHeader),
    cc: m.cc.map(asHeader),
    // Never written as a header: bcc recipients are only in the envelope.
    ...(m.replyTo !== null ? { replyTo: asHeader(m.replyTo) } : {}),
    subject: m.subject,
    ...(m.text !== null ? { text: m.text } : {}),
    ...(m.html !== null ? { html: m.html } : {}),
    headers: m.headers.map(([key, value]) => ({ key, value })),
    attachments,
    messageId: `<${messageId}>`,
    date: new Date(),
  })
  const raw = await new Promise<Buffer>((resolve, reject) => composer.compile().build((err, out) => (err ? reject(err) : resolve(out))))
  return { raw, messageId }
}

/** Every envelope recipient once (case-insensitively), grouped by lower-case domain. */
export function recipientsByDomain(m: Pick<OutMessage, 'to' | 'cc' | 'bcc'>): Map<string, string[]> {
  const seen = new Set<string>()
  const out = new Map<string, string[]>()
  for (const a of [...m.to, ...m.cc, ...m.bcc]) {
    const k = a.address.toLowerCase()
    if (seen.has(k)) continue
    seen.add(k)
    const d = domainOf(a.address)
    out.set(d, [...(out.get(d) ?? []), a.address])
  }
  return out
}
