/**
 * One mail child's SMTP server (smtp-server) on the node's shared SMTP
 * socket. Replies and when (docs/mail.md, "SMTP replies"):
 *
 * - RCPT: a syntactically bad address 553 5.1.3; a domain not in
 *   `--mail-domains` 550 5.1.1; past `--mail-max-recipients` 452 4.5.3. All
 *   before DATA, so nothing is read for a refused recipient.
 * - DATA: SIZE is advertised and a declared larger size is refused at MAIL
 *   FROM (552, by smtp-server). While the data streams, past
 *   `--mail-max-size` nothing more is stored (the meter drops it unbuffered),
 *   the partial object is deleted and the end of DATA answers 552 5.3.4.
 *   The same for a line over `--mail-max-line-length` (554 5.6.0) and a
 *   header section over `--mail-max-header-size` (552 5.3.4). Either way the
 *   data is read to its end, so the connection goes on with the next command.
 * - Authentication: by default the 250 does not wait for it: the record and
 *   the task carry what the app node's handoff needs to verify the stored
 *   message (`verify`, roles/app/mail-handoff.ts). With
 *   `--mail-dmarc-reject` the node must be able to refuse, so the bytes also
 *   stream into mailauth (lib/mail/mail-auth.ts), a DMARC failure under
 *   p=reject is 550 5.7.1, and the results go on the record and the task.
 * - The raw bytes of a message up to 48 KB are held in memory and go to the
 *   seed with its record (raw-body.ts); a larger one's are staged in the
 *   blob store while they stream, and at the end of DATA they join the next
 *   group's blob commit (which runs while the authentication results, if
 *   verified here, are awaited), then the message joins the next
 *   group's record (inbound-store.ts): 250
 *   with the message id only once its group is durable, recorded and queued;
 *   any failure on the way is 451 4.3.0 (the client retries later).
 */
import { PassThrough, type Readable } from 'node:stream'
import { SMTPServer, type SMTPServerDataStream, type SMTPServerOptions, type SMTPServerSession } from 'smtp-server'
import type { Logger } from '../../lib/core/log.js'
import { INLINE_INBOUND_BYTES, newMailId, rawMailKey, type MailEnvelope } from '../../lib/mail/inbound.js'
import type { InboundStore } from './inbound-store.js'
import { takeRawBody, type RawBody } from './raw-body.js'
import { MessageMeter } from './message-meter.js'
import type { LimitsClient } from './limits-client.js'
import type { InboundCounters, RefusalReason } from './counters.js'
import type { HandoffVerification } from '../../lib/mail/inbound-auth.js'
import type { MailVerifier, PendingVerification } from '../../lib/mail/mail-auth.js'
import type { RecipientCheck } from './recipient-check.js'

export interface SmtpOptions {
  readonly log: Logger
  /** Counts accepted messages and refusals by reason (./counters.ts); none when absent. */
  readonly counters?: InboundCounters
  readonly domains: readonly string[]
  readonly maxSize: number
  /** Longest line (octets without CRLF) and largest header section (octets) a message may have. */
  readonly maxLineLength: number
  readonly maxHeaderSize: number
  readonly maxRecipients: number
  /** The node-wide per-address limits, kept by the parent (limits-client.ts). */
  readonly limits: LimitsClient
  /** The certificate and key STARTTLS offers (null: no STARTTLS), and whether MAIL FROM needs it first. */
  readonly tls: { readonly cert: Buffer; readonly key: Buffer; readonly required: boolean } | null
  /** The name in the greeting and in EHLO. */
  readonly hostname: string
  readonly store: InboundStore
  /** SPF/DKIM/DMARC/ARC of each message while it streams, awaited before the 250 (only with `--mail-dmarc-reject`; else null). */
  readonly verifier: MailVerifier | null
  /** Without a verifier: what the handoff verifies each message with after the 250 (null: `--mail-auth false`, nobody verifies). */
  readonly verifyAtHandoff: HandoffVerification | null
  /** Refuse (550 5.7.1, nothing stored) a message whose DMARC fails when its domain publishes p=reject. */
  readonly dmarcReject: boolean
  /** The app's say on each recipient (acceptRecipient), and what to answer when it has none in time. */
  readonly recipients: RecipientCheck | null
  readonly recipientFail: 'open' | 'closed'
}

/** A reply with an SMTP code (smtp-server sends `responseCode` and the message). */
function reply(code: number, message: string): Error {
  return Object.assign(new Error(message), { responseCode: code })
}

// local@domain: a dot-atom or quoted local part, a domain of labels. Addresses with IP literals are not mail we take.
const ADDRESS = /^(?:[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*|"(?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\[\x20-\x7e])*")@([A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*)\.?$/

/** The reply to a message refused by a limit while it streamed (nothing of it is kept); logs why. */
function refusalReply(meter: MessageMeter, opts: SmtpOptions): Error {
  opts.counters?.refused(meter.refused === 'line' ? 'line_too_long' : meter.refused === 'header' ? 'header_too_large' : 'too_large')
  switch (meter.refused) {
    case 'line':
      return reply(554, `5.6.0 Line ${meter.longLine} of the message is longer than ${opts.maxLineLength} octets (RFC 5322 2.1.1): message refused`)
    case 'header':
      return reply(552, `5.3.4 Header section too big: the limit is ${opts.maxHeaderSize} octets`)
    default:
      return reply(552, `5.3.4 Message too big: the limit is ${opts.maxSize} bytes`)
  }
}

export function createSmtpServer(opts: SmtpOptions): SMTPServer {
  const { log } = opts
  const domains = new Set(opts.domains)
  const refuse = (callback: (err?: Error) => void, reason: RefusalReason, err: Error): void => {
    opts.counters?.refused(reason)
    callback(err)
  }

  function refusal(meter: MessageMeter, session: SMTPServerSession, id: string): Error {
    const err = refusalReply(meter, opts)
    const limit = meter.refused === 'line' ? '--mail-max-line-length' : meter.refused === 'header' ? '--mail-max-header-size' : '--mail-max-size'
    log.info({ id, bytes: meter.bytes, refused: meter.refused, from: session.envelope.mailFrom || null }, `inbound message refused (${err.message.slice(6)}): over ${limit}`)
    return err
  }

  async function accept(stream: SMTPServerDataStream, session: SMTPServerSession): Promise<string> {
    const receivedAt = Date.now()
    const id = newMailId(receivedAt)
    const key = rawMailKey(id, receivedAt)
    const meter = new MessageMeter({ maxBytes: opts.maxSize, maxLine: opts.maxLineLength, maxHeader: opts.maxHeaderSize })
    // When the data ended: the per-message log line says how long storing, verifying and recording took after it.
    let endedAt = 0
    // The client may go away mid-DATA: smtp-server destroys the stream; the store's write must fail too, not wait.
    const ended = new Promise<void>((resolve) => {
      const done = () => {
        endedAt ||= performance.now()
        resolve()
      }
      stream.once('end', done)
      stream.once('close', done)
    })
    // The store's write sees a failure through its own listener and rejects; an 'error' with nobody left listening must not take the child down.
    meter.on('error', () => undefined)
    stream.on('error', (err) => meter.destroy(err))
    stream.once('close', () => {
      if (!stream.readableEnded) meter.destroy(Object.assign(new Error('the client closed the connection during DATA'), { code: 'ECONNRESET' }))
    })
    stream.pipe(meter)
    // With verification the metered bytes go two ways: to the store and to mailauth (DKIM body hashes as they pass).
    let toStore: Readable = meter
    let verification: PendingVerification | null = null
    if (opts.verifier !== null) {
      const store = new PassThrough()
      const auth = new PassThrough()
      meter.on('error', (err) => {
        store.destroy(err)
        auth.destroy(err)
      })
      meter.pipe(store)
      meter.pipe(auth)
      toStore = store
      const sender = session.envelope.mailFrom === false ? '' : session.envelope.mailFrom.address
      verification = opts.verifier.start(auth, { ip: session.remoteAddress, helo: session.hostNameAppearsAs ?? '', sender })
    }
    let body: RawBody
    try {
      // Small: held, to ride to the seed with the record. Larger: staged in the blob store, not durable yet (the group commit after the end of DATA syncs it with the others; a failed stage leaves nothing).
      body = await takeRawBody(toStore, INLINE_INBOUND_BYTES, (rest) => opts.store.blobs.stage(key, rest, { contentType: 'message/rfc822' }))
    } catch (err) {
      verification?.abandon()
      stream.unpipe(meter)
      stream.resume()
      await ended
      if (stream.destroyed && !stream.readableEnded) throw reply(451, '4.3.0 Connection lost during DATA')
      log.error({ err, id }, `inbound message ${id} could not be stored: answered 451`)
      throw reply(451, '4.3.0 Temporary failure storing the message, try again later')
    }
    const { staged } = body
    const size = staged === null ? body.bytes.length : staged.size
    await ended
    const storedAt = performance.now()
    if (stream.sizeExceeded && meter.refused === null) meter.refused = 'size'
    if (meter.refused !== null) {
      if (staged !== null) await opts.store.blobs.discard([staged]).catch(() => undefined)
      throw refusal(meter, session, id)
    }
    // With a verifier, the group's blob commit starts now and runs while the authentication lookups finish (it does not need their results).
    const synced = staged === null ? Promise.resolve() : opts.store.sync(staged)
    const auth = verification === null ? null : await verification.results()
    const verifiedAt = performance.now()
    if (auth !== null && opts.dmarcReject && auth.dmarc.result === 'fail' && auth.dmarc.policy === 'reject') {
      await synced.catch(() => undefined)
      if (staged !== null) await opts.store.blobs.discard([staged]).catch(() => undefined)
      log.info({ id, from: session.envelope.mailFrom || null, remoteAddress: session.remoteAddress, auth: auth.header }, `inbound message refused: DMARC fails and ${auth.dmarc.domain} publishes p=reject (--mail-dmarc-reject)`)
      opts.counters?.refused('dmarc')
      throw reply(550, `5.7.1 Message refused: DMARC fails and ${auth.dmarc.domain} asks for rejection`)
    }
    const envelope: MailEnvelope = {
      from: session.envelope.mailFrom === false ? '' : session.envelope.mailFrom.address,
      to: session.envelope.rcptTo.map((r) => r.address),
      remoteAddress: session.remoteAddress,
      helo: session.hostNameAppearsAs ?? '',
    }
    // Not verified here: the handoff verifies the stored message after the 250.
    const verify = auth === null && opts.verifyAtHandoff !== null ? { verify: opts.verifyAtHandoff } : {}
    try {
      const raw = { key, size, sha256: meter.sha256() }
      const accepted = await opts.store.accept(staged === null
        ? { staged, bytes: body.bytes!, id, raw: { ...raw, store: 'ds' }, envelope, messageId: meter.messageId(), at: receivedAt, auth, ...verify }
        : { staged, id, raw, envelope, messageId: meter.messageId(), at: receivedAt, auth, ...verify })
      const ms = { store: Math.round(storedAt - endedAt), auth: Math.round(verifiedAt - storedAt), ...accepted.ms }
      log.info({ id: accepted.id, bytes: size, to: envelope.to.length, duplicate: accepted.duplicate, ms, ...(auth === null ? {} : { spf: auth.spf.result, dkim: auth.dkim.result, dmarc: auth.dmarc.result }) }, accepted.duplicate ? `inbound message ${accepted.id} received again (a retry): not handed twice` : `inbound message ${id} stored and queued`)
      if (opts.counters) opts.counters[accepted.duplicate ? 'duplicates' : 'accepted']++
      return accepted.id
    } catch (err) {
      log.error({ err, id }, `inbound message ${id} could not be recorded or queued: answered 451`)
      opts.counters?.refused('queue_failed')
      throw reply(451, '4.3.0 Temporary failure queueing the message, try again later')
    }
  }

  // Questions asked of the app per transaction (smtp-server gives each transaction a fresh envelope).
  const questions = new WeakMap<object, number>()

  const options: SMTPServerOptions = {
    name: opts.hostname,
    banner: 'espra-node', // the greeting: 220 <host> ESMTP espra-node
    size: opts.maxSize,
    authOptional: true,
    // Inbound MX: no AUTH. STARTTLS only with --smtp-tls-cert.
    disabledCommands: opts.tls === null ? ['AUTH', 'STARTTLS'] : ['AUTH'],
    ...(opts.tls === null ? {} : { key: opts.tls.key, cert: opts.tls.cert }),
    disableReverseLookup: true,
    logger: false,
    onConnect(session, callback) {
      opts.limits.connect(session.remoteAddress, session.id).then((ok) => {
        if (!ok) return refuse(callback, 'too_many_connections', reply(421, '4.7.0 Too many connections from your address, try again later'))
        callback()
      }, (err: Error) => callback(err))
    },
    onClose(session) {
      opts.limits.closed(session.id)
    },
    onMailFrom(_address, session, callback) {
      if (opts.tls?.required && !session.secure) return refuse(callback, 'tls_required', reply(530, '5.7.0 Must issue a STARTTLS command first'))
      opts.limits.message(session.remoteAddress).then((ok) => {
        if (!ok) return refuse(callback, 'rate_limited', reply(450, '4.7.1 Too many messages from your address this minute, try again later'))
        callback()
      }, (err: Error) => callback(err))
    },
    onRcptTo(address, session, callback) {
      const m = ADDRESS.exec(address.address)
      if (m === null) return refuse(callback, 'bad_address', reply(553, `5.1.3 Bad recipient address syntax: <${address.address.slice(0, 100)}>`))
      if (!domains.has(m[1]!.toLowerCase())) return refuse(callback, 'unknown_domain', reply(550, `5.1.1 <${address.address}>: no mail is accepted for this domain here`))
      if (session.envelope.rcptTo.length >= opts.maxRecipients) return refuse(callback, 'too_many_recipients', reply(452, `4.5.3 Too many recipients: at most ${opts.maxRecipients} per message, send the rest in another`))
      if (opts.recipients === null) return callback()
      // Each question is a request to an app node: at most --mail-max-recipients of them per transaction, refused ones included.
      const asked = (questions.get(session.envelope) ?? 0) + 1
      questions.set(session.envelope, asked)
      if (asked > opts.maxRecipients) return refuse(callback, 'too_many_recipients', reply(452, `4.5.3 Too many recipients tried: at most ${opts.maxRecipients} per message`))
      opts.recipients.check(address.address).then((v) => {
        if (v.verdict === 'accept') return callback()
        if (v.verdict === 'refuse') return refuse(callback, 'unknown_recipient', reply(550, `5.1.1 <${address.address}>: ${v.reason ?? 'no such recipient here'}`))
        log.warn({ to: address.address, why: v.why, fail: opts.recipientFail }, `the app could not say whether it takes <${address.address}> (${v.why}): ${opts.recipientFail === 'open' ? 'taken (--mail-recipient-fail open)' : 'answered 451 (--mail-recipient-fail closed)'}`)
        if (opts.recipientFail === 'open') return callback()
        refuse(callback, 'recipient_check_failed', reply(451, '4.3.0 Cannot check this recipient now, try again later'))
      }, (err: unknown) => refuse(callback, 'recipient_check_failed', reply(451, `4.3.0 Cannot check this recipient now (${(err as Error)?.message ?? err}), try again later`)))
    },
    onData(stream, session, callback) {
      accept(stream, session).then(
        (id) => callback(null, `2.0.0 Ok: queued as ${id}`),
        (err: Error) => callback(err),
      )
    },
  }
  const server = new SMTPServer(options)
  // A client's misbehaviour (a reset, a TLS error) is its problem, never the child's.
  server.on('error', (err) => log.info({ err: { message: err.message, code: (err as { code?: string }).code } }, 'smtp connection error'))
  return server
}
