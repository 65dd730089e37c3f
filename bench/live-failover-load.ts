/**
 * A load process for bench/live-failover.ts (not run directly): WebSocket
 * subscribers (`ws`, permessage-deflate off) connecting through the proxy,
 * with the client behaviour of docs/live-protocol.md: on a drop, reconnect
 * through the proxy (100 ms doubling to 1 s, plus jitter) and `sub` again
 * with `since` = the last seq seen. Every delivered message is counted by its
 * publish index (`data.i`), so the tally can say, for a range of publishes,
 * which acknowledged ones a subscriber never got and which it got twice.
 */
import WebSocket from 'ws'

export type ToFailoverLoad =
  | { type: 'start'; port: number; host: string; first: number; count: number; channels: number; concurrency: number }
  | { type: 'tally'; phases: { name: string; lo: number; hi: number }[]; unacked: number[] }
  | { type: 'close' }

/** A server-reported gap (a `sub-ok` with `recovered: false` and `gap`), at `atMs` (epoch ms). */
export interface GapSeen { atMs: number; cause: string; from: number; to: number }
/** A subscriber's stream stopped at `fromMs` (its connection dropped, or an unasked `sub-ok`) and its next message came at `toMs` (0: never). */
export interface Resume { fromMs: number; toMs: number; why: 'drop' | 'restart' }

export type FromFailoverLoad =
  | { type: 'ready'; connected: number; failed: number; errors: string[]; ms: number }
  | { type: 'tally'; phases: { name: string; lost: number; duplicates: number; expected: number }[]; gaps: GapSeen[]; resumes: Resume[]; reconnects: number; errors: string[]; dupSamples: string[]; silentJumps: number; lateGaps: number; jumpSamples: string[] }

const send = (m: FromFailoverLoad) => process.send!(m)
export const channelOf = (i: number, channels: number) => `failover:${i % channels}`

interface Sub {
  ch: number
  last: number | null
  /** Deliveries per publish index of this channel (index i → slot floor(i / channels)). */
  got: Uint8Array
  open: boolean
  stalledAt: number
  stalledWhy: Resume['why']
  attempt: number
  /** Subscribed at least once (a subscriber that never got in is left out of the tally). */
  ever: boolean
  /** Connections so far, the `since` the current one sent, messages on it since its first sub-ok. */
  conn: number
  since: number | null
  onConn: number
  /** A `sub-ok` with `recovered: false` came: the next seq may jump. */
  jumpOk: boolean
  /** A silent jump on this connection not yet followed by a `recovered: false` sub-ok. */
  jumped: boolean
}

const sockets = new Set<WebSocket>()
let stopping = false

function start(m: Extract<ToFailoverLoad, { type: 'start' }>): void {
  const subs: Sub[] = Array.from({ length: m.count }, (_, k) => ({ ch: (m.first + k) % m.channels, last: null, got: new Uint8Array(1024), open: false, stalledAt: 0, stalledWhy: 'drop', attempt: 0, ever: false, conn: 0, since: null, onConn: 0, jumpOk: true, jumped: false }))
  const gaps: GapSeen[] = []
  const resumes: Resume[] = []
  const errors: string[] = []
  let reconnects = 0
  let connected = 0
  let failed = 0
  const started = Date.now()
  const note = (e: string) => void (errors.length < 10 && errors.push(e))

  const dupSamples: string[] = []
  const jumpSamples: string[] = []
  let silentJumps = 0
  let lateGaps = 0
  const record = (s: Sub, i: number, seq: number, prev: number | null) => {
    const slot = Math.floor(i / m.channels)
    if (slot >= s.got.length) {
      const bigger = new Uint8Array(Math.max(slot + 1, s.got.length * 2))
      bigger.set(s.got)
      s.got = bigger
    }
    if (s.got[slot]! < 255) s.got[slot]!++
    // What a duplicate looked like: the same seq again (sent twice) or a new seq (stored twice).
    if (s.got[slot]! > 1 && dupSamples.length < 5) dupSamples.push(`publish ${i} again on ${channelOf(s.ch, m.channels)} as seq ${seq} (last seq seen ${prev}; connection ${s.conn}, sub with since ${s.since}, ${s.onConn} messages on it before) at ${new Date().toISOString()}`)
  }

  /** Connects subscriber k; resolves on its first sub-ok (or failure) when `first`. */
  const connect = (k: number, first: boolean) =>
    new Promise<void>((resolve) => {
      const s = subs[k]!
      const ws = new WebSocket(`ws://127.0.0.1:${m.port}/ws`, { perMessageDeflate: false, headers: { host: m.host, cookie: `espra_session=sub-${m.first + k}` } })
      sockets.add(ws)
      let subscribed = false
      ws.on('message', (buf: Buffer) => {
        const f = JSON.parse(buf.toString('utf8')) as { op: string; seq?: number; id?: number; recovered?: boolean; gap?: { from: number; to: number; cause: string }; data?: { i: number }; message?: string }
        if (f.op === 'msg') {
          if (s.stalledAt > 0) {
            resumes.push({ fromMs: s.stalledAt, toMs: Date.now(), why: s.stalledWhy })
            s.stalledAt = 0
          }
          const prev = s.last
          // Within one home's life seqs grow by 1: a jump with no gap reported before it is a silent loss.
          if (prev !== null && f.seq! > prev + 1 && !s.jumpOk) {
            silentJumps++
            s.jumped = true
            if (jumpSamples.length < 5) jumpSamples.push(`${channelOf(s.ch, m.channels)} seq ${prev} -> ${f.seq} (connection ${s.conn}, since ${s.since}, ${s.onConn} messages on it) at ${new Date().toISOString()}`)
          }
          s.jumpOk = false
          s.last = f.seq!
          if (typeof f.data?.i === 'number') record(s, f.data.i, f.seq!, prev)
          s.onConn++
        } else if (f.op === 'sub-ok') {
          if (f.recovered === false) {
            s.jumpOk = true
            // The gap was reported, but only after messages of the new sequence.
            if (s.jumped) lateGaps++
            s.jumped = false
          }
          if (f.recovered === false && f.gap) gaps.push({ atMs: Date.now(), cause: f.gap.cause, from: f.gap.from, to: f.gap.to })
          if (f.id === undefined && s.stalledAt === 0) {
            // Unasked: the channel's stream restarted (its home moved or died).
            s.stalledAt = Date.now()
            s.stalledWhy = 'restart'
          }
          if (f.recovered === false || s.last === null) s.last = f.seq!
          if (!subscribed) {
            subscribed = true
            s.open = true
            s.ever = true
            s.attempt = 0
            if (first) connected++
            resolve()
          }
        } else if (f.op === 'err') note(`err ${f.message}`)
      })
      s.conn++
      s.jumped = false
      s.onConn = 0
      ws.once('open', () => {
        s.since = s.last
        ws.send(JSON.stringify({ op: 'sub', ch: channelOf(s.ch, m.channels), id: 1, ...(s.since !== null ? { since: s.since } : {}) }))
      })
      ws.on('error', (err) => note(err.message))
      ws.once('close', () => {
        sockets.delete(ws)
        s.open = false
        if (!subscribed && first) {
          failed++
          resolve()
          return
        }
        if (stopping) return
        if (s.stalledAt === 0) {
          s.stalledAt = Date.now()
          s.stalledWhy = 'drop'
        }
        reconnects++
        const delay = Math.min(1000, 100 * 2 ** s.attempt++) + Math.random() * 100
        setTimeout(() => void connect(k, false), delay)
      })
    })

  let next = 0
  void Promise.all(
    Array.from({ length: Math.min(m.concurrency, m.count) }, async () => {
      while (next < m.count) await connect(next++, true)
    }),
  ).then(() => send({ type: 'ready', connected, failed, errors: errors.splice(0), ms: Date.now() - started }))

  process.on('message', (q: ToFailoverLoad) => {
    if (q.type !== 'tally') return
    const unacked = new Set(q.unacked)
    const phases = q.phases.map(({ name, lo, hi }) => {
      let lost = 0
      let duplicates = 0
      let expected = 0
      for (const s of subs) {
        if (!s.ever) continue
        // The publishes of this subscriber's channel in [lo, hi).
        for (let i = lo + ((s.ch - (lo % m.channels) + m.channels) % m.channels); i < hi; i += m.channels) {
          if (unacked.has(i)) continue
          expected++
          const n = s.got[Math.floor(i / m.channels)] ?? 0
          if (n === 0) lost++
          else duplicates += n - 1
        }
      }
      return { name, lost, duplicates, expected }
    })
    send({ type: 'tally', phases, gaps, resumes, reconnects, errors, dupSamples, silentJumps, lateGaps, jumpSamples })
  })
}

process.on('message', (m: ToFailoverLoad) => {
  if (m.type === 'start') start(m)
  else if (m.type === 'close') {
    stopping = true
    for (const ws of sockets) ws.terminate()
    process.exit(0)
  }
})
process.on('disconnect', () => process.exit(0))
