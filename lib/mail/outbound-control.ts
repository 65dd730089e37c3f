/**
 * What an operator does to an outbound message (`admin mail retry|drop|hold|
 * release <id>`). Each one writes the record with a compare-and-set; a
 * domain given a new attempt gets a task with a fresh token, enqueued before
 * the record names it, so the tasks it had become stale and are dropped by
 * the mail node that leases them.
 */
import { createError, EspraError } from '../core/errors.js'
import { addEvent, newGen, outStatus, setGen, outTask, readOutRecord, updateOutRecord, type OutboundDeps, type OutRecord } from './outbound-store.js'

export type ControlAction = 'retry' | 'drop' | 'hold' | 'release'

const notFound = (id: string): EspraError => createError('ESPRA_ERR_MAIL_NOT_FOUND', { what: 'outbound message', id, hint: 'admin mail queue lists them' })
const wrongState = (id: string, reason: string): EspraError => createError('ESPRA_ERR_MAIL_STATE', { id, reason })

/** Domains with recipients still pending. */
const open = (r: OutRecord): string[] => Object.entries(r.domains).filter(([, d]) => d.state !== 'done').map(([domain]) => domain)

/** Applies `action` to message `id`; resolves with the record written. */
export async function controlOutbound(deps: Pick<OutboundDeps, 'datastore' | 'queue'>, id: string, action: ControlAction): Promise<OutRecord> {
  const first = await readOutRecord(deps.datastore, id)
  if (first === null) throw notFound(id)
  const status = outStatus(first)
  if (status === 'dropped') throw wrongState(id, 'it was dropped')
  if (open(first).length === 0) throw wrongState(id, `nothing is pending (it is ${status})`)
  if (action === 'hold' && first.held) throw wrongState(id, 'it is held already')
  if (action === 'release' && !first.held) throw wrongState(id, 'it is not held')
  if (action === 'retry' && first.held) throw wrongState(id, 'it is held: release it')

  // New attempts now for every open domain (retry, release): tasks first, then the record that names them.
  const gens = new Map<string, string>()
  if (action === 'retry' || action === 'release') {
    for (const domain of open(first)) {
      const gen = newGen()
      gens.set(domain, gen)
      await deps.queue.enqueue(outTask(id, domain, gen))
    }
  }
  const now = Date.now()
  const written = await updateOutRecord(deps.datastore, id, (r) => {
    if (action === 'hold') r.held = true
    if (action === 'release') r.held = false
    if (action === 'drop') {
      r.dropped = true
      for (const d of Object.values(r.domains)) {
        if (d.state === 'done') continue
        d.state = 'done'
        d.next = null
      }
    }
    for (const [domain, gen] of gens) {
      const d = r.domains[domain]
      if (d === undefined || d.state === 'done') continue
      setGen(d, gen)
      d.state = 'queued'
      d.next = now
    }
    const type = action === 'retry' ? 'retried' : action === 'drop' ? 'dropped' : action === 'hold' ? 'held' : 'released'
    addEvent(r, { at: now, type, rcpts: Object.values(r.domains).flatMap((d) => d.pending), detail: `by an operator (admin mail ${action})` })
    return true
  })
  if (written === null) throw notFound(id)
  return written
}
