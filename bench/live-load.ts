/**
 * A load process for bench/live-fanout.ts and bench/live-connections.ts (not
 * run directly): real WebSocket clients (`ws`, permessage-deflate off) driven
 * over IPC.
 *
 *   fanout  N subscribers of one channel spread over the given ports; every
 *           `msg` is checked by seq per subscriber (in order, once, nothing
 *           missing) and its publish-to-receive latency goes into a histogram
 *           (publish time: `data.t`, µs since the epoch).
 *   idle    N connections from the given source addresses, 2 subscriptions
 *           each, then nothing until told to close.
 */
import WebSocket from 'ws'

export const BUCKET_US = 100 // latency histogram: 0.1 ms buckets

export type ToLoad =
  | { type: 'fanout'; ports: number[]; count: number; ch: string; concurrency: number }
  | { type: 'idle'; port: number; count: number; first: number; localAddress: string; concurrency: number }
  | { type: 'report' }
  | { type: 'close' }

export interface FanoutReport {
  type: 'report'
  subscribers: number
  received: number
  /** Frames whose seq was not the previous one + 1 (reordered, duplicated or after a gap). */
  outOfOrder: number
  /** Sum over subscribers of seqs skipped. */
  gaps: number
  closed: number
  /** Per subscriber message counts: [count, how many subscribers]. */
  counts: [number, number][]
  /** Sparse latency histogram: [bucket, count]. */
  hist: [number, number][]
  firstAtUs: number
  lastAtUs: number
}

export type FromLoad =
  | { type: 'ready'; connected: number; failed: number; errors: string[]; subOkSeqs: number[]; ms: number }
  | { type: 'progress'; connected: number }
  | FanoutReport

const send = (m: FromLoad) => process.send!(m)
const nowUs = () => Math.round((performance.timeOrigin + performance.now()) * 1000)

const MSG_PREFIX = Buffer.from('{"op":"msg"')
const SEQ = Buffer.from('"seq":')
const T = Buffer.from('"t":')

/** The non-negative integer starting at `at` in `buf`. */
function intAt(buf: Buffer, at: number): number {
  let v = 0
  for (let i = at; i < buf.length; i++) {
    const c = buf[i]! - 48
    if (c < 0 || c > 9) break
    v = v * 10 + c
  }
  return v
}

const sockets: WebSocket[] = []

async function lanes(count: number, concurrency: number, open: (i: number) => Promise<void>): Promise<void> {
  let next = 0
  await Promise.all(
    Array.from({ length: Math.min(concurrency, count) }, async () => {
      while (next < count) await open(next++)
    }),
  )
}

function fanout(m: Extract<ToLoad, { type: 'fanout' }>): void {
  const last = new Float64Array(m.count)
  const count = new Uint32Array(m.count)
  const hist = new Map<number, number>()
  const subOkSeqs = new Set<number>()
  const errors: string[] = []
  let outOfOrder = 0
  let gaps = 0
  let received = 0
  let closed = 0
  let failed = 0
  let firstAtUs = 0
  let lastAtUs = 0
  const started = Date.now()

  const open = (i: number) =>
    new Promise<void>((resolve) => {
      const ws = new WebSocket(`ws://127.0.0.1:${m.ports[i % m.ports.length]}/ws`, { perMessageDeflate: false, skipUTF8Validation: true })
      let subscribed = false
      ws.on('message', (buf: Buffer) => {
        if (buf.length > MSG_PREFIX.length && buf.compare(MSG_PREFIX, 0, MSG_PREFIX.length, 0, MSG_PREFIX.length) === 0) {
          const at = nowUs()
          const seq = intAt(buf, buf.indexOf(SEQ) + SEQ.length)
          const t = intAt(buf, buf.indexOf(T) + T.length)
          const prev = last[i]!
          if (seq !== prev + 1) {
            outOfOrder++
            if (seq > prev + 1) gaps += seq - prev - 1
          }
          if (seq > prev) last[i] = seq
          count[i]!++
          received++
          if (firstAtUs === 0) firstAtUs = at
          lastAtUs = at
          const b = Math.max(0, Math.floor((at - t) / BUCKET_US))
          hist.set(b, (hist.get(b) ?? 0) + 1)
          return
        }
        const f = JSON.parse(buf.toString('utf8')) as { op: string; seq?: number; message?: string }
        if (f.op === 'sub-ok' && !subscribed) {
          subscribed = true
          last[i] = f.seq!
          subOkSeqs.add(f.seq!)
          resolve()
        } else if (f.op === 'sub-ok') {
          errors.push(`unasked sub-ok (stream restarted) on subscriber ${i}`)
        } else if (f.op === 'err' && errors.length < 5) errors.push(`err: ${f.message}`)
      })
      ws.once('open', () => ws.send(JSON.stringify({ op: 'sub', ch: m.ch })))
      ws.on('error', (err) => {
        if (errors.length < 5) errors.push(err.message)
        if (!subscribed) {
          failed++
          resolve()
        }
      })
      ws.once('close', () => {
        closed++
        if (!subscribed) resolve()
      })
      sockets.push(ws)
    })

  void lanes(m.count, m.concurrency, open).then(() => {
    send({ type: 'ready', connected: m.count - failed, failed, errors, subOkSeqs: [...subOkSeqs], ms: Date.now() - started })
  })

  process.on('message', (q: ToLoad) => {
    if (q.type !== 'report') return
    const byCount = new Map<number, number>()
    for (const c of count) byCount.set(c, (byCount.get(c) ?? 0) + 1)
    send({ type: 'report', subscribers: m.count - failed, received, outOfOrder, gaps, closed, counts: [...byCount], hist: [...hist], firstAtUs, lastAtUs })
  })
}

function idle(m: Extract<ToLoad, { type: 'idle' }>): void {
  const errors = new Map<string, number>()
  let connected = 0
  let failed = 0
  const started = Date.now()
  const progress = setInterval(() => send({ type: 'progress', connected }), 1000)

  const open = (k: number) =>
    new Promise<void>((resolve) => {
      const i = m.first + k
      const ws = new WebSocket(`ws://127.0.0.1:${m.port}/ws`, { perMessageDeflate: false, localAddress: m.localAddress })
      let oks = 0
      const fail = (why: string) => {
        errors.set(why, (errors.get(why) ?? 0) + 1)
        failed++
        resolve()
      }
      ws.on('message', (buf: Buffer) => {
        const f = JSON.parse(buf.toString('utf8')) as { op: string; message?: string }
        if (f.op === 'sub-ok' && ++oks === 2) {
          connected++
          resolve()
        } else if (f.op === 'err') fail(`err ${f.message}`)
      })
      // Two subscriptions: one of 1,000 shared channels and one of 50,000 (nearly one per connection).
      ws.once('open', () => {
        ws.send(JSON.stringify({ op: 'sub', ch: `room:${i % 1000}` }))
        ws.send(JSON.stringify({ op: 'sub', ch: `user:${i}` }))
      })
      ws.on('error', (err) => {
        if (oks < 2) fail((err as NodeJS.ErrnoException).code ?? err.message)
      })
      sockets.push(ws)
    })

  void lanes(m.count, m.concurrency, open).then(() => {
    clearInterval(progress)
    send({ type: 'ready', connected, failed, errors: [...errors].map(([e, n]) => `${e} ×${n}`), subOkSeqs: [], ms: Date.now() - started })
  })
}

process.on('message', (m: ToLoad) => {
  if (m.type === 'fanout') fanout(m)
  else if (m.type === 'idle') idle(m)
  else if (m.type === 'close') {
    for (const ws of sockets) ws.terminate()
    process.exit(0)
  }
})
process.on('disconnect', () => process.exit(0))
