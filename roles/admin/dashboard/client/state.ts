/**
 * What the pages share: the registry as the SSE stream last told it
 * (`GET /api/events?nodes=1`: joins, leaves, health changes and a node-list
 * snapshot every 2 s), the events seen since the page opened (the seed keeps
 * no history), and whether the stream is up.
 */

export interface NodeView {
  id: string
  role: string
  region: string
  address: string
  port: number
  pid: number
  children: number
  childrenWanted: number
  version: string
  build: string | null
  health: string
  startedAt: number
  registeredAt: number
  heartbeatAgeMs: number
  connected: boolean
  load: { connections: number; rps: number; rssBytes: number; lagMs: number; pendingUploads?: number; byChild?: { slot: number; pid: number; connections: number; rps: number; rssBytes: number; lagMs: number }[] }
  drain?: { then: string; graceMs: number; at: number } | null
  elb?: unknown
}

export interface SeenEvent {
  at: number
  type: string
  node: string
  role: string
  health: string
  reason: string
}

const MAX_EVENTS = 500

export const state = {
  nodes: new Map<string, NodeView>(),
  /** When the node list was last refreshed (ms, this browser's clock). */
  nodesAt: 0,
  events: [] as SeenEvent[],
  streamUp: false,
  seedUp: true,
}

const listeners = new Set<() => void>()
export const onChange = (l: () => void): (() => void) => (listeners.add(l), () => void listeners.delete(l))
const changed = (): void => listeners.forEach((l) => l())

let source: EventSource | null = null

export function startStream(): void {
  source?.close()
  source = new EventSource('/api/events?nodes=1')
  source.addEventListener('open', () => {
    state.streamUp = true
    changed()
  })
  source.addEventListener('error', () => {
    state.streamUp = false
    changed()
  })
  source.addEventListener('seed', (e) => {
    state.seedUp = (JSON.parse((e as MessageEvent<string>).data) as { connected: boolean }).connected
    changed()
  })
  source.addEventListener('nodes', (e) => {
    const { nodes } = JSON.parse((e as MessageEvent<string>).data) as { nodes: NodeView[] }
    state.nodes = new Map(nodes.map((n) => [n.id, n]))
    state.nodesAt = Date.now()
    changed()
  })
  for (const type of ['joined', 'left', 'health']) {
    source.addEventListener(type, (e) => {
      const ev = JSON.parse((e as MessageEvent<string>).data) as { at: number; node: NodeView; reason?: string }
      state.events.unshift({ at: ev.at, type, node: ev.node.id, role: ev.node.role, health: ev.node.health, reason: ev.reason ?? '' })
      if (state.events.length > MAX_EVENTS) state.events.pop()
      if (type === 'left') state.nodes.delete(ev.node.id)
      else state.nodes.set(ev.node.id, { ...state.nodes.get(ev.node.id), ...ev.node })
      changed()
    })
  }
}

export function setNodes(nodes: NodeView[]): void {
  state.nodes = new Map(nodes.map((n) => [n.id, n]))
  state.nodesAt = Date.now()
  changed()
}
