/**
 * The `ds.*` meta ops (docs/meta-protocol.md, "Datastore"): other nodes' way
 * to the seed's embedded datastore. Every body is checked before the store
 * is touched; a bad one is answered `ESPRA_ERR_META_BAD_REQUEST` with
 * `details.field`, and the connection stays up. `ds.consume` and `ds.putIf`
 * take an op id (`opId`): applied once per id (seed/op-memory.ts).
 */
import { createError, EspraError } from '../lib/core/errors.js'
import { pack } from 'msgpackr'
import {
  keyProblem, kindProblem, listProblem, matchProblem, valueProblem,
  type Datastore, type DatastoreEntry, type DatastoreKind, type DatastoreMatch, type Problem,
} from '../lib/storage/datastore.js'
import { opIdProblem } from '../lib/storage/op-id.js'
import type { MetaPeer } from '../lib/transport/meta-server.js'
import type { RequestHandler } from '../lib/transport/meta-session.js'
import { isMap } from '../lib/transport/meta-shapes.js'
import { storeRemembers, type OpOnce } from './op-memory.js'

function bad(problem: Problem): EspraError {
  return createError('ESPRA_ERR_META_BAD_REQUEST', { field: problem.field, reason: `must be ${problem.allowed}` })
}

function parse(body: unknown, withValue = false): { kind: DatastoreKind; key: string; value: Record<string, unknown> } {
  if (!isMap(body)) throw bad({ field: 'body', allowed: 'a map' })
  const problem = kindProblem(body['kind']) ?? keyProblem(body['key']) ?? (withValue ? valueProblem(body['value']) : null)
  if (problem) throw bad(problem)
  return { kind: body['kind'] as DatastoreKind, key: body['key'] as string, value: body['value'] as Record<string, unknown> }
}

/**
 * The handlers, for the seed's op table. `maxFrame` bounds a `ds.list`
 * answer: a page is cut short (with `next` set) before it would not fit.
 */
export function datastoreHandlers(store: Datastore, maxFrame: number, once: OpOnce = storeRemembers): [string, RequestHandler<MetaPeer>][] {
  const budget = maxFrame - 1024
  return [
    ['ds.get', async (body) => ({ value: await store.get(...pick(parse(body))) })],
    ['ds.put', async (body) => {
      const { kind, key, value } = parse(body, true)
      await store.put(kind, key, value)
      return {}
    }],
    ['ds.delete', async (body) => ({ deleted: await store.delete(...pick(parse(body))) })],
    ['ds.consume', async (body) => {
      const [kind, key] = pick(parse(body))
      return { value: await once('ds.consume', opIdOf(body), (opId) => store.consume(kind, key, opId)) }
    }],
    ['ds.putIf', async (body) => {
      const { kind, key, value } = parse(body, true)
      const match = (body as Record<string, unknown>)['match']
      const problem = matchProblem(match === undefined ? {} : match)
      if (problem) throw bad(problem)
      return { written: await once('ds.putIf', opIdOf(body), (opId) => store.putIf(kind, key, value, match as DatastoreMatch | null, opId)) }
    }],
    ['ds.list', async (body) => {
      if (!isMap(body)) throw bad({ field: 'body', allowed: 'a map' })
      const { kind, ...options } = body
      const problem = kindProblem(kind) ?? listProblem(options)
      if (problem) throw bad(problem)
      const page = await store.list(kind as DatastoreKind, options)
      let used = 0
      const entries: DatastoreEntry[] = []
      for (const entry of page.entries) {
        used += pack(entry).length
        if (used > budget && entries.length > 0) return { entries, next: entries[entries.length - 1]!.key }
        entries.push(entry)
      }
      return { entries, next: page.next }
    }],
  ]
}

/** The body's op id, checked (absent: undefined). */
function opIdOf(body: unknown): string | undefined {
  const opId = (body as Record<string, unknown>)['opId']
  const problem = opIdProblem(opId)
  if (problem) throw bad(problem)
  return (opId ?? undefined) as string | undefined
}

const pick = (p: { kind: DatastoreKind; key: string }): [DatastoreKind, string] => [p.kind, p.key]
