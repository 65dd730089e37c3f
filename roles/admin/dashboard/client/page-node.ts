/**
 * One node: its figures (live from the stream), each child's (slot, pid,
 * connections, requests/s, RSS, lag: the heartbeat's `load.byChild`), what
 * happened to it (events seen since the page opened, its health probes, its
 * alerts), and for operators drain (after a confirmation: it takes capacity
 * away) and undrain.
 */
import { api, type SessionInfo } from './api.js'
import { ago, badge, bytes, confirmAction, fill, h, num, table, time, toast } from './dom.js'
import { onChange, state } from './state.js'

interface Probe { at: number; status: number | null; latencyMs: number | null; ok: boolean; health: string | null; error: string | null }
interface Alert { id: string; rule: string; state: string; openedAt: number; resolvedAt: number | null; summary: string; nodes: string[] }

export function renderNode(main: HTMLElement, session: SessionInfo, id: string): () => void {
  const figures = h('div')
  const children = h('div')
  const actions = h('div', { id: 'node-actions' })
  const events = h('div')
  const probes = h('div')
  const alerts = h('div')
  fill(main, h('p', {}, h('a', { href: '#/overview' }, '← overview')), h('h1', {}, 'Node ', h('span', { class: 'mono' }, id)),
    figures, h('h2', {}, 'Children'), children, session.role === 'operator' ? actions : null, h('h2', {}, 'Recent events (since this page opened)'), events, h('h2', {}, 'Health probes by the admin node'), probes, h('h2', {}, 'Alerts'), alerts)

  // Drain: the node fails its health check, finishes what it has, then idles or stops (POST /api/nodes/:id/drain).
  const then = h('select', { id: 'drain-then', 'aria-label': 'then' }, h('option', { value: 'idle' }, 'then idle (stays up, out of service)'), h('option', { value: 'stop' }, 'then stop'))
  const grace = h('select', { id: 'drain-grace', 'aria-label': 'grace' }, ...['0s', '20s', '60s', '5m'].map((g) => h('option', { value: g, selected: g === '20s' }, `grace ${g}`)))
  const drain = h('button', { type: 'button', class: 'danger', id: 'drain' }, 'Drain…')
  const undrain = h('button', { type: 'button', id: 'undrain' }, 'Undrain')
  drain.addEventListener('click', () => {
    void confirmAction(`Drain node ${id}? It fails its health check and takes no new work; after the grace it ${then.value === 'stop' ? 'stops' : 'idles, out of service until undrained'}.`, `Drain ${id}`).then((ok) => {
      if (!ok) return
      api('POST', `/api/nodes/${encodeURIComponent(id)}/drain`, { then: then.value, grace: grace.value }).then(() => toast(`drain of ${id} ordered`), (err: Error) => toast(`drain refused: ${err.message}`, true))
    })
  })
  undrain.addEventListener('click', () => {
    api<{ undrained: boolean }>('POST', `/api/nodes/${encodeURIComponent(id)}/undrain`).then((r) => toast(r.undrained ? `${id} back in service` : `${id} had no drain order`), (err: Error) => toast(`undrain refused: ${err.message}`, true))
  })
  let shownDrained: boolean | null = null
  const drawActions = (drained: boolean): void => {
    if (shownDrained === drained) return
    shownDrained = drained
    fill(actions, h('h2', {}, 'Actions'), drained ? h('div', { class: 'row' }, undrain) : h('div', { class: 'row' }, then, grace, drain))
  }

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
      fill(children, table(['slot', 'pid', 'connections', 'requests/s', 'RSS', 'event-loop lag'], (n.load?.byChild ?? []).map((c) => h('tr', {},
        h('td', { class: 'num' }, String(c.slot)), h('td', { class: 'num' }, String(c.pid)), h('td', { class: 'num' }, num(c.connections)), h('td', { class: 'num' }, num(c.rps, 1)),
        h('td', { class: 'num' }, bytes(c.rssBytes)), h('td', { class: 'num' }, `${num(c.lagMs, 1)} ms`))), 'no child reported (a node without children, or not yet)', 'children', new Set([0, 1, 2, 3, 4, 5])))
      drawActions(n.drain !== null && n.drain !== undefined)
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
