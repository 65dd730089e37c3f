/**
 * One framed meta-protocol connection over a TCP socket, used by both ends
 * (the seed's server and the node/admin client). It starts in a handshake
 * phase where the owner reads raw frames with {@link MetaSession.nextFrame};
 * after {@link MetaSession.open} it dispatches requests through an op→handler
 * table, matches responses to requests by id, and routes one-way messages.
 *
 * A session ends exactly once; close listeners get the reason (null for a
 * clean end). Pending requests are rejected with `ESPRA_ERR_META_CLOSED`.
 * What each frame carries is in meta-frames.ts.
 */
import type { Socket } from 'node:net'
import { encodeFrame, FrameDecoder } from '../codec/frame.js'
import { createError, EspraError, toWire } from '../core/errors.js'
import type { Logger } from '../core/log.js'
import { answerError, answerFrame, clip, isEpoch, isId, peerError, protocolError, type MessageFrame } from './meta-frames.js'
import { isMap } from './meta-shapes.js'

/** Answers one request op; may return a value or a promise; throw to answer with an error. */
export type RequestHandler<C> = (body: unknown, ctx: C) => unknown
/** Handles one one-way op; throwing drops the peer with that error as the reason. */
export type MessageHandler<C> = (body: unknown, ctx: C) => void

export interface MetaSessionOptions<C> {
  readonly socket: Socket
  /** Largest frame accepted and sent; raise it with `open({ maxFrame })` after a handshake. */
  readonly maxFrame: number
  readonly log: Logger
  /** Caller data handed to every handler (who the peer is). */
  readonly context: C
  /** `host:port` for logs; defaults to the socket's remote address. */
  readonly remote?: string
  readonly handlers?: ReadonlyMap<string, RequestHandler<C>>
  readonly messages?: ReadonlyMap<string, MessageHandler<C>>
  /** Receives one-way ops missing from `messages`, with the sender's epoch when it stamped one; without it they drop the peer. */
  readonly onMessage?: (op: string, body: unknown, ctx: C, epoch?: number) => void
  /**
   * Seeds that lead by a lease (docs/postgres.md): the epoch every one-way
   * message carries (`e`), read at each send. Null means this seed does not
   * lead now: the message is not sent at all.
   */
  readonly pushEpoch?: () => number | null
  /** Default request timeout (10 s). */
  readonly requestTimeoutMs?: number
  /** A frame that has started must finish within this (5 s; 0 turns it off). */
  readonly frameTimeoutMs?: number
  /**
   * Frames kept for after the handshake while the owner is still reading it
   * (default 2: an unauthenticated peer may not queue more); past it the peer
   * is dropped. A client raises it: the seed counts the session open once its
   * welcome is written and may push at once, so pushes can arrive in the same
   * read as the welcome, before the client has opened the session.
   */
  readonly maxEarlyFrames?: number
  /** Unsent bytes beyond which the peer is dropped as too slow (default 4 frames, at least 8 MB). */
  readonly maxBufferedBytes?: number
}

export type SessionState = 'handshake' | 'open' | 'closing' | 'closed'
type CloseListener = (reason: EspraError | null) => void

interface Pending {
  resolve(value: unknown): void
  reject(err: EspraError): void
  timer: NodeJS.Timeout
}

// A dropped peer gets this long to read our error frame before its socket is destroyed.
const LINGER_MS = 1000

export class MetaSession<C = unknown> {
  readonly context: C
  readonly remote: string
  /** Date.now() of the last bytes received / sent; read by idle and keep-alive checks. */
  lastReceivedAt = Date.now()
  lastSentAt = Date.now()

  private stateValue: SessionState = 'handshake'
  private readonly socket: Socket
  private readonly decoder: FrameDecoder
  private readonly opts: MetaSessionOptions<C>
  private readonly log: Logger
  private readonly maxBuffered: number
  /** Frames of this turn are being gathered (the socket corked) for one write at its end. */
  private gathering = false
  private readonly pending = new Map<number, Pending>()
  private nextId = 1
  private inbox: Record<string, unknown>[] = []
  private waiter: { resolve(v: Record<string, unknown>): void; reject(err: EspraError): void } | null = null
  private frameTimer: NodeJS.Timeout | null = null
  private idleTimer: NodeJS.Timeout | null = null
  private idleMs = 0
  private closeListeners: CloseListener[] = []
  private onDrained: (() => void) | null = null
  private readonly closed: Promise<void>
  private markClosed!: () => void

  constructor(opts: MetaSessionOptions<C>) {
    this.opts = opts
    this.socket = opts.socket
    this.context = opts.context
    this.log = opts.log
    this.remote = opts.remote ?? formatRemote(opts.socket)
    this.decoder = new FrameDecoder(opts.maxFrame)
    this.maxBuffered = opts.maxBufferedBytes ?? Math.max(4 * opts.maxFrame, 8 * 1024 * 1024)
    this.closed = new Promise((resolve) => (this.markClosed = resolve))
    this.socket.on('data', this.onData)
    this.socket.on('error', (err: NodeJS.ErrnoException) => {
      this.finish(createError('ESPRA_ERR_META_CLOSED', { reason: `connection error ${err.code ?? err.message}`, cause: err.code ?? err.message }), false)
    })
    this.socket.on('close', () => this.finish(null, false))
  }

  get state(): SessionState {
    return this.stateValue
  }

  /** Handshake phase only: the next frame received (a map with a string `t`). */
  nextFrame(): Promise<Record<string, unknown>> {
    const queued = this.inbox.shift()
    if (queued) return Promise.resolve(queued)
    if (this.stateValue !== 'handshake') return Promise.reject(createError('ESPRA_ERR_META_CLOSED', { reason: `the session to ${this.remote} is ${this.stateValue}`, remote: this.remote }))
    return new Promise((resolve, reject) => (this.waiter = { resolve, reject }))
  }

  /** Writes a raw protocol value (handshake frames). */
  writeValue(value: Record<string, unknown>): boolean {
    return this.stateValue === 'closed' ? false : this.write(encodeFrame(value))
  }

  /** Ends the handshake: from now on frames are dispatched as requests, responses and messages. */
  open(options: { idleTimeoutMs?: number; maxFrame?: number } = {}): void {
    if (this.stateValue !== 'handshake') return
    this.stateValue = 'open'
    if (options.maxFrame !== undefined) this.decoder.maxFrame = options.maxFrame
    if (options.idleTimeoutMs) {
      this.idleMs = options.idleTimeoutMs
      this.idleTimer = setTimeout(this.checkIdle, this.idleMs).unref()
    }
    for (const frame of this.inbox.splice(0)) this.dispatch(frame)
  }

  /** Sends a request; resolves with the answer body or rejects with the peer's coded error. */
  request<T = unknown>(op: string, body: unknown, timeoutMs = this.opts.requestTimeoutMs ?? 10_000): Promise<T> {
    if (this.stateValue !== 'open') {
      return Promise.reject(createError('ESPRA_ERR_META_CLOSED', { reason: `the session to ${this.remote} is ${this.stateValue}`, remote: this.remote }))
    }
    let frame: Buffer
    try {
      frame = this.checkSize(encodeFrame({ t: 'req', id: this.nextId, op, body }))
    } catch (err) {
      return Promise.reject(err)
    }
    const id = this.nextId++
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id)
        reject(createError('ESPRA_ERR_META_TIMEOUT', { what: `meta request '${op}' to ${this.remote}`, ms: timeoutMs, op, timeoutMs }))
        this.checkDrained()
      }, timeoutMs)
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject, timer })
      this.write(frame)
    })
  }

  /**
   * Sends a one-way message. Like `socket.write`, returns false when the
   * session is not open (dropped) or the socket buffer is past its high-water
   * mark (queued; hold back optional traffic such as heartbeats).
   */
  send(op: string, body: unknown): boolean {
    if (this.stateValue !== 'open') return false
    const epoch = this.epochToStamp()
    if (epoch === null) return false
    return this.write(this.checkSize(encodeFrame(epoch === undefined ? { t: 'msg', op, body } : { t: 'msg', op, body, e: epoch })))
  }

  /** Writes a frame made by {@link encodeMessage} (one encoding for many subscribers). */
  sendEncoded(frame: MessageFrame): boolean {
    if (this.stateValue !== 'open') return false
    const epoch = this.epochToStamp()
    return epoch === null ? false : this.write(frame.bytes(epoch))
  }

  /** undefined: nothing to stamp; null: this seed may not push now. */
  private epochToStamp(): number | null | undefined {
    return this.opts.pushEpoch === undefined ? undefined : this.opts.pushEpoch()
  }

  onClose(listener: CloseListener): void {
    if (this.stateValue === 'closed') queueMicrotask(() => listener(null))
    else this.closeListeners.push(listener)
  }

  /** Lets pending requests settle, then ends the connection; resolves once it is closed. */
  async close(): Promise<void> {
    if (this.stateValue === 'closed' || this.stateValue === 'closing') return this.closed
    this.stateValue = 'closing'
    if (this.pending.size > 0) await new Promise<void>((resolve) => (this.onDrained = resolve))
    if (this.stateValue !== 'closing') return this.closed
    this.socket.end()
    setTimeout(() => this.socket.destroy(), LINGER_MS).unref()
    return this.closed
  }

  /**
   * Ends the session now. With a coded reason the peer is told why (best
   * effort) before its socket closes; listeners receive the reason.
   */
  destroy(reason?: Error): void {
    const err = reason === undefined ? null : reason instanceof EspraError ? reason : createError('ESPRA_ERR_INTERNAL', { reason: reason.message })
    this.finish(err, err !== null && err.code !== 'ESPRA_ERR_META_SLOW_PEER' && err.code !== 'ESPRA_ERR_META_CLOSED')
  }

  private finish(err: EspraError | null, tellPeer: boolean): void {
    if (this.stateValue === 'closed') return
    this.stateValue = 'closed'
    if (this.frameTimer) clearTimeout(this.frameTimer)
    if (this.idleTimer) clearTimeout(this.idleTimer)
    this.socket.off('data', this.onData)
    if (tellPeer && err && this.socket.writable) {
      this.socket.end(encodeFrame({ t: 'error', ...toWire(err) }))
      const linger = setTimeout(() => this.socket.destroy(), LINGER_MS).unref()
      this.socket.once('close', () => clearTimeout(linger))
    } else {
      this.socket.destroy()
    }
    const closedErr = createError('ESPRA_ERR_META_CLOSED', { reason: `the session to ${this.remote} ended${err ? ` (${err.message})` : ''}`, remote: this.remote })
    for (const p of this.pending.values()) {
      clearTimeout(p.timer)
      p.reject(closedErr)
    }
    this.pending.clear()
    this.waiter?.reject(err ?? closedErr)
    this.waiter = null
    this.onDrained?.()
    for (const listener of this.closeListeners.splice(0)) listener(err)
    this.markClosed()
  }

  /**
   * Frames written in one turn of the event loop (the answers to the requests of one read, a burst of requests) are
   * gathered and go out as one write at its end: one system call and one wake-up of the peer instead of one each.
   */
  private write(frame: Buffer): boolean {
    this.lastSentAt = Date.now()
    if (!this.gathering) {
      this.gathering = true
      this.socket.cork()
      process.nextTick(this.flush)
    }
    return this.socket.write(frame)
  }

  /** The end of the turn: the gathered frames go out; a peer that does not read what was sent is dropped. */
  private readonly flush = (): void => {
    this.gathering = false
    this.socket.uncork()
    if (this.socket.writableLength > this.maxBuffered) this.destroy(createError('ESPRA_ERR_META_SLOW_PEER', { peer: this.remote, bytes: this.socket.writableLength }))
  }

  private checkSize(frame: Buffer): Buffer {
    if (frame.length - 4 > this.decoder.maxFrame) {
      throw createError('ESPRA_ERR_FRAME_TOO_LARGE', {
        what: 'message',
        length: frame.length - 4,
        limit: this.decoder.maxFrame,
      })
    }
    return frame
  }

  private readonly onData = (chunk: Buffer): void => {
    this.lastReceivedAt = Date.now()
    let values: unknown[]
    try {
      values = this.decoder.push(chunk)
    } catch (err) {
      this.destroy(err as Error)
      return
    }
    this.watchFrame(values.length > 0)
    for (const value of values) {
      if (this.stateValue === 'closed') return
      this.dispatch(value)
    }
  }

  /** Slow-loris guard: a started frame must complete within the deadline. */
  private watchFrame(completedSome: boolean): void {
    const ms = this.opts.frameTimeoutMs ?? 5000
    if (ms <= 0) return
    if (!this.decoder.pending) {
      if (this.frameTimer) clearTimeout(this.frameTimer)
      this.frameTimer = null
    } else if (this.frameTimer === null || completedSome) {
      if (this.frameTimer) clearTimeout(this.frameTimer)
      this.frameTimer = setTimeout(() => {
        this.destroy(createError('ESPRA_ERR_META_TIMEOUT', { what: 'a frame', ms }))
      }, ms).unref()
    }
  }

  // Lazy idle check: data only stamps lastReceivedAt; the timer re-arms for the remainder.
  private readonly checkIdle = (): void => {
    const idle = Date.now() - this.lastReceivedAt
    if (idle >= this.idleMs) {
      this.destroy(createError('ESPRA_ERR_META_IDLE', { peer: this.remote, reason: `nothing received for ${idle} ms, limit ${this.idleMs} ms` }))
    } else {
      this.idleTimer = setTimeout(this.checkIdle, this.idleMs - idle).unref()
    }
  }

  private dispatch(value: unknown): void {
    if (!isMap(value) || typeof value['t'] !== 'string') {
      this.destroy(protocolError('a frame is not a map with a string t'))
      return
    }
    const t = value['t']
    if (t === 'error') {
      this.finish(peerError(value), false)
      return
    }
    if (this.stateValue === 'handshake') {
      if (this.waiter) {
        const w = this.waiter
        this.waiter = null
        w.resolve(value)
      } else if (this.inbox.push(value) > (this.opts.maxEarlyFrames ?? 2)) {
        this.destroy(protocolError('peer sent frames before the handshake finished'))
      }
      return
    }
    if (t === 'msg') this.onMessage(value)
    else if (t === 'req') this.onRequest(value)
    else if (t === 'res') this.onResponse(value)
    else this.destroy(protocolError(`unknown message type '${clip(t)}'`))
  }

  private onMessage(value: Record<string, unknown>): void {
    const op = value['op']
    if (typeof op !== 'string') return this.destroy(protocolError('one-way message without a string op'))
    const handler = this.opts.messages?.get(op)
    if (handler === undefined && this.opts.onMessage === undefined) {
      return this.destroy(protocolError(`unknown one-way op '${clip(op)}'`))
    }
    try {
      if (handler) handler(value['body'], this.context)
      else this.opts.onMessage!(op, value['body'], this.context, isEpoch(value['e']) ? value['e'] : undefined)
    } catch (err) {
      if (!(err instanceof EspraError)) this.log.error({ err, op, remote: this.remote }, 'meta message handler failed')
      this.destroy(err as Error)
    }
  }

  private onRequest(value: Record<string, unknown>): void {
    const { id, op } = value
    if (!isId(id) || typeof op !== 'string') return this.destroy(protocolError('request without a numeric id and a string op'))
    const handler = this.opts.handlers?.get(op)
    if (handler === undefined) {
      return this.reply(id, createError('ESPRA_ERR_META_UNKNOWN_OP', { op: clip(op) }), false)
    }
    let result: unknown
    try {
      result = handler(value['body'], this.context)
    } catch (err) {
      return this.reply(id, err, false, op)
    }
    if (result instanceof Promise) result.then((body) => this.reply(id, body, true), (err) => this.reply(id, err, false, op))
    else this.reply(id, result, true)
  }

  private reply(id: number, payload: unknown, ok: boolean, op?: string): void {
    if (this.stateValue === 'closed') return
    if (!ok && !(payload instanceof EspraError)) this.log.error({ err: payload, op, remote: this.remote }, 'meta request handler failed')
    let frame: Buffer
    try {
      frame = this.checkSize(answerFrame(id, payload, ok))
    } catch (err) {
      frame = answerFrame(id, err, false)
    }
    this.write(frame)
  }

  private onResponse(value: Record<string, unknown>): void {
    const { id, ok } = value
    if (!isId(id) || typeof ok !== 'boolean') return this.destroy(protocolError('response without a numeric id and a boolean ok'))
    const p = this.pending.get(id)
    if (p === undefined) return // answered after its timeout: nobody waits any more
    this.pending.delete(id)
    clearTimeout(p.timer)
    if (ok) p.resolve(value['body'])
    else p.reject(answerError(value['err']))
    this.checkDrained()
  }

  private checkDrained(): void {
    if (this.pending.size === 0 && this.onDrained) {
      const done = this.onDrained
      this.onDrained = null
      done()
    }
  }
}

function formatRemote(socket: Socket): string {
  const host = socket.remoteAddress ?? 'unknown'
  return host.includes(':') ? `[${host}]:${socket.remotePort}` : `${host}:${socket.remotePort}`
}
