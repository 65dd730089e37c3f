/**
 * Real clients for Live tests: a WebSocket client (the `ws` package) that
 * keeps every frame it receives, SSE and HTTP over node:http, and tokens
 * minted with the test cluster secret.
 */
import { request } from 'node:http'
import { setTimeout as sleep } from 'node:timers/promises'
import { Packr } from 'msgpackr'
import WebSocket from 'ws'
import type { Test } from 'tap'
import { deriveTokenKey, mintToken, type MintOptions } from '../../lib/live/token.js'
import { SECRET, waitFor, type StartedNode } from './cluster.js'

export type Frame = Record<string, unknown> & { op: string }

/**
 * Flags for Live nodes whose test picks channel homes by rendezvous over the
 * node ids: with `--live-homes children` (the default) the homes are the
 * children, `<node>/<index>.<pid>`, different every run. What children
 * homes do is tested in tests/roles/live/child-homes*.test.ts.
 */
export const NODE_HOMES = { 'live-homes': 'node' } as const

const packr = new Packr({ useRecords: false, moreTypes: false, mapsAsObjects: true })
const key = deriveTokenKey(SECRET)

export function token(opts: Partial<MintOptions> = {}): string {
  return mintToken(key, { ttlMs: 3_600_000, ...opts })
}

export interface LiveClient {
  readonly ws: WebSocket
  readonly frames: Frame[]
  readonly closed: Promise<{ code: number; reason: string }>
  send(frame: unknown): void
  sendRaw(data: string | Buffer, binary?: boolean): void
  /** The first frame (at or after `from`) matching, waiting for it. */
  next(pred: (f: Frame) => boolean, what: string, timeoutMs?: number): Promise<Frame>
  /** Sends a frame with a fresh id and waits for the answer carrying that id. */
  call(frame: Record<string, unknown>, timeoutMs?: number): Promise<Frame>
  messages(ch: string): Frame[]
  close(): void
}

let ids = 0

export async function connectLive(t: Test, port: number, opts: { token?: string; msgpack?: boolean } = {}): Promise<LiveClient> {
  const q = opts.token ? `?token=${encodeURIComponent(opts.token)}` : ''
  const ws = new WebSocket(`ws://127.0.0.1:${port}/ws${q}`, opts.msgpack ? ['espra.msgpack'] : [])
  const frames: Frame[] = []
  ws.on('message', (data: Buffer, isBinary: boolean) => frames.push((isBinary ? packr.unpack(data) : JSON.parse(data.toString('utf8'))) as Frame))
  const closed = new Promise<{ code: number; reason: string }>((resolve) => ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() })))
  ws.on('error', () => {})
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve())
    ws.once('unexpected-response', (_req, res) => reject(Object.assign(new Error(`upgrade refused: ${res.statusCode}`), { status: res.statusCode })))
    ws.once('error', reject)
  })
  t.teardown(() => ws.terminate())
  const client: LiveClient = {
    ws, frames, closed,
    send: (frame) => ws.send(opts.msgpack ? packr.pack(frame) : JSON.stringify(frame), { binary: !!opts.msgpack }),
    sendRaw: (data, binary = false) => ws.send(data, { binary }),
    next: (pred, what, timeoutMs = 10_000) => waitFor(what, () => frames.find(pred), timeoutMs),
    async call(frame, timeoutMs) {
      const id = ++ids
      client.send({ ...frame, id })
      return client.next((f) => f['id'] === id, `answer to ${JSON.stringify(frame)}`, timeoutMs)
    },
    messages: (ch) => frames.filter((f) => f.op === 'msg' && f['ch'] === ch),
    close: () => ws.close(),
  }
  return client
}

export interface HttpAnswer {
  status: number
  body: Record<string, unknown>
}

export function http(port: number, method: string, path: string, opts: { body?: string; token?: string; headers?: Record<string, string> } = {}): Promise<HttpAnswer> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = { ...opts.headers }
    if (opts.token) headers['authorization'] = `Bearer ${opts.token}`
    const req = request({ host: '127.0.0.1', port, method, path, headers, agent: false }, (res) => {
      let text = ''
      res.setEncoding('utf8')
      res.on('data', (d: string) => (text += d))
      res.on('end', () => resolve({ status: res.statusCode!, body: JSON.parse(text) as Record<string, unknown> }))
    })
    req.on('error', reject)
    req.end(opts.body)
  })
}

export interface SseStream {
  readonly headers: Record<string, string | string[] | undefined>
  readonly events: { id: string; data: Frame }[]
  next(pred: (e: { id: string; data: Frame }) => boolean, what: string): Promise<{ id: string; data: Frame }>
  close(): void
}

/** An SSE stream on `path`; `extra` headers go with it (e.g. the live host's Host through a proxy). */
export function sse(t: Test, port: number, path: string, lastEventId?: string, extra: Record<string, string> = {}): Promise<SseStream> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = { ...extra, ...(lastEventId ? { 'last-event-id': lastEventId } : {}) }
    const req = request({ host: '127.0.0.1', port, path, headers, agent: false }, (res) => {
      if (res.statusCode !== 200) return reject(Object.assign(new Error(`sse refused: ${res.statusCode}`), { status: res.statusCode }))
      const events: { id: string; data: Frame }[] = []
      let buf = ''
      res.setEncoding('utf8')
      res.on('data', (d: string) => {
        buf += d
        let cut: number
        while ((cut = buf.indexOf('\n\n')) >= 0) {
          const block = buf.slice(0, cut)
          buf = buf.slice(cut + 2)
          let id = ''
          let data = ''
          for (const line of block.split('\n')) {
            if (line.startsWith('id: ')) id = line.slice(4)
            else if (line.startsWith('data: ')) data += line.slice(6)
          }
          if (data) events.push({ id, data: JSON.parse(data) as Frame })
        }
      })
      res.on('error', () => {})
      resolve({ headers: res.headers, events, next: (pred, what) => waitFor(what, () => events.find(pred), 10_000), close: () => req.destroy() })
    })
    req.on('error', () => {})
    t.teardown(() => req.destroy())
    req.end()
  })
}

/**
 * Subscribes every client to every channel (one sequence per channel, whatever the connection), publishes `per` messages to
 * each channel over HTTP to `httpPort` and `per` through `clients[1]`, and checks that every client got every message of
 * every channel in order, once, and the first channel's messages in the same order everywhere.
 */
export async function checkOrderedFanout(t: Test, clients: readonly LiveClient[], channels: readonly string[], httpPort: number, tok: string, per: number): Promise<void> {
  const start = new Map<string, number>()
  for (const c of clients) {
    for (const ch of channels) {
      const ok = await c.call({ op: 'sub', ch })
      t.equal(ok.op, 'sub-ok')
      const seen = start.get(ch)
      if (seen === undefined) start.set(ch, ok['seq'] as number)
      else t.equal(ok['seq'], seen, `${ch}: one sequence whatever the connection`)
    }
  }
  const pubs: Promise<unknown>[] = []
  for (let i = 0; i < per; i++) {
    for (const ch of channels) {
      pubs.push(http(httpPort, 'POST', `/pub/${ch}`, { body: JSON.stringify({ i, via: 'http' }), token: tok }))
      pubs.push(clients[1]!.call({ op: 'pub', ch, data: { i, via: 'ws' } }))
    }
  }
  await Promise.all(pubs)
  for (const c of clients) await waitFor('every message', () => channels.every((ch) => c.messages(ch).length >= 2 * per), 20_000)
  for (const [n, c] of clients.entries()) {
    for (const ch of channels) {
      const seqs = c.messages(ch).map((f) => f['seq'] as number)
      t.same(seqs, Array.from({ length: 2 * per }, (_, i) => start.get(ch)! + 1 + i), `client ${n} ${ch}: ${2 * per} messages, in order, once`)
    }
  }
  const order = (c: LiveClient) => c.messages(channels[0]!).map((f) => JSON.stringify(f['data']))
  for (const c of clients.slice(1)) t.same(order(c), order(clients[0]!), `${channels[0]}: the same order on every connection`)
}

/** Publishes `pub` frames with string ids every few ms until `stop` resolves; resolves every answer (ack or err) by id. */
export async function publishUntil(client: LiveClient, ch: string, prefix: string, stop: Promise<unknown>): Promise<Map<string, Frame>> {
  const sent: string[] = []
  let done = false
  void stop.then(() => (done = true))
  for (let i = 0; !done; i++) {
    const id = `${prefix}-${i}`
    client.send({ op: 'pub', ch, data: id, id })
    sent.push(id)
    await sleep(3)
  }
  const answers = new Map<string, Frame>()
  for (const id of sent) answers.set(id, await client.next((f) => f['id'] === id, `the answer to ${id}`, 30_000))
  return answers
}

/** What every subscriber must see: contiguous sequences (one sequence, no epoch), each acknowledged message at its acknowledged seq. */
export function checkStream(t: Test, frames: Frame[], acked: Frame[], label: string): void {
  const got = frames.map((f) => f['seq'] as number)
  t.ok(got.every((s, i) => i === 0 || s === got[i - 1]! + 1), `${label}: one contiguous sequence, in order, no message twice (${got.length} messages)`)
  const bySeq = new Map(frames.map((f) => [f['seq'] as number, f['data']]))
  const missing = acked.filter((ack) => bySeq.get(ack['seq'] as number) !== ack['id'])
  t.same(missing, [], `${label}: every acknowledged message delivered at its acknowledged seq`)
}

/** The Live peers a node's parent reported last (`--live-homes children`), from its logs: `<node>/<index>.<pid>`. */
export function childPeersOf(node: StartedNode): string[] {
  const up = new Map<string, boolean>()
  for (const l of node.logs) {
    if (l.msg === 'live: a child homes channels') up.set(l['peer'] as string, true)
    else if (typeof l['peer'] === 'string') up.delete(l['peer'])
  }
  return [...up.keys()]
}
