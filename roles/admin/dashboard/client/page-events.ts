/** Cluster events (from the live stream, since this page opened) and the audit log (paged, newest first). */
import { api } from './api.js'
import { badge, fill, h, table, time } from './dom.js'
import { onChange, state } from './state.js'

interface Entry { id: string; at: number; operator: string; role: string; action: string; target: string | null; params: unknown; address: string; outcome: string; status: number; replayed?: true }

export function renderEvents(main: HTMLElement): () => void {
  const list = h('div')
  fill(main, h('h1', {}, 'Cluster events'), h('p', { class: 'mute' }, 'Joins, leaves and health changes as the seed pushes them, since this page opened (the seed keeps no history).'), list)
  const draw = (): void => fill(list, table(['at', 'event', 'node', 'role', 'health', 'reason'], state.events.map((e) => h('tr', {},
    h('td', {}, time(e.at)), h('td', {}, e.type), h('td', { class: 'id' }, h('a', { href: `#/nodes/${encodeURIComponent(e.node)}` }, e.node)), h('td', {}, e.role), h('td', {}, badge(e.health)), h('td', { class: 'wrap' }, e.reason))), 'no event yet'))
  draw()
  return onChange(draw)
}

export function renderAudit(main: HTMLElement): () => void {
  const body = h('tbody')
  const more = h('button', { type: 'button' }, 'Older entries')
  fill(main, h('h1', {}, 'Audit log'), h('p', { class: 'mute' }, 'Every state-changing call, done or refused: who, what, when, from where, the outcome.'),
    h('table', {}, h('thead', {}, h('tr', {}, ...['at', 'operator', 'action', 'target', 'params', 'address', 'outcome'].map((x) => h('th', { scope: 'col' }, x)))), body), h('p', {}, more))
  let next: string | null = null
  const page = (): void => {
    void api<{ entries: Entry[]; next: string | null }>('GET', `/api/audit?limit=100${next ? `&before=${encodeURIComponent(next)}` : ''}`).then((r) => {
      for (const e of r.entries) {
        body.append(h('tr', {}, h('td', {}, time(e.at)), h('td', {}, `${e.operator} (${e.role})`), h('td', {}, e.action), h('td', { class: 'id' }, e.target ?? ''),
          h('td', { class: 'wrap mono' }, e.params === null ? '' : JSON.stringify(e.params)), h('td', {}, e.address), h('td', {}, badge(e.outcome === 'ok' ? 'ok' : 'failed'), ' ', e.outcome === 'ok' ? '' : e.outcome, e.replayed ? ' (replayed)' : '')))
      }
      next = r.next
      more.hidden = next === null
    }, (err: Error) => body.append(h('tr', {}, h('td', { colspan: 7, class: 'error' }, err.message))))
  }
  more.addEventListener('click', page)
  page()
  return () => {}
}
