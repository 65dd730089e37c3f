/**
 * The dashboard: one page, hash routes (`#/overview`, `#/nodes/<id>`,
 * `#/builds`, `#/tasks`, `#/events`, `#/audit`, `#/alerts`, `#/mail`, `#/ops`).
 * Each page module renders into `<main>` and returns a cleanup; data comes
 * from `/api/*` with the session cookie, live figures from the SSE stream.
 */
import { api, loadSession, logout, type SessionInfo } from './api.js'
import { fill, h, toast } from './dom.js'
import { renderAlerts } from './page-alerts.js'
import { renderAudit, renderEvents } from './page-events.js'
import { renderBuilds } from './page-builds.js'
import { renderMail } from './page-mail.js'
import { renderNode } from './page-node.js'
import { renderOps } from './page-ops.js'
import { renderOverview } from './page-overview.js'
import { renderTasks } from './page-tasks.js'
import { onChange, setNodes, startStream, state, type NodeView } from './state.js'

export type Page = (main: HTMLElement, session: SessionInfo, arg: string) => () => void

const PAGES: Record<string, Page> = {
  overview: renderOverview, nodes: renderNode, builds: renderBuilds, tasks: renderTasks,
  events: renderEvents, audit: renderAudit, alerts: renderAlerts, mail: renderMail, ops: renderOps,
}

const main = document.getElementById('main') as HTMLElement
let cleanup: () => void = () => {}

function route(session: SessionInfo): void {
  const [, name = 'overview', ...rest] = location.hash.split('/')
  const page = PAGES[name] ?? renderOverview
  cleanup()
  main.replaceChildren()
  for (const a of document.querySelectorAll('#nav a')) a.classList.toggle('on', a.getAttribute('href') === `#/${name}` || (name === 'nodes' && a.getAttribute('href') === '#/overview'))
  cleanup = page(main, session, decodeURIComponent(rest.join('/')))
}

function showLink(): void {
  const el = document.getElementById('link')!
  el.textContent = !state.streamUp ? '● live stream reconnecting' : !state.seedUp ? '● admin node has no seed link' : '● live'
  el.style.color = state.streamUp && state.seedUp ? '#7ee787' : '#ff8182'
}

async function start(): Promise<void> {
  const session = await loadSession()
  fill(document.getElementById('who')!, h('span', {}, `${session.operator} (${session.role})`))
  document.getElementById('logout')!.addEventListener('click', () => void logout())
  onChange(showLink)
  showLink()
  setNodes(await api<NodeView[]>('GET', '/api/nodes').catch((err: Error) => (toast(`nodes: ${err.message}`, true), [])))
  startStream()
  window.addEventListener('hashchange', () => route(session))
  route(session)
}

void start().catch((err: unknown) => toast(String(err), true))
