/**
 * `espra-node admin …`: operator commands over the seed's meta port. Run in
 * the directory where `up` was started, they find the cluster with no flags.
 */
import { resolve } from 'node:path'
import { parseHostPort } from '../../core/config-parsers.js'
import { readSecret } from '../../core/config.js'
import { createError } from '../../core/errors.js'
import { createLogger } from '../../core/log.js'
import { readClusterFile, secretPath } from '../cluster-file.js'
import { createMetaClient } from '../../transport/meta-client.js'
import { createMetaTaskQueue } from '../../tasks/queue-meta.js'
import { formatNodes } from './format.js'
import { formatStatus, listNodes, readStatus } from './status.js'

export interface ConnectOptions {
  seed?: string
  dataDir?: string
  secretFile?: string
}

const REQUEST_TIMEOUT_MS = 5000

/** Flags, then ESPRA_* environment, then the state directory `up` wrote, then the defaults. */
export function resolveTarget(opts: ConnectOptions, env: NodeJS.ProcessEnv = process.env): { seeds: string[]; secret: string } {
  const dataDir = resolve(opts.dataDir ?? env['ESPRA_DATA_DIR'] ?? '.espra')
  const list = opts.seed ?? env['ESPRA_SEED'] ?? readClusterFile(dataDir)?.seed ?? '127.0.0.1:7000'
  const seeds = list.split(',').map((s) => {
    try {
      const { host, port } = parseHostPort(s)
      return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`
    } catch (reason) {
      throw createError('ESPRA_ERR_CONFIG_INVALID', { option: '--seed', reason: String(reason) })
    }
  })
  const insecure = ['1', 'true', 'yes', 'on'].includes((env['ESPRA_INSECURE_SECRET_FILE'] ?? '').toLowerCase())
  const secret = readSecret(env, resolve(opts.secretFile ?? env['ESPRA_SECRET_FILE'] ?? secretPath(dataDir)), { insecure })
  return { seeds, secret }
}

/**
 * An authenticated admin link to the cluster's leader through the seed list (close it when done).
 * One-shot by default; `lasting` (a command that runs for minutes) follows the leader to the next
 * seed when its link drops, once the first link was made.
 */
export async function connect(opts: ConnectOptions, onPush?: (op: string, body: unknown) => void, lasting = false) {
  const { seeds, secret } = resolveTarget(opts)
  const client = createMetaClient({
    seeds,
    secret,
    peer: { kind: 'admin' },
    maxFrame: 16 * 1024 ** 2,
    log: createLogger('silent', { role: 'admin-cli', node: 'cli' }),
    reconnect: lasting ? 'once-linked' : false,
    ...(onPush ? { onPush } : {}),
  })
  await client.ready
  return client
}

export async function adminStatus(opts: ConnectOptions & { redis?: string }): Promise<void> {
  const client = await connect(opts)
  // The task queue's counts: Redis when named (--redis, ESPRA_REDIS), else the seed's embedded queue on this same link.
  const redis = opts.redis ?? (process.env['ESPRA_REDIS'] || undefined)
  const queue = redis === undefined ? createMetaTaskQueue(client)
    : (await import('../../tasks/queue-redis.js')).createRedisTaskQueue({ url: redis, log: createLogger('silent', { role: 'admin-cli', node: 'cli' }) })
  try {
    process.stdout.write(formatStatus(await readStatus(client, queue, client.seed ?? resolveTarget(opts).seeds[0]!)))
  } finally {
    await Promise.all([client.close(), queue.close()])
  }
}

export async function adminNodes(opts: ConnectOptions & { json?: boolean; watch?: boolean }): Promise<void> {
  if (!opts.watch) {
    const client = await connect(opts)
    try {
      const nodes = await listNodes(client)
      process.stdout.write(opts.json ? `${JSON.stringify(nodes)}\n` : `${formatNodes(nodes)}\n`)
    } finally {
      await client.close()
    }
    return
  }
  // Watch: redraw on every event from the seed and once a second for heartbeat ages.
  let redraw = (): void => {}
  const client = await connect(opts, (op) => op === 'event' && redraw())
  await client.request('subscribe', { events: true }, REQUEST_TIMEOUT_MS)
  let busy = false
  redraw = () => {
    if (busy) return
    busy = true
    listNodes(client)
      .then((nodes) => {
        const body = opts.json ? JSON.stringify(nodes) : `${new Date().toISOString()}\n${formatNodes(nodes)}`
        process.stdout.write(process.stdout.isTTY && !opts.json ? `\x1b[2J\x1b[H${body}\n` : `${body}\n`)
      })
      .catch((err: Error) => process.stderr.write(`espra-node: ${err.message}\n`))
      .finally(() => (busy = false))
  }
  redraw()
  const timer = setInterval(redraw, 1000)
  let stopped = false
  await new Promise<void>((done) => {
    const stop = (): void => {
      stopped = true
      done()
    }
    process.once('SIGINT', stop)
    process.once('SIGTERM', stop)
    client.on('disconnected', () => {
      if (stopped) return
      process.stderr.write('espra-node: seed connection lost\n')
      process.exitCode = 1
      done()
    })
  })
  clearInterval(timer)
  await client.close()
}
