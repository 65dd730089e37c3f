/**
 * A real receiving SMTP server (smtp-server) for outbound mail tests and
 * benches: it keeps what it took (envelope and raw bytes) and answers each
 * recipient as the test says (`rcpt`: a reply code and text, or null for 250).
 */
import { SMTPServer, type SMTPServerAddress } from 'smtp-server'

export interface Received {
  readonly from: string
  readonly to: string[]
  readonly raw: Buffer
  /** The 250 was sent (false while `hold` keeps it, or when the client went away first). */
  acked: boolean
  /** The message came over TLS (STARTTLS, offered only with `tls`). */
  readonly secure: boolean
}

export interface Receiver {
  readonly port: number
  readonly received: Received[]
  /** Client connections open now. */
  readonly open: number
  /** How many times each recipient was offered at RCPT (lower-case). */
  readonly offered: Map<string, number>
  close(): Promise<void>
}

export interface ReceiverOptions {
  /** Refuse this recipient with `[code, text]` on this offer (1, 2, ...), or take it (null). */
  rcpt?: (address: string, offer: number) => [number, string] | null
  /** Called when a message has been read in full; the 250 waits for the promise it returns. */
  hold?: (r: Received) => Promise<void> | void
  /** Offer STARTTLS with this key and certificate (default: no STARTTLS). */
  tls?: { key: Buffer; cert: Buffer }
}

export async function startReceiver(opts: ReceiverOptions = {}): Promise<Receiver> {
  const received: Received[] = []
  const offered = new Map<string, number>()
  const closed = new Set<string>()
  let open = 0
  const server = new SMTPServer({
    authOptional: true,
    disabledCommands: opts.tls === undefined ? ['STARTTLS'] : [],
    ...(opts.tls === undefined ? {} : { key: opts.tls.key, cert: opts.tls.cert }),
    logger: false,
    size: 50 * 1024 * 1024,
    onConnect(_session, callback) {
      open++
      callback()
    },
    onClose(session) {
      open--
      closed.add(session.id)
    },
    onRcptTo(address: SMTPServerAddress, _session, callback) {
      const key = address.address.toLowerCase()
      const n = (offered.get(key) ?? 0) + 1
      offered.set(key, n)
      const refusal = opts.rcpt?.(address.address, n) ?? null
      if (refusal === null) return callback()
      callback(Object.assign(new Error(refusal[1]), { responseCode: refusal[0] }))
    },
    onData(stream, session, callback) {
      const chunks: Buffer[] = []
      stream.on('data', (c: Buffer) => chunks.push(c))
      stream.on('end', () => {
        const r: Received = {
          from: session.envelope.mailFrom === false ? '' : session.envelope.mailFrom.address,
          to: session.envelope.rcptTo.map((a) => a.address),
          raw: Buffer.concat(chunks),
          acked: false,
          secure: session.secure,
        }
        received.push(r)
        void Promise.resolve(opts.hold?.(r)).then(() => {
          r.acked = !closed.has(session.id)
          callback()
        })
      })
    },
  })
  server.on('error', () => {})
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.server.address() as { port: number }).port
  return {
    port, received, offered,
    get open() {
      return open
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  }
}
