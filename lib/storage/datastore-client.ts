/**
 * The Datastore over the meta port: what nodes other than the seed use to
 * reach the seed's embedded store (ops `ds.get`, `ds.put`, `ds.delete`,
 * `ds.list`, `ds.consume`, `ds.putIf`; docs/meta-protocol.md). Input is checked here
 * with the same rules as the embedded store (`ESPRA_ERR_DATASTORE_INVALID`)
 * before anything is sent; the seed checks again. With no seed linked, calls
 * fail with `ESPRA_ERR_META_CLOSED`.
 */
import type { MetaClient } from '../transport/meta-client.js'
import {
  check, keyProblem, kindProblem, listProblem, matchProblem, valueProblem,
  type Datastore, type DatastoreKind, type DatastorePage, type DatastoreValue, type ListOptions,
} from './datastore.js'

/** `link` is any connected meta client (a node's seed link). Closing this store leaves the link open. */
export function createDatastoreClient(link: Pick<MetaClient, 'request'>): Datastore {
  const target = (kind: DatastoreKind, key: string) => {
    check(kindProblem(kind))
    check(keyProblem(key))
    return { kind, key }
  }
  return {
    async get(kind, key) {
      return (await link.request<{ value: DatastoreValue | null }>('ds.get', target(kind, key))).value
    },
    async put(kind, key, value) {
      const body = { ...target(kind, key), value }
      check(valueProblem(value))
      await link.request('ds.put', body)
    },
    async delete(kind, key) {
      return (await link.request<{ deleted: boolean }>('ds.delete', target(kind, key))).deleted
    },
    async consume(kind, key) {
      return (await link.request<{ value: DatastoreValue | null }>('ds.consume', target(kind, key))).value
    },
    async putIf(kind, key, value, match) {
      const body = { ...target(kind, key), value, match }
      check(valueProblem(value))
      check(matchProblem(match))
      return (await link.request<{ written: boolean }>('ds.putIf', body)).written
    },
    async list(kind, options: ListOptions = {}) {
      check(kindProblem(kind))
      check(listProblem(options))
      return link.request<DatastorePage>('ds.list', { ...options, kind })
    },
    async close() {},
  }
}
