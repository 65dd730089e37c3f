/**
 * Alerts: open and recently resolved, silences (add one with an expiry,
 * lift one), and the sinks (a failing webhook shows here). "Silence…" on an
 * open alert fills the form with its rule and node.
 */
import { api, type SessionInfo } from './api.js'
import { badge, confirmAction, fill, h, table, time, toast } from './dom.js'

interface Alert { id: string; rule: string; node: string | null; nodes: string[]; grouped: boolean; state: string; openedAt: number; resolvedAt: number | null; summary: string; flapping: boolean; silencedBy: string | null }
interface Silence { id: string; rule: string | null; node: string | null; until: number; by: string; comment: string; createdAt: number }
interface Sink { name: string; kind: string; pending: number; sent: number; dropped: number; lastSuccessAt: number | null; lastError: { at: number; message: string } | null }

const RULES = ['', 'node-down', 'node-health', 'crash-loop', 'rss', 'event-loop-lag', 'dead-letters', 'task-backlog', 'pending-uploads', 'build-refused', 'build-stuck', 'seed-link', 'seed-leader']
const DURATIONS: [string, number][] = [['1 hour', 3_600_000], ['4 hours', 4 * 3_600_000], ['1 day', 86_400_000], ['1 week', 7 * 86_400_000]]

export function renderAlerts(main: HTMLElement, session: SessionInfo): () => void {
  const open = h('div')
  const resolved = h('div')
  const silences = h('div')
  const sinks = h('div')
  const rule = h('select', { id: 'silence-rule', 'aria-label': 'rule' }, ...RULES.map((r) => h('option', { value: r }, r === '' ? 'any rule' : r)))
  const node = h('input', { id: 'silence-node', 'aria-label': 'node', placeholder: 'node id (any)', maxlength: 64, spellcheck: 'false' })
  const duration = h('select', { id: 'silence-for', 'aria-label': 'for' }, ...DURATIONS.map(([label, ms]) => h('option', { value: ms }, label)))
  const comment = h('input', { id: 'silence-comment', 'aria-label': 'comment', placeholder: 'why', maxlength: 500 })
  const form = h('form', { class: 'row', id: 'silence-form' }, 'Silence ', rule, ' on ', node, ' for ', duration, comment, h('button', { type: 'submit', class: 'primary' }, 'Add silence'))
  fill(main, h('h1', {}, 'Alerts'), h('h2', {}, 'Open'), open, h('h2', {}, 'Silences'), session.role === 'operator' ? form : null, silences,
    h('h2', {}, 'Recently resolved'), resolved, h('h2', {}, 'Sinks'), sinks)

  form.addEventListener('submit', (e) => {
    e.preventDefault()
    const body: Record<string, unknown> = { until: Date.now() + Number(duration.value) }
    if (rule.value !== '') body['rule'] = rule.value
    if (node.value.trim() !== '') body['node'] = node.value.trim()
    if (comment.value.trim() !== '') body['comment'] = comment.value.trim()
    void api<Silence>('POST', '/api/silences', body).then((s) => {
      toast(`silenced until ${time(s.until)}`)
      node.value = ''
      comment.value = ''
      load()
    }, (err: Error) => toast(`silence refused: ${err.message}`, true))
  })

  const alertRow = (a: Alert): HTMLElement => h('tr', { 'data-alert': a.id },
    h('td', {}, time(a.openedAt)), h('td', {}, a.rule), h('td', { class: 'id' }, a.grouped ? `${a.nodes.length} nodes` : a.node ?? 'cluster'), h('td', {}, badge(a.state), a.flapping ? ' flapping' : '', a.silencedBy ? ' silenced' : ''),
    h('td', {}, time(a.resolvedAt)), h('td', { class: 'wrap alert-summary' }, a.summary),
    h('td', {}, session.role === 'operator' && a.state === 'open' ? h('button', {
      type: 'button', onclick: () => {
        rule.value = a.rule
        node.value = a.grouped ? '' : a.node ?? ''
        node.focus()
      },
    }, 'Silence…') : ''))

  const lift = async (s: Silence): Promise<void> => {
    if (!(await confirmAction(`Lift the silence on ${s.rule ?? 'any rule'} / ${s.node ?? 'any node'}?`, 'Lift silence'))) return
    void api('DELETE', `/api/silences/${encodeURIComponent(s.id)}`).then(() => (toast('silence lifted'), load()), (err: Error) => toast(err.message, true))
  }

  const load = (): void => {
    const cols = ['opened', 'rule', 'node', 'state', 'resolved', 'summary', '']
    void api<{ alerts: Alert[] }>('GET', '/api/alerts?state=open&limit=200').then((r) => fill(open, table(cols, r.alerts.map(alertRow), 'no open alert')), (err: Error) => fill(open, h('p', { class: 'error' }, err.message)))
    void api<{ alerts: Alert[] }>('GET', '/api/alerts?state=resolved&limit=50').then((r) => fill(resolved, table(cols, r.alerts.map(alertRow), 'none')), (err: Error) => fill(resolved, h('p', { class: 'error' }, err.message)))
    void api<Silence[]>('GET', '/api/silences').then((list) => fill(silences, table(['rule', 'node', 'until', 'by', 'comment', ''], list.map((s) => h('tr', { 'data-silence': s.id },
      h('td', {}, s.rule ?? 'any'), h('td', { class: 'id' }, s.node ?? 'any'), h('td', {}, time(s.until)), h('td', {}, s.by), h('td', { class: 'wrap' }, s.comment),
      h('td', {}, session.role === 'operator' ? h('button', { type: 'button', onclick: () => void lift(s) }, 'Lift…') : ''))), 'no silence')), (err: Error) => fill(silences, h('p', { class: 'error' }, err.message)))
    void api<Sink[]>('GET', '/api/alert-sinks').then((list) => fill(sinks, table(['sink', 'pending', 'sent', 'dropped', 'last success', 'last error'], list.map((s) => h('tr', {},
      h('td', {}, s.name), h('td', { class: 'num' }, s.pending), h('td', { class: 'num' }, s.sent), h('td', { class: 'num' }, s.dropped), h('td', {}, time(s.lastSuccessAt)),
      h('td', { class: 'wrap' }, s.lastError ? `${time(s.lastError.at)}: ${s.lastError.message}` : ''))), 'no sink configured')), (err: Error) => fill(sinks, h('p', { class: 'error' }, err.message)))
  }
  load()
  const timer = window.setInterval(load, 5000)
  return () => window.clearInterval(timer)
}
