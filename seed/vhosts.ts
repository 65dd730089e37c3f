/**
 * The seed's vhost mappings (docs/meta-protocol.md, "Vhosts"): `vhost.set`
 * and `vhost.rm` write the datastore's `vhosts` kind (layout in
 * lib/vhosts/vhost.ts) and then push `vhosts.changed` to every subscriber
 * (fileservers), so the write and the invalidation happen in one place.
 * Changes run one at a time, so a push always describes the state just
 * written. Reads need no op: `ds.get` / `ds.list` on kind `vhosts`.
 *
 * Host records: `set` writes `host:<host>` before the mapping, and `rm`
 * deletes it after the host's last mapping, so a crash between the two
 * leaves at worst a host with no files (every path 404), never a mapping
 * no fileserver knows to look for.
 */
import { hostname } from 'node:os'
import { createError } from '../lib/core/errors.js'
import type { Logger } from '../lib/core/log.js'
import { listAll, type Datastore } from '../lib/storage/datastore.js'
import type { MetaPeer } from '../lib/transport/meta-server.js'
import { encodeMessage } from '../lib/transport/meta-frames.js'
import type { RequestHandler } from '../lib/transport/meta-session.js'
import { isMap } from '../lib/transport/meta-shapes.js'
import { VHOSTS_CHANGED_ALL, type VhostsChanged } from '../lib/transport/vhosts-changed.js'
import {
  fileSha256, hostKey, hostPrefix, hostProblem, mappingKey, pathProblem, type VhostMapping,
} from '../lib/vhosts/vhost.js'

export interface SeedVhosts {
  readonly handlers: [string, RequestHandler<MetaPeer>][]
  /** The peer gets every change from now on, and `{all: true}` at once. */
  subscribe(peer: MetaPeer): void
  peerClosed(peer: MetaPeer): void
}

const bad = (field: string, problem: string) =>
  createError('ESPRA_ERR_META_BAD_REQUEST', { field, reason: problem })

function checked(body: unknown, withPath: 'required' | 'optional'): { host: string; path: string | undefined; b: Record<string, unknown> } {
  if (!isMap(body)) throw bad('body', 'must be a map')
  const hp = hostProblem(body['host'])
  if (hp) throw bad('host', hp)
  const path = body['path']
  if (path !== undefined || withPath === 'required') {
    const pp = pathProblem(path)
    if (pp) throw bad('path', pp)
  }
  return { host: body['host'] as string, path: path as string | undefined, b: body }
}

/**
 * A fileserver answers a vhost's Host from its mappings only, so a vhost
 * named like the cluster's own host hides `/app`, `/f`, `/upload` and
 * `/uploads` for every request that names it. Own hosts: `localhost` and
 * `*.localhost` (loopback by definition; `up` and the sample app are
 * reached there) and this machine's host name. `set` refuses them unless
 * `force`; the reason is the answer.
 */
export function shadowReason(host: string, machine: string = hostname().toLowerCase()): string | null {
  return host === 'localhost' || host.endsWith('.localhost') ? 'a loopback name (localhost)'
    : host === machine ? `this machine's host name`
    : null
}

export function createSeedVhosts({ datastore, log }: { datastore: Datastore; log: Logger }): SeedVhosts {
  const subscribers = new Set<MetaPeer>()
  let queue: Promise<unknown> = Promise.resolve()
  const serial = <T>(fn: () => Promise<T>): Promise<T> => {
    const run = queue.then(fn)
    queue = run.catch(() => {})
    return run
  }

  function push(change: VhostsChanged): void {
    const frame = encodeMessage('vhosts.changed', change)
    for (const peer of subscribers) peer.session.sendEncoded(frame)
  }

  async function stillRegistered(host: string): Promise<boolean> {
    const page = await datastore.list('vhosts', { prefix: hostPrefix(host), limit: 1 })
    if (page.entries.length > 0) return true
    await datastore.delete('vhosts', hostKey(host))
    return false
  }

  const set: RequestHandler<MetaPeer> = (body) => {
    const { host, path, b } = checked(body, 'required')
    const sha = fileSha256(b['file'])
    if (sha === null) throw bad('file', 'must be the key of an uploaded file, files/<sha256> (64 lower-case hex digits)')
    if (b['force'] !== undefined && typeof b['force'] !== 'boolean') throw bad('force', 'must be true or false')
    const why = shadowReason(host)
    if (why !== null && b['force'] !== true) throw createError('ESPRA_ERR_VHOST_SHADOWS', { host, why })
    return serial(async () => {
      const record = await datastore.get('files', sha)
      if (record === null) throw createError('ESPRA_ERR_VHOST_FILE_MISSING', { file: `files/${sha}` })
      const mapping: VhostMapping = {
        host, path: path!,
        file: typeof record['key'] === 'string' ? record['key'] : `files/${sha}`,
        sha256: sha,
        size: typeof record['size'] === 'number' ? record['size'] : 0,
        type: typeof record['type'] === 'string' ? record['type'] : 'application/octet-stream',
        encoding: typeof record['encoding'] === 'string' ? record['encoding'] : null,
        at: Date.now(),
      }
      const previous = await datastore.get('vhosts', mappingKey(host, path!))
      if (await datastore.get('vhosts', hostKey(host)) === null) await datastore.put('vhosts', hostKey(host), { host, at: mapping.at })
      await datastore.put('vhosts', mappingKey(host, path!), { ...mapping })
      push({ host, paths: [path!], registered: true })
      if (why !== null) log.warn({ host, path, file: mapping.file }, `vhost mapping set with force: ${host} is ${why}, the cluster's own`)
      else log.info({ host, path, file: mapping.file }, 'vhost mapping set')
      return { mapping, previous: typeof previous?.['file'] === 'string' ? previous['file'] : null }
    })
  }

  const rm: RequestHandler<MetaPeer> = (body) => {
    const { host, path } = checked(body, 'optional')
    return serial(async () => {
      let removed = 0
      if (path !== undefined) {
        if (await datastore.delete('vhosts', mappingKey(host, path))) removed = 1
      } else {
        const keys: string[] = []
        for await (const entry of listAll(datastore, 'vhosts', hostPrefix(host))) keys.push(entry.key)
        for (const key of keys) if (await datastore.delete('vhosts', key)) removed++
      }
      const registered = await stillRegistered(host)
      // A host left with no mappings (also one a crash left behind) is no vhost any more: say so.
      if (removed > 0 || !registered) {
        push({ host, paths: path === undefined ? null : [path], registered })
        log.info({ host, path: path ?? null, removed }, 'vhost mappings removed')
      }
      return { removed, registered }
    })
  }

  return {
    handlers: [['vhost.set', set], ['vhost.rm', rm]],
    subscribe(peer) {
      subscribers.add(peer)
      // Whatever changed while this subscriber was away is lost: it forgets every cached mapping and reloads the hosts.
      peer.session.send('vhosts.changed', VHOSTS_CHANGED_ALL)
    },
    peerClosed(peer) {
      subscribers.delete(peer)
    },
  }
}
