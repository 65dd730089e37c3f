/**
 * Where the seed keeps its builds: each build's record (small: counts,
 * message, time, how its deploy went) under key `build/<n, 10 digits>` of the
 * datastore's `builds` kind, the current build's id under key `current`, and
 * each build's manifest as JSON in the blob store under
 * `builds/<id>/manifest.json`.
 */
import { randomBytes } from 'node:crypto'
import { checkManifest, type BuildManifest, type BuildRecord, type BuildState } from '../lib/builds/manifest.js'
import { readBlob } from '../lib/builds/blob-read.js'
import type { CanaryState } from '../lib/builds/canary.js'
import { createError } from '../lib/core/errors.js'
import type { BlobStore } from '../lib/storage/blob-store.js'
import { listAll, type Datastore, type DatastoreValue } from '../lib/storage/datastore.js'
import type { PostgresDatastore } from '../lib/storage/datastore-postgres.js'
import type { StageNode } from './build-staging.js'

const CURRENT_KEY = 'current'
/** Nodes kept per build record (the record must stay far under the datastore's 64 KB value limit). */
const MAX_STAGE_NODES = 200
const recordKey = (n: number) => `build/${String(n).padStart(10, '0')}`

/** Where a new commit's manifest goes in the blob store: a key of its own, named in its record (`manifestKey`). */
export const newManifestKey = (id: string): string => `builds/${id}/manifest-${randomBytes(6).toString('hex')}.json`

export interface BuildRecords {
  /** The highest build number recorded (0: none). */
  lastNumber(): Promise<number>
  /** What the current-build pointer holds (null: no pointer); the caller checks that it is a build id. */
  currentId(): Promise<unknown>
  record(id: string): Promise<BuildRecord>
  manifest(id: string): Promise<BuildManifest>
  /** Every record, oldest first. */
  all(): Promise<BuildRecord[]>
  /** Stores a new build's manifest, then its record. */
  create(record: BuildRecord, manifest: BuildManifest): Promise<void>
  /** Writes how a build's deploy went into its record (in order with the other record writes, so none is lost). */
  persistState(id: string, state: BuildState, stage: readonly StageNode[], canary?: CanaryState): Promise<void>
  /** A rollback to `id` starts: its record says `staging` again, from now, without a canary. */
  startStaging(id: string): Promise<void>
  /** Records the current build (in order with the other record writes). */
  setCurrent(id: string): Promise<void>
}

/**
 * Writes one record of the `builds` kind only while this seed still leads under the epoch it leads with
 * (PostgresDatastore.putFenced); false: refused, the epoch is stale.
 */
export type FencedWrite = (key: string, value: DatastoreValue) => Promise<boolean>

/**
 * With `fenced` (several seeds on PostgreSQL) every record write (a commit's record, a deploy's state, the
 * current-build pointer) is refused once this seed's lease ran out or was taken over, with
 * `ESPRA_ERR_SEED_NOT_LEADER`: a leader paused past its lease (SIGSTOP, a stalled disk) cannot write over
 * what the new leader wrote. Each commit's manifest has a key of its own (`builds/<id>/manifest-<random>.json`,
 * {@link newManifestKey}), so a late manifest write cannot replace another leader's manifest of that id either.
 */
export function createBuildRecords(blobs: BlobStore, datastore: Datastore, fenced?: FencedWrite): BuildRecords {
  // Record updates after a round: in order among themselves, never waiting behind a commit's uploads check.
  let recordQueue: Promise<unknown> = Promise.resolve()
  const serialRecord = <T>(fn: () => Promise<T>): Promise<T> => {
    const run = recordQueue.then(fn)
    recordQueue = run.catch(() => {})
    return run
  }

  async function write(key: string, value: DatastoreValue): Promise<void> {
    if (fenced === undefined) return datastore.put('builds', key, value)
    if (!(await fenced(key, value))) {
      throw createError('ESPRA_ERR_SEED_NOT_LEADER', { reason: `its lease ran out or was taken over before the build record ${key} was written (a stale epoch): the write was refused` })
    }
  }

  async function record(id: string): Promise<BuildRecord> {
    const found = await datastore.get('builds', recordKey(Number(id.slice(1))))
    if (found === null) throw createError('ESPRA_ERR_BUILD_NOT_FOUND', { id, reason: 'no record of it' })
    return found as unknown as BuildRecord
  }

  /** The record keeps at most MAX_STAGE_NODES node names in each list (it must stay far under 64 KB). */
  const canaryRecord = ({ endsInMs: _, ...c }: CanaryState): CanaryState => ({
    ...c, nodes: c.nodes.slice(0, MAX_STAGE_NODES), reasons: c.reasons.slice(0, 10).map((r) => r.slice(0, 500)),
    canary: { ...c.canary, nodes: c.canary.nodes.slice(0, MAX_STAGE_NODES) }, baseline: { ...c.baseline, nodes: c.baseline.nodes.slice(0, MAX_STAGE_NODES) },
  })

  return {
    async lastNumber() {
      let n = 0
      for await (const entry of listAll(datastore, 'builds', 'build/')) n = Math.max(n, Number((entry.value as unknown as BuildRecord).n) || 0)
      return n
    },
    async currentId() {
      const pointer = await datastore.get('builds', CURRENT_KEY)
      return pointer ? pointer['id'] : null
    },
    record,
    async manifest(id) {
      const found = await record(id)
      const bytes = await readBlob(blobs, found.manifestKey)
      if (bytes === null) throw createError('ESPRA_ERR_BUILD_NOT_FOUND', { id, reason: 'its manifest is missing from the blob store' })
      return checkManifest(JSON.parse(bytes.toString('utf8')))
    },
    async all() {
      const records: BuildRecord[] = []
      for await (const entry of listAll(datastore, 'builds', 'build/')) records.push(entry.value as unknown as BuildRecord)
      return records
    },
    async create(r, manifest) {
      await blobs.put(r.manifestKey, Buffer.from(JSON.stringify(manifest)), { contentType: 'application/json' })
      await write(recordKey(r.n), { ...r })
    },
    persistState(id, state, stage, canary) {
      return serialRecord(async () => {
        const key = recordKey(Number(id.slice(1)))
        const found = await datastore.get('builds', key)
        if (found === null) return
        await write(key, {
          ...found, state, stage: stage.slice(0, MAX_STAGE_NODES).map((n) => ({ ...n })),
          ...(canary !== undefined ? { canary: canaryRecord(canary) } : {}),
        })
      })
    },
    startStaging(id) {
      return serialRecord(async () => {
        const key = recordKey(Number(id.slice(1)))
        const found = await datastore.get('builds', key)
        if (found === null) return
        await write(key, { ...found, state: 'staging', stage: [], stagingAt: Date.now(), canaryPlanned: false })
      })
    },
    setCurrent: (id) => serialRecord(() => write(CURRENT_KEY, { id })),
  }
}

/**
 * The fenced write of a seed named `holder` (several seeds on PostgreSQL): under the epoch it leads with at the
 * moment of the write, refused at once when it does not lead (a paused leader notices on resuming), and by the
 * database when the epoch went stale meanwhile.
 */
export function fenceBuildWrites(putFenced: PostgresDatastore['putFenced'], holder: string, leadership: () => { view(): { leader: boolean; epoch: number | null } }): FencedWrite {
  return async (key, value) => {
    const view = leadership().view()
    return view.leader && view.epoch !== null && (await putFenced('builds', key, value, { holder, epoch: view.epoch }))
  }
}
