/**
 * The role channel between a Live child's clients (./child.ts) and the Live
 * peer running in the same process (`--live-homes children`: ./node.ts), in
 * place of IPC to the parent. The peer's events reach the clients' side at
 * once (the hot path); that side's messages and requests are queued (a
 * microtask), in order, so neither ever runs inside the other's handlers, as
 * over IPC.
 */
import type { ChildrenChannel, ParentChannel } from '../../lib/process/role.js'

/** The one "child" of the in-process peer. */
const CLIENTS = 0

export function createLoopback(): { parent: ParentChannel; children: ChildrenChannel } {
  const toClients: ((body: unknown) => void)[] = []
  const fromClients: ((child: number, body: unknown) => void)[] = []
  let answer: ((child: number, body: unknown) => unknown) | null = null
  const children: ChildrenChannel = {
    broadcast(body) {
      for (const l of toClients) l(body)
    },
    send(child, body) {
      if (child !== CLIENTS) return false
      for (const l of toClients) l(body)
      return true
    },
    onMessage: (l) => void fromClients.push(l),
    onRequest: (h) => void (answer = h),
    // The clients' side is this process: it never exits without the peer.
    onExit: () => {},
  }
  const parent: ParentChannel = {
    send(body) {
      queueMicrotask(() => {
        for (const l of fromClients) l(CLIENTS, body)
      })
    },
    request<R>(body: unknown): Promise<R> {
      return new Promise<R>((resolve, reject) => {
        queueMicrotask(() => {
          try {
            Promise.resolve(answer!(CLIENTS, body) as R).then(resolve, reject)
          } catch (err) {
            reject(err as Error)
          }
        })
      })
    },
    onMessage: (l) => void toClients.push(l),
  }
  return { parent, children }
}
