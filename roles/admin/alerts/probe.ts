/**
 * One probe of a node's public `GET /_espra/health`, as an off-site monitor
 * would make it: a fresh connection, a deadline, the answer's status, body
 * and latency. A 200 is ok, and so is a 503 from a draining node (it said so:
 * taken out of service on purpose); anything else failed.
 */
import { request } from 'node:http'
import { HEALTH_PATH } from '../../../lib/http/health.js'
import type { ProbeResult } from '../../../lib/alerts/store.js'

/** Bytes of a health body read at most. */
const MAX_BODY = 64 * 1024

export interface Probe {
  readonly result: ProbeResult
  /** The JSON body when there was one. */
  readonly body: Record<string, unknown> | null
}

export function probeHealth(host: string, port: number, timeoutMs: number): Promise<Probe> {
  const at = Date.now()
  const started = performance.now()
  return new Promise((resolve) => {
    let settled = false
    const done = (status: number, body: Record<string, unknown> | null, error: string | null): void => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      const draining = status === 503 && body?.['draining'] === true
      const ok = error === null && (status === 200 || draining)
      const health = typeof body?.['health'] === 'string' ? body['health'] : null
      resolve({
        result: { at, status, latencyMs: Math.round((performance.now() - started) * 10) / 10, ok, health, error: ok ? null : (error ?? `HTTP ${status}`) },
        body,
      })
    }
    const req = request({ host: host.replace(/^\[|\]$/g, ''), port, path: HEALTH_PATH, method: 'GET', agent: false, headers: { 'user-agent': 'espra-node-probe', connection: 'close' } }, (res) => {
      const chunks: Buffer[] = []
      let size = 0
      res.on('data', (chunk: Buffer) => {
        size += chunk.length
        if (size <= MAX_BODY) chunks.push(chunk)
      })
      res.on('end', () => {
        let body: Record<string, unknown> | null = null
        try {
          const parsed: unknown = JSON.parse(Buffer.concat(chunks).toString('utf8'))
          if (typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed)) body = parsed as Record<string, unknown>
        } catch {
          // not JSON: the status decides
        }
        done(res.statusCode ?? 0, body, body === null && res.statusCode === 200 ? 'the health answer is not JSON' : null)
      })
      res.on('error', (err) => done(0, null, err.message))
    })
    const timer = setTimeout(() => {
      done(0, null, `no answer within ${timeoutMs} ms`)
      req.destroy()
    }, timeoutMs)
    req.on('error', (err: NodeJS.ErrnoException) => done(0, null, err.code ?? err.message))
    req.end()
  })
}
