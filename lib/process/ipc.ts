/**
 * Tagged IPC between a node parent and its children. Every message is
 * `{t, ...}`; requests also carry `seq` and are answered by `{t: 'reply', seq}`.
 * Incoming messages route through a literal action→handler table; a handler's
 * return value (or throw) becomes the reply when the message had a `seq`.
 */
import type { NodeConfig } from '../core/config.js'
import { createError, fromWire, toWire, type WireError } from '../core/errors.js'
import type { NodeState, SeedPush } from '../core/node-state.js'

/** What a child reports about itself every second. */
export interface ChildStats {
  rssBytes: number
  inflight: number
  /** Long-lived work the role tracks (WebSockets and the like). */
  tracked: number
  /** Requests per second over the last interval. */
  rps: number
  /** Worst event-loop delay over the last interval, in ms. */
  lagMs: number
}

/** Parent → child. */
export type ToChild =
  | { t: 'init'; index: number; startedAt: number; config: NodeConfig; state: NodeState }
  | { t: 'state'; state: NodeState }
  | { t: 'push'; push: SeedPush }
  | { t: 'drain'; timeoutMs: number }
  | { t: 'metrics'; seq: number }
  /** Role traffic (`ParentContext.children`); the body is the role's own. */
  | { t: 'role'; body: unknown }

/** Child → parent. */
export type ToParent =
  | { t: 'listening'; port: number }
  | { t: 'failed'; err: WireError }
  | { t: 'stats'; stats: ChildStats }
  /** Role traffic (`ChildContext.parent`): one-way, or a request answered by the parent's role. */
  | { t: 'role'; body: unknown }
  | { t: 'role-req'; seq: number; body: unknown }

type Reply = { t: 'reply'; seq: number; ok: true; body: unknown } | { t: 'reply'; seq: number; ok: false; err: WireError }

/** One handler per message tag, typed by the tag. */
export type Handlers<M extends { t: string }> = { readonly [K in M['t']]: (msg: Extract<M, { t: K }>) => unknown }

/** One handler per tag of a role's own messages, given who sent it (for a parent: the child's index). */
export type TagHandlers<M extends { t: string }, From> = { readonly [K in M['t']]: (msg: Extract<M, { t: K }>, from: From) => unknown }

/**
 * Routes a role's own message bodies (`ChildContext.parent`, `ParentContext.children`)
 * by tag through a literal table, as the channel itself does; a body no
 * handler takes goes to `onUnknown`, whose return (or throw) is the answer.
 */
export function routeByTag<M extends { t: string }, From>(
  handlers: TagHandlers<M, From>,
  onUnknown: (body: unknown, from: From) => unknown,
): (body: unknown, from: From) => unknown {
  const table = handlers as unknown as Record<string, (msg: unknown, from: From) => unknown>
  return (body, from) => {
    const t = typeof body === 'object' && body !== null ? (body as { t?: unknown }).t : undefined
    const handler = typeof t === 'string' && Object.hasOwn(table, t) ? table[t] : undefined
    return handler ? handler(body, from) : onUnknown(body, from)
  }
}

type Request<M> = M extends { seq: number } ? Omit<M, 'seq'> : never

/** Either end of the channel: a forked `ChildProcess` or the child's own `process`. */
export interface IpcPort {
  readonly connected: boolean
  send?(message: unknown, callback?: (error: Error | null) => void): boolean
  on(event: 'message', listener: (message: unknown) => void): unknown
  off(event: 'message', listener: (message: unknown) => void): unknown
}

export interface IpcEndpoint<Out extends { t: string }> {
  /** Fire and forget; dropped when the channel is closed (the exit handler deals with that peer). */
  send(msg: Out): void
  /** Sends a request and resolves its reply; rejects with `ESPRA_ERR_IPC_TIMEOUT` or the peer's error. */
  request<R>(msg: Request<Out>, timeoutMs: number): Promise<R>
  /** Stops listening and fails pending requests. */
  close(): void
}

/** Binds a handler table to one end of the channel. */
export function createIpcEndpoint<In extends { t: string }, Out extends { t: string }>(
  port: IpcPort,
  handlers: Handlers<In>,
  onUnknown: (msg: unknown) => void,
): IpcEndpoint<Out> {
  let seq = 0
  const pending = new Map<number, { request: string; resolve: (body: unknown) => void; reject: (err: Error) => void; timer: NodeJS.Timeout }>()

  function post(msg: Out | Reply): void {
    if (!port.connected || !port.send) return
    // The callback turns a send racing a disconnect into a no-op instead of an 'error' event.
    port.send(msg, () => {})
  }

  function settle(reply: Reply): void {
    const waiter = pending.get(reply.seq)
    if (!waiter) return
    pending.delete(reply.seq)
    clearTimeout(waiter.timer)
    if (reply.ok) waiter.resolve(reply.body)
    else waiter.reject(fromWire(reply.err))
  }

  function answer(seq: number, run: () => unknown): void {
    Promise.resolve()
      .then(run)
      .then(
        (body) => post({ t: 'reply', seq, ok: true, body }),
        (err: unknown) => post({ t: 'reply', seq, ok: false, err: toWire(err) }),
      )
  }

  const table = handlers as unknown as Record<string, (msg: unknown) => unknown>
  function onMessage(raw: unknown): void {
    const msg = raw as { t?: unknown; seq?: unknown }
    if (typeof msg !== 'object' || msg === null || typeof msg.t !== 'string') return onUnknown(raw)
    if (msg.t === 'reply') return settle(msg as Reply)
    const handler = Object.hasOwn(table, msg.t) ? table[msg.t] : undefined
    if (!handler) return onUnknown(raw)
    if (typeof msg.seq === 'number') return answer(msg.seq, () => handler(msg))
    handler(msg)
  }
  port.on('message', onMessage)

  return {
    send: post,
    request<R>(msg: Request<Out>, timeoutMs: number): Promise<R> {
      const id = ++seq
      const request = (msg as { t: string }).t
      return new Promise<R>((resolve, reject) => {
        const timer = setTimeout(() => {
          pending.delete(id)
          reject(createError('ESPRA_ERR_IPC_TIMEOUT', { request, reason: `none within ${timeoutMs}ms` }))
        }, timeoutMs)
        pending.set(id, { request, resolve: resolve as (body: unknown) => void, reject, timer })
        post({ ...msg, seq: id } as unknown as Out)
      })
    },
    close() {
      port.off('message', onMessage)
      for (const [id, waiter] of pending) {
        clearTimeout(waiter.timer)
        waiter.reject(createError('ESPRA_ERR_IPC_TIMEOUT', { request: waiter.request, reason: 'the peer went away before replying' }))
        pending.delete(id)
      }
    },
  }
}
