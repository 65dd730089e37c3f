/**
 * A Live child: holds client connections (roles/live/ws.ts for WebSocket,
 * roles/live/http.ts for SSE, long-poll and the HTTP API) and the per-child
 * view of channels. Messages from the parent are serialised once per child
 * and encoding and fanned out with uWS topics (`j:<ch>` JSON text, `m:<ch>`
 * msgpack binary; `pj:`/`pm:` for presence events).
 */
import { Packr } from 'msgpackr'
import { compilePatterns } from '../../lib/live/channel.js'
import { compileGrant, deriveTokenKey, verifyToken, type Grant, type LiveAction } from '../../lib/live/token.js'
import type { ChildContext } from '../../lib/process/role.js'
import { LiveError } from './errors.js'
import { LiveCounters } from './counters.js'
import type { Catchup, Gap, LiveMessage } from './channel-history.js'
import type { Member } from './hub.js'
import type { ParentMessage } from './messages.js'
import { RecentMessages } from './recent-messages.js'

/** Client-side msgpack: plain values, no records or extensions, so any msgpack library can read it. */
export const clientPackr = new Packr({ useRecords: false, moreTypes: false, mapsAsObjects: true })

/** Someone in this child waiting for a channel's events besides WebSockets (SSE streams, long-polls). */
export interface Listener {
  onMessage(m: LiveMessage, json: string): void
  onReset(ch: string, seq: number, gap: Gap | undefined): void
}

interface ChildChannel {
  /** WebSockets subscribed (topics) plus subscriptions still waiting for the parent. */
  holders: number
  /** Subscriptions waiting for the parent's answer, and the messages that reached this child meanwhile (see `answered`). */
  waiting: number
  readonly recent: RecentMessages
  readonly listeners: Set<Listener>
  /** Presence members of this child's clients: user → connections. */
  readonly users: Map<string, number>
}

export interface LiveChild {
  readonly ctx: ChildContext
  readonly packr: Packr
  /** Resolves a token string (absent: anonymous) or says why it is refused. */
  grantOf(token: string | null | undefined): Grant | null | LiveError
  /** Null when `grant` may do `action` on `ch` (public channels allow `sub` to anyone). */
  deny(grant: Grant | null, action: LiveAction, ch: string): LiveError | null
  /** Holds `ch` for a subscription about to ask the parent; answer it with `answered`. */
  hold(ch: string): void
  /**
   * The parent answered a subscription on `ch` (null: it failed or the client
   * left; `resumed`: the client gave `since`): what to send the client, the
   * answer with its own messages and then those that reached this child after
   * the answer's snapshot, before the client was subscribed (IPC events are
   * emitted before the request's promise settles, so such a message was fanned
   * out without it). Each seq once, in order; the client's `sub-ok` names the
   * last one's seq at least ({@link subOkSeq}). More than {@link MAX_RECENT}
   * of them in the wait: a gap of cause `dropped` (./recent-messages.ts).
   */
  answered(ch: string, answer: Catchup, resumed: boolean): Catchup
  answered(ch: string, answer: null): null
  /** Drops one hold; the last one tells the parent this child no longer needs the channel. */
  release(ch: string): void
  listen(ch: string, listener: Listener): void
  unlisten(ch: string, listener: Listener): void
  join(ch: string, member: Member): void
  leave(ch: string, user: string): void
  /** Frames as the WebSocket JSON encoding writes them. */
  msgFrame(m: LiveMessage): Record<string, unknown>
  /** What the metrics report (./counters.ts). */
  readonly counters: LiveCounters
  /** Channels held in this child and the subscriptions on them (walks the channels: for scrapes). */
  channelStats(): { channels: number; subscriptions: number }
}

/** Messages kept for waiting subscriptions of one channel, at least (a burst while the parent answers). */
const MAX_RECENT = 10_000

/** The `seq` of a subscription's `sub-ok`: the channel's, or the last message sent with it if later (the protocol: missed messages are at or below it). */
export const subOkSeq = (answer: Catchup): number => Math.max(answer.seq, answer.messages.at(-1)?.seq ?? 0)

export const topic = (mp: boolean, ch: string): string => (mp ? `m:${ch}` : `j:${ch}`)
export const presenceTopic = (mp: boolean, ch: string): string => (mp ? `pm:${ch}` : `pj:${ch}`)

export function createLiveChild(ctx: ChildContext): LiveChild {
  const { app, config } = ctx
  const key = deriveTokenKey(config.secret)
  const isPublic = compilePatterns(config.livePublic)
  const channels = new Map<string, ChildChannel>()
  const counters = new LiveCounters()

  const channel = (ch: string): ChildChannel => {
    let c = channels.get(ch)
    if (!c) channels.set(ch, (c = { holders: 0, waiting: 0, recent: new RecentMessages(MAX_RECENT), listeners: new Set(), users: new Map() }))
    return c
  }
  const forget = (ch: string, c: ChildChannel): void => {
    if (c.holders > 0 || c.listeners.size > 0 || c.users.size > 0) return
    channels.delete(ch)
    ctx.parent.send({ k: 'unsub', ch })
  }

  const msgFrame = (m: LiveMessage) => ({ op: 'msg', ch: m.ch, seq: m.seq, ts: m.ts, data: m.data })

  /** Publishes one frame to a channel's topics: serialised once per encoding, only if someone uses that encoding. */
  function fanout(ch: string, topics: (mp: boolean, ch: string) => string, frame: Record<string, unknown>): string {
    const json = JSON.stringify(frame)
    app.publish(topics(false, ch), json, false)
    const mpTopic = topics(true, ch)
    if (app.numSubscribers(mpTopic) > 0) app.publish(mpTopic, clientPackr.pack(frame), true)
    return json
  }

  function answered(ch: string, answer: Catchup, resumed: boolean): Catchup
  function answered(ch: string, answer: null): null
  function answered(ch: string, answer: Catchup | null, resumed = false): Catchup | null {
    const c = channels.get(ch)
    if (!c) return answer
    const merged = answer === null ? null : c.recent.merge(answer, resumed)
    if (--c.waiting === 0) c.recent.clear()
    return merged
  }

  ctx.parent.onMessage((body) => {
    const ev = body as ParentMessage
    const c = channels.get(ev.ch)
    if (!c) return
    if (ev.k === 'msg') {
      if (c.waiting > 0) c.recent.push(ev)
      const json = fanout(ev.ch, topic, msgFrame(ev))
      counters.messages++
      counters.deliveries += app.numSubscribers(topic(false, ev.ch)) + app.numSubscribers(topic(true, ev.ch)) + c.listeners.size
      for (const l of c.listeners) l.onMessage(ev, json)
    } else if (ev.k === 'presence') {
      fanout(ev.ch, presenceTopic, { op: 'presence', ch: ev.ch, joins: ev.joins, leaves: ev.leaves })
    } else if (ev.k === 'count') {
      fanout(ev.ch, presenceTopic, { op: 'presence', ch: ev.ch, count: ev.count })
    } else if (ev.k === 'reset') {
      fanout(ev.ch, topic, { op: 'sub-ok', ch: ev.ch, seq: ev.seq, recovered: false, ...(ev.gap !== undefined ? { gap: ev.gap } : {}) })
      for (const l of c.listeners) l.onReset(ev.ch, ev.seq, ev.gap)
    }
  })

  return {
    ctx,
    packr: clientPackr,
    grantOf(token) {
      if (token === null || token === undefined || token === '') return null
      const result = verifyToken(key, token)
      if (result.ok) return compileGrant(result.claims)
      return result.reason === 'expired' ? new LiveError('TOKEN_EXPIRED') : new LiveError('TOKEN_INVALID', `token ${result.reason}`)
    },
    deny(grant, action, ch) {
      if (action === 'sub' && isPublic(ch)) return null
      if (!grant) return new LiveError('TOKEN_INVALID', `a token is required to ${action} on ${ch}`)
      if (grant.expired()) return new LiveError('TOKEN_EXPIRED')
      return grant.can(action, ch) ? null : new LiveError('FORBIDDEN', `the token does not allow ${action} on ${ch}`)
    },
    hold(ch) {
      const c = channel(ch)
      c.holders++
      c.waiting++
    },
    answered,
    release(ch) {
      const c = channels.get(ch)
      if (!c) return
      c.holders--
      forget(ch, c)
    },
    listen: (ch, listener) => void channel(ch).listeners.add(listener),
    unlisten(ch, listener) {
      const c = channels.get(ch)
      if (!c) return
      c.listeners.delete(listener)
      forget(ch, c)
    },
    join(ch, member) {
      const c = channel(ch)
      const n = c.users.get(member.user) ?? 0
      c.users.set(member.user, n + 1)
      if (n === 0) ctx.parent.send({ k: 'join', ch, member })
    },
    leave(ch, user) {
      const c = channels.get(ch)
      const n = c?.users.get(user)
      if (!c || n === undefined) return
      if (n > 1) return void c.users.set(user, n - 1)
      c.users.delete(user)
      ctx.parent.send({ k: 'leave', ch, user })
      forget(ch, c)
    },
    msgFrame,
    counters,
    channelStats() {
      let subscriptions = 0
      for (const c of channels.values()) subscriptions += c.holders + c.listeners.size
      return { channels: channels.size, subscriptions }
    },
  }
}
