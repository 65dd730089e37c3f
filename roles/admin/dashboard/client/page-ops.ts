/**
 * Operations: what acts on the whole cluster, each through the API's own
 * operation (docs/admin-api.md): maintenance on (with its mandatory end)
 * and off, a rolling restart started and followed line by line to its end,
 * vhost mappings set and removed, upload and Live tokens minted. What takes
 * capacity away (maintenance on, a rolling restart, removing a mapping)
 * asks first. Viewers see the state, not the forms.
 */
import { api, type SessionInfo } from './api.js'
import { badge, bytes, confirmAction, fill, h, table, time, toast } from './dom.js'

interface Maintenance { state: { message: string; until: number; hosts?: string[]; allow?: string[] } | null; now: number }
interface Job { id: string; state: string; lines: { at: number; line: string }[]; result: { done: number } | null; error: { code: string; message: string } | null }
interface Vhost { host: string; path: string; file: string; size: number; type: string; at: number }

const ROLES = ['proxy', 'live', 'fileserver', 'app', 'mail', 'admin']
const FOR: [string, string][] = [['30 minutes', '30m'], ['1 hour', '1h'], ['2 hours', '2h'], ['4 hours', '4h'], ['1 day', '24h']]

const select = (id: string, label: string, options: [string, string][]): HTMLSelectElement =>
  h('select', { id, 'aria-label': label }, ...options.map(([text, value]) => h('option', { value }, text)))
const input = (id: string, label: string, attrs: Record<string, string | number> = {}): HTMLInputElement => h('input', { id, 'aria-label': label, placeholder: label, spellcheck: 'false', ...attrs })

export function renderOps(main: HTMLElement, session: SessionInfo): () => void {
  const operator = session.role === 'operator'
  const maintenance = h('div', { id: 'maintenance-state' })
  const job = h('div', { id: 'rr-job' })
  const vhosts = h('div')
  const minted = h('div', { id: 'minted' })
  let follow: number | undefined

  // Maintenance: every node answers 503 with the message until it ends (or is turned off).
  const mFor = select('maint-for', 'for', FOR)
  const mMessage = input('maint-message', 'message shown to users', { maxlength: 500 })
  const mOn = h('button', { type: 'button', class: 'danger', id: 'maint-on' }, 'Turn on…')
  const mOff = h('button', { type: 'button', id: 'maint-off' }, 'Turn off')
  mOn.addEventListener('click', () => {
    const label = mFor.selectedOptions[0]?.textContent ?? mFor.value
    void confirmAction(`Put the whole cluster in maintenance for ${label}? Every node answers 503 with the message until it ends.`, 'Turn maintenance on').then((ok) => {
      if (!ok) return
      api('POST', '/api/maintenance', { until: mFor.value, ...(mMessage.value.trim() !== '' ? { message: mMessage.value.trim() } : {}) })
        .then(() => (toast('maintenance on'), loadMaintenance()), (err: Error) => toast(`maintenance refused: ${err.message}`, true))
    })
  })
  mOff.addEventListener('click', () => {
    api<{ cleared: boolean }>('DELETE', '/api/maintenance').then((r) => (toast(r.cleared ? 'maintenance off' : 'there was no maintenance'), loadMaintenance()), (err: Error) => toast(err.message, true))
  })
  const loadMaintenance = (): void => {
    void api<Maintenance>('GET', '/api/maintenance').then((m) => {
      fill(maintenance, m.state === null ? h('p', {}, badge('off'), ' no maintenance') : h('p', {}, badge('on'), ` until ${time(m.state.until)}: `, h('span', { class: 'wrap' }, m.state.message)))
    }, (err: Error) => fill(maintenance, h('p', { class: 'error' }, err.message)))
  }

  // Rolling restart: a job on the admin node; its lines are the CLI's.
  const rRole = select('rr-role', 'role', ROLES.map((r) => [r, r]))
  const rMode = select('rr-mode', 'mode', [['reload (children replaced, parent kept)', 'reload'], ['restart (whole node)', 'restart']])
  const rBatch = input('rr-batch', 'batch', { type: 'number', min: 1, max: 1000, value: 1 })
  const rRegion = input('rr-region', 'region (all)', { maxlength: 64 })
  const rStart = h('button', { type: 'button', class: 'danger', id: 'rr-start' }, 'Start rolling restart…')
  const watchJob = (id: string): void => {
    window.clearInterval(follow)
    const tick = (): void => {
      void api<Job>('GET', `/api/rolling-restarts/${encodeURIComponent(id)}`).then((j) => {
        fill(job, h('h3', {}, 'Job ', h('span', { class: 'mono' }, j.id), ' ', h('span', { id: 'rr-state' }, badge(j.state))),
          j.error !== null ? h('p', { class: 'error' }, `${j.error.code}: ${j.error.message}`) : null,
          h('pre', { id: 'rr-lines', class: 'wrap' }, j.lines.map((l) => `${new Date(l.at).toLocaleTimeString()}  ${l.line}`).join('\n')))
        if (j.state !== 'running') window.clearInterval(follow)
      }, (err: Error) => fill(job, h('p', { class: 'error' }, err.message)))
    }
    tick()
    follow = window.setInterval(tick, 1000)
  }
  rStart.addEventListener('click', () => {
    const where = rRegion.value.trim() === '' ? 'every region' : `region ${rRegion.value.trim()}`
    void confirmAction(`Restart every ${rRole.value} node in ${where}, ${rBatch.value} at a time (${rMode.value})? Each batch leaves service while it restarts.`, 'Start rolling restart').then((ok) => {
      if (!ok) return
      const body: Record<string, unknown> = { role: rRole.value, mode: rMode.value, batch: Number(rBatch.value) }
      if (rRegion.value.trim() !== '') body['region'] = rRegion.value.trim()
      api<Job>('POST', '/api/rolling-restarts', body).then((j) => (toast(`rolling restart ${j.id} started`), watchJob(j.id)), (err: Error) => toast(`rolling restart refused: ${err.message}`, true))
    })
  })

  // Vhosts: a host and path served with an uploaded file (files/<sha256>).
  const vHost = input('vhost-host', 'host', { maxlength: 253 })
  const vPath = input('vhost-path', 'path such as /index.html', { maxlength: 300 })
  const vFile = input('vhost-file', 'files/<sha256>', { maxlength: 100, size: 40 })
  const vSet = h('form', { class: 'row', id: 'vhost-form' }, vHost, vPath, vFile, h('button', { type: 'submit', class: 'primary' }, 'Set mapping'))
  vSet.addEventListener('submit', (e) => {
    e.preventDefault()
    api('PUT', '/api/vhosts', { host: vHost.value.trim(), path: vPath.value.trim(), file: vFile.value.trim() })
      .then(() => (toast('mapping set'), loadVhosts()), (err: Error) => toast(`mapping refused: ${err.message}`, true))
  })
  const removeVhost = (v: Vhost): void => {
    void confirmAction(`Remove the mapping ${v.host}${v.path}? That path answers 404 from then on.`, 'Remove mapping').then((ok) => {
      if (!ok) return
      api('DELETE', '/api/vhosts', { host: v.host, path: v.path }).then(() => (toast('mapping removed'), loadVhosts()), (err: Error) => toast(err.message, true))
    })
  }
  const loadVhosts = (): void => {
    void api<Vhost[]>('GET', '/api/vhosts').then((list) => fill(vhosts, table(['host', 'path', 'file', 'size', 'type', 'set', ''], list.map((v) => h('tr', {},
      h('td', { class: 'id' }, v.host), h('td', { class: 'mono' }, v.path), h('td', { class: 'mono' }, v.file), h('td', { class: 'num' }, bytes(v.size)), h('td', {}, v.type), h('td', {}, time(v.at)),
      h('td', {}, operator ? h('button', { type: 'button', onclick: () => removeVhost(v) }, 'Remove…') : ''))), 'no mapping')), (err: Error) => fill(vhosts, h('p', { class: 'error' }, err.message)))
  }

  // Tokens: shown once, here; the audit log keeps the claims only.
  const tSize = input('token-size', 'max size such as 10MB', { maxlength: 20, value: '10MB' })
  const tTypes = input('token-types', 'media types, comma-separated (any)', { maxlength: 500 })
  const tTtl = select('token-ttl', 'valid for', [['1 hour', '1h'], ['15 minutes', '15m'], ['1 day', '24h']])
  const tUpload = h('button', { type: 'button', id: 'mint-upload' }, 'Mint upload token')
  const tSub = input('token-sub', 'Live: subscribe patterns, comma-separated', { maxlength: 1000 })
  const tLive = h('button', { type: 'button', id: 'mint-live' }, 'Mint Live token')
  const show = (kind: string, token: string): void => fill(minted, h('label', {}, `${kind} token (shown once): `, h('input', { id: 'minted-token', readonly: true, size: 60, value: token, 'aria-label': `${kind} token` })))
  const list = (raw: string): string[] => raw.split(',').map((x) => x.trim()).filter((x) => x !== '')
  tUpload.addEventListener('click', () => {
    api<{ token: string }>('POST', '/api/tokens/upload', { maxSize: tSize.value.trim(), ttl: tTtl.value, ...(list(tTypes.value).length > 0 ? { types: list(tTypes.value) } : {}) })
      .then((r) => show('upload', r.token), (err: Error) => toast(`token refused: ${err.message}`, true))
  })
  tLive.addEventListener('click', () => {
    api<{ token: string }>('POST', '/api/tokens/live', { sub: list(tSub.value), ttl: tTtl.value }).then((r) => show('Live', r.token), (err: Error) => toast(`token refused: ${err.message}`, true))
  })

  fill(main, h('h1', {}, 'Operations'),
    h('h2', {}, 'Maintenance'), maintenance, operator ? h('div', { class: 'row' }, 'For ', mFor, mMessage, mOn, mOff) : null,
    h('h2', {}, 'Rolling restart'), operator ? h('div', { class: 'row' }, rRole, rRegion, 'batch ', rBatch, rMode, rStart) : h('p', { class: 'mute' }, 'operators only'), job,
    h('h2', {}, 'Vhosts'), operator ? vSet : null, vhosts,
    operator ? h('h2', {}, 'Tokens') : null, operator ? h('div', { class: 'row' }, tSize, tTypes, tTtl, tUpload) : null, operator ? h('div', { class: 'row' }, tSub, tLive) : null, minted)
  loadMaintenance()
  loadVhosts()
  const timer = window.setInterval(() => (loadMaintenance(), loadVhosts()), 5000)
  return () => {
    window.clearInterval(timer)
    window.clearInterval(follow)
  }
}
