/**
 * The Live HTTP endpoints (docs/live-protocol.md): SSE at `GET /sse`,
 * long-poll at `GET /poll`, and `POST /pub/<ch>`, `GET /history/<ch>`,
 * `GET /presence/<ch>`. Errors answer `{code, message}` with the HTTP status
 * of their Live code.
 */
import { isChannel, isPublishId, PUBLISH_ID_MAX } from '../../lib/live/channel.js'
import type { Grant, LiveAction } from '../../lib/live/token.js'
import { answerLater, sendJson } from '../../lib/http/server.js'
import type { HttpRequest, HttpResponse } from '../../lib/http/uws.js'
import { subOkSeq, type Listener, type LiveChild } from './child.js'
import { LiveError, liveErrorOf } from './errors.js'
import { gapOf, type Gap, type LiveMessage } from './channel-history.js'
import { isFailure, type PresenceAnswer, type PubAnswer, type SubAnswer } from './messages.js'

/** Channels one SSE stream may carry (its Last-Event-ID names a position in each). */
export const MAX_SSE_CHANNELS = 16
const SSE_KEEPALIVE_MS = 15_000
const DEFAULT_HISTORY_LIMIT = 100
const MAX_HISTORY_LIMIT = 10_000

/** An error answer: written at once inside the handler (`later` false), else through answerLater (the client may be gone). */
function failHttp(res: HttpResponse, err: unknown, later = true): void {
  const e = liveErrorOf(err)
  const write = () => sendJson(res, e.status, { code: e.code, message: e.message })
  if (later) answerLater(res, write)
  else write()
}

function failureError(answer: { err: { code: number; message: string } }): LiveError {
  return Object.assign(new LiveError('INTERNAL', answer.err.message), { code: answer.err.code, status: statusOf(answer.err.code) })
}

function statusOf(code: number): number {
  return code === 4010 || code === 4011 ? 401 : code === 4030 ? 403 : code === 4004 ? 413 : code >= 5000 ? (code === 5030 ? 503 : 500) : 400
}

/** Parses `since`-like integers: absent → undefined; anything else must be a non-negative integer. */
function seqParam(value: string | null, name: string): number | undefined {
  if (value === null || value === '') return undefined
  if (!/^\d{1,16}$/.test(value)) throw new LiveError('BAD_FIELD', `${name} must be a non-negative integer`)
  return Number(value)
}

/** The channel named by the rest of the path after `prefix`. */
function pathChannel(req: HttpRequest, prefix: string): string {
  let ch: string
  try {
    ch = decodeURIComponent(req.getUrl().slice(prefix.length))
  } catch {
    throw new LiveError('BAD_CHANNEL')
  }
  if (!isChannel(ch)) throw new LiveError('BAD_CHANNEL')
  return ch
}

/** SSE `id:` value: every channel's position, `ch=seq` joined by commas. */
function sseId(positions: Map<string, number>): string {
  return [...positions].map(([ch, seq]) => `${ch}=${seq}`).join(',')
}

/**
 * `a=12,b=40` (what the stream's ids carry). Anything else is refused (4003): read leniently, a garbled id
 * subscribed without a position and the client missed messages with no gap reported.
 */
function parseLastEventId(value: string): Map<string, number> {
  const out = new Map<string, number>()
  if (value === '') return out
  for (const part of value.split(',')) {
    const eq = part.lastIndexOf('=')
    const ch = part.slice(0, eq)
    const digits = part.slice(eq + 1)
    const seq = Number(digits)
    if (eq <= 0 || !isChannel(ch) || !/^\d{1,16}$/.test(digits) || !Number.isSafeInteger(seq)) {
      throw new LiveError('BAD_FIELD', 'Last-Event-ID must be <channel>=<seq>,… as the stream sent it')
    }
    out.set(ch, seq)
  }
  return out
}

export function addHttp(live: LiveChild): { close(): void } {
  const { ctx } = live
  const { app, config } = ctx
  const streams = new Set<{ end(): void; ping?: () => void }>()

  function authorize(grant: Grant | null | LiveError, action: LiveAction, ch: string): void {
    if (grant instanceof LiveError) throw grant
    const denied = live.deny(grant, action, ch)
    if (denied) throw denied
  }

  function bearer(req: HttpRequest): Grant | null | LiveError {
    const header = req.getHeader('authorization')
    if (header === '') return null
    const m = /^Bearer\s+(\S+)$/i.exec(header)
    return m ? live.grantOf(m[1]) : new LiveError('TOKEN_INVALID', 'Authorization must be "Bearer <token>"')
  }

  // ---- SSE ----
  app.get('/sse', (res, req) => {
    const params = new URLSearchParams(req.getQuery() ?? '')
    const chs = [...new Set(params.getAll('ch'))]
    const lastEventId = req.getHeader('last-event-id') || params.get('lastEventId') || ''
    let since: Map<string, number>
    try {
      if (chs.length === 0 || chs.length > MAX_SSE_CHANNELS) throw new LiveError('BAD_FIELD', `name 1 to ${MAX_SSE_CHANNELS} channels with ch=`)
      const grant = live.grantOf(params.get('token'))
      for (const ch of chs) {
        if (!isChannel(ch)) throw new LiveError('BAD_CHANNEL')
        authorize(grant, 'sub', ch)
      }
      since = parseLastEventId(lastEventId)
    } catch (err) {
      return failHttp(res, err, false)
    }
    const positions = new Map<string, number>()
    let closed = false
    let blocked = 0
    const untrack = ctx.track()
    const write = (text: string): void => {
      if (closed) return
      res.cork(() => {
        const ok = res.write(text)
        if (!ok || blocked > 0) blocked += text.length
      })
      // A stream that falls behind is dropped: the client reconnects with Last-Event-ID.
      if (blocked > config.liveMaxBackpressure) {
        live.counters.sseDrops++
        stream.end()
      }
    }
    const event = (frame: Record<string, unknown> | string): void => write(`id: ${sseId(positions)}\ndata: ${typeof frame === 'string' ? frame : JSON.stringify(frame)}\n\n`)
    const listener: Listener = {
      onMessage(m: LiveMessage, json: string) {
        positions.set(m.ch, m.seq)
        event(json)
      },
      onReset(ch: string, seq: number, gap: Gap | undefined) {
        positions.set(ch, seq)
        event({ op: 'sub-ok', ch, seq, recovered: false, ...gapOf({ gap }) })
      },
    }
    const joined: string[] = []
    const stream = {
      ping: () => write(':\n\n'),
      end() {
        if (closed) return
        closed = true
        live.counters.sse--
        streams.delete(stream)
        for (const ch of joined) live.unlisten(ch, listener)
        answerLater(res, () => res.end())
        untrack()
      },
    }
    streams.add(stream)
    live.counters.sse++
    res.onWritable(() => {
      blocked = 0
      return true
    })
    res.onAborted(() => {
      if (closed) return
      closed = true
      live.counters.sse--
      streams.delete(stream)
      for (const ch of joined) live.unlisten(ch, listener)
      untrack()
    })
    res.writeStatus('200 OK').writeHeader('Content-Type', 'text/event-stream').writeHeader('Cache-Control', 'no-cache').writeHeader('X-Accel-Buffering', 'no')
    res.write(': espra live\n\n')
    // Channels subscribe one after another so the stream's order per channel is sub-ok, missed messages, live messages.
    void (async () => {
      for (const ch of chs) {
        live.hold(ch)
        let answer: SubAnswer
        try {
          const s = since.get(ch)
          answer = await ctx.parent.request<SubAnswer>({ k: 'sub', ch, ...(s !== undefined ? { since: s } : {}) })
        } catch (err) {
          answer = { err: { code: liveErrorOf(err).code, message: liveErrorOf(err).message } }
        }
        if (closed) {
          live.answered(ch, null)
          return live.release(ch)
        }
        if (isFailure(answer)) {
          live.answered(ch, null)
          live.release(ch)
          event({ op: 'err', ch, code: answer.err.code, message: answer.err.message, data: { op: 'sub' } })
          continue
        }
        const merged = live.answered(ch, answer, since.has(ch))
        // The stream's position is the last message it has carried: the one before the missed ones until they are out
        // (after a gap, the gap's end: the client backfills what the gap names).
        positions.set(ch, merged.messages.length > 0 ? merged.messages[0]!.seq - 1 : subOkSeq(merged))
        event({ op: 'sub-ok', ch, seq: subOkSeq(merged), recovered: merged.recovered, ...gapOf(merged) })
        for (const m of merged.messages) listener.onMessage(m, JSON.stringify(live.msgFrame(m)))
        positions.set(ch, subOkSeq(merged))
        live.listen(ch, listener)
        joined.push(ch)
        live.release(ch)
      }
    })()
  })

  // ---- long-poll ----
  app.get('/poll', (res, req) => {
    const params = new URLSearchParams(req.getQuery() ?? '')
    const ch = params.get('ch') ?? ''
    let since: number | undefined
    try {
      if (!isChannel(ch)) throw new LiveError('BAD_CHANNEL')
      since = seqParam(params.get('since'), 'since')
      authorize(live.grantOf(params.get('token')), 'sub', ch)
    } catch (err) {
      return failHttp(res, err, false)
    }
    let done = false
    let timer: NodeJS.Timeout | undefined
    let listening = false
    const finish = (body: Record<string, unknown> | null, err?: unknown): void => {
      if (done) return
      done = true
      live.counters.polls--
      clearTimeout(timer)
      streams.delete(stream)
      if (listening) live.unlisten(ch, listener)
      if (aborted) return
      if (body) answerLater(res, () => sendJson(res, 200, body))
      else failHttp(res, err)
    }
    let aborted = false
    const listener: Listener = {
      onMessage: (m) => finish({ ch, seq: m.seq, recovered: true, messages: [live.msgFrame(m)] }),
      onReset: (_ch, seq, gap) => finish({ ch, seq, recovered: false, ...gapOf({ gap }), messages: [] }),
    }
    const stream = { end: () => finish({ ch, seq: since ?? null, recovered: true, messages: [] }) }
    streams.add(stream)
    live.counters.polls++
    res.onAborted(() => {
      aborted = true
      finish(null)
    })
    live.hold(ch)
    ctx.parent.request<SubAnswer>({ k: 'sub', ch, ...(since !== undefined ? { since } : {}) }).then(
      (answer) => {
        if (done || isFailure(answer)) {
          live.answered(ch, null)
          live.release(ch)
          if (isFailure(answer)) finish(null, failureError(answer))
          return
        }
        const merged = live.answered(ch, answer, since !== undefined)
        if (!merged.recovered || merged.messages.length > 0) {
          live.release(ch)
          return finish({ ch, seq: subOkSeq(merged), recovered: merged.recovered, ...gapOf(merged), messages: merged.messages.map(live.msgFrame) })
        }
        live.listen(ch, listener)
        listening = true
        live.release(ch)
        const seq = answer.seq
        timer = setTimeout(() => finish({ ch, seq, recovered: true, messages: [] }), config.livePollTimeout)
      },
      (err: unknown) => {
        live.answered(ch, null)
        live.release(ch)
        finish(null, err)
      },
    )
  })

  // ---- HTTP API ----
  app.post('/pub/*', (res, req) => {
    let ch: string
    let idempotencyKey: string
    try {
      ch = pathChannel(req, '/pub/')
      authorize(bearer(req), 'pub', ch)
      idempotencyKey = req.getHeader('idempotency-key')
      if (idempotencyKey !== '' && !isPublishId(idempotencyKey)) throw new LiveError('BAD_FIELD', `Idempotency-Key must be 1 to ${PUBLISH_ID_MAX} printable ASCII characters`)
    } catch (err) {
      return failHttp(res, err, false)
    }
    const chunks: Buffer[] = []
    let size = 0
    let over = false
    res.onData((chunk, last) => {
      if (over) return
      size += chunk.byteLength
      if (size > config.liveMaxMessage) {
        over = true
        return failHttp(res, new LiveError('TOO_LARGE', `body exceeds ${config.liveMaxMessage} bytes`))
      }
      chunks.push(Buffer.from(chunk.slice(0)))
      if (!last) return
      let data: unknown
      try {
        data = JSON.parse(Buffer.concat(chunks).toString('utf8'))
      } catch {
        return failHttp(res, new LiveError('BAD_FRAME', 'the body must be one JSON value (the message data)'))
      }
      ctx.parent.request<PubAnswer>({ k: 'pub', ch, data, ...(idempotencyKey !== '' ? { id: idempotencyKey } : {}) }).then(
        (answer) => (isFailure(answer) ? failHttp(res, failureError(answer)) : answerLater(res, () => sendJson(res, 200, { ch, seq: answer.seq, ts: answer.ts }))),
        (err: unknown) => failHttp(res, err),
      )
    })
  })

  app.get('/history/*', (res, req) => {
    let ch: string
    let since: number | undefined
    let limit: number
    try {
      ch = pathChannel(req, '/history/')
      const params = new URLSearchParams(req.getQuery() ?? '')
      since = seqParam(params.get('since'), 'since')
      limit = Math.min(seqParam(params.get('limit'), 'limit') ?? DEFAULT_HISTORY_LIMIT, MAX_HISTORY_LIMIT)
      authorize(bearer(req), 'sub', ch)
    } catch (err) {
      return failHttp(res, err, false)
    }
    ctx.parent.request<SubAnswer>({ k: 'hist', ch, ...(since !== undefined ? { since } : {}), limit }).then(
      (answer) => (isFailure(answer) ? failHttp(res, failureError(answer)) : answerLater(res, () => sendJson(res, 200, { ch, seq: answer.seq, recovered: answer.recovered, ...gapOf(answer), messages: answer.messages.map(live.msgFrame) }))),
      (err: unknown) => failHttp(res, err),
    )
  })

  app.get('/presence/*', (res, req) => {
    let ch: string
    try {
      ch = pathChannel(req, '/presence/')
      authorize(bearer(req), 'presence', ch)
    } catch (err) {
      return failHttp(res, err, false)
    }
    ctx.parent.request<PresenceAnswer>({ k: 'presence', ch }).then(
      (answer) => (isFailure(answer) ? failHttp(res, failureError(answer)) : answerLater(res, () => sendJson(res, 200, { ch, count: answer.count, members: answer.members }))),
      (err: unknown) => failHttp(res, err),
    )
  })

  const keepAlive = setInterval(() => {
    for (const s of streams) s.ping?.()
  }, SSE_KEEPALIVE_MS)
  keepAlive.unref()

  return {
    close() {
      clearInterval(keepAlive)
      for (const s of [...streams]) s.end()
    },
  }
}
