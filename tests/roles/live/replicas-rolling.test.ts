// Issue #16, --live-replicas 2 under `admin rolling-restart --mode restart`: three Live nodes, each run by a small
// process manager (started again on exit 75), stopped and started one after another while publishers publish with
// publish ids (sent again with the same id on an error or a closed connection) and subscribers on every node
// reconnect to another node with `since`. What every subscriber sees must follow the protocol: each seq once and in
// order, or a `sub-ok` with `recovered: false` and the exact `gap` before a jump (issue #16: seqs jumped to a new
// base with no gap reported while a restarted node took its channels over). And the restart is lossless: each node
// hands the channels it held to their new homes before it forgets them (roles/live/handover.ts), so no gap at all,
// every acknowledged message delivered to every subscriber of its channel, and no publish failed for good (an
// attempt cut by a node closing its connections is sent again with its publish id).
// LIVE_ROLL_LOGS=<dir> writes every node's log and every subscriber's frames there.
import t from 'tap'
import { setTimeout as sleep } from 'node:timers/promises'
import WebSocket from 'ws'
import { freePort, SECRET, startNode } from '../../helpers/cluster.js'
import { managed, type Managed } from '../../helpers/managed-node.js'
import { token } from '../../helpers/live.js'
import { runCli } from '../../helpers/up.js'

// No node is killed here: a short heartbeat timeout only made the seed drop loaded nodes (1 s at load average 10, 3 s
// once at 17: two holders of a channel out of the table at once, which the protocol reports as a `lost` gap, not what
// this test is about). Drained nodes leave the table by their drain, not by a timeout.
const FAST = { 'heartbeat-interval': '200ms', 'heartbeat-timeout': '10s' }
const CHANNELS = Array.from({ length: 12 }, (_, i) => `roll:${i}`)
const RATE_PER_S = 150
const RETRY_FOR_MS = 15_000
const tok = token({ sub: ['roll:*'], pub: ['roll:*'] })

type Frame = Record<string, unknown> & { op: string }

/** A WebSocket to one of the nodes (the k-th, or the next that answers); null when none answered. */
function open(nodes: Managed[], k: number): Promise<{ ws: WebSocket; node: number } | null> {
  return new Promise((resolve) => {
    const attempt = (tries: number, i: number): void => {
      if (tries >= nodes.length * 4) return resolve(null)
      const ws = new WebSocket(`ws://127.0.0.1:${nodes[i % nodes.length]!.current().port}/ws?token=${encodeURIComponent(tok)}`)
      ws.once('open', () => resolve({ ws, node: i % nodes.length }))
      ws.once('error', () => setTimeout(() => attempt(tries + 1, i + 1), 100))
    }
    attempt(0, k)
  })
}

/** One subscriber of one channel: reconnects (to the next node) with `since` = the last seq it saw. Every frame kept, in order. */
class Subscriber {
  readonly frames: Frame[] = []
  last: number | null = null
  reconnects = 0
  private ws: WebSocket | null = null
  private stopped = false
  constructor(readonly ch: string, private readonly nodes: Managed[], private node: number) {}

  async start(): Promise<void> {
    const opened = await open(this.nodes, this.node)
    if (!opened || this.stopped) return void opened?.ws.terminate()
    this.node = opened.node
    const ws = (this.ws = opened.ws)
    let ok!: () => void
    const subscribed = new Promise<void>((resolve) => (ok = resolve))
    ws.on('message', (data: Buffer) => {
      const f = JSON.parse(data.toString('utf8')) as Frame
      this.frames.push(f)
      if (f.op === 'msg') this.last = f['seq'] as number
      else if (f.op === 'sub-ok') {
        if (f['recovered'] === false || this.last === null) this.last = f['seq'] as number
        ok()
      } else if (f.op === 'err') ok()
    })
    ws.once('close', () => {
      if (this.stopped) return
      this.frames.push({ op: 'closed' })
      this.reconnects++
      this.node++
      setTimeout(() => void this.start(), 50 + Math.random() * 100)
    })
    ws.send(JSON.stringify({ op: 'sub', ch: this.ch, id: 1, ...(this.last !== null ? { since: this.last } : {}) }))
    await subscribed
  }

  stop(): void {
    this.stopped = true
    this.ws?.terminate()
  }
}

/** What a subscriber's frames break of the protocol: a jump with no `recovered: false` before it, a seq twice or backwards. */
function check(s: Subscriber): { silentJumps: string[]; disorder: string[]; gaps: Frame[] } {
  const silentJumps: string[] = []
  const disorder: string[] = []
  const gaps: Frame[] = []
  let last: number | null = null
  let jumpOk = true
  for (const f of s.frames) {
    if (f.op === 'sub-ok') {
      if (f['recovered'] === false) {
        jumpOk = true
        gaps.push(f)
      }
      if (f['recovered'] === false || last === null) last = f['seq'] as number
    } else if (f.op === 'msg') {
      const seq = f['seq'] as number
      if (last !== null && seq <= last) disorder.push(`${s.ch}: ${last} then ${seq}`)
      else if (last !== null && seq !== last + 1 && !jumpOk) silentJumps.push(`${s.ch}: ${last} -> ${seq}`)
      jumpOk = false
      if (last === null || seq > last) last = seq
    }
  }
  return { silentJumps, disorder, gaps }
}

/** Publishes `RATE_PER_S` messages/s round robin over the channels, each with a publish id, sent again until acknowledged. */
function startPublishing(nodes: Managed[]) {
  const acked = new Map<number, { ch: string; seq: number }>()
  const errors = new Map<string, number>()
  const failedForGood: number[] = []
  /** Each failed publish's attempts: when (ms after the first), on which node, and what came back. */
  const attempts = new Map<number, string[]>()
  let sent = 0
  interface Conn { ws: WebSocket; node: number; answers: Map<string, (f: Frame | null) => void> }
  let conn: Conn | null = null
  let connecting: Promise<Conn | null> | null = null
  let next = 0
  const connect = async (): Promise<Conn | null> => {
    const opened = await open(nodes, next++)
    if (!opened) return null
    const c: Conn = { ws: opened.ws, node: opened.node, answers: new Map() }
    opened.ws.on('message', (data: Buffer) => {
      const f = JSON.parse(data.toString('utf8')) as Frame
      const answer = typeof f['id'] === 'string' ? c.answers.get(f['id']) : undefined
      if (answer) c.answers.delete(f['id'] as string), answer(f)
    })
    opened.ws.once('close', () => {
      if (conn === c) conn = null
      for (const answer of c.answers.values()) answer(null)
      c.answers.clear()
    })
    return c
  }
  const publish = async (i: number): Promise<void> => {
    const ch = CHANNELS[i % CHANNELS.length]!
    const id = `p-${i}`
    const first = Date.now()
    const until = first + RETRY_FOR_MS
    const tries: string[] = []
    while (Date.now() < until) {
      const c = conn ?? (await (connecting ??= connect().then((x) => ((conn = x), (connecting = null), x))))
      if (!c) continue
      const answer = await new Promise<Frame | null>((resolve) => {
        c.answers.set(id, resolve)
        c.ws.send(JSON.stringify({ op: 'pub', ch, data: i, id }))
      })
      if (answer?.op === 'ack') return void acked.set(i, { ch, seq: answer['seq'] as number })
      const why = answer === null ? 'connection closed' : `err ${answer['code']}`
      errors.set(why, (errors.get(why) ?? 0) + 1)
      tries.push(`${new Date(first).toISOString()} +${Date.now() - first}ms node${c.node}: ${why}${answer ? ` ${String(answer['message'])}` : ''}`)
      await sleep(50)
    }
    failedForGood.push(i)
    attempts.set(i, tries)
  }
  const inFlight = new Set<Promise<void>>()
  const started = Date.now()
  const tick = setInterval(() => {
    const due = Math.floor(((Date.now() - started) / 1000) * RATE_PER_S)
    while (sent < due) {
      const p = publish(sent++)
      inFlight.add(p)
      void p.finally(() => inFlight.delete(p))
    }
  }, 5)
  return {
    acked, errors, failedForGood, attempts,
    get sent() {
      return sent
    },
    async stop() {
      clearInterval(tick)
      while (inFlight.size > 0) await Promise.all([...inFlight])
      conn?.ws.terminate()
    },
  }
}

/** Acknowledged messages of its channel that a subscriber has not got. */
function notDelivered(s: Subscriber, acked: ReadonlyMap<number, { ch: string }>): number {
  const got = new Set(s.frames.filter((f) => f.op === 'msg').map((f) => f['data'] as number))
  let n = 0
  for (const [i, a] of acked) if (a.ch === s.ch && !got.has(i)) n++
  return n
}

t.test('a rolling restart (restart mode) of three replicated Live nodes under publishes: each seq in order, nothing lost, no publish failed', async (t) => {
  const metaPort = await freePort()
  const seed = `127.0.0.1:${metaPort}`
  await startNode(t, 'seed', { 'meta-port': metaPort, 'seed-grace': '0', ...FAST })
  const nodes: Managed[] = []
  for (const id of ['live-a', 'live-b', 'live-c']) nodes.push(await managed(t, 'live', { seed, 'node-id': id, 'live-replicas': 2, children: 1, ...FAST }))
  for (const m of nodes) await m.current().waitForLog((l) => l.msg === 'live: routing table applied' && l['nodes'] === 3 && l['listed'] === true, 'all three listed', 20_000)

  const subs = CHANNELS.flatMap((ch) => nodes.map((_, k) => new Subscriber(ch, nodes, k)))
  await Promise.all(subs.map((s) => s.start()))
  const pub = startPublishing(nodes)
  await sleep(1500)
  const run = await runCli(['admin', 'rolling-restart', '--role', 'live', '--seed', seed, '--mode', 'restart', '--grace', '1s', '--min-healthy', '2', '--timeout', '60s'], { env: { ...process.env, ESPRA_SECRET: SECRET } })
  await sleep(1500)
  await pub.stop()
  // Delivery trails the last acks by the load on these cores: wait until each subscriber has every acknowledged message
  // of its channel, at most 20 s (a bound on liveness, not a speed check: what is still missing then counts as lost).
  const undelivered = (): number => subs.reduce((n, s) => n + notDelivered(s, pub.acked), 0)
  for (const until = Date.now() + 20_000; undelivered() > 0 && Date.now() < until;) await sleep(200)
  for (const s of subs) s.stop()
  if (process.env['LIVE_ROLL_LOGS']) {
    const { writeFileSync } = await import('node:fs')
    for (const [k, m] of nodes.entries()) for (const [j, n] of m.starts.entries()) writeFileSync(`${process.env['LIVE_ROLL_LOGS']}/node${k}-${j}.log`, n.logs.map((l) => JSON.stringify(l)).join('\n'))
    writeFileSync(`${process.env['LIVE_ROLL_LOGS']}/failed.json`, JSON.stringify(Object.fromEntries(pub.attempts), null, 1))
    writeFileSync(`${process.env['LIVE_ROLL_LOGS']}/subs.json`, JSON.stringify(subs.map((s) => ({ ch: s.ch, frames: s.frames.filter((f) => f.op !== 'msg' || true).map((f) => (f.op === 'msg' ? [f['seq'], f['data']] : f)) }))))
  }
  t.equal(run.code, 0, `the rolling restart ran: ${run.stderr}`)
  t.same(nodes.map((m) => m.exits), [[75], [75], [75]], 'each node stopped once for its restart and was started again')

  const results = subs.map((s) => ({ s, ...check(s) }))
  const silent = results.flatMap((r) => r.silentJumps)
  const disorder = results.flatMap((r) => r.disorder)
  const gaps = results.flatMap((r) => r.gaps.filter((f) => f['gap'] !== undefined).map((f) => `${f['ch']} ${JSON.stringify(f['gap'])}`))
  const lost = undelivered()
  t.comment(`published ${pub.sent}: ${pub.acked.size} acknowledged, ${pub.failedForGood.length} failed for good, failed attempts ${JSON.stringify(Object.fromEntries(pub.errors))}; ${subs.reduce((n, s) => n + s.reconnects, 0)} reconnects; gaps reported ${gaps.length}${gaps.length ? ` (${gaps.slice(0, 3).join('; ')})` : ''}; acknowledged messages not delivered ${lost}`)
  t.same(silent, [], 'no seq jump without a recovered: false sub-ok (and its gap) before it')
  t.same(disorder, [], 'no seq twice or backwards')
  t.same(gaps, [], 'no gap: every channel was handed over with its history')
  t.equal(lost, 0, 'every acknowledged message reached every subscriber of its channel')
  // Issue #16: runs had publishes answered 5030 past the publisher's 15 s of retries. A restarted node applied the
  // seed's answer to its registration (the table before it joined) after the newer push, so it homed nothing while the
  // others sent it their publishes (answered 5031 for good). LIVE_ROLL_LOGS keeps each failed publish's attempts.
  t.same(pub.failedForGood, [], 'no publish failed for good')
  t.ok(pub.acked.size > 1000, `publishes went on through the restart (${pub.acked.size})`)
  for (const r of results) {
    for (const f of r.gaps) {
      const gap = f['gap'] as { from: number; to: number; cause: string } | undefined
      if (gap) t.ok(['expired', 'overflow', 'lost'].includes(gap.cause), `a gap names its cause (${JSON.stringify(gap)})`)
    }
  }
})
