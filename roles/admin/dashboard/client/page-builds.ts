/**
 * Builds: every build with its state, the current one marked, what refused
 * it; a push from a directory picked in the browser (operators: push.ts) and
 * rollback (after a confirmation), then the build's progress node by node
 * until it is live, refused or replaced. The list is read again every 3 s,
 * so a push from the CLI shows up while it stages.
 */
import { api, type SessionInfo } from './api.js'
import { badge, bytes, confirmAction, fill, h, table, time, toast } from './dom.js'
import { filesOfDirectory, pushBuild, type PushProgress } from './push.js'

interface Build {
  id: string; at: number; message: string; files: number; bytes: number; current: boolean; state: string
  refused: { node: string; code: string; message: string }[]; stage: { node: string; state: string }[]
}
interface BuildStatus { id: string; state: string; current: boolean; nodes: { node: string; role: string; state: string; code?: string; message?: string }[] }

export function renderBuilds(main: HTMLElement, session: SessionInfo): () => void {
  const current = h('p')
  const list = h('div')
  const progress = h('div', { id: 'rollback-progress' })
  const push = session.role === 'operator' ? pushForm() : h('p', { class: 'mute' }, 'Operators push builds here or with espra-node admin push-build <dir>.')
  fill(main, h('h1', {}, 'Builds'), current, push, progress, list,
    h('p', { class: 'mute' }, 'A push from the CLI (espra-node admin push-build <dir>) shows here while it stages.'))
  let follow: number | undefined

  /** Follows build `id`'s deploy (`what`: "Rollback to" or "Push of") until it leaves staging and its canary. */
  const watch = (id: string, what: string): void => {
    window.clearInterval(follow)
    const tick = (): void => {
      void api<BuildStatus>('GET', `/api/builds/${encodeURIComponent(id)}`).then((s) => {
        fill(progress, h('h2', {}, `${what} `, h('span', { class: 'mono' }, s.id), ': ', h('span', { id: 'build-state' }, badge(s.state))),
          table(['node', 'role', 'state', 'why'], s.nodes.map((n) => h('tr', {}, h('td', { class: 'id' }, n.node), h('td', {}, n.role), h('td', {}, badge(n.state)), h('td', { class: 'wrap' }, n.message ?? ''))), 'no node stages builds'))
        if (s.state !== 'staging' && s.state !== 'canary') {
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
      watch(r.id, 'Rollback to')
    } catch (err) {
      toast(`rollback refused: ${(err as Error).message}`, true)
    }
  }

  function pushForm(): HTMLElement {
    const dir = h('input', { type: 'file', id: 'push-dir', webkitdirectory: true, multiple: true, 'aria-label': 'build directory' })
    const message = h('input', { type: 'text', id: 'push-message', maxlength: 500, placeholder: 'message (optional)', 'aria-label': 'build message' })
    const start = h('button', { type: 'button', class: 'primary', id: 'push-start' }, 'Push')
    const bar = h('progress', { id: 'push-progress', max: 1, value: 0 })
    const status = h('span', { id: 'push-status', class: 'mute', role: 'status' })
    const say = (p: PushProgress): void => {
      bar.max = Math.max(p.total, 1)
      bar.value = p.total === 0 ? 0 : p.done
      status.textContent = p.phase === 'hashing' ? `hashing ${bytes(p.done)} of ${bytes(p.total)}`
        : p.phase === 'uploading' ? `uploading ${bytes(p.done)} of ${bytes(p.total)} the cluster lacks`
          : p.phase === 'planning' ? 'asking the cluster what it lacks' : 'committing'
    }
    start.addEventListener('click', () => {
      const files = dir.files === null ? [] : filesOfDirectory(dir.files)
      if (files.length === 0) return toast('pick a build directory first', true)
      start.disabled = true
      pushBuild(files, message.value, say).then((id) => {
        status.textContent = `build ${id} committed; staging`
        bar.value = bar.max
        toast(`build ${id} pushed`)
        watch(id, 'Push of')
        load()
      }, (err: Error) => {
        status.textContent = `refused: ${err.message}`
        toast(`push refused: ${err.message}`, true)
      }).finally(() => (start.disabled = false))
    })
    return h('section', { id: 'push' }, h('h2', {}, 'Push a build'),
      h('div', { class: 'row' }, h('label', {}, 'Directory ', dir), message, start),
      h('div', { class: 'row' }, bar, status))
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
