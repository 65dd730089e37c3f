/**
 * Monitoring and alerts in the admin node's parent (docs/alerts.md): an
 * admin-kind link to the seed (the `nodes` list every round, `event` pushes
 * in between, task counts, the latest build), a probe of every watched node's
 * public health every `--probe-interval`, the rules (lib/alerts/rules.ts)
 * and the engine (lib/alerts/engine.ts) evaluated every second, alerts and
 * statuses written to the datastore, notifications handed to the sinks.
 *
 * Nothing here waits on a sink: a slow or failing webhook only grows its own
 * queue. Nothing is evaluated before the alerts the previous run left open
 * are read back, so a restart neither alerts them again nor forgets them.
 *
 * One engine per cluster (lib/alerts/engine-lease.ts): only the admin node holding
 * the lease probes, evaluates, writes alerts and notifies; the others follow
 * the registry and stand by. A takeover starts a fresh engine that reads the
 * open alerts back first; a lost lease drops the engine and whatever it had
 * not written yet. Every notification carries the lease's epoch and is
 * checked against the lease record just before it goes out.
 */
import type { NodeConfig } from '../../../lib/core/config.js'
import type { Logger } from '../../../lib/core/log.js'
import type { Handle } from '../../../lib/process/role.js'
import type { AlertRecord } from '../../../lib/alerts/alert.js'
import { createAlertEngine, type AlertEngine } from '../../../lib/alerts/engine.js'
import { failingConditions, type LatestBuild, type RuleThresholds } from '../../../lib/alerts/rules.js'
import type { LeaderStatus } from '../../../lib/cli/admin/status.js'
import { createSeedLeaderWatch } from './seed-leader.js'
import {
  deleteProbeHistory, listSilences, loadOpenAlerts, saveAlert, saveProbeHistory, saveSinkStatus, SILENCE_POLL_MS,
  type ProbeHistory, type SinkStatus,
} from '../../../lib/alerts/store.js'
import { createDatastoreClient } from '../../../lib/storage/datastore-client.js'
import type { TaskQueue } from '../../../lib/tasks/queue.js'
import { createMetaTaskQueue } from '../../../lib/tasks/queue-meta.js'
import { createMetaClient } from '../../../lib/transport/meta-client.js'
import type { NodeEvent, NodeView } from '../../../lib/transport/meta-shapes.js'
import { startEngineLease } from '../../../lib/alerts/engine-lease.js'
import { createSeedCutoffAlert } from './seed-cutoff.js'
import { probeHealth } from './probe.js'
import { createAlertSinks, type AlertSinks } from './sinks.js'
import { WatchList } from './watch-list.js'

const REQUEST_TIMEOUT_MS = 5000
/** The rules are evaluated this often (or every probe interval, if shorter): group windows and flap releases end on time. */
const TICK_MS = 1000
/** Probes in flight at once. */
const PROBE_PARALLEL = 64
/** Ready counts kept for the growing-backlog rule. */
const READY_HISTORY = 20
/** Expired silences are deleted this long after they ended. */
const KEEP_EXPIRED_SILENCE_MS = 24 * 3_600_000

export interface AlertMonitor extends Handle {
  /** The open alerts as the engine holds them, newest first. */
  openAlerts(): AlertRecord[]
  /** The lease's epoch while this admin node runs the engine, else null. */
  engineEpoch(): number | null
  /** Each watched node's last probes (the datastore has them too: listProbeHistories). */
  probeHistories(): ProbeHistory[]
  sinkStatuses(): SinkStatus[]
}

export interface AlertMonitorOptions {
  readonly config: NodeConfig
  readonly log: Logger
  /** Tests shorten the sinks' retry backoff. */
  readonly sinkBackoffMinMs?: number
}

export async function startAlertMonitor({ config, log: parentLog, sinkBackoffMinMs }: AlertMonitorOptions): Promise<AlertMonitor> {
  const log = parentLog.child({ part: 'alerts' })
  const watch = new WatchList(config.probeHistory)
  const thresholds: RuleThresholds = {
    downAfter: config.alertDownAfter, maxRss: config.alertMaxRss, maxLagMs: config.alertMaxLag, deadLetters: config.alertDeadLetters,
    taskBacklog: config.alertTaskBacklog, pendingUploads: config.alertPendingUploads, buildDeadlineMs: config.alertBuildDeadline,
  }
  let evaluateSoon = (): void => {}
  const client = createMetaClient({
    seeds: config.seed, secret: config.secret, peer: { kind: 'admin' }, maxFrame: config.maxFrame, log, reconnect: true,
    async onConnect(link) {
      await link.request('subscribe', { events: true }, REQUEST_TIMEOUT_MS)
      watch.setNodes(await link.request<NodeView[]>('nodes', {}, REQUEST_TIMEOUT_MS))
    },
    onPush(op, body) {
      if (op !== 'event') return
      const forgotten = watch.event(body as NodeEvent)
      if (forgotten !== null) void deleteProbeHistory(datastore, forgotten).catch(() => {})
      evaluateSoon()
    },
  })
  const datastore = createDatastoreClient(client)
  const queue: TaskQueue = config.redis !== null
    ? (await import('../../../lib/tasks/queue-redis.js')).createRedisTaskQueue({ url: config.redis, log })
    : createMetaTaskQueue(client)

  // Records and statuses to write, newest value per key; written in order, kept on failure and tried again.
  const dirtyAlerts = new Map<string, AlertRecord>()
  const dirtySinks = new Map<string, SinkStatus>()
  let writing: Promise<void> | null = null
  function flush(): Promise<void> {
    if (writing !== null) return writing
    writing = (async () => {
      // Only the lease's holder writes: a standby's (or a paused former holder's) records would overwrite the engine's.
      while ((dirtyAlerts.size > 0 || dirtySinks.size > 0) && lease.epoch() !== null) {
        const [id, alert] = dirtyAlerts.entries().next().value ?? []
        if (id !== undefined && alert !== undefined) {
          try {
            await saveAlert(datastore, alert)
          } catch (err) {
            log.warn({ err, alert: id }, 'alert not written yet; tried again at the next tick')
            return
          }
          if (dirtyAlerts.get(id) === alert) dirtyAlerts.delete(id)
          continue
        }
        const [name, status] = dirtySinks.entries().next().value!
        try {
          await saveSinkStatus(datastore, status)
        } catch {
          return
        }
        if (dirtySinks.get(name) === status) dirtySinks.delete(name)
      }
    })().finally(() => (writing = null))
    return writing
  }

  const sinks: AlertSinks = await createAlertSinks({
    config, log, datastore, seed: client,
    confirm: (epoch) => lease.confirm(epoch),
    onStatus: (status) => {
      dirtySinks.set(status.name, status)
      void flush()
    },
    ...(sinkBackoffMinMs !== undefined ? { backoffMinMs: sinkBackoffMinMs } : {}),
  })

  // The engine of the lease's current epoch; null while standing by. A takeover builds a fresh one that restores first.
  let engine: { epoch: number; engine: AlertEngine } | null = null
  let restored = false
  const lease = startEngineLease({
    datastore, holder: config.nodeId, leaseMs: config.alertLease, log, reachable: () => client.connected,
    onAcquire(epoch) {
      restored = false
      for (const q of sinks.queues) dirtySinks.set(q.name, q.status())
      engine = {
        epoch,
        engine: createAlertEngine({
          groupWindowMs: config.alertGroupWindow,
          halfLifeMs: config.alertFlapHalfLife,
          save: (alert) => void dirtyAlerts.set(alert.id, structuredClone(alert)),
          notify: (n) => {
            log.warn({ alert: n.alert.id, rule: n.alert.rule, event: n.event, nodes: n.alert.nodes, epoch }, `alert ${n.event}: ${n.alert.summary}`)
            sinks.notify({ ...n, epoch })
          },
        }),
      }
      kickRound()
    },
    onLose() {
      engine = null
      restored = false
      dirtyAlerts.clear()
      dirtySinks.clear()
    },
  })

  async function restore(): Promise<void> {
    const current = engine
    if (current === null) return
    await seedLeader.restore()
    const open = await loadOpenAlerts(datastore)
    const silences = await listSilences(datastore, {}, Date.now())
    if (engine !== current) return
    // The silences in force before the first evaluation: a takeover must not notify what a silence holds back.
    current.engine.setSilences(silences)
    for (const alert of open) {
      if (alert.rule !== 'node-down') continue
      for (const m of alert.members) {
        const d = m.details as { role?: string; address?: string; port?: number }
        if (m.node !== null && m.resolvedAt === null && typeof d.address === 'string' && typeof d.port === 'number') {
          watch.watchDown(m.node, String(d.role ?? 'unknown'), d.address, d.port, m.openedAt, config.alertDownAfter)
        }
      }
    }
    current.engine.restore(open)
    restored = true
    log.info({ open: open.length, epoch: current.epoch }, 'alerts restored; evaluating')
  }

  const seedLeader = createSeedLeaderWatch({ datastore, log, quietMs: config.alertLeaderQuiet })
  let tasks: { ready: number; dead: number } | null = null
  const readyHistory: number[] = []
  let build: LatestBuild | null = null
  let stopped = false
  let linkDownSince: number | null = null

  const cutoff = createSeedCutoffAlert({
    admin: config.nodeId,
    graceMs: config.alertDownAfter * config.probeInterval,
    notify: (n) => {
      log.warn({ alert: n.alert.id, rule: n.alert.rule, event: n.event }, `alert ${n.event} (no seed reachable, sent by this admin node alone): ${n.alert.summary}`)
      sinks.notify(n)
    },
  })

  function evaluate(): void {
    if (!stopped) cutoff.observe(client.connected, engine !== null, Date.now())
    const current = engine
    if (!restored || stopped || current === null || lease.epoch() !== current.epoch) return
    const now = Date.now()
    const seedLinkDownSince = client.connected ? null : (linkDownSince ??= now)
    if (client.connected) linkDownSince = null
    current.engine.evaluate(failingConditions({
      now, nodes: watch.snapshot(), tasks, readyHistory, build, seedLinkDownSince, seedLinkGraceMs: config.alertDownAfter * config.probeInterval,
      seedLeaderChange: seedLeader.change(), seedLeaderQuietMs: config.alertLeaderQuiet,
    }, thresholds), now)
    void flush()
  }
  evaluateSoon = evaluate

  async function round(): Promise<void> {
    if (client.connected) {
      await client.request<NodeView[]>('nodes', {}, REQUEST_TIMEOUT_MS).then((views) => watch.setNodes(views), (err: Error) => log.debug({ err }, 'nodes unavailable this round'))
    }
    // A standby follows the registry (above) and nothing more: only the lease's holder probes and evaluates.
    if (lease.epoch() === null) return
    for (const id of watch.forgetGone(Date.now())) void deleteProbeHistory(datastore, id).catch(() => {})
    const targets = watch.targets()
    for (let i = 0; i < targets.length; i += PROBE_PARALLEL) {
      await Promise.all(targets.slice(i, i + PROBE_PARALLEL).map(async (t) => watch.record(t.id, await probeHealth(t.address, t.port, config.probeTimeout))))
    }
    // Task counts and the latest build keep their last known value while the seed (or Redis) is out of reach.
    await queue.counts().then((c) => {
      tasks = { ready: c.ready, dead: c.dead }
      readyHistory.push(c.ready)
      if (readyHistory.length > READY_HISTORY) readyHistory.shift()
    }, (err: Error) => log.debug({ err }, 'task counts unavailable this round'))
    if (client.connected) {
      await client.request<{ builds: { id: string; at: number; state: string; refused: LatestBuild['refused'] }[] }>('build.list', { limit: 1 }, REQUEST_TIMEOUT_MS).then(
        (list) => void (build = list.builds[0] ? { id: list.builds[0].id, at: list.builds[0].at, state: list.builds[0].state, refused: list.builds[0].refused ?? [] } : null),
        (err: Error) => log.debug({ err }, 'builds unavailable this round'),
      )
    }
    if (client.connected && restored) {
      await client.request<LeaderStatus>('leader', {}, REQUEST_TIMEOUT_MS).then((l) => seedLeader.saw(l, Date.now()), (err: Error) => log.debug({ err }, 'seed leader unknown this round'))
    }
    if (!restored && client.connected && lease.epoch() !== null) await restore().catch((err: Error) => log.warn({ err }, 'open alerts not read back yet; nothing is evaluated until they are'))
    evaluate()
    if (lease.epoch() === null) return
    await Promise.allSettled(targets.map((t) => {
      const history = watch.history(t.id)
      return history === null ? Promise.resolve() : saveProbeHistory(datastore, history)
    }))
  }

  let silenceIds = ''
  async function pollSilences(): Promise<void> {
    const now = Date.now()
    const all = await listSilences(datastore, { expired: true }, now)
    const active = all.filter((s) => s.until > now)
    const ids = active.map((s) => s.id).sort().join()
    if (ids !== silenceIds) log.info({ silences: active.map((s) => ({ id: s.id, rule: s.rule, node: s.node, until: s.until, by: s.by })) }, `silences in force: ${active.length}`)
    silenceIds = ids
    engine?.engine.setSilences(active)
    for (const s of all) if (s.until + KEEP_EXPIRED_SILENCE_MS < now) await datastore.delete('alertSilences', s.id)
  }

  // The round loop: one at a time, every --probe-interval from the start of the last.
  let roundTimer: NodeJS.Timeout | null = null
  let current: Promise<void> = Promise.resolve()
  let inRound = false
  const loop = (): void => {
    if (stopped) return
    const started = Date.now()
    roundTimer = null
    inRound = true
    current = round().catch((err: unknown) => log.error({ err }, 'probe round failed')).finally(() => {
      inRound = false
      if (!stopped) roundTimer = setTimeout(loop, Math.max(0, config.probeInterval - (Date.now() - started)))
    })
  }
  // A takeover starts a round at once (it reads the open alerts back), not at the next interval.
  function kickRound(): void {
    if (stopped || inRound || roundTimer === null) return
    clearTimeout(roundTimer)
    loop()
  }
  loop()
  const ticker = setInterval(evaluate, Math.min(TICK_MS, config.probeInterval))
  let polling = false
  const silencer = setInterval(() => {
    if (polling || !client.connected || engine === null) return
    polling = true
    pollSilences().catch((err: Error) => log.debug({ err }, 'silences not read this time')).finally(() => (polling = false))
  }, SILENCE_POLL_MS)
  log.info({ probeInterval: config.probeInterval, sinks: sinks.queues.map((q) => q.name) }, 'monitoring started')

  const stopTimers = (): void => {
    stopped = true
    if (roundTimer !== null) clearTimeout(roundTimer)
    clearInterval(ticker)
    clearInterval(silencer)
  }
  return {
    openAlerts: () => engine?.engine.open() ?? [],
    engineEpoch: () => lease.epoch(),
    probeHistories: () => watch.targets().flatMap((t) => watch.history(t.id) ?? []),
    sinkStatuses: () => sinks.queues.map((q) => q.status()),
    async close() {
      stopTimers()
      await current
      await sinks.close()
      await flush()
      // Released last, after the final writes: a standby takes over at its next look.
      await lease.close()
      await queue.close()
      await client.close()
    },
    destroy() {
      stopTimers()
      lease.destroy()
      sinks.destroy()
      void queue.close()
      client.destroy()
    },
  }
}
