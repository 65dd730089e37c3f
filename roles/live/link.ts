/**
 * The operations a channel's home answers, and the internal link's op tables
 * over them (docs/live-protocol.md, "Internal link"). The same operations
 * serve this node's own children (sink = the node itself) and peers on the
 * link (sink = that peer's session), so both paths behave the same.
 */
import { isChannel, isPublishId, PUBLISH_ID_MAX } from '../../lib/live/channel.js'
import type { MessageHandler, RequestHandler } from '../../lib/transport/meta-session.js'
import type { MetaPeer } from '../../lib/transport/meta-server.js'
import { isMap } from '../../lib/transport/meta-shapes.js'
import { encodeMessage } from '../../lib/transport/meta-frames.js'
import { LiveError, liveErrorOf } from './errors.js'
import type { ChannelSnapshot, ReplicaMessage } from './channel-history.js'
import type { Hub, HubEvent, Member, Sink } from './hub.js'
import type { Replication } from './replication.js'

export interface HomeOps {
  sub(sink: Sink, body: Record<string, unknown>): unknown
  unsub(sink: Sink, body: Record<string, unknown>): unknown
  pub(sink: Sink, body: Record<string, unknown>): unknown
  hist(sink: Sink, body: Record<string, unknown>): unknown
  presence(sink: Sink, body: Record<string, unknown>): unknown
  join(sink: Sink, body: Record<string, unknown>): unknown
  leave(sink: Sink, body: Record<string, unknown>): unknown
}

const MAX_HISTORY_LIMIT = 10_000

function channel(body: Record<string, unknown>): string {
  if (!isChannel(body['ch'])) throw new LiveError('BAD_CHANNEL')
  return body['ch']
}

function optionalSeq(body: Record<string, unknown>, key: string): number | undefined {
  const v = body[key]
  if (v === undefined || v === null) return undefined
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) throw new LiveError('BAD_FIELD', `${key} must be a non-negative integer`)
  return v
}

/** A publish's optional id; anything but 1 to 128 printable ASCII characters is refused (4003). */
function publishId(body: Record<string, unknown>): string | undefined {
  const id = body['id']
  if (id === undefined) return undefined
  if (!isPublishId(id)) throw new LiveError('BAD_FIELD', `a publish id must be 1 to ${PUBLISH_ID_MAX} printable ASCII characters`)
  return id
}

function member(value: unknown): Member {
  if (!isMap(value) || typeof value['user'] !== 'string' || value['user'].length === 0) throw new LiveError('BAD_FIELD', 'member must be {user, info?}')
  return isMap(value['info']) ? { user: value['user'], info: value['info'] } : { user: value['user'] }
}

/**
 * The home's operations over a hub; bad bodies throw coded Live errors. With
 * `replication` (--live-replicas 2), a publish is answered once the backup
 * holds it, and every operation waits until this node holds the channel.
 */
export function createHomeOps(hub: Hub, replication?: Replication): HomeOps {
  const plain: HomeOps = {
    sub: (sink, body) => hub.subscribe(sink, channel(body), optionalSeq(body, 'since')),
    unsub: (sink, body) => hub.unsubscribe(sink, channel(body)),
    pub: (_sink, body) => hub.publish(channel(body), body['data'] ?? null, publishId(body)),
    hist: (_sink, body) => {
      const limit = optionalSeq(body, 'limit') ?? MAX_HISTORY_LIMIT
      return hub.history(channel(body), optionalSeq(body, 'since'), Math.min(limit, MAX_HISTORY_LIMIT))
    },
    presence: (_sink, body) => {
      // With `after` (a user, '' for the first page): a page of the members for a node mirroring them.
      const after = body['after']
      if (after === undefined) return hub.presence(channel(body))
      if (typeof after !== 'string') throw new LiveError('BAD_FIELD', 'after must be a user (a string; empty for the first page)')
      return hub.presencePage(channel(body), after)
    },
    join: (sink, body) => hub.join(sink, channel(body), member(body['member'])),
    leave: (sink, body) => {
      if (typeof body['user'] !== 'string') throw new LiveError('BAD_FIELD', 'user must be a string')
      hub.leave(sink, channel(body), body['user'])
    },
  }
  if (!replication) return plain
  const whenHeld = (op: keyof HomeOps) => async (sink: Sink, body: Record<string, unknown>) => {
    await replication.ready(channel(body))
    return plain[op](sink, body)
  }
  return {
    ...plain,
    sub: whenHeld('sub'),
    hist: whenHeld('hist'),
    presence: whenHeld('presence'),
    pub: (_sink, body) => replication.publish(channel(body), body['data'] ?? null, publishId(body)),
    // One-way: validated now (a bad one is reported), applied once the channel is held (in order: one wait per channel).
    join: (sink, body) => {
      const ch = channel(body)
      const m = member(body['member'])
      return replication.ready(ch).then(() => hub.join(sink, ch, m), () => {})
    },
    leave: (sink, body) => {
      const ch = channel(body)
      if (typeof body['user'] !== 'string') throw new LiveError('BAD_FIELD', 'user must be a string')
      const user = body['user']
      return replication.ready(ch).then(() => hub.leave(sink, ch, user), () => {})
    },
  }
}

/** A `repl` or `fill` body: checked before the replica reads it (`repl` carries `snap` or `msg`). */
function replicaBody(body: Record<string, unknown>, op: 'repl' | 'fill'): Record<string, unknown> {
  channel(body)
  if (typeof body['version'] !== 'number' || !Number.isSafeInteger(body['version'])) throw new LiveError('BAD_FIELD', 'version must be an integer')
  if (op === 'fill') {
    if (body['after'] !== undefined && !Number.isSafeInteger(body['after'])) throw new LiveError('BAD_FIELD', 'after must be an integer')
    return body
  }
  const isMessage = (m: unknown): m is ReplicaMessage =>
    isMap(m) && Number.isSafeInteger(m['seq']) && typeof m['ts'] === 'number' && (m['id'] === undefined || isPublishId(m['id']))
  const snap = body['snap']
  if (snap !== undefined) {
    const ok = isMap(snap) && Number.isSafeInteger(snap['seq']) && Number.isSafeInteger(snap['base']) && Number.isSafeInteger(snap['forgottenTo']) &&
      Array.isArray(snap['trimmed']) && snap['trimmed'].every((r) => isMap(r) && Number.isSafeInteger(r['to']) && (r['cause'] === 'expired' || r['cause'] === 'overflow')) &&
      Array.isArray(snap['messages']) && snap['messages'].every(isMessage)
    if (!ok) throw new LiveError('BAD_FIELD', 'snap must be {seq, base, forgottenTo, trimmed, messages}')
    return body as { snap: ChannelSnapshot }
  }
  if (!isMessage(body['msg'])) throw new LiveError('BAD_FIELD', 'repl needs snap or msg: {seq, ts, data, id?}')
  return body
}

function failure(err: unknown): { err: { code: number; message: string } } {
  const e = liveErrorOf(err)
  return { err: { code: e.code, message: e.message } }
}

const REQUESTS = ['sub', 'pub', 'hist', 'presence'] as const
const MESSAGES = ['unsub', 'join', 'leave'] as const

/**
 * Op tables for the link server. Each authenticated peer session is one sink;
 * requests answer `{err: {code, message}}` rather than failing, so Live codes
 * survive the hop. Malformed one-way messages are logged and ignored.
 */
export function createLinkHandlers(ops: HomeOps, hub: Hub, onBadMessage: (op: string, err: LiveError) => void, replication?: Replication) {
  const sinks = new WeakMap<MetaPeer, Sink>()
  let n = 0
  const sinkOf = (peer: MetaPeer): Sink => {
    let sink = sinks.get(peer)
    if (!sink) {
      // Unique per session: a node that reconnects must not lose the members its new session adds.
      const id = `${peer.id ?? peer.remote}#${++n}`
      sink = { id, send: (event: HubEvent) => void peer.session.sendEncoded(encodeMessage('ev', event)) }
      sinks.set(peer, sink)
    }
    return sink
  }
  const handlers = new Map<string, RequestHandler<MetaPeer>>([['ping', () => ({ now: Date.now() })]])
  for (const op of REQUESTS) {
    handlers.set(op, (body, peer) => {
      try {
        if (!isMap(body)) throw new LiveError('BAD_FIELD', 'body must be a map')
        const answer = ops[op](sinkOf(peer), body)
        // Replicated homes answer later (a publish once its backup holds it): failures still travel as {err}.
        if (answer instanceof Promise) return answer.then((value: unknown) => value ?? {}, failure)
        return answer ?? {}
      } catch (err) {
        return failure(err)
      }
    })
  }
  for (const op of ['repl', 'fill', 'hand'] as const) {
    handlers.set(op, (body, peer) => {
      try {
        if (!replication) throw new LiveError('UNKNOWN_OP', `${op}: this node runs with --live-replicas 1`)
        if (!isMap(body)) throw new LiveError('BAD_FIELD', 'body must be a map')
        if (peer.kind !== 'node' || !peer.id) throw new LiveError('BAD_FIELD', `${op} is for Live nodes`)
        // A handover (./handover.ts) carries what a `repl` does: the state, or the next message.
        const checked = replicaBody(body, op === 'fill' ? 'fill' : 'repl')
        if (op === 'hand') return replication.handover.onHand(peer.id, checked)
        return op === 'repl' ? replication.onRepl(peer.id, checked) : replication.onFill(peer.id, checked)
      } catch (err) {
        const e = liveErrorOf(err)
        return { err: { code: e.code, message: e.message } }
      }
    })
  }
  // A node that left the table handed everything over (./handover.ts): homes stop waiting for it.
  handlers.set('handed', (_body, peer) => {
    if (!replication) return { err: { code: new LiveError('UNKNOWN_OP').code, message: 'handed: this node runs with --live-replicas 1' } }
    if (peer.kind !== 'node' || !peer.id) return { err: { code: new LiveError('BAD_FIELD').code, message: 'handed is for Live nodes' } }
    return replication.handover.onHanded(peer.id)
  })
  const messages = new Map<string, MessageHandler<MetaPeer>>()
  for (const op of MESSAGES) {
    messages.set(op, (body, peer) => {
      try {
        if (!isMap(body)) throw new LiveError('BAD_FIELD', 'body must be a map')
        void ops[op](sinkOf(peer), body)
      } catch (err) {
        onBadMessage(op, liveErrorOf(err))
      }
    })
  }
  return {
    handlers,
    messages,
    onPeerClosed(peer: MetaPeer): void {
      const sink = sinks.get(peer)
      if (sink) hub.dropSink(sink)
    },
  }
}
