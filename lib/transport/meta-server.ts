/**
 * The seed's meta port (and the Live nodes' internal link): a TCP server that authenticates every peer
 * (docs/meta-protocol.md, "Handshake") and then serves the seed's op tables
 * over a {@link MetaSession}. A bad peer (wrong secret or version, garbage,
 * oversized or stalled frames, unknown message types, silence) is dropped with
 * one logged line naming the reason and its address; everyone else keeps
 * being served. Unauthenticated connections are capped and limited to small
 * frames so a flood cannot exhaust memory.
 */
import { createServer, type Server, type Socket } from 'node:net'
import { encodeFrame } from '../codec/frame.js'
import { createError, EspraError } from '../core/errors.js'
import type { Logger } from '../core/log.js'
import { clientProof, deriveMetaKey, isNonce, META_VERSION, newNonce, proofMatches, serverProof } from './meta-auth.js'
import { MetaSession, type MessageHandler, type RequestHandler } from './meta-session.js'
import { isMap } from './meta-shapes.js'

export type PeerKind = 'node' | 'admin'

/** One connection as the seed's handlers see it. */
export interface MetaPeer {
  /** Set once the peer authenticated. */
  kind: PeerKind | null
  /** Identity the peer claimed in `auth` (optional for admin peers). */
  id: string | null
  readonly remote: string
  readonly session: MetaSession<MetaPeer>
  /** Node id once this peer registered (set by the seed's `register` handler). */
  nodeId: string | null
}

export interface MetaServerOptions {
  readonly host: string
  /** 0 picks a free port. */
  readonly port: number
  readonly secret: string
  readonly seedId: string
  readonly maxFrame: number
  readonly log: Logger
  readonly handlers: ReadonlyMap<string, RequestHandler<MetaPeer>>
  readonly messages: ReadonlyMap<string, MessageHandler<MetaPeer>>
  /** An authenticated peer's connection ended (reason null when it closed cleanly). */
  readonly onPeerClosed?: (peer: MetaPeer, reason: EspraError | null) => void
  /** Handshake deadline from accept (5 s). */
  readonly handshakeTimeoutMs?: number
  /** A started frame must finish within this (5 s). */
  readonly frameTimeoutMs?: number
  /** An authenticated peer silent this long is dropped (15 s). */
  readonly idleTimeoutMs?: number
  /** Connections still in their handshake, at most (256). */
  readonly maxUnauthenticated?: number
  /** Frame limit before authentication (4 KB; `auth` is about 150 bytes). */
  readonly handshakeMaxFrame?: number
  /** Seeds leading by a lease: the epoch stamped on every push, null while not leading (nothing is pushed). */
  readonly pushEpoch?: () => number | null
  /** More fields for the `welcome` frame (a seed's leadership: docs/meta-protocol.md). */
  readonly welcome?: () => Record<string, unknown>
  /** Names the port in logs ('meta port'; Live nodes: 'live link'). */
  readonly label?: string
  /** The option that sets the port, named when it cannot listen (default `--meta-port`). */
  readonly option?: string
}

export interface MetaServer {
  readonly port: number
  /** Authenticated peers. */
  readonly peers: ReadonlySet<MetaPeer>
  close(): Promise<void>
  destroy(err?: Error): void
}

const protocolError = (reason: string) => createError('ESPRA_ERR_META_PROTOCOL', { reason })
const BUSY_FRAME = encodeFrame({ t: 'error', ...createError('ESPRA_ERR_META_BUSY').toWire() })

/** Listens on the meta port; resolves once listening. */
export async function startMetaServer(opts: MetaServerOptions): Promise<MetaServer> {
  const key = deriveMetaKey(opts.secret)
  const log = opts.log
  const handshakeMs = opts.handshakeTimeoutMs ?? 5000
  const maxUnauthenticated = opts.maxUnauthenticated ?? 256
  const peers = new Set<MetaPeer>()
  const sessions = new Set<MetaSession<MetaPeer>>()
  let unauthenticated = 0
  let closing = false
  let busyLoggedAt = 0
  let busySuppressed = 0

  function refuseBusy(socket: Socket): void {
    // The frame fits the kernel's send buffer of a fresh socket, so it goes out before the close.
    socket.on('error', () => {})
    socket.write(BUSY_FRAME)
    socket.destroy()
    // One line per refused peer would let a flood flood the log too: at most one per second.
    const now = Date.now()
    if (now - busyLoggedAt < 1000) {
      busySuppressed++
      return
    }
    log.warn({ remote: `${socket.remoteAddress}:${socket.remotePort}`, code: 'ESPRA_ERR_META_BUSY', reason: `${maxUnauthenticated} connections are still authenticating`, suppressed: busySuppressed }, 'meta peer dropped')
    busyLoggedAt = now
    busySuppressed = 0
  }

  function accept(socket: Socket): void {
    if (closing || unauthenticated >= maxUnauthenticated) return refuseBusy(socket)
    socket.setNoDelay(true)
    let authenticated = false
    // The session takes its context at construction and the context names the session: fill in both halves.
    const peer = { kind: null, id: null, nodeId: null } as unknown as MetaPeer
    const session = new MetaSession<MetaPeer>({
      socket, log, context: peer, maxFrame: opts.handshakeMaxFrame ?? 4096,
      handlers: opts.handlers, messages: opts.messages,
      ...(opts.pushEpoch !== undefined ? { pushEpoch: opts.pushEpoch } : {}),
      ...(opts.frameTimeoutMs !== undefined ? { frameTimeoutMs: opts.frameTimeoutMs } : {}),
    })
    Object.assign(peer, { remote: session.remote, session })
    unauthenticated++
    sessions.add(session)
    const deadline = setTimeout(() => {
      session.destroy(createError('ESPRA_ERR_META_TIMEOUT', { what: 'handshake', ms: handshakeMs }))
    }, handshakeMs)
    session.onClose((reason) => {
      clearTimeout(deadline)
      sessions.delete(session)
      if (!authenticated) unauthenticated--
      peers.delete(peer)
      logEnd(peer, reason, authenticated)
      if (authenticated) opts.onPeerClosed?.(peer, reason)
    })
    handshake(session, peer).then(
      () => {
        clearTimeout(deadline)
        authenticated = true
        unauthenticated--
        peers.add(peer)
        log.debug({ remote: peer.remote, kind: peer.kind, id: peer.id }, 'meta peer authenticated')
      },
      (err: Error) => session.destroy(err),
    )
  }

  async function handshake(session: MetaSession<MetaPeer>, peer: MetaPeer): Promise<void> {
    const seedNonce = newNonce()
    session.writeValue({ t: 'hello', v: META_VERSION, nonce: seedNonce, seed: opts.seedId })
    const auth = await session.nextFrame()
    if (auth['t'] !== 'auth') throw protocolError(`expected auth, got '${String(auth['t']).slice(0, 32)}'`)
    if (auth['v'] !== META_VERSION) {
      throw createError('ESPRA_ERR_META_VERSION', { who: 'the peer', version: String(auth['v']).slice(0, 16), supported: META_VERSION })
    }
    const peerNonce = auth['nonce']
    if (!isNonce(peerNonce)) throw protocolError('auth carries no valid nonce')
    const who = auth['peer']
    const kind = isMap(who) ? who['kind'] : undefined
    const id = isMap(who) ? who['id'] : undefined
    if ((kind !== 'node' && kind !== 'admin') || (id !== undefined && (typeof id !== 'string' || id.length > 64))) {
      throw protocolError('auth peer must be {kind: "node" | "admin", id?: string}')
    }
    if (!proofMatches(clientProof(key, seedNonce, peerNonce), auth['proof'])) {
      throw createError('ESPRA_ERR_META_AUTH', { reason: 'wrong proof (the peer does not know the cluster secret)' })
    }
    peer.kind = kind
    peer.id = id ?? null
    session.writeValue({ ...opts.welcome?.(), t: 'welcome', proof: serverProof(key, peerNonce, seedNonce) })
    session.open({ maxFrame: opts.maxFrame, idleTimeoutMs: opts.idleTimeoutMs ?? 15_000 })
  }

  // Exactly one line per connection that ends: a warning with the reason when we dropped it.
  function logEnd(peer: MetaPeer, reason: EspraError | null, authenticated: boolean): void {
    const who = { remote: peer.remote, kind: peer.kind, id: peer.nodeId ?? peer.id }
    if (reason && reason.code !== 'ESPRA_ERR_META_CLOSED') {
      log.warn({ ...who, code: reason.code, reason: reason.message }, 'meta peer dropped')
    } else if (closing) {
      log.debug(who, 'meta peer closed')
    } else {
      const level = authenticated ? 'info' : 'debug'
      log[level]({ ...who, ...(reason ? { reason: reason.message } : {}) }, authenticated ? 'meta peer disconnected' : 'meta peer left before authenticating')
    }
  }

  const server: Server = createServer({ noDelay: true }, accept)
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) => {
      reject(createError('ESPRA_ERR_NODE_LISTEN', { option: opts.option ?? '--meta-port', host: opts.host, port: opts.port, reason: err.code ?? err.message }))
    })
    server.listen({ host: opts.host, port: opts.port }, resolve)
  })
  server.on('error', (err) => log.error({ err }, 'meta server error'))
  const address = server.address()
  const port = typeof address === 'object' && address ? address.port : opts.port
  log.info({ host: opts.host, port }, `${opts.label ?? 'meta port'} listening`)

  return {
    port,
    peers,
    async close() {
      closing = true
      const stopped = new Promise<void>((resolve) => server.close(() => resolve()))
      await Promise.all([...sessions].map((s) => (s.state === 'handshake' ? s.destroy() : s.close())))
      await stopped
    },
    destroy(err?: Error) {
      closing = true
      server.close()
      for (const s of [...sessions]) s.destroy(err)
    },
  }
}
