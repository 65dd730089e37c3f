/**
 * The seed's app-build store (docs/meta-protocol.md, "Builds"): content
 * hashes a push lacks (`build.plan`), verified blob uploads in chunks under
 * the frame limit (`build.blob`), builds recorded in the datastore and
 * deployed in two phases (`build.commit`, `build.rollback`: every app node
 * and fileserver stages the build, then it is made current everywhere at
 * once, or nowhere; build-staging.ts), and the push of the current build to
 * every subscriber, also on subscribe so a node that (re)connects catches up.
 *
 * The pieces: blob uploads in build-uploads.ts; records, manifests and the
 * current build's id in build-records.ts; the staging rounds in
 * build-staging.ts; the nodes' `build.staged` and `build.refused` in
 * build-answers.ts, refusals outside a round in build-refusals.ts; how
 * deploys ended in build-outcomes.ts; the builds nodes are told to drop in
 * build-cancels.ts; canary deploys in canary-deploys.ts; `build.status` and
 * `build.list` in build-reads.ts.
 */
import {
  checkManifest, checkMessage, isBuildId, manifestTotals,
  type BuildPush, type BuildRecord,
} from '../lib/builds/manifest.js'
import { parseCanaryPlan, type CanaryState } from '../lib/builds/canary.js'
import { createError } from '../lib/core/errors.js'
import type { Logger } from '../lib/core/log.js'
import type { BlobStore } from '../lib/storage/blob-store.js'
import type { Datastore } from '../lib/storage/datastore.js'
import type { MetaPeer } from '../lib/transport/meta-server.js'
import { encodeMessage } from '../lib/transport/meta-frames.js'
import type { RequestHandler } from '../lib/transport/meta-session.js'
import { body, checkPushId, invalid } from './build-input.js'
import { createBuildRecords, newManifestKey, type FencedWrite } from './build-records.js'
import { createBuildUploads } from './build-uploads.js'
import { createBuildStaging, type StageRound, type StageTarget } from './build-staging.js'
import { planOf, planResume } from './build-resume.js'
import { createBuildCancels } from './build-cancels.js'
import { createBuildRefusals } from './build-refusals.js'
import { createBuildAnswers } from './build-answers.js'
import { createBuildOutcomes } from './build-outcomes.js'
import { createCanaryDeploys } from './canary-deploys.js'
import { createBuildReads } from './build-reads.js'
import type { Registry } from './registry.js'

/** Staging waits `--init-timeout` plus this for every node: fetching and checking the files comes first. */
const STAGE_MARGIN_MS = 15_000
const STAGED_ROLES = new Set(['app', 'fileserver'])
/** How often a deploy waiting for the registry's grace to end looks again. */
const GRACE_POLL_MS = 100

export interface SeedBuildsOptions {
  readonly blobs: BlobStore
  readonly datastore: Datastore
  readonly registry: Registry
  readonly log: Logger
  readonly maxFrame: number
  /** The nodes' `--init-timeout` (this seed's own value): staging waits this plus a margin. */
  readonly initTimeoutMs: number
  /** Whether this seed leads now (only the leader resumes a deploy). */
  readonly isLeader: () => boolean
  /** Several seeds on PostgreSQL: record writes fenced by this seed's lease epoch (build-records.ts). */
  readonly fenced?: FencedWrite
}

export interface SeedBuilds {
  readonly handlers: [string, RequestHandler<MetaPeer>][]
  /** The peer gets every build made current from now on, and the current one at once; app nodes and fileservers also stage builds. */
  subscribe(peer: MetaPeer): void
  peerClosed(peer: MetaPeer): void
  /** Reads the last build number and the current build again (a seed that just took the lead: another seed may have committed since). */
  reload(): Promise<void>
  /**
   * The registry's grace ended: the deploy a previous leader (or this seed before a restart) left
   * staging is staged again on the nodes registered now and activated as usual (build-resume.ts).
   */
  resumeStaging(): Promise<void>
  close(): void
}

/** Opens the store: finds the last build number and loads the current build. */
export async function createSeedBuilds(opts: SeedBuildsOptions): Promise<SeedBuilds> {
  const { registry, log } = opts
  const records = createBuildRecords(opts.blobs, opts.datastore, opts.fenced)
  const uploads = createBuildUploads(opts)
  const subscribers = new Set<MetaPeer>()
  let closed = false

  let lastN = 0
  let current: BuildPush | null = null
  /** The deploy to resume when the registry's grace ends (it shows `staging` meanwhile, or `canary`). */
  let pending: string | null = null
  /** When `pending` is a canary being watched: its canaries keep serving its build meanwhile (they get it on subscribe). */
  let pendingWatch: { push: BuildPush; canaries: ReadonlySet<string>; state: CanaryState } | null = null
  /** Builds staged nowhere on purpose: every subscriber now, and every one that subscribes later, drops them. */
  const cancels = createBuildCancels((id) => {
    if (closed) return
    const frame = encodeMessage('build.cancel', { id })
    for (const peer of subscribers) peer.session.sendEncoded(frame)
  })
  const cancel = (id: string, tell = true): void => cancels.cancel(id, tell)
  async function load(): Promise<void> {
    const all = await records.all()
    const n = all.reduce((max, r) => Math.max(max, Number(r.n) || 0), 0)
    let build: BuildPush | null = null
    const currentId = await records.currentId()
    if (isBuildId(currentId)) {
      try {
        build = { id: currentId, manifest: await records.manifest(currentId) }
      } catch (err) {
        log.error({ err, build: currentId }, 'current build cannot be loaded; no build is pushed until one is committed')
      }
    }
    lastN = n
    current = build
    // Only a grace lets nodes come back before a deploy is resumed: without one it is over, like the others.
    const plan = planResume(all, typeof currentId === 'string' ? currentId : null)
    // A deploy activated before its record said so is written `live` by the leader at the same moment.
    const unfinished = plan.resume ?? plan.activated
    pending = unfinished !== null && registry.inGrace ? unfinished.id : null
    pendingWatch = null
    const watched = plan.resume?.state === 'canary' && pending !== null ? plan.resume : null
    if (watched?.canary !== undefined) {
      try {
        pendingWatch = { push: { id: watched.id, manifest: await records.manifest(watched.id) }, canaries: new Set(watched.canary.nodes), state: watched.canary }
      } catch (err) {
        log.error({ err, build: watched.id }, 'the canary build cannot be loaded; its canaries get the current build back')
      }
    }
    for (const id of [...plan.cancel].reverse()) cancel(id)
    if (plan.resume !== null && pending === null) cancel(plan.resume.id)
    log.info({ current: current?.id ?? null, builds: lastN, resumeAfterGrace: pending, canaryResumed: pendingWatch !== null, cancelled: plan.cancel }, 'build store open')
  }

  /** A deploy of `id` starts: nodes are no longer told to drop it. */
  function stagingStarts(id: string): void {
    cancels.restage(id)
    if (pending !== id) return
    pending = null
    pendingWatch = null
  }

  /** The pending deploy is over without being resumed: its canaries go back to the current build, and every node drops it. */
  function dropPending(): void {
    if (pending === null) return
    if (pendingWatch !== null && current !== null && !closed) {
      const frame = encodeMessage('build', current)
      for (const node of pendingWatch.canaries) peerOf(node)?.session.sendEncoded(frame)
    }
    cancel(pending)
    pending = null
    pendingWatch = null
  }
  await load()
  /** The last load of the records (a seed that just took the lead reads them again): reads wait for it. */
  let loaded: Promise<void> = Promise.resolve()

  // Commits and rollbacks run one at a time: numbers stay monotonic and `current` is what was pushed last.
  let queue: Promise<unknown> = Promise.resolve()
  const serial = <T>(fn: () => Promise<T>): Promise<T> => {
    const run = queue.then(fn)
    queue = run.catch(() => {})
    return run
  }
  const staging = createBuildStaging({ log, deadlineMs: opts.initTimeoutMs + STAGE_MARGIN_MS, onDone: (round) => roundDone(round) })

  function makeCurrent(build: BuildPush): void {
    current = build
    if (closed) return
    const frame = encodeMessage('build', build)
    for (const peer of subscribers) peer.session.sendEncoded(frame)
  }

  /**
   * Nodes re-register during the registry's grace (a seed that just started or took the lead): a
   * deploy waits for its end, so it stages on every node and not on the few back already.
   */
  async function afterGrace(): Promise<void> {
    while (registry.inGrace && !closed) await new Promise((resolve) => setTimeout(resolve, GRACE_POLL_MS))
    if (!opts.isLeader()) throw createError('ESPRA_ERR_SEED_NOT_LEADER', { reason: 'it stopped leading while the deploy waited for its grace to end; send it to the leader' })
  }

  const commit = (raw: unknown, peer: MetaPeer) => serial(async () => {
    const b = body(raw)
    const manifest = checkManifest(b['manifest'])
    const message = checkMessage(b['message'])
    const plan = b['canary'] === undefined ? null : parseCanaryPlan(b['canary'])
    const pushId = b['pushId'] === undefined ? undefined : checkPushId(b['pushId'])
    await afterGrace()
    if (plan !== null) canaries.check(plan, targets().filter((t) => t.role === 'app').length)
    const totals = manifestTotals(manifest)
    const missing = await uploads.missingHashes(totals.hashes)
    if (missing.length > 0) {
      throw createError('ESPRA_ERR_BUILD_MISSING_BLOBS', {
        count: missing.length, missing: missing.slice(0, 20),
      })
    }
    const n = lastN + 1
    const id = `b${n}`
    const at = Date.now()
    const record: BuildRecord = {
      id, n, at, message, files: totals.files, bytes: totals.bytes, manifestKey: newManifestKey(id), state: 'staging',
      stagingAt: at, canaryPlanned: plan !== null, ...(plan !== null ? { canaryPlan: plan } : {}), ...(pushId !== undefined ? { pushId } : {}),
    }
    await records.create(record, manifest)
    lastN = n
    const uploadedBytes = uploads.takeReceived(peer)
    log.info({ build: id, files: totals.files, bytes: totals.bytes, uploadedBytes, message, canary: plan }, 'build committed; staging')
    if (plan !== null) canaries.planned(id, plan)
    canaries.replace()
    // A deploy waiting for the grace to end to be resumed is superseded by this one.
    dropPending()
    const round = staging.start({ id, manifest }, targets())
    const names = [...round.nodes.keys()].sort()
    return {
      id, files: totals.files, bytes: totals.bytes, uploadedBytes, staging: names,
      ...(plan !== null ? { canary: { nodes: canaries.pick(plan, apps(round)).canaries, timeMs: plan.timeMs } } : {}),
    }
  })

  const rollback = (raw: unknown) => serial(async () => {
    const id = body(raw)['id']
    if (!isBuildId(id)) throw invalid('id', 'must be a build id such as b12')
    const manifest = await records.manifest(id)
    await afterGrace()
    const active = staging.active()
    if (active?.push.id === id) return { id, staging: [...active.nodes.keys()].sort() }
    canaries.replace()
    // Two phases like a push: the files are on every node's reach already, so staging is quick, and a build
    // whose init now fails (a dependency gone) is refused instead of taking the cluster down.
    log.info({ build: id, was: current?.id ?? null }, 'rollback: staging')
    await records.startStaging(id)
    if (pending !== id) dropPending()
    stagingStarts(id)
    const round = staging.start({ id, manifest }, targets())
    return { id, staging: [...round.nodes.keys()].sort() }
  })

  /** The app nodes and fileservers that stage builds: subscribed, registered, not draining. */
  function targets(): StageTarget[] {
    const out: StageTarget[] = []
    for (const peer of subscribers) {
      const node = peer.nodeId === null ? undefined : registry.view(peer.nodeId)
      if (node === undefined || !STAGED_ROLES.has(node.role) || node.health === 'draining' || !node.connected) continue
      out.push({ peer, node: node.id, role: node.role })
    }
    return out
  }

  // How rounds ended, at once (their records are written after): build-outcomes.ts.
  const outcomes = createBuildOutcomes(records, log)
  const setOutcome = outcomes.set

  const apps = (round: StageRound) => [...round.nodes.values()].filter((n) => n.role === 'app').map((n) => n.node).sort()

  function peerOf(node: string): MetaPeer | undefined {
    for (const peer of subscribers) if (peer.nodeId === node) return peer
    return undefined
  }

  // Canary deploys: canary-deploys.ts; their outcomes are recorded here like every deploy's.
  const canaries = createCanaryDeploys({
    log, registry,
    current: () => current,
    pushTo(nodes, op, value) {
      if (closed) return
      const frame = encodeMessage(op, value)
      for (const node of nodes) peerOf(node)?.session.sendEncoded(frame)
    },
    activate: (push) => activate(push),
    record: (id, outcome) => setOutcome(id, outcome),
  })

  /** The build becomes current everywhere: pushed at once, then recorded. */
  function activate(push: BuildPush): void {
    makeCurrent(push)
    void records.setCurrent(push.id).catch((err: unknown) => log.error({ err, build: push.id }, 'could not record the current build'))
  }

  /** A round ended: activated builds go current everywhere now (the push is sent before anything is awaited). */
  function roundDone(round: StageRound): void {
    const { id } = round.push
    const nodes = [...round.nodes.values()].map((n) => ({ ...n }))
    if (canaries.roundDone(round, nodes)) return
    if (round.outcome === 'activated') activate(round.push)
    // Its nodes were told `build.cancel` by the round; one that left the round is told when it subscribes again.
    else cancel(id, false)
    setOutcome(id, { state: round.outcome === 'activated' ? 'live' : round.outcome === 'refused' ? 'refused' : 'replaced', stage: nodes })
  }

  // Builds app nodes refused outside a round: build-refusals.ts.
  const refusals = createBuildRefusals()

  // `build.staged` and `build.refused`: build-answers.ts.
  const answers = createBuildAnswers({ log, staging, canaries, refusals })

  /**
   * Stages the pending deploy again on the nodes registered now (its canary starts once staged), or
   * goes on with the canary watch it was in, when nothing newer started meanwhile.
   */
  // `pending` stays set until the round or watch starts or the deploy is dropped: `build.status` says `staging` (`canary`) throughout.
  async function resume(): Promise<void> {
    const id = pending
    if (id === null || closed) return
    const drop = () => (pending === id ? dropPending() : cancel(id))
    if (!opts.isLeader() || staging.active() !== null) return drop()
    // Read again: a commit or a rollback may have come and gone during the grace.
    const all = await records.all()
    const plan = planResume(all, current?.id ?? null)
    if (plan.activated?.id === id) {
      log.info({ build: id }, `build ${id} was activated before its deploy was recorded as live`)
      stagingStarts(id)
      // A canary that passed: made current only after its verdict.
      const was = plan.activated.state === 'canary' ? plan.activated.canary : undefined
      return setOutcome(id, { state: 'live', stage: [...(plan.activated.stage ?? [])].map((n) => ({ ...n })), ...(was !== undefined ? { canary: { ...was, verdict: 'passed' as const } } : {}) })
    }
    const record = plan.resume
    if (record?.id !== id) return drop()
    const manifest = await records.manifest(id)
    if (closed || pending !== id || !opts.isLeader() || staging.active() !== null) return drop()
    canaries.replace()
    stagingStarts(id)
    if (record.state === 'canary' && record.canary !== undefined) return canaries.resume({ id, manifest }, [...(record.stage ?? [])].map((n) => ({ ...n })), record.canary)
    const canaryPlan = planOf(record)
    if (canaryPlan !== null) canaries.planned(id, canaryPlan)
    const round = staging.start({ id, manifest }, targets())
    log.info({ build: id, nodes: [...round.nodes.keys()].sort(), canary: canaryPlan }, `build ${id} resumed: its deploy was unfinished when the previous leader stopped`)
  }

  // `build.status` and `build.list`: build-reads.ts.
  const reads = createBuildReads({ records, staging, canaries, outcomes, refusals, registry, current: () => current, pending: () => pending, pendingCanary: () => pendingWatch?.state ?? null, loaded: () => loaded })

  return {
    handlers: [
      ['build.plan', async (raw) => {
        const manifest = checkManifest(body(raw)['manifest'])
        return { missing: await uploads.missingHashes(manifestTotals(manifest).hashes), chunkSize: uploads.chunkSize }
      }],
      ['build.blob', uploads.blob],
      ['build.commit', commit],
      ['build.rollback', rollback],
      ['build.list', reads.list],
      ['build.refused', answers.refused],
      ['build.staged', answers.staged],
      ['build.status', reads.status],
      // After a reload under way (a seed that just took the lead reads the current build from the datastore).
      ['build.current', () => serial(async () => current ?? { id: null })],
    ],
    subscribe(peer) {
      if (subscribers.has(peer)) return
      subscribers.add(peer)
      // After the current tick, so the `subscribe` answer goes out before the first push.
      queueMicrotask(() => {
        if (closed || !subscribers.has(peer)) return
        // A canary of a watch to resume keeps the canary build it serves (it gets the rest when the watch goes on).
        const canary = pendingWatch !== null && peer.nodeId !== null && pendingWatch.canaries.has(peer.nodeId)
        if (current !== null) peer.session.sendEncoded(encodeMessage('build', canary ? pendingWatch!.push : current))
        // Builds it may hold staged from a round it left or a leader that died: dropped, unless staging again.
        const active = staging.active()?.push.id
        for (const id of cancels.ids()) if (id !== active && id !== pending) peer.session.sendEncoded(encodeMessage('build.cancel', { id }))
      })
    },
    peerClosed(peer) {
      if (peer.nodeId !== null && peerOf(peer.nodeId) === peer) canaries.left(peer.nodeId)
      staging.peerGone(peer)
      subscribers.delete(peer)
      uploads.peerClosed(peer)
    },
    reload: () => (loaded = serial(load)),
    resumeStaging: () => serial(resume).catch((err: unknown) => {
      log.error({ err, build: pending }, 'the unfinished deploy could not be resumed; it shows abandoned')
      dropPending()
    }),
    close() {
      closed = true
      canaries.close()
      staging.close()
      subscribers.clear()
    },
  }
}
