/**
 * The checker for restarts that must fail nothing: keep-alive HTTP load that
 * counts every answer and its latency (any status other than the expected
 * one, and any socket error, is a failure), and a Live publisher plus a
 * subscriber that resumes by sequence, both through the proxy.
 */
import { Agent, request } from 'node:http'
import WebSocket from 'ws'
import type { Test } from 'tap'
import { runCli, type UpCluster } from './up.js'

const CONNECTIONS = 10
export const LIVE_HOST = 'us-1.live.localhost'

export interface HttpLoadResult {
  sent: number
  failed: number
  /** Failures by status (`503`) or error code (`ECONNRESET`). */
  failures: Record<string, number>
  /** Answers that carried `Connection: close`. */
  closes: number
  p99Ms: number
  maxMs: number
}

export interface HttpLoad {
  /** Resets the counters (what follows is the window measured); returns the window that ended. */
  mark(): HttpLoadResult
  stop(): Promise<HttpLoadResult>
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return 0
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!
}

function once(agent: Agent, port: number, path: string, headers: Record<string, string>, method: string, body?: string): Promise<{ status: number; close: boolean; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, agent, method, headers }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (d: Buffer) => chunks.push(d))
      res.on('end', () => resolve({ status: res.statusCode!, close: res.headers.connection === 'close', body: Buffer.concat(chunks).toString('utf8') }))
      res.on('error', reject)
    })
    req.on('error', reject)
    req.end(body)
  })
}

/** `connections` keep-alive clients, each sending its next GET as soon as the last answer came. */
export function startHttpLoad(port: number, path: string, opts: { connections: number; expect?: number; headers?: Record<string, string> }): HttpLoad {
  const agent = new Agent({ keepAlive: true, maxSockets: opts.connections, maxFreeSockets: opts.connections })
  let result: HttpLoadResult = { sent: 0, failed: 0, failures: {}, closes: 0, p99Ms: 0, maxMs: 0 }
  let latencies: number[] = []
  const windowResult = (): HttpLoadResult => {
    const sorted = latencies.sort((a, b) => a - b)
    return { ...result, p99Ms: Math.round(percentile(sorted, 99) * 10) / 10, maxMs: Math.round((sorted.at(-1) ?? 0) * 10) / 10 }
  }
  const reset = (): HttpLoadResult => {
    const ended = windowResult()
    result = { sent: 0, failed: 0, failures: {}, closes: 0, p99Ms: 0, maxMs: 0 }
    latencies = []
    return ended
  }
  let running = true
  const loop = async (): Promise<void> => {
    while (running) {
      const started = performance.now()
      result.sent++
      try {
        const answer = await once(agent, port, path, opts.headers ?? {}, 'GET')
        latencies.push(performance.now() - started)
        if (answer.close) result.closes++
        if (answer.status !== (opts.expect ?? 200)) {
          result.failed++
          result.failures[answer.status] = (result.failures[answer.status] ?? 0) + 1
        }
      } catch (err) {
        result.failed++
        const code = (err as NodeJS.ErrnoException).code ?? (err as Error).message
        result.failures[code] = (result.failures[code] ?? 0) + 1
      }
    }
  }
  const loops = Array.from({ length: opts.connections }, loop)
  return {
    mark: reset,
    async stop() {
      running = false
      await Promise.all(loops)
      agent.destroy()
      return windowResult()
    },
  }
}

export interface LiveCheckResult {
  published: number
  failedPublishes: number
  failures: Record<string, number>
  received: number
  /** Acknowledged publishes the subscriber never saw. */
  missing: number
  /** Messages that arrived out of order or twice. */
  disorder: number
  /** `sub-ok` frames with `recovered: false` after the first (a resume that could not cover the gap). */
  unrecovered: number
  reconnects: number
  p99Ms: number
  /** For a failure message: the first missing sequences, and each resume's `since` with the `sub-ok` seq it got. */
  detail: string
}

export interface LiveCheck {
  mark(): void
  stop(): Promise<LiveCheckResult>
}

/**
 * One publisher (HTTP `POST /pub/<ch>` over keep-alive, one at a time) and one
 * WebSocket subscriber, both through the proxy at `port` with Host `host`. The
 * subscriber reconnects with `since` = the last sequence it saw whenever its
 * connection closes (a Live child that drains closes it with 1012).
 */
export async function startLiveCheck(port: number, host: string, token: string, ch: string): Promise<LiveCheck> {
  const agent = new Agent({ keepAlive: true, maxSockets: 1 })
  let acked: number[] = []
  let seen: number[] = []
  let lastSeq: number | null = null
  let published = 0
  let failedPublishes = 0
  let failures: Record<string, number> = {}
  let latencies: number[] = []
  let unrecovered = 0
  let reconnects = 0
  let subOks = 0
  const resumes: string[] = []
  let running = true
  let ws: WebSocket | null = null

  const connect = (): Promise<void> => new Promise((resolve) => {
    const socket = new WebSocket(`ws://127.0.0.1:${port}/ws?token=${encodeURIComponent(token)}`, { headers: { host }, perMessageDeflate: false })
    ws = socket
    const sinceSent = lastSeq
    socket.on('message', (data: Buffer) => {
      const f = JSON.parse(data.toString('utf8')) as { op: string; seq?: number; recovered?: boolean; ch?: string }
      if (f.op === 'sub-ok') {
        if (subOks++ > 0) {
          if (f.recovered === false) unrecovered++
          resumes.push(`since ${sinceSent} -> sub-ok ${f.seq} recovered ${f.recovered}`)
        }
        if (lastSeq === null) lastSeq = f.seq ?? null
        resolve()
      } else if (f.op === 'msg' && f.ch === ch) {
        seen.push(f.seq!)
        lastSeq = f.seq!
      }
    })
    socket.on('open', () => socket.send(JSON.stringify({ op: 'sub', ch, ...(lastSeq !== null ? { since: lastSeq } : {}) })))
    socket.on('error', () => {})
    socket.on('close', () => {
      resolve()
      if (!running) return
      reconnects++
      setTimeout(() => void connect(), 50)
    })
  })
  await connect()

  const publisher = (async () => {
    let n = 0
    while (running) {
      const started = performance.now()
      published++
      try {
        const answer = await once(agent, port, `/pub/${ch}`, { host, authorization: `Bearer ${token}`, 'content-type': 'application/json' }, 'POST', JSON.stringify({ n: ++n }))
        latencies.push(performance.now() - started)
        if (answer.status !== 200) {
          failedPublishes++
          failures[answer.status] = (failures[answer.status] ?? 0) + 1
        } else acked.push((JSON.parse(answer.body) as { seq: number }).seq)
      } catch (err) {
        failedPublishes++
        const code = (err as NodeJS.ErrnoException).code ?? (err as Error).message
        failures[code] = (failures[code] ?? 0) + 1
      }
    }
  })()

  return {
    mark() {
      published = 0
      failedPublishes = 0
      failures = {}
      latencies = []
    },
    async stop() {
      running = false
      await publisher
      // Whatever was acknowledged must arrive: give the last messages a moment.
      const deadline = Date.now() + 5000
      while (Date.now() < deadline && !acked.every((s) => seen.includes(s))) await new Promise((r) => setTimeout(r, 50))
      ws?.close()
      agent.destroy()
      const seenSet = new Set(seen)
      let disorder = 0
      for (let i = 1; i < seen.length; i++) if (seen[i]! <= seen[i - 1]!) disorder++
      const sorted = latencies.sort((a, b) => a - b)
      const result = {
        published, failedPublishes, failures, received: seen.length,
        missing: acked.filter((s) => !seenSet.has(s)).length,
        disorder, unrecovered, reconnects, p99Ms: Math.round(percentile(sorted, 99) * 10) / 10,
        detail: `missing ${JSON.stringify(acked.filter((s) => !seenSet.has(s)).slice(0, 5))}; resumes: ${resumes.join(', ')}; seen ${seen[0]}..${seen.at(-1)}`,
      }
      acked = []
      seen = []
      return result
    },
  }
}

export interface UpNodeJson {
  id: string
  role: string
  pid: number
  port: number
  health: string
  children: number
  childrenWanted: number
}

/** `admin nodes --json` of an `up` cluster. */
export async function upNodes(cluster: UpCluster): Promise<UpNodeJson[]> {
  const r = await runCli(['admin', 'nodes', '--json'], { cwd: cluster.dir })
  if (r.code !== 0) throw new Error(r.stderr)
  return JSON.parse(r.stdout) as UpNodeJson[]
}

/** A Live token of the cluster that may publish and subscribe on `load:*`. */
export async function loadToken(cluster: UpCluster): Promise<string> {
  const minted = await runCli(['admin', 'token', '--pub', 'load:*', '--sub', 'load:*'], { cwd: cluster.dir })
  if (minted.code !== 0) throw new Error(minted.stderr)
  return minted.stdout.trim()
}

/** What a restart of `role` is measured with: load on the node itself, directly (the proxy: a Live read through it). */
export function loadFor(cluster: UpCluster, role: string, token: string): HttpLoad {
  const port = cluster.port(role as never)
  const auth = { authorization: `Bearer ${token}` }
  if (role === 'app') return startHttpLoad(port, '/', { connections: CONNECTIONS })
  if (role === 'fileserver') return startHttpLoad(port, '/app/public/style.css', { connections: CONNECTIONS })
  if (role === 'live') return startHttpLoad(port, '/history/load:read?limit=1', { connections: CONNECTIONS, headers: auth })
  return startHttpLoad(cluster.port('proxy'), '/history/load:read?limit=1', { connections: CONNECTIONS, headers: { host: LIVE_HOST, ...auth } })
}

/**
 * Runs `restart` (a SIGHUP, an `admin rolling-restart`) of `role` under load on its node and Live
 * publishes through the proxy, keeps loading `afterMs` once it is done, and asserts nothing failed.
 * Returns the figures.
 */
export async function checkRestartUnderLoad(t: Test, cluster: UpCluster, role: string, token: string, what: string, restart: () => Promise<void>, afterMs = 1000): Promise<{ http: HttpLoadResult; live: LiveCheckResult }> {
  const http = loadFor(cluster, role, token)
  const live = await startLiveCheck(cluster.port('proxy'), LIVE_HOST, token, `load:${what.replace(/\W+/g, '-')}-${role}`)
  await new Promise((r) => setTimeout(r, 500))
  http.mark()
  live.mark()
  await restart()
  await new Promise((r) => setTimeout(r, afterMs))
  const [h, l] = await Promise.all([http.stop(), live.stop()])
  t.comment(`${what} of ${role}, ${CONNECTIONS} keep-alive clients: ${h.sent} sent, ${h.failed} failed ${JSON.stringify(h.failures)}, p99 ${h.p99Ms} ms, max ${h.maxMs} ms, ${h.closes} told to close`)
  t.comment(`live through the proxy: ${l.published} published, ${l.failedPublishes} failed ${JSON.stringify(l.failures)}, p99 ${l.p99Ms} ms; ${l.received} received, ${l.missing} missing, ${l.disorder} out of order, ${l.reconnects} reconnects, ${l.unrecovered} unrecovered`)
  t.ok(h.sent > 0, 'requests were sent')
  t.equal(h.failed, 0, `no failed requests (${JSON.stringify(h.failures)})`)
  t.equal(l.failedPublishes, 0, `no failed publishes (${JSON.stringify(l.failures)})`)
  t.equal(l.missing, 0, `every acknowledged publish reached the subscriber (${l.detail})`)
  t.equal(l.disorder, 0, 'in order, once')
  t.equal(l.unrecovered, 0, 'every resume was covered by history')
  return { http: h, live: l }
}
