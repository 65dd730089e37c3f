/**
 * One node: its figures (live from the stream), its children, what happened
 * to it (events seen since the page opened, its health probes, its alerts).
 * Per-child figures are in the node's Prometheus metrics (docs/metrics.md),
 * not here.
 */
import { api } from './api.js'
import { ago, badge, bytes, fill, h, num, table, time } from './dom.js'
import { onChange, state } from './state.js'

interface Probe { at: number; status: number | null; latencyMs: number | null; ok: boolean; health: string | null; error: string | null }
interface Alert { id: string; rule: string; state: string; openedAt: number; resolvedAt: number | null; summary: string; nodes: string[] }

export function renderNode(main: HTMLElement, _session: unknown, id: string): () => void {
  const figures = h('div')
  const events = h('div')
  const probes = h('div')
  const alerts = h('div')
  fill(main, h('p', {}, h('a', { href: '#/overview' }, '← overview')), h('h1', {}, 'Node ', h('span', { class: 'mono' }, id)),
    figures, h('h2', {}, 'Recent events (since this page opened)'), events, h('h2', {}, 'Health probes by the admin node'), probes, h('h2', {}, 'Alerts'), alerts)

  const draw = (): void => {
    const n = state.nodes.get(id)
    if (n === undefined) {
      fill(figures, h('p', { class: 'mute' }, 'Not registered with the seed now (it left, or never joined).'))
    } else {
      const pairs: [string, Node | string][] = [
        ['role', n.role], ['region', n.region], ['health', badge(n.drain ? 'draining' : n.health)], ['address', `${n.address}:${n.port}`], ['pid', String(n.pid)],
        ['children', `${n.children} running of ${n.childrenWanted} wanted`], ['connections', num(n.load?.connections)], ['requests/s', num(n.load?.rps, 1)],
        ['RSS', bytes(n.load?.rssBytes)], ['event-loop lag', `${num(n.load?.lagMs, 1)} ms`], ['build', n.build ?? '–'], ['version', n.version],
        ['heartbeat age', ago(n.heartbeatAgeMs)], ['started', time(n.startedAt)], ['registered', time(n.registeredAt)], ['seed link', n.connected ? 'connected' : 'not connected'],
        ['drain order', n.drain ? `${n.drain.then} (grace ${n.drain.graceMs} ms, since ${time(n.drain.at)})` : 'none'],
      ]
      if (n.load?.pendingUploads !== undefined) pairs.push(['pending uploads', String(n.load.pendingUploads)])
      fill(figures, h('dl', { class: 'figures' }, ...pairs.flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, v)])))
    }
    const seen = state.events.filter((e) => e.node === id)
    fill(events, table(['at', 'event', 'health', 'reason'], seen.map((e) => h('tr', {}, h('td', {}, time(e.at)), h('td', {}, e.type), h('td', {}, badge(e.health)), h('td', { class: 'wrap' }, e.reason))), 'no event seen'))
  }

  const load = (): void => {
    void api<{ node: string; results: Probe[] }[]>('GET', `/api/probes?node=${encodeURIComponent(id)}`).then((list) => {
      const results = (list[0]?.results ?? []).slice(-20).reverse()
      fill(probes, table(['at', 'ok', 'status', 'latency', 'health', 'error'], results.map((p) => h('tr', {},
        h('td', {}, time(p.at)), h('td', {}, badge(p.ok ? 'ok' : 'failed')), h('td', { class: 'num' }, p.status ?? '–'), h('td', { class: 'num' }, p.latencyMs === null ? '–' : `${p.latencyMs} ms`),
        h('td', {}, p.health ?? '–'), h('td', { class: 'wrap' }, p.error ?? ''))), 'no probe yet (or alerts are off)'))
    }, (err: Error) => fill(probes, h('p', { class: 'error' }, err.message)))
    void api<{ alerts: Alert[] }>('GET', '/api/alerts?limit=200').then(({ alerts: list }) => {
      const mine = list.filter((a) => a.nodes.includes(id))
      fill(alerts, table(['opened', 'rule', 'state', 'resolved', 'summary'], mine.map((a) => h('tr', {},
        h('td', {}, time(a.openedAt)), h('td', {}, a.rule), h('td', {}, badge(a.state)), h('td', {}, time(a.resolvedAt)), h('td', { class: 'wrap' }, a.summary))), 'no alert'))
    }, (err: Error) => fill(alerts, h('p', { class: 'error' }, err.message)))
  }
  draw()
  load()
  const timer = window.setInterval(load, 5000)
  const off = onChange(draw)
  return () => {
    off()
    window.clearInterval(timer)
  }
}
