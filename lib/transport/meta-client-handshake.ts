/**
 * The client side of the meta handshake (docs/meta-protocol.md): connect to
 * one seed, read its hello, answer with our proof and identity, check the
 * seed's proof in its welcome, and open the session. The seed link
 * (lib/transport/meta-client.ts) runs one of these per attempt and decides
 * what the welcome means (leadership, redirects).
 */
import { connect } from 'node:net'
import { createError } from '../core/errors.js'
import type { Logger } from '../core/log.js'
import { clientProof, isNonce, META_VERSION, newNonce, proofMatches, serverProof } from './meta-auth.js'
import { protocolError } from './meta-frames.js'
import { MetaSession } from './meta-session.js'

/** One seed of the list, its address as given and parsed. */
export interface SeedTarget {
  readonly address: string
  readonly host: string
  readonly port: number
}

/** Who we are to the seed. */
export interface MetaPeerIdentity {
  kind: 'node' | 'admin'
  id?: string
}

export interface SeedHandshakeOptions<C> {
  /** The key derived from the cluster secret (`deriveMetaKey`). */
  readonly key: Buffer
  readonly peer: MetaPeerIdentity
  readonly maxFrame: number
  readonly log: Logger
  /** The session's context (the seed link). */
  readonly context: C
  /** One-way messages from the seed, with the epoch they are stamped with. */
  readonly onMessage: (op: string, body: unknown, epoch: number | undefined) => void
  /** Pushes kept while the session is not open yet. */
  readonly maxEarlyFrames: number
  /** TCP connect plus handshake must finish within this (5 s). */
  readonly handshakeTimeoutMs?: number
  readonly requestTimeoutMs?: number
  /** The session being set up as soon as it exists (so a close can destroy it), then null when the handshake ends either way. */
  readonly onConnecting: (session: MetaSession<C> | null) => void
  /** What the other end is, in errors (`seed` by default). */
  readonly label?: string
}

/** Connects to `target` and authenticates both ways; answers the open session and the seed's welcome. */
export async function handshakeWithSeed<C>(target: SeedTarget, options: SeedHandshakeOptions<C>): Promise<{ session: MetaSession<C>; welcome: Record<string, unknown> }> {
  const ms = options.handshakeTimeoutMs ?? 5000
  const label = options.label ?? 'seed'
  const socket = connect({ host: target.host, port: target.port })
  socket.setNoDelay(true)
  socket.setKeepAlive(true, 10_000)
  const session = new MetaSession<C>({
    socket, maxFrame: options.maxFrame, log: options.log, context: options.context, remote: target.address,
    onMessage: (op, body, _ctx, epoch) => options.onMessage(op, body, epoch),
    maxEarlyFrames: options.maxEarlyFrames,
    ...(options.requestTimeoutMs !== undefined ? { requestTimeoutMs: options.requestTimeoutMs } : {}),
  })
  options.onConnecting(session)
  const timer = setTimeout(() => {
    session.destroy(createError('ESPRA_ERR_META_TIMEOUT', { what: `handshake with ${label} ${target.address}`, ms }))
  }, ms)
  try {
    const hello = await session.nextFrame()
    if (hello['t'] !== 'hello') throw protocolError(`${label} sent '${String(hello['t'])}' instead of hello`)
    if (hello['v'] !== META_VERSION) {
      throw createError('ESPRA_ERR_META_VERSION', { who: `the ${label}`, version: String(hello['v']).slice(0, 16), supported: META_VERSION, seed: target.address })
    }
    const seedNonce = hello['nonce']
    if (!isNonce(seedNonce)) throw protocolError(`${label} hello carries no valid nonce`)
    const nonce = newNonce()
    const { kind, id } = options.peer
    session.writeValue({ t: 'auth', v: META_VERSION, nonce, proof: clientProof(options.key, seedNonce, nonce), peer: id === undefined ? { kind } : { kind, id } })
    const welcome = await session.nextFrame()
    if (welcome['t'] !== 'welcome') throw protocolError(`${label} sent '${String(welcome['t'])}' instead of welcome`)
    if (!proofMatches(serverProof(options.key, nonce, seedNonce), welcome['proof'])) {
      throw createError('ESPRA_ERR_META_AUTH', { reason: `${label} ${target.address} could not prove it knows the cluster secret`, seed: target.address })
    }
    session.open()
    return { session, welcome }
  } finally {
    clearTimeout(timer)
    options.onConnecting(null)
  }
}
