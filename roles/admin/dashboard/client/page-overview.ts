/**
 * Cluster overview: totals, two charts (requests/s and connections per role,
 * the last hour, from `GET /api/history`), then every node by region and
 * role. Rows are kept per node id and their cells rewritten in place on each
 * snapshot, so focus and scroll stay put while the figures move.
 */
import { api } from './api.js'
import { ago, badge, bytes, fill, h, num, table } from './dom.js'
import { onChange, state, type NodeView } from './state.js'

interface History {
  intervalMs: number
  samples: { at: number; roles: Record<string, { nodes: number; rps: number; connections: number }> }[]
}

const ROLE_ORDER = ['seed', 'proxy', 'live', 'fileserver', 'app', 'mail', 'admin']
const COLOURS = ['#0b5cad', '#1a7f37', '#9a6700', '#8250df', '#cf222e', '#1b7c83', '#6e7781']
const COLUMNS = ['node', 'role', 'health', 'conns', 'req/s', 'RSS', 'loop lag', 'children', 'build', 'version', 'heartbeat']

const roleRank = (r: string): number => (ROLE_ORDER.includes(r) ? ROLE_ORDER.indexOf(r) : 99)

function cells(n: NodeView): (Node | string)[] {
  return [
    h('a', { href: `#/nodes/${encodeURIComponent(n.id)}` }, n.id), n.role, badge(n.drain ? 'draining' : n.health), num(n.load?.connections), num(n.load?.rps, 1),
    bytes(n.load?.rssBytes), `${num(n.load?.lagMs, 1)} ms`, `${n.children}/${n.childrenWanted}`, n.build ?? '–', n.version, ago(n.heartbeatAgeMs),
  ]
}

const NUMERIC = new Set([3, 4, 5, 6, 7, 10])

function row(n: NodeView): HTMLTableRowElement {
  return h('tr', { 'data-node': n.id }, ...cells(n).map((c, i) => h('td', { class: NUMERIC.has(i) ? 'num' : i === 0 ? 'id' : null, title: i === 0 ? n.id : null }, c)))
}

function chart(title: string, key: 'rps' | 'connections', history: History, el: HTMLElement): uPlot | null {
  const roles = [...new Set(history.samples.flatMap((s) => Object.keys(s.roles)))].sort((a, b) => roleRank(a) - roleRank(b))
  fill(el)
  if (history.samples.length === 0) {
    fill(el, h('div', { class: 'mute' }, `${title}: no sample yet (one every ${history.intervalMs / 1000}s)`))
    return null
  }
  const data: (number | null)[][] = [history.samples.map((s) => s.at / 1000), ...roles.map((r) => history.samples.map((s) => s.roles[r]?.[key] ?? null))]
  const opts = {
    title, width: Math.max(320, el.clientWidth - 12), height: 180,
    series: [{}, ...roles.map((r, i) => ({ label: r, stroke: COLOURS[i % COLOURS.length], width: 1.5 }))],
    axes: [{}, { size: 50 }], legend: { live: false },
  }
  return new uPlot(opts, data, el)
}

export function renderOverview(main: HTMLElement): () => void {
  const cards = h('div', { class: 'cards' })
  const rpsEl = h('div', { class: 'chart', id: 'chart-rps' })
  const connEl = h('div', { class: 'chart', id: 'chart-connections' })
  const regions = h('div', { id: 'regions' })
  fill(main, h('h1', {}, 'Cluster overview'), cards, h('div', { class: 'charts' }, rpsEl, connEl), regions)
  const rows = new Map<string, HTMLTableRowElement>()
  let layout = ''
  let plots: (uPlot | null)[] = []

  const draw = (): void => {
    const nodes = [...state.nodes.values()].sort((a, b) => a.region.localeCompare(b.region) || roleRank(a.role) - roleRank(b.role) || a.id.localeCompare(b.id))
    const bad = nodes.filter((n) => n.health !== 'ok').length
    fill(cards,
      ...[['nodes', nodes.length], ['healthy', nodes.length - bad], ['not ok', bad], ['req/s', num(nodes.reduce((s, n) => s + (n.load?.rps ?? 0), 0), 1)],
        ['connections', nodes.reduce((s, n) => s + (n.load?.connections ?? 0), 0)], ['regions', new Set(nodes.map((n) => n.region)).size]]
        .map(([k, v]) => h('div', { class: 'card' }, h('div', { class: 'v' }, String(v)), h('div', { class: 'k' }, String(k)))))
    // The tables are rebuilt only when the set of nodes changes; otherwise each row's cells are rewritten.
    const shape = nodes.map((n) => `${n.region}/${n.id}`).join('|')
    if (shape !== layout) {
      layout = shape
      rows.clear()
      const byRegion = new Map<string, NodeView[]>()
      for (const n of nodes) byRegion.set(n.region, [...(byRegion.get(n.region) ?? []), n])
      fill(regions, ...(byRegion.size === 0 ? [h('p', { class: 'mute' }, 'No node is registered with the seed.')] : []),
        ...[...byRegion].flatMap(([region, list]) => {
          const trs = list.map((n) => {
            const tr = row(n)
            rows.set(n.id, tr)
            return tr
          })
          return [h('h2', {}, `Region ${region}`, h('span', { class: 'mute' }, ` · ${list.length} ${list.length === 1 ? 'node' : 'nodes'}`)), table(COLUMNS, trs, 'none', 'nodes', NUMERIC)]
        }))
      return
    }
    for (const n of nodes) {
      const tr = rows.get(n.id)
      if (tr === undefined) continue
      cells(n).forEach((c, i) => {
        const td = tr.children[i] as HTMLElement
        const text = typeof c === 'string' ? c : c.textContent ?? ''
        if (td.textContent !== text) fill(td, c)
      })
    }
  }

  const loadHistory = (): void => {
    void api<History>('GET', '/api/history').then((history) => {
      plots.forEach((p) => p?.destroy())
      plots = [chart('Requests/s per role (last hour)', 'rps', history, rpsEl), chart('Connections per role (last hour)', 'connections', history, connEl)]
    }, (err: Error) => fill(rpsEl, h('div', { class: 'error' }, `history: ${err.message}`)))
  }

  draw()
  loadHistory()
  const timer = window.setInterval(loadHistory, 10_000)
  const off = onChange(draw)
  return () => {
    off()
    window.clearInterval(timer)
    plots.forEach((p) => p?.destroy())
  }
}
