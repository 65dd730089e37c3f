/** Tasks: queue counts, dead letters, retry and delete (operators; a delete after a confirmation: it cannot be undone). */
import { api, type SessionInfo } from './api.js'
import { confirmAction, fill, h, table, time, toast } from './dom.js'

interface Dead { id: string; name: string; attempts: number; enqueuedAt: number; failedAt: number; error: string; payloadBytes: number }
interface Tasks { backend: string; counts: Record<string, number>; dead?: Dead[] }

export function renderTasks(main: HTMLElement, session: SessionInfo): () => void {
  const cards = h('div', { class: 'cards' })
  const dead = h('div')
  fill(main, h('h1', {}, 'Tasks'), cards, h('h2', {}, 'Dead letters'), dead)
  const retry = (id: string): void => {
    void api<{ id: string }>('POST', `/api/tasks/${encodeURIComponent(id)}/retry`).then(() => (toast(`task ${id} queued again`), load()), (err: Error) => toast(`retry refused: ${err.message}`, true))
  }
  const remove = (d: Dead): void => {
    void confirmAction(`Delete dead letter ${d.id} (${d.name})? Its payload is gone for good.`, 'Delete').then((ok) => {
      if (!ok) return
      void api<{ id: string }>('DELETE', `/api/tasks/${encodeURIComponent(d.id)}`).then(() => (toast(`dead letter ${d.id} deleted`), load()), (err: Error) => toast(`delete refused: ${err.message}`, true))
    })
  }
  const actions = (d: Dead): HTMLElement | string => session.role !== 'operator' ? '' : h('span', {},
    h('button', { type: 'button', onclick: () => retry(d.id) }, 'Retry'), ' ',
    h('button', { type: 'button', class: 'danger', onclick: () => remove(d) }, 'Delete'))
  const load = (): void => {
    void api<Tasks>('GET', '/api/tasks?dead=1&limit=200').then((t) => {
      fill(cards, ...Object.entries(t.counts).map(([k, v]) => h('div', { class: 'card' }, h('div', { class: 'v' }, String(v)), h('div', { class: 'k' }, k))),
        h('div', { class: 'card' }, h('div', { class: 'v' }, t.backend), h('div', { class: 'k' }, 'backend')))
      fill(dead, table(['task', 'name', 'attempts', 'enqueued', 'failed', 'error', ''], (t.dead ?? []).map((d) => h('tr', { 'data-task': d.id },
        h('td', { class: 'id' }, d.id), h('td', {}, d.name), h('td', { class: 'num' }, d.attempts), h('td', {}, time(d.enqueuedAt)), h('td', {}, time(d.failedAt)),
        h('td', { class: 'wrap' }, d.error), h('td', {}, actions(d)))), 'no dead letter'))
    }, (err: Error) => fill(dead, h('p', { class: 'error' }, err.message)))
  }
  load()
  const timer = window.setInterval(load, 5000)
  return () => window.clearInterval(timer)
}
