/**
 * The child side of a node: one single-threaded process serving the role's
 * public port next to its siblings (SO_REUSEPORT). It takes its whole config
 * from the parent's first IPC message, reports `listening` (or a start-up
 * failure), sends stats every second, and drains when told to.
 */
import { monitorEventLoopDelay } from 'node:perf_hooks'
import type { Registry } from 'prom-client'
import type { NodeConfig, RoleName } from '../core/config.js'
import { createError, toWire } from '../core/errors.js'
import { createLogger, type Logger } from '../core/log.js'
import type { NodeState, SeedPush } from '../core/node-state.js'
import { addHealthRoute, healthAnswer } from '../http/health.js'
import { createRequestErrorLog } from '../http/request-errors.js'
import { createHttpServer, sendJson } from '../http/server.js'
import { uws } from '../http/uws.js'
import { createIpcEndpoint, type ChildStats, type IpcPort, type ToChild, type ToParent } from './ipc.js'
import { createChildRegistry } from './metrics.js'
import type { ChildHandle, Listener, Role } from './role.js'
import { extraListenFd, LISTEN_FD } from './shared-socket.js'

const STATS_INTERVAL_MS = 1000
const INIT_TIMEOUT_MS = 10_000
const LAG_RESOLUTION_MS = 10
const ROLE_REQUEST_TIMEOUT_MS = 10_000

type Init = Extract<ToChild, { t: 'init' }>

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    for (const v of Object.values(value)) deepFreeze(v)
    Object.freeze(value)
  }
  return value
}

/**
 * Runs this process as a child of a node parent (the CLI calls it when
 * `ESPRA_CHILD` is set). Never reads argv, env or files for config.
 */
export async function runChild(roles: Readonly<Partial<Record<RoleName, Role>>>): Promise<void> {
  if (!process.send) throw createError('ESPRA_ERR_INTERNAL', { reason: 'a child needs an IPC channel: start it through a node parent' })
  // The parent runs shutdown; Ctrl-C in a terminal signals the whole process group, so children leave it to the parent.
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(signal, () => {})

  let log: Logger | undefined
  let leaving = false
  // No orphans: a child whose parent vanished has nobody to supervise or drain it.
  process.on('disconnect', () => {
    if (leaving) return
    log?.warn('parent went away: exiting')
    process.exit(1)
  })
  process.on('uncaughtException', (err) => {
    log?.fatal({ err }, 'uncaught exception: exiting')
    process.exit(1)
  })

  let state: NodeState | undefined
  let roleHandle: ChildHandle | void
  const pushListeners: ((push: SeedPush) => void)[] = []
  const roleListeners: ((body: unknown) => void)[] = []
  let registry: Registry | undefined
  let gotInit!: (init: Init) => void
  const initialised = new Promise<Init>((resolve) => (gotInit = resolve))
  let setUp!: () => void
  // Settles once the child listens or has given up; a drain waits for it.
  const settled = new Promise<void>((resolve) => (setUp = resolve))
  let drained: Promise<void> | undefined

  const ipc = createIpcEndpoint<ToChild, ToParent>(
    process as unknown as IpcPort,
    {
      init: (msg) => gotInit(msg),
      state: (msg) => void (state = msg.state),
      push: (msg) => {
        for (const listener of pushListeners) listener(msg.push)
      },
      drain: (msg) => {
        leaving = true
        drained ??= settled.then(() => drain(msg.timeoutMs))
      },
      metrics: () => registry?.getMetricsAsJSON() ?? [],
      role: (msg) => {
        for (const listener of roleListeners) listener(msg.body)
      },
    },
    (msg) => log?.warn({ msg }, 'ignoring an unknown IPC message'),
  )

  const timeout = setTimeout(() => process.exit(1), INIT_TIMEOUT_MS)
  const init = await initialised
  clearTimeout(timeout)
  const config: NodeConfig = deepFreeze(init.config)
  state = init.state
  log = createLogger(config.logLevel, { role: config.role, node: config.nodeId, child: init.index })
  const childLog = log

  const app = uws.App()
  // Client errors (4xx) are info lines without stacks, rate limited; server faults are errors with them.
  const server = createHttpServer(app, createRequestErrorLog(childLog))
  // A role with its own listener (Role.listen) serves the public port instead of the uWS app.
  let listener: Listener | undefined
  const serverStats = () => (listener ?? server).stats()
  registry = createChildRegistry(config.role, serverStats)
  const metrics = registry
  const role = roles[config.role]

  /**
   * One ordered sequence (ChildHandle): the role lets its open connections go while the server stops
   * accepting; every accepted request is answered; only then does the role close what they needed.
   */
  async function drain(timeoutMs: number): Promise<void> {
    roleHandle?.drain?.()
    const { cut } = await (listener ? listener.drain(timeoutMs) : server.drain({ timeoutMs }))
    if (cut > 0) childLog.warn({ cut }, `drain deadline reached: ${cut} requests or tracked connections cut`)
    await roleHandle?.close()
    childLog.info('drained: exiting')
    process.exit(0)
  }

  try {
    if (!role) throw createError('ESPRA_ERR_INTERNAL', { reason: `role '${config.role}' has no child side`, role: config.role })
    let port: number
    if (role.listen) {
      const healthSource = { config, startedAt: init.startedAt, state: () => state!, answeringChildIsAlive: true }
      listener = await role.listen({
        config, log, fd: LISTEN_FD,
        extraFds: (role.listenPorts?.(config) ?? []).map((_, i) => extraListenFd(i)),
        state: () => state!,
        onPush: (l) => void pushListeners.push(l),
        health: () => healthAnswer(healthSource),
        metrics,
        parent: {
          send: (body) => ipc.send({ t: 'role', body }),
          request: (body, timeoutMs = ROLE_REQUEST_TIMEOUT_MS) => ipc.request({ t: 'role-req', body }, timeoutMs),
          onMessage: (listener) => void roleListeners.push(listener),
        },
      })
      port = listener.port
    } else {
      addHealthRoute(app, { config, startedAt: init.startedAt, state: () => state!, answeringChildIsAlive: true })
      roleHandle = await role.child?.({
        config,
        log,
        index: init.index,
        app,
        state: () => state!,
        onPush: (listener) => void pushListeners.push(listener),
        track: server.track,
        metrics,
        parent: {
          send: (body) => ipc.send({ t: 'role', body }),
          request: (body, timeoutMs = ROLE_REQUEST_TIMEOUT_MS) => ipc.request({ t: 'role-req', body }, timeoutMs),
          onMessage: (listener) => void roleListeners.push(listener),
        },
      })
      // Last, so role routes win; uWS also ranks wildcards below static and parameter routes.
      app.any('/*', (res, req) => {
        sendJson(res, 404, { code: 'ESPRA_ERR_HTTP_NOT_FOUND', message: `no route for ${req.getMethod().toUpperCase()} ${req.getUrl()}` })
      })
      port = await server.listen(config.bind, config.port)
    }
    if (!drained) ipc.send({ t: 'listening', port })
    log.info({ port }, 'child listening')
    setUp()
  } catch (err) {
    log.error({ err }, 'child cannot start')
    leaving = true
    // Exit only once the parent has the reason: it decides whether this is fatal.
    process.send({ t: 'failed', err: toWire(err) } satisfies ToParent, () => process.exit(1))
    return
  }

  const lag = monitorEventLoopDelay({ resolution: LAG_RESOLUTION_MS })
  lag.enable()
  let lastRequests = 0
  let lastAt = Date.now()
  setInterval(() => {
    const { inflight, tracked, requests } = serverStats()
    const now = Date.now()
    const stats: ChildStats = {
      rssBytes: process.memoryUsage.rss(),
      inflight,
      tracked,
      rps: Math.round(((requests - lastRequests) * 1000) / Math.max(1, now - lastAt)),
      // The histogram measures whole timer periods; the lag is what exceeds the period.
      lagMs: Math.max(0, lag.max / 1e6 - LAG_RESOLUTION_MS),
    }
    lastRequests = requests
    lastAt = now
    lag.reset()
    ipc.send({ t: 'stats', stats })
  }, STATS_INTERVAL_MS).unref()
}
