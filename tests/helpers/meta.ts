/**
 * Helpers for meta-port tests: a logger that keeps its lines, a seed config
 * on a free port, and a raw TCP peer that speaks (or mangles) the protocol by
 * hand. Everything here uses real sockets.
 */
import { connect, type Socket } from 'node:net'
import { join } from 'node:path'
import { pino, type Logger } from 'pino'
import { FrameDecoder, encodeFrame } from '../../lib/codec/frame.js'
import { loadConfig, type NodeConfig } from '../../lib/core/config.js'
import { clientProof, deriveMetaKey, newNonce } from '../../lib/transport/meta-auth.js'
import type { NodeInfo } from '../../lib/transport/meta-shapes.js'
import { testDir } from './temp-dir.js'

export const SECRET = 'test-cluster-secret-0123456789'

export interface LogLine {
  level: string
  msg: string
  [key: string]: unknown
}

/** A pino logger whose lines land in `lines` (parsed), synchronously. */
export function captureLog(level = 'debug'): { log: Logger; lines: LogLine[] } {
  const lines: LogLine[] = []
  const log = pino(
    { level, formatters: { level: (label) => ({ level: label }) } },
    { write: (s: string) => void lines.push(JSON.parse(s) as LogLine) },
  )
  return { log, lines }
}

/** A seed config bound to loopback on a free port (metaPort 0), with its own fresh data directory. */
export function seedConfig(overrides: Partial<Record<keyof NodeConfig, unknown>> = {}): NodeConfig {
  const base = loadConfig({ flags: { role: 'seed', nodeId: 'seed-test' }, env: { ESPRA_SECRET: SECRET } })
  const dataDir = testDir('espra-seed-data-')
  return Object.freeze({ ...base, metaPort: 0, bind: '127.0.0.1', dataDir, blobDir: join(dataDir, 'blobs'), ...overrides }) as NodeConfig
}

export function nodeInfo(id: string, overrides: Partial<NodeInfo> = {}): NodeInfo {
  return {
    id, role: 'live', region: 'us-1', address: '127.0.0.1', port: 9000, metricsPort: 0, pid: 1, version: '0.1.0',
    children: 1, childrenWanted: 1, build: null, health: 'ok', startedAt: Date.now(), ...overrides,
  }
}

export const heartbeat = (health: NodeInfo['health'] = 'ok', children = 1) => ({
  health, children, build: null, load: { connections: 0, rps: 0, rssBytes: 1, lagMs: 0 },
})

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

/** Polls until `check` returns a truthy value or the time runs out. */
export async function until<T>(check: () => T | null | undefined | false | 0 | '', timeoutMs = 3000, what = 'condition'): Promise<T> {
  const end = Date.now() + timeoutMs
  for (;;) {
    const value = check()
    if (value) return value as T
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await sleep(10)
  }
}

/** A hand-driven peer on a raw socket. */
export class RawPeer {
  readonly socket: Socket
  readonly closed: Promise<void>
  private readonly decoder = new FrameDecoder(16 * 1024 * 1024)
  private readonly frames: Record<string, unknown>[] = []
  private waiter: (() => void) | null = null

  private constructor(socket: Socket) {
    this.socket = socket
    socket.on('data', (chunk) => {
      for (const v of this.decoder.push(chunk)) this.frames.push(v as Record<string, unknown>)
      this.waiter?.()
    })
    socket.on('error', () => {})
    this.closed = new Promise((resolve) => socket.once('close', () => resolve()))
    void this.closed.then(() => this.waiter?.())
  }

  static open(port: number): Promise<RawPeer> {
    return new Promise((resolve, reject) => {
      const socket = connect({ host: '127.0.0.1', port }, () => resolve(new RawPeer(socket)))
      socket.once('error', reject)
    })
  }

  get isClosed(): boolean {
    return this.socket.destroyed
  }

  /** The next frame; null when the connection closed first. */
  async next(timeoutMs = 3000): Promise<Record<string, unknown> | null> {
    const end = Date.now() + timeoutMs
    while (this.frames.length === 0) {
      if (this.socket.destroyed || this.socket.readableEnded) return null
      if (Date.now() > end) throw new Error('no frame in time')
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 20)
        this.waiter = () => {
          clearTimeout(timer)
          resolve()
        }
      })
    }
    return this.frames.shift()!
  }

  write(value: unknown): void {
    this.socket.write(encodeFrame(value))
  }

  writeBytes(bytes: Buffer): void {
    this.socket.write(bytes)
  }

  /** Reads hello and answers auth; returns the seed's answer (welcome or error). */
  async handshake(opts: { secret?: string; v?: number; kind?: string; id?: string } = {}): Promise<Record<string, unknown> | null> {
    const hello = await this.next()
    if (!hello || hello['t'] !== 'hello') throw new Error(`expected hello, got ${JSON.stringify(hello)}`)
    const nonce = newNonce()
    const key = deriveMetaKey(opts.secret ?? SECRET)
    const peer = opts.id === undefined ? { kind: opts.kind ?? 'admin' } : { kind: opts.kind ?? 'node', id: opts.id }
    this.write({ t: 'auth', v: opts.v ?? 1, nonce, proof: clientProof(key, hello['nonce'] as Buffer, nonce), peer })
    return this.next()
  }

  destroy(): void {
    this.socket.destroy()
  }
}
