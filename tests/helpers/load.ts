/**
 * A steady keep-alive load: a fixed number of connections, each sending the
 * next request as soon as the last answer arrived, counting every failure.
 */
import { Agent } from 'node:http'
import { get } from './cluster.js'

export interface LoadResult {
  ok: number
  /** Answers with another status than the expected one, by status. */
  badStatus: Record<number, number>
  /** Transport errors (resets, refused, hang-ups), by code. */
  errors: Record<string, number>
  /** Responses that asked the client to close the connection. */
  closes: number
}

export interface Load {
  readonly result: LoadResult
  /** Stops sending; resolves once every connection's last request has settled. */
  stop(): Promise<LoadResult>
  /** Resolves once every connection stopped by itself (see `until`). */
  finished(): Promise<LoadResult>
}

export interface LoadOptions {
  connections: number
  path: string
  expectStatus?: number
  /** Sent with every request (e.g. the live host's Host header through a proxy). */
  headers?: Record<string, string>
  /** A connection stops by itself after an answer for which this returns true. */
  until?: (status: number) => boolean
}

export function startLoad(port: number, opts: LoadOptions): Load {
  const agent = new Agent({ keepAlive: true, maxSockets: opts.connections, maxFreeSockets: opts.connections })
  const result: LoadResult = { ok: 0, badStatus: {}, errors: {}, closes: 0 }
  let running = true
  const loop = async (): Promise<void> => {
    while (running) {
      try {
        const answer = await get(port, opts.path, agent, opts.headers)
        if (answer.status === (opts.expectStatus ?? 200)) result.ok++
        else result.badStatus[answer.status] = (result.badStatus[answer.status] ?? 0) + 1
        if (answer.headers['connection'] === 'close') result.closes++
        if (opts.until?.(answer.status)) return
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code ?? (err as Error).message
        result.errors[code] = (result.errors[code] ?? 0) + 1
      }
    }
  }
  const loops = Array.from({ length: opts.connections }, loop)
  return {
    result,
    async stop() {
      running = false
      await Promise.all(loops)
      agent.destroy()
      return result
    },
    async finished() {
      await Promise.all(loops)
      agent.destroy()
      return result
    },
  }
}
