/**
 * For the alert tests: a real seed, an admin node with fast probes and a
 * webhook, proxy nodes to watch, a webhook receiver (a real HTTP server that
 * can answer 500 for a while), and the admin's datastore functions over a
 * test meta client. Everything is stopped at teardown.
 */
import { writeFileSync } from 'node:fs'
import { createServer, type IncomingHttpHeaders } from 'node:http'
import { join } from 'node:path'
import type { Test } from 'tap'
import type { AlertNotification } from '../../lib/alerts/alert.js'
import { createDatastoreClient } from '../../lib/storage/datastore-client.js'
import type { Datastore } from '../../lib/storage/datastore.js'
import type { NodeView } from '../../lib/transport/meta-shapes.js'
import { freePort, pidAlive, startNode, waitFor, type StartedNode } from './cluster.js'
import { client } from './seed.js'
import { testDir } from './temp-dir.js'

export const WEBHOOK_KEY = 'alert-webhook-key-0123456789'
export const FAST = { 'heartbeat-interval': '200ms', 'heartbeat-timeout': '1s' }

export interface Delivery {
  readonly headers: IncomingHttpHeaders
  readonly raw: string
  readonly body: AlertNotification
  /** The status the receiver answered. */
  readonly status: number
}

/** An HTTP server recording every POST; it answers 500 to the first `failFirst`, then 200. */
export async function webhookReceiver(t: Test, failFirst = 0) {
  const deliveries: Delivery[] = []
  let failuresLeft = failFirst
  const server = createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const raw = Buffer.concat(chunks).toString('utf8')
      const status = failuresLeft-- > 0 ? 500 : 200
      deliveries.push({ headers: req.headers, raw, body: JSON.parse(raw) as AlertNotification, status })
      res.writeHead(status).end()
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => server.close())
  const url = `http://127.0.0.1:${(server.address() as { port: number }).port}/hooks/espra`
  /** Notifications the receiver took (answered 200). */
  const taken = () => deliveries.filter((d) => d.status === 200).map((d) => d.body)
  return { url, deliveries, taken }
}

export async function startSeed(t: Test) {
  const metaPort = await freePort()
  await startNode(t, 'seed', { 'meta-port': metaPort, 'seed-grace': '0', ...FAST })
  return { metaPort, address: `127.0.0.1:${metaPort}` }
}

export function keyFile(): string {
  const dir = testDir('espra-alert-key-')
  const file = join(dir, 'webhook-key')
  writeFileSync(file, `${WEBHOOK_KEY}\n`, { mode: 0o600 })
  return file
}

/**
 * The admin node under test: probes every 400 ms, down after 3 failed probes, the webhook signed. Lag alerts
 * are off: on two shared cores a busy moment makes a child lag, which these tests do not look at.
 */
export function startAdmin(t: Test, seed: string, webhook: string, flags: Record<string, string | number> = {}) {
  return startNode(t, 'admin', {
    seed, children: 1, ...FAST, 'node-id': 'admin-1',
    'probe-interval': '400ms', 'probe-timeout': '400ms', 'alert-down-after': 3, 'alert-group-window': '1s', 'alert-flap-half-life': '1s', 'alert-max-lag': '0',
    'alert-webhook': webhook, 'alert-webhook-secret-file': keyFile(), ...flags,
  })
}

/** A proxy node to watch (the cheapest node to start: no build, no storage). */
export async function startWatched(t: Test, seed: string, id: string, port?: number): Promise<StartedNode> {
  return startNode(t, 'proxy', { seed, children: 1, ...FAST, 'node-id': id, ...(port !== undefined ? { port } : {}) })
}

/** SIGKILL to the parent and every child: a machine that died, not a stop. Resolves once its port is free. */
export async function killHard(node: StartedNode): Promise<void> {
  const pids = [node.proc.pid!, ...node.childPids()]
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL')
    } catch {
      // gone already
    }
  }
  await node.exited
  await waitFor('every process of the node gone', () => pids.every((p) => !pidAlive(p)) || undefined, 10_000)
}

/** SIGSTOP or SIGCONT to the parent and every child: a node that hangs (or comes back). */
export function signalAll(node: StartedNode, signal: 'SIGSTOP' | 'SIGCONT'): void {
  for (const pid of [node.proc.pid!, ...node.childPids()]) process.kill(pid, signal)
}

/** A test's own admin link to the seed: the registry, and the datastore the API functions take. */
export async function seedView(t: Test, metaPort: number): Promise<{ datastore: Datastore; nodes: () => Promise<NodeView[]> }> {
  const c = client(t, metaPort, { reconnect: true })
  await c.ready
  return { datastore: createDatastoreClient(c), nodes: () => c.request<NodeView[]>('nodes', {}) }
}
