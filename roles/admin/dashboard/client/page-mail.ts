/** Mail: the outbound queue (retry, hold, release, drop for operators) and inbound handoffs to the app (retry a failed one). */
import { api, type SessionInfo } from './api.js'
import { fill, h, table, time, toast } from './dom.js'

interface Outbound { id: string; status: string; from: string; subject: string; at: number; domains: unknown }
interface Inbound { pending: number; failed: number; unqueued: number; messages: { id: string; state: string; receivedAt: number; from: string; to: string[]; size: number; attempts: number; lastError: string | null }[] }

const ACTIONS: Record<string, string[]> = { queued: ['hold', 'drop'], deferred: ['retry', 'hold', 'drop'], held: ['release', 'drop'], failed: ['retry'] }

export function renderMail(main: HTMLElement, session: SessionInfo): () => void {
  const outbound = h('div')
  const inbound = h('div')
  fill(main, h('h1', {}, 'Mail'), h('h2', {}, 'Outbound queue (queued, deferred, held, failed)'), outbound, h('h2', {}, 'Inbound handoffs to the app'), inbound)
  const act = (path: string, what: string): void => {
    void api('POST', path).then(() => (toast(`${what}: done`), load()), (err: Error) => toast(`${what} refused: ${err.message}`, true))
  }
  const load = (): void => {
    void api<Outbound[]>('GET', '/api/mail/queue?status=queued,deferred,held,failed').then((list) => fill(outbound, table(['message', 'status', 'from', 'subject', 'at', ''], list.map((m) => h('tr', {},
      h('td', { class: 'id' }, m.id), h('td', {}, m.status), h('td', {}, m.from), h('td', { class: 'wrap' }, m.subject), h('td', {}, time(m.at)),
      h('td', {}, ...(session.role === 'operator' ? (ACTIONS[m.status] ?? []).map((a) => h('button', { type: 'button', onclick: () => act(`/api/mail/${encodeURIComponent(m.id)}/${a}`, `${a} ${m.id}`) }, a)) : [])))), 'queue empty')),
    (err: Error) => fill(outbound, h('p', { class: 'error' }, err.message)))
    void api<Inbound>('GET', '/api/mail/inbound?limit=200').then((r) => fill(inbound, h('p', {}, `${r.pending} pending, ${r.failed} failed, ${r.unqueued} not queued`),
      table(['message', 'state', 'received', 'from', 'to', 'attempts', 'last error', ''], r.messages.map((m) => h('tr', {},
        h('td', { class: 'id' }, m.id), h('td', {}, m.state), h('td', {}, time(m.receivedAt)), h('td', {}, m.from), h('td', { class: 'wrap' }, m.to.join(', ')), h('td', { class: 'num' }, m.attempts),
        h('td', { class: 'wrap' }, m.lastError ?? ''), h('td', {}, session.role === 'operator' && m.state === 'failed' ? h('button', { type: 'button', onclick: () => act(`/api/mail/inbound/${encodeURIComponent(m.id)}/retry`, `retry ${m.id}`) }, 'retry') : ''))), 'none')),
    (err: Error) => fill(inbound, h('p', { class: 'error' }, err.message)))
  }
  load()
  const timer = window.setInterval(load, 5000)
  return () => window.clearInterval(timer)
}
