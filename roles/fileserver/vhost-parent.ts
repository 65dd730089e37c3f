/**
 * The fileserver parent's side of vhost files: it knows which hosts are
 * vhosts and looks mappings up for its children, over the node's own seed
 * link (children keep no seed connection).
 *
 * The set of vhosts: loaded from the datastore (`host:` records of kind
 * `vhosts`) on every `vhosts.changed {all: true}`, which the seed sends on
 * every subscription, so on every (re)connect; then kept current by the
 * per-host pushes. Pushes that arrive while a load runs are applied again on
 * top of what it read: the load may have read the store before or after
 * them, and applying a push twice is harmless (it states whether the host is
 * registered). The parent sends the whole set to its children after each
 * load (`vhost-hosts`) and answers a child that starts with it; per-host
 * pushes reach the children directly, in the same order.
 *
 * Lookups (`vhost-lookup`): one `ds.get` per mapping key at a time, however
 * many children ask; a push naming the key lets the next asker start a fresh
 * one. Caching is the children's (vhost-files.ts).
 */
import { createError } from '../../lib/core/errors.js'
import type { Handle, ParentContext } from '../../lib/process/role.js'
import { createDatastoreClient } from '../../lib/storage/datastore-client.js'
import { keyProblem, listAll } from '../../lib/storage/datastore.js'
import { parseVhostsChanged, type VhostsChanged } from '../../lib/transport/vhosts-changed.js'
import { HOST_KEY_PREFIX, hostPrefix, isVhostMapping, mappingKey, type VhostMapping } from '../../lib/vhosts/vhost.js'

/** Child → parent requests; the parent → child message `{t: 'vhost-hosts', hosts}` carries the whole set. */
export type VhostToParent = { t: 'vhost-hosts' } | { t: 'vhost-lookup'; key: string }
export interface VhostHostsMessage {
  readonly t: 'vhost-hosts'
  readonly hosts: readonly string[]
}

const RELOAD_RETRY_MS = 1000

export interface VhostParent extends Handle {
  /** Every host with a mapping (a child's `vhost-hosts`). */
  hosts(): string[]
  /** The mapping under `key` (a child's `vhost-lookup`), from the datastore once per key at a time. */
  lookup(key: unknown): Promise<VhostMapping | null>
}

export function startVhostParent(ctx: ParentContext): VhostParent {
  const { log } = ctx
  const datastore = createDatastoreClient({ request: <R>(op: string, body: unknown, timeoutMs?: number) => ctx.seedRequest<R>(op, body, timeoutMs) })
  let hosts = new Set<string>()
  /** Pushes seen since the running load started (null: none running). */
  let seenDuringLoad: VhostsChanged[] | null = null
  let loads = 0
  let retry: NodeJS.Timeout | null = null
  let closed = false
  const lookups = new Map<string, Promise<VhostMapping | null>>()

  function apply(set: Set<string>, change: VhostsChanged): void {
    if ('all' in change) return
    if (change.registered) set.add(change.host)
    else set.delete(change.host)
  }

  async function reload(): Promise<void> {
    const mine = ++loads
    if (retry) clearTimeout(retry)
    retry = null
    seenDuringLoad = []
    const found = new Set<string>()
    try {
      for await (const entry of listAll(datastore, 'vhosts', HOST_KEY_PREFIX)) found.add(entry.key.slice(HOST_KEY_PREFIX.length))
    } catch (err) {
      if (mine !== loads || closed) return
      seenDuringLoad = null
      // A lost link brings {all: true} again on reconnect; anything else is tried again shortly.
      log.warn({ err }, 'cannot load the vhost list; keeping the last one')
      retry = setTimeout(() => void reload(), RELOAD_RETRY_MS)
      retry.unref()
      return
    }
    if (mine !== loads || closed) return
    for (const change of seenDuringLoad) apply(found, change)
    seenDuringLoad = null
    hosts = found
    log.info({ vhosts: hosts.size }, 'vhost list loaded')
    ctx.children.broadcast({ t: 'vhost-hosts', hosts: [...hosts] } satisfies VhostHostsMessage)
  }

  ctx.onPush((push) => {
    if (push.op !== 'vhosts.changed') return
    let change: VhostsChanged
    try {
      change = parseVhostsChanged(push.body)
    } catch (err) {
      return log.warn({ err }, 'malformed vhosts.changed push ignored')
    }
    // A fetch that started before this change may read what it replaced: later askers start a fresh one.
    if ('all' in change) {
      lookups.clear()
      return void reload()
    }
    const prefix = hostPrefix(change.host)
    for (const key of lookups.keys()) {
      if (change.paths === null ? key.startsWith(prefix) : change.paths.some((p) => key === mappingKey(change.host, p))) lookups.delete(key)
    }
    apply(hosts, change)
    seenDuringLoad?.push(change)
  })

  function lookup(key: string): Promise<VhostMapping | null> {
    let p = lookups.get(key)
    if (p === undefined) {
      const mine: Promise<VhostMapping | null> = datastore.get('vhosts', key).then((value) => (isVhostMapping(value) ? value : null)).finally(() => {
        if (lookups.get(key) === mine) lookups.delete(key)
      })
      lookups.set(key, (p = mine))
    }
    return p
  }

  return {
    hosts: () => [...hosts],
    lookup(key) {
      if (keyProblem(key) !== null || (key as string).startsWith(HOST_KEY_PREFIX)) {
        return Promise.reject(createError('ESPRA_ERR_META_BAD_REQUEST', { field: 'key', reason: 'is missing: vhost-lookup needs a mapping key' }))
      }
      return lookup(key as string)
    },
    async close() {
      closed = true
      if (retry) clearTimeout(retry)
    },
    destroy() {
      closed = true
      if (retry) clearTimeout(retry)
    },
  }
}
