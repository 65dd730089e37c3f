/**
 * The parent of a node: the one lifecycle every role shares. It starts the
 * role's parent work, forks and supervises the children, links to the seed,
 * serves metrics, and owns the signals: SIGHUP replaces children one at a
 * time, SIGTERM/SIGINT run the stop sequence (a second one forces).
 */
import type { Server } from 'node:http'
import type { NodeConfig } from '../core/config.js'
import { createError } from '../core/errors.js'
import { createLogger, type Logger } from '../core/log.js'
import type { NodeState, RoutingTable, SeedPush } from '../core/node-state.js'
import { addHealthRoute, healthWord } from '../http/health.js'
import { maintenancePush } from '../http/maintenance.js'
import { createHttpServer, sendJson, type HttpServer } from '../http/server.js'
import { uws } from '../http/uws.js'
import type { AppLoad, ChildLoad, NodeLoad } from '../transport/meta-shapes.js'
import { asDrainOrder, RESTART_EXIT_CODE } from '../transport/drain-order.js'
import { createDrainer } from './drainer.js'
import { startElbMembership, type ElbMembership } from './elb-membership.js'
import { readMaintenanceFile, writeMaintenanceFile } from './maintenance-file.js'
import { createParentMetrics, serveMetrics } from './metrics.js'
import type { ChildrenChannel, Handle, Role } from './role.js'
import { createSeedLink, type SeedLink } from './seed-link.js'
import { onReloadPush, RELOAD_PUSH } from './node-reload.js'
import { bindSharedSocket, type SharedSocket } from './shared-socket.js'
import { createSupervisor, type Supervisor } from './supervisor.js'

const METRICS_TIMEOUT_MS = 2000
/** The whole stop sequence must end this long after the drain deadline, or the node forces. */
const STOP_GRACE_MS = 10_000

function sameState(a: NodeState, b: NodeState): boolean {
  return (
    a.draining === b.draining && a.childrenAlive === b.childrenAlive && a.childrenWanted === b.childrenWanted &&
    a.seedConnected === b.seedConnected && a.build === b.build && a.routing === b.routing && a.buildRefused === b.buildRefused &&
    a.dependencies === b.dependencies && a.maintenance === b.maintenance && a.livePeers === b.livePeers && a.livePeersLost === b.livePeersLost &&
    a.crashLooping.join() === b.crashLooping.join()
  )
}

function isRoutingTable(body: unknown): body is RoutingTable {
  const t = body as Partial<RoutingTable> | null
  return typeof t === 'object' && t !== null && typeof t.region === 'string' && typeof t.version === 'number' && Array.isArray(t.nodes)
}

/** Roles that do not fork (the seed) answer health checks from the parent on the public port. */
async function serveHealthInParent(config: NodeConfig, startedAt: number, state: () => NodeState, log: Logger): Promise<HttpServer> {
  const server = createHttpServer(uws.App(), (err) => log.error({ err }, 'health handler failed'))
  addHealthRoute(server.app, { config, startedAt, state, answeringChildIsAlive: false })
  server.app.any('/*', (res) => sendJson(res, 404, { code: 'ESPRA_ERR_HTTP_NOT_FOUND', message: 'not found' }))
  await server.listen(config.bind, config.port)
  return server
}

/**
 * Runs a node of `role` until it has fully stopped; resolves the exit status
 * the process should end with: 0, or {@link RESTART_EXIT_CODE} when it
 * stopped under a restart order. Rejects when the node cannot start (e.g.
 * `ESPRA_ERR_NODE_LISTEN`); the caller exits non-zero.
 */
export async function runNode(role: Role, config: NodeConfig): Promise<number> {
  const startedAt = Date.now()
  const log = createLogger(config.logLevel, { role: config.role, node: config.nodeId })
  for (const item of role.notYet) log.info({ notYet: item }, `not built yet: ${item}`)

  let state: NodeState = Object.freeze({
    draining: false, childrenAlive: 0, childrenWanted: role.forks ? config.children : 0,
    seedConnected: false, build: null, crashLooping: [], routing: null,
    maintenance: readMaintenanceFile(config, log),
  })
  let supervisor: Supervisor | null = null
  let link: SeedLink | null = null

  /** Recomputes the node state; on a change every child hears it and the seed hears a health change at once. */
  function update(patch: Partial<NodeState> = {}): void {
    const next: NodeState = {
      ...state, ...patch,
      childrenAlive: supervisor?.alive() ?? 0,
      crashLooping: supervisor?.crashLooping() ?? [],
      seedConnected: link?.connected ?? false,
    }
    if (sameState(state, next)) return
    const before = healthWord(state)
    const previous = state
    const previousBuild = state.build
    const previousAlive = state.childrenAlive
    state = Object.freeze(next)
    supervisor?.broadcast({ t: 'state', state })
    const after = healthWord(state)
    // Before 'node started' the node is coming up, not changing health.
    if (after !== before && link) {
      log[after === 'degraded' ? 'error' : 'info']({ health: after, was: before, childrenAlive: state.childrenAlive, crashLooping: state.crashLooping, dependencies: state.dependencies }, `node health: ${after}`)
      link?.heartbeat()
    } else if ((next.childrenAlive === 0) !== (previousAlive === 0)) {
      // A degraded node is routed while some child serves (seed/routing.ts): the seed hears at once when none does, or one does again.
      link?.heartbeat()
    } else if (next.build !== previousBuild) {
      // `admin push-build` waits for this: tell the seed now, not at the next tick.
      link?.heartbeat()
    } else if (next.livePeers !== previous.livePeers) {
      // Routing tables list the Live children that home channels: a new or replaced one is routed at once.
      link?.heartbeat()
    }
  }

  let pendingUploads: number | undefined
  let appLoad: (() => AppLoad | null) | null = null
  function load(): NodeLoad {
    const byChild = (supervisor?.stats() ?? []).map(({ slot, pid, stats: s }): ChildLoad => ({
      slot, pid, connections: s.inflight + s.tracked, rps: s.rps, rssBytes: s.rssBytes, lagMs: s.lagMs,
    }))
    const app = appLoad?.() ?? null
    return {
      ...(pendingUploads !== undefined ? { pendingUploads } : {}),
      ...(app !== null ? { app } : {}),
      ...(byChild.length > 0 ? { byChild: byChild.sort((a, b) => a.slot - b.slot) } : {}),
      connections: byChild.reduce((n, c) => n + c.connections, 0),
      rps: byChild.reduce((n, c) => n + c.rps, 0),
      rssBytes: byChild.reduce((n, c) => n + c.rssBytes, process.memoryUsage.rss()),
      lagMs: byChild.reduce((n, c) => Math.max(n, c.lagMs), 0),
    }
  }

  const metrics = createParentMetrics(
    () => ({ childrenAlive: state.childrenAlive, childrenWanted: state.childrenWanted, crashLooping: state.crashLooping.length, seedConnected: state.seedConnected, draining: state.draining }),
    () => supervisor?.metrics(METRICS_TIMEOUT_MS) ?? Promise.resolve([]),
  )

  // Signals are handled from the first moment: SIGHUP's default action would kill a node still starting.
  let running = false
  let stopSignal: NodeJS.Signals | null = null
  let resolveStopped!: () => void
  const stopped = new Promise<void>((resolve) => (resolveStopped = resolve))

  function forceStop(why: string): never {
    log.warn(`forcing stop: ${why}`)
    supervisor?.killAll()
    process.exit(1)
  }

  let drainStopping = false
  // Set by a restart order (admin rolling-restart --mode restart): the process manager starts the node again.
  let restartWanted = false
  const onStop = (signal: NodeJS.Signals): void => {
    // A drain order already runs the stop sequence: the first signal joins it, a second forces.
    if (drainStopping && !stopSignal) return void (stopSignal = signal)
    if (stopSignal) forceStop(`second ${signal}`)
    stopSignal = signal
    if (running) beginStop(signal)
    else log.info({ signal }, 'stop requested while starting: stopping once started')
  }
  const onHup = (): void => {
    if (!running || stopSignal) return void log.info('SIGHUP ignored: the node is starting or stopping')
    if (!supervisor) return void log.info('SIGHUP: this role runs in its parent only; nothing to replace')
    supervisor.reload('SIGHUP').catch((err: unknown) => log.error({ err }, 'reload failed'))
  }
  const signalHandlers: [NodeJS.Signals, (signal: NodeJS.Signals) => void][] = [
    ['SIGTERM', onStop],
    ['SIGINT', onStop],
    ['SIGHUP', onHup],
  ]
  for (const [sig, handler] of signalHandlers) process.on(sig, handler)
  const releaseSignals = (): void => {
    for (const [sig, handler] of signalHandlers) process.off(sig, handler)
  }

  // The role's own IPC with its children and its view of seed pushes; wired to the supervisor once it exists.
  const roleListeners = { message: [] as ((child: number, body: unknown) => void)[], exit: [] as ((child: number) => void)[], push: [] as ((push: SeedPush) => void)[] }
  let roleRequest: ((child: number, body: unknown) => unknown) | undefined
  const children: ChildrenChannel = {
    broadcast: (body) => supervisor?.broadcast({ t: 'role', body }),
    send: (child, body) => supervisor?.sendTo(child, { t: 'role', body }) ?? false,
    onMessage: (listener) => void roleListeners.message.push(listener),
    onRequest: (handler) => void (roleRequest = handler),
    onExit: (listener) => void roleListeners.exit.push(listener),
  }

  // Start-up: anything that fails here is an error the operator must see; undo what started and reject.
  let roleHandle: Handle | undefined
  let localHealth: HttpServer | null = null
  let metricsServer: Server | null = null
  let shared: SharedSocket[] = []
  try {
    metricsServer = await serveMetrics(config.metricsBind, config.metricsPort, metrics, log)
    roleHandle = await role.parent?.({
      config, log, children,
      onPush: (listener) => void roleListeners.push.push(listener),
      metrics: metrics.registry,
      setBuild: (build) => update({ build }),
      setBuildRefused: (refused) => update({ buildRefused: refused }),
      setPendingUploads: (count) => void (pendingUploads = count),
      setAppLoad: (source) => void (appLoad = source),
      setLivePeers: (peers, lost) => update({
        livePeers: peers === null ? undefined : Object.freeze(peers.map((p) => Object.freeze({ id: p.id, linkPort: p.linkPort }))),
        livePeersLost: lost === undefined || lost.length === 0 ? undefined : Object.freeze([...lost]),
      }),
      setDependency: (name, down) => {
        const deps = { ...state.dependencies }
        if (down === null) delete deps[name]
        else deps[name] = down
        if (deps[name] !== state.dependencies?.[name]) update({ dependencies: Object.freeze(deps) })
      },
      seedRequest: (op, body, timeoutMs) => {
        if (link === null) return Promise.reject(createError('ESPRA_ERR_META_CLOSED', { reason: 'the seed link is not up yet' }))
        return link.request(op, body, timeoutMs)
      },
      childrenAlive: () => supervisor?.alive() ?? 0,
    })
    if (role.forks) {
      // A role with its own listener gets the public port bound once here, shared by every child.
      if (role.listen) {
        for (const { port, option } of [{ port: config.port, option: '--port' }, ...(role.listenPorts?.(config) ?? [])]) shared.push(await bindSharedSocket(config.bind, port, option))
      }
      supervisor = createSupervisor({
        ...(role.childExecArgv ? { execArgv: role.childExecArgv } : {}),
        ...(shared.length > 0 ? { listenFds: shared.map((s) => s.fd) } : {}),
        config, log, startedAt, state: () => state, onChange: () => update(), onCrash: metrics.childCrashed,
        onRole: (child, body) => {
          for (const listener of roleListeners.message) listener(child, body)
        },
        ...(roleRequest ? { onRoleRequest: roleRequest } : {}),
        onExit: (child) => {
          for (const listener of roleListeners.exit) listener(child)
        },
      })
      await supervisor.start()
    } else {
      localHealth = await serveHealthInParent(config, startedAt, () => state, log)
    }
  } catch (err) {
    log.error({ err }, 'node cannot start')
    releaseSignals()
    supervisor?.killAll()
    localHealth?.destroy()
    for (const s of shared) s.close()
    roleHandle?.destroy(err as Error)
    metricsServer?.close()
    throw err
  }

  // Drain orders from the seed (admin drain / undrain); the ELB membership starts below, hence the getter.
  let elb: ElbMembership | null = null
  const drainer = createDrainer({
    log, startedAt,
    setDraining: (draining) => update({ draining }),
    elb: () => elb,
    stop(restart) {
      if (stopSignal || drainStopping) return
      drainStopping = true
      restartWanted = restart
      // An order carried out before start-up finished (no grace, no ELB) stops once the node has started.
      if (running) beginStop('drain')
    },
  })
  link = createSeedLink({
    config, role, log, startedAt, load,
    // Before the membership exists (it starts once the node has), a node with a target group is `joining` it.
    elb: () => elb?.view() ?? (config.elbTargetGroup === null ? null : { state: 'joining', targetGroup: config.elbTargetGroup }),
    state: () => state,
    onChange: () => update(),
    onPush(op, body) {
      if (op === 'drain') {
        const order = asDrainOrder((body as { order?: unknown } | null)?.order)
        if (order === null && (body as { order?: unknown } | null)?.order !== null) return void log.warn('malformed drain push from the seed: ignored')
        // Children hear the order too (a Live child tells its clients to reconnect elsewhere).
        drainer.apply(order)
      }
      if (op === 'routing' && isRoutingTable(body)) {
        if (body.version !== state.routing?.version) log.info({ version: body.version, nodes: body.nodes.length }, 'routing table received')
        update({ routing: body })
      }
      // Planned maintenance: in the node state, so children forked later start with it too.
      if (op === 'maintenance') {
        const maintenance = maintenancePush(body, state.maintenance ?? null, log)
        if (maintenance !== state.maintenance) writeMaintenanceFile(config, maintenance, log)
        update({ maintenance })
      }
      // An operator's reload (admin rolling-restart): the same replacement as SIGHUP, answered to the seed.
      if (op === RELOAD_PUSH) {
        return onReloadPush(body, {
          log,
          reload: () => (!running || stopSignal ? 'the node is starting or stopping' : supervisor ? supervisor.reload('admin rolling-restart') : 'this role runs in its parent only'),
          seedRequest: (reqOp, reqBody) => link!.request(reqOp, reqBody),
        })
      }
      for (const listener of roleListeners.push) listener({ op, body })
      supervisor?.broadcast({ t: 'push', push: { op, body } })
    },
  })
  update()
  log.info({ port: config.port, children: state.childrenAlive, metricsPort: config.metricsPort }, 'node started')
  // The seed hears every change of the target's state at once (admin rolling-restart waits for `healthy`).
  elb = await startElbMembership(config, log, () => healthWord(state) === 'ok', () => link?.heartbeat())
  // An order that came before the membership existed left the group unjoined (health 503); leave it so.
  if (elb && drainer.order !== null) void elb.leave()

  /** The stop sequence, in order; each step says why it comes where it does. */
  async function stop(signal: NodeJS.Signals | 'drain'): Promise<void> {
    log.info({ signal }, 'stopping: failing health checks, then draining')
    drainer.close()
    const force = setTimeout(() => forceStop('the stop sequence overran its deadline'), config.drainTimeout + STOP_GRACE_MS)
    force.unref()
    // 1. Every child answers health 503 at once, so load balancers stop sending new work.
    update({ draining: true })
    // 2. Leave the seed's registry (and so the routing tables) while still serving.
    await link!.deregister()
    // 3. Leave the ELB target group and serve while the target drains (bounded by the group's deregistration
    //    delay, not by --drain-timeout); the stop deadline starts again after it.
    if (elb) {
      await elb.leave()
      elb.close()
      force.refresh()
    }
    // 4. Stop accepting and let in-flight work finish, under --drain-timeout.
    await Promise.all([supervisor?.drainAll(config.drainTimeout), localHealth?.drain({ timeoutMs: config.drainTimeout })])
    for (const s of shared) s.close()
    // 5. Close the link before the role's parent work: the seed's own link goes to its meta server.
    await link!.close()
    await roleHandle?.close()
    metricsServer!.closeAllConnections()
    await new Promise((done) => metricsServer!.close(done))
    clearTimeout(force)
    releaseSignals()
    if (restartWanted && !stopSignal) log.info({ exitCode: RESTART_EXIT_CODE }, `stopped for a restart: exit status ${RESTART_EXIT_CODE} asks the process manager to start this node again`)
    else log.info('stopped')
    resolveStopped()
  }

  function beginStop(signal: NodeJS.Signals | 'drain'): void {
    stop(signal).catch((err: unknown) => {
      log.error({ err }, 'stop sequence failed')
      forceStop('the stop sequence failed')
    })
  }

  running = true
  if (stopSignal) beginStop(stopSignal)
  else if (drainStopping) beginStop('drain')
  await stopped
  // A signal during a restart order's stop is an operator's stop: exit 0, not started again.
  return restartWanted && !stopSignal ? RESTART_EXIT_CODE : 0
}
