/**
 * Builds: every build with its state, the current one marked, what refused
 * it; rollback (operators) after a confirmation, then its progress until it
 * is live, refused or replaced. The list is read again every 3 s, so a push
 * from the CLI shows up while it stages.
 */
import { api, type SessionInfo } from './api.js'
import { badge, bytes, confirmAction, fill, h, table, time, toast } from './dom.js'

interface Build {
  id: string; at: number; message: string; files: number; bytes: number; current: boolean; state: string
  refused: { node: string; code: string; message: string }[]; stage: { node: string; state: string }[]
}
interface BuildStatus { id: string; state: string; current: boolean; nodes: { node: string; role: string; state: string; code?: string; message?: string }[] }

export function renderBuilds(main: HTMLElement, session: SessionInfo): () => void {
  const current = h('p')
  const list = h('div')
  const progress = h('div', { id: 'rollback-progress' })
  fill(main, h('h1', {}, 'Builds'), current, progress, list,
    h('p', { class: 'mute' }, 'Push a build with espra-node admin push-build <dir> (push over HTTP is not built yet); it shows here while it stages.'))
  let follow: number | undefined

  const watch = (id: string): void => {
    window.clearInterval(follow)
    const tick = (): void => {
      void api<BuildStatus>('GET', `/api/builds/${encodeURIComponent(id)}`).then((s) => {
        fill(progress, h('h2', {}, 'Rollback to ', h('span', { class: 'mono' }, s.id), ': ', badge(s.state)),
          table(['node', 'role', 'state', 'why'], s.nodes.map((n) => h('tr', {}, h('td', { class: 'id' }, n.node), h('td', {}, n.role), h('td', {}, badge(n.state)), h('td', { class: 'wrap' }, n.message ?? ''))), 'no node stages builds'))
        if (s.state !== 'staging') {
          window.clearInterval(follow)
          load()
        }
      }, (err: Error) => fill(progress, h('p', { class: 'error' }, err.message)))
    }
    tick()
    follow = window.setInterval(tick, 1000)
  }

  const rollback = async (b: Build): Promise<void> => {
    if (!(await confirmAction(`Roll back to build ${b.id} ("${b.message}")? It is staged on every app node and fileserver, then made current everywhere.`, `Roll back to ${b.id}`))) return
    try {
      const r = await api<{ id: string }>('POST', `/api/builds/${encodeURIComponent(b.id)}/rollback`)
      toast(`rollback to ${r.id} started`)
      watch(r.id)
    } catch (err) {
      toast(`rollback refused: ${(err as Error).message}`, true)
    }
  }

  const load = (): void => {
    void api<{ current: string | null; builds: Build[] }>('GET', '/api/builds').then(({ current: cur, builds }) => {
      fill(current, 'Current build: ', h('strong', { class: 'mono' }, cur ?? 'none'))
      fill(list, table(['build', 'pushed', 'message', 'files', 'size', 'state', 'refused by', ''], builds.map((b) => h('tr', { 'data-build': b.id },
        h('td', { class: 'id' }, b.id, b.current ? ' ★' : ''), h('td', {}, time(b.at)), h('td', { class: 'wrap build-message' }, b.message), h('td', { class: 'num' }, b.files),
        h('td', { class: 'num' }, bytes(b.bytes)), h('td', {}, badge(b.current ? 'live' : b.state)),
        h('td', { class: 'wrap' }, b.refused.map((r) => `${r.node}: ${r.code} ${r.message}`).join('; ')),
        h('td', {}, session.role === 'operator' && !b.current ? h('button', { type: 'button', class: 'danger', onclick: () => void rollback(b) }, 'Roll back…') : ''))), 'no build pushed yet'))
    }, (err: Error) => fill(list, h('p', { class: 'error' }, err.message)))
  }
  load()
  const timer = window.setInterval(load, 3000)
  return () => {
    window.clearInterval(timer)
    window.clearInterval(follow)
  }
}
