/**
 * WebSocket at `/ws` (docs/live-protocol.md, "WebSocket"): JSON text frames,
 * or msgpack binary frames with the `espra.msgpack` subprotocol. Every op is
 * answered; an error answers that op only. A connection is closed only when
 * it is abusive: a frame past the hard size limit (dropped by uWS), falling behind by
 * more than --live-max-backpressure, or too many errors in a row (1008).
 */
import { isChannel, isPublishId } from '../../lib/live/channel.js'
import type { Grant } from '../../lib/live/token.js'
import { sendJson } from '../../lib/http/server.js'
import type { WebSocket } from '../../lib/http/uws.js'
import { isMap } from '../../lib/transport/meta-shapes.js'
import { presenceTopic, subOkSeq, topic, type LiveChild } from './child.js'
import { CLOSE, LiveError, liveErrorOf } from './errors.js'
import { gapOf } from './channel-history.js'
import { isFailure, type PresenceAnswer, type PubAnswer, type SubAnswer } from './messages.js'

export const MSGPACK_PROTOCOL = 'espra.msgpack'
/** Subscriptions one connection may hold. */
export const MAX_SUBSCRIPTIONS = 1024
/** Errors within {@link ERROR_WINDOW_MS} past which a connection counts as abusive. */
const MAX_ERRORS = 100
const ERROR_WINDOW_MS = 10_000

interface Conn {
  readonly grant: Grant | null
  readonly mp: boolean
  /** Channel → 'pending' while the parent answers, 'on' once subscribed. */
  readonly subs: Map<string, 'pending' | 'on'>
  /** Channels where this connection counts as its user's presence. */
  readonly joined: Set<string>
  closed: boolean
  errors: number
  errorsSince: number
  untrack: () => void
}

type Ws = WebSocket<Conn>
type Id = string | number | undefined

export function addWebSocket(live: LiveChild): { close(): void; reconnectSpread(spreadMs: number): void; open(): number } {
  const { ctx, packr } = live
  const { config, app } = ctx
  const sockets = new Set<Ws>()

  function send(ws: Ws, frame: Record<string, unknown>): void {
    const conn = ws.getUserData()
    if (conn.closed) return
    if (conn.mp) ws.send(packr.pack(frame), true)
    else ws.send(JSON.stringify(frame), false)
  }

  function fail(ws: Ws, err: unknown, op: unknown, id: Id, ch?: string): void {
    const conn = ws.getUserData()
    if (conn.closed) return
    const e = liveErrorOf(err)
    const now = Date.now()
    if (now - conn.errorsSince > ERROR_WINDOW_MS) {
      conn.errors = 0
      conn.errorsSince = now
    }
    send(ws, { op: 'err', code: e.code, message: e.message, ...(ch !== undefined ? { ch } : {}), ...(id !== undefined ? { id } : {}), data: { op: typeof op === 'string' ? op.slice(0, 32) : null } })
    if (++conn.errors > MAX_ERRORS) ws.end(CLOSE.POLICY.code, CLOSE.POLICY.reason)
  }

  function decode(conn: Conn, message: ArrayBuffer, isBinary: boolean): Record<string, unknown> {
    if (isBinary !== conn.mp) throw new LiveError('BAD_FRAME', conn.mp ? 'text frame on a msgpack connection' : 'binary frame on a JSON connection')
    let value: unknown
    try {
      value = conn.mp ? packr.unpack(Buffer.from(message)) : JSON.parse(Buffer.from(message).toString('utf8'))
    } catch {
      throw new LiveError('BAD_FRAME', conn.mp ? 'frame is not msgpack' : 'frame is not JSON')
    }
    if (!isMap(value) || typeof value['op'] !== 'string') throw new LiveError('BAD_FRAME')
    return value
  }

  function channelOf(frame: Record<string, unknown>): string {
    if (!isChannel(frame['ch'])) throw new LiveError('BAD_CHANNEL')
    return frame['ch']
  }

  function subscribe(ws: Ws, conn: Conn, ch: string, frame: Record<string, unknown>, id: Id): void {
    const since = frame['since']
    if (since !== undefined && since !== null && (typeof since !== 'number' || !Number.isSafeInteger(since) || since < 0)) throw new LiveError('BAD_FIELD', 'since must be a non-negative integer')
    const denied = live.deny(conn.grant, 'sub', ch)
    if (denied) throw denied
    if (conn.subs.has(ch)) throw new LiveError('ALREADY_SUBSCRIBED')
    if (conn.subs.size >= MAX_SUBSCRIPTIONS) throw new LiveError('TOO_MANY', `at most ${MAX_SUBSCRIPTIONS} subscriptions per connection`)
    conn.subs.set(ch, 'pending')
    live.hold(ch)
    ctx.parent.request<SubAnswer>({ k: 'sub', ch, ...(typeof since === 'number' ? { since } : {}) }).then(
      (answer) => {
        if (conn.closed || conn.subs.get(ch) !== 'pending') {
          live.answered(ch, null)
          return live.release(ch)
        }
        if (isFailure(answer)) {
          live.answered(ch, null)
          conn.subs.delete(ch)
          live.release(ch)
          return fail(ws, Object.assign(new LiveError('INTERNAL', answer.err.message), { code: answer.err.code }), 'sub', id, ch)
        }
        const merged = live.answered(ch, answer, typeof since === 'number')
        conn.subs.set(ch, 'on')
        // One synchronous step: the missed messages, then the topic; nothing can arrive in between.
        ws.cork(() => {
          send(ws, { op: 'sub-ok', ch, seq: subOkSeq(merged), recovered: merged.recovered, ...gapOf(merged), ...(id !== undefined ? { id } : {}) })
          for (const m of merged.messages) send(ws, live.msgFrame(m))
          ws.subscribe(topic(conn.mp, ch))
          if (conn.grant?.can('presence', ch)) ws.subscribe(presenceTopic(conn.mp, ch))
        })
        const user = conn.grant?.claims.user
        if (user !== undefined) {
          conn.joined.add(ch)
          live.join(ch, { user, ...(conn.grant!.claims.info ? { info: conn.grant!.claims.info } : {}) })
        }
      },
      (err: unknown) => {
        live.answered(ch, null)
        if (conn.subs.get(ch) === 'pending') conn.subs.delete(ch)
        live.release(ch)
        fail(ws, err, 'sub', id, ch)
      },
    )
  }

  function unsubscribe(ws: Ws, conn: Conn, ch: string): void {
    const state = conn.subs.get(ch)
    conn.subs.delete(ch)
    if (state === 'on') {
      if (!conn.closed) {
        ws.unsubscribe(topic(conn.mp, ch))
        ws.unsubscribe(presenceTopic(conn.mp, ch))
      }
      live.release(ch)
    }
    // A pending one is released when its answer arrives.
    if (conn.joined.delete(ch)) live.leave(ch, conn.grant!.claims.user!)
  }

  function handle(ws: Ws, conn: Conn, frame: Record<string, unknown>): void {
    const op = frame['op'] as string
    const rawId = frame['id']
    if (rawId !== undefined && rawId !== null && !((typeof rawId === 'string' && rawId.length <= 64) || (typeof rawId === 'number' && Number.isFinite(rawId)))) {
      throw new LiveError('BAD_FIELD', 'id must be a number or a string of at most 64 characters')
    }
    const id: Id = rawId === null ? undefined : (rawId as Id)
    const idField = id !== undefined ? { id } : {}
    switch (op) {
      case 'ping':
        return send(ws, { op: 'pong', ...idField })
      case 'sub':
        return subscribe(ws, conn, channelOf(frame), frame, id)
      case 'unsub': {
        const ch = channelOf(frame)
        if (!conn.subs.has(ch)) throw new LiveError('NOT_SUBSCRIBED')
        unsubscribe(ws, conn, ch)
        if (id !== undefined) send(ws, { op: 'ack', ch, id })
        return
      }
      case 'pub': {
        const ch = channelOf(frame)
        if (!('data' in frame)) throw new LiveError('BAD_FIELD', 'pub needs data')
        const denied = live.deny(conn.grant, 'pub', ch)
        if (denied) throw denied
        // A string id without spaces also names the publish: sent again (after a lost ack), it is stored once and acked with the first seq.
        ctx.parent.request<PubAnswer>({ k: 'pub', ch, data: frame['data'], ...(isPublishId(id) ? { id } : {}) }).then(
          (answer) => {
            if (isFailure(answer)) fail(ws, Object.assign(new LiveError('INTERNAL', answer.err.message), { code: answer.err.code }), 'pub', id, ch)
            else if (id !== undefined && !conn.closed) send(ws, { op: 'ack', ch, seq: answer.seq, ts: answer.ts, id })
          },
          (err: unknown) => fail(ws, err, 'pub', id, ch),
        )
        return
      }
      case 'presence': {
        const ch = channelOf(frame)
        const denied = live.deny(conn.grant, 'presence', ch)
        if (denied) throw denied
        ctx.parent.request<PresenceAnswer>({ k: 'presence', ch }).then(
          (answer) => {
            if (isFailure(answer)) fail(ws, Object.assign(new LiveError('INTERNAL', answer.err.message), { code: answer.err.code }), 'presence', id, ch)
            else if (!conn.closed) send(ws, { op: 'presence', ch, count: answer.count, members: answer.members, ...idField })
          },
          (err: unknown) => fail(ws, err, 'presence', id, ch),
        )
        return
      }
      default:
        throw new LiveError('UNKNOWN_OP', `unknown op '${op.slice(0, 32)}'`)
    }
  }

  app.ws<Conn>('/ws', {
    maxPayloadLength: config.liveMaxMessage + 4096,
    maxBackpressure: config.liveMaxBackpressure,
    closeOnBackpressureLimit: 1,
    idleTimeout: 120,
    sendPingsAutomatically: true,
    upgrade(res, req, context) {
      const params = new URLSearchParams(req.getQuery() ?? '')
      const grant = live.grantOf(params.get('token'))
      if (grant instanceof LiveError) return sendJson(res, grant.status, { code: grant.code, message: grant.message })
      const protocols = req.getHeader('sec-websocket-protocol').split(',').map((p) => p.trim())
      const mp = protocols.includes(MSGPACK_PROTOCOL)
      const conn: Conn = { grant, mp, subs: new Map(), joined: new Set(), closed: false, errors: 0, errorsSince: Date.now(), untrack: () => {} }
      res.upgrade(conn, req.getHeader('sec-websocket-key'), mp ? MSGPACK_PROTOCOL : '', req.getHeader('sec-websocket-extensions'), context)
    },
    open(ws) {
      ws.getUserData().untrack = ctx.track()
      sockets.add(ws)
    },
    message(ws, message, isBinary) {
      const conn = ws.getUserData()
      let frame: Record<string, unknown> | undefined
      try {
        frame = decode(conn, message, isBinary)
        // Checked after decoding (the frame is bounded by maxPayloadLength) so the error can name the op and id.
        if (message.byteLength > config.liveMaxMessage) throw new LiveError('TOO_LARGE', `frame of ${message.byteLength} bytes exceeds ${config.liveMaxMessage}`)
        handle(ws, conn, frame)
      } catch (err) {
        const e = liveErrorOf(err)
        if (e.code === 5000) ctx.log.error({ err }, 'live: websocket op failed')
        fail(ws, e, frame?.['op'], typeof frame?.['id'] === 'string' || typeof frame?.['id'] === 'number' ? (frame['id'] as Id) : undefined, isChannel(frame?.['ch']) ? (frame['ch'] as string) : undefined)
      }
    },
    close(ws) {
      const conn = ws.getUserData()
      conn.closed = true
      sockets.delete(ws)
      for (const ch of [...conn.subs.keys()]) unsubscribe(ws, conn, ch)
      conn.untrack()
    },
  })

  const spreading = new Set<NodeJS.Timeout>()
  return {
    open: () => sockets.size,
    close() {
      for (const timer of spreading) clearTimeout(timer)
      spreading.clear()
      for (const ws of [...sockets]) ws.end(CLOSE.RECONNECT.code, CLOSE.RECONNECT.reason)
    },
    reconnectSpread(spreadMs) {
      // Each client at its own random moment, so the nodes taking them over are not hit by every reconnect at once.
      for (const ws of [...sockets]) {
        const timer = setTimeout(() => {
          spreading.delete(timer)
          if (sockets.has(ws)) ws.end(CLOSE.RECONNECT.code, CLOSE.RECONNECT.reason)
        }, Math.random() * spreadMs)
        spreading.add(timer)
      }
    },
  }
}
