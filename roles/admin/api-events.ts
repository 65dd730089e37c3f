/**
 * `GET /api/events`: the seed's cluster events (`joined`, `left`, `health`,
 * the pushes `admin nodes --watch` redraws on) as Server-Sent Events. Each
 * event is `id: <n>`, `event: <type>`, `data: <the seed's event as JSON>`;
 * the id counts up per stream from 1. The seed keeps no history, so there
 * is nothing to resume: a client that reconnects reads `GET /api/nodes` for
 * the state and follows the events from there (Last-Event-ID is ignored).
 * `event: seed` says when this admin node's link to the seed drops or comes
 * back (events are lost while it is down). A comment line `: heartbeat`
 * goes out at once and every {@link HEARTBEAT_MS}, so proxies keep the
 * stream open and clients notice a dead one. With `?nodes=1` the stream also
 * carries `event: nodes`, the whole node list every 2 s (what the dashboard
 * redraws its figures from: load and heartbeat age change without events).
 */
import { answerLater } from '../../lib/http/server.js'
import type { HttpResponse } from '../../lib/http/uws.js'
import type { AdminSeedLink } from './api-seed-link.js'
import type { RegistryWatch } from './dashboard/registry-watch.js'

export const HEARTBEAT_MS = 15_000
/** Bytes a stream may fall behind by before it is dropped (the client reconnects). */
const MAX_BEHIND = 1024 ** 2

export interface EventStream {
  /** Ends the stream (the client reconnects, and must authenticate again). */
  end(): void
  readonly closed: boolean
}

export interface EventStreams {
  /** Starts a stream on `res` (a GET already authorised); `nodes`: with node-list snapshots. */
  open(res: HttpResponse, nodes?: boolean): EventStream
  /** Ends every stream (the child is stopping). */
  close(): void
}

export function createEventStreams(link: AdminSeedLink, track: () => () => void, watch: RegistryWatch): EventStreams {
  const streams = new Set<{ end(): void; write(text: string): void }>()
  // Set by close(): a stream asked for while the child drains is ended at once; the client reconnects elsewhere.
  let ending = false
  const heartbeat = setInterval(() => streams.forEach((s) => s.write(': heartbeat\n\n')), HEARTBEAT_MS)
  heartbeat.unref()

  return {
    open(res, nodes = false) {
      let closed = false
      let behind = 0
      let seq = 0
      const untrack = track()
      const stop = (): void => {
        closed = true
        streams.delete(stream)
        offEvent()
        offLink()
        offNodes()
        untrack()
      }
      const stream = {
        get closed(): boolean {
          return closed
        },
        write(text: string): void {
          if (closed) return
          answerLater(res, () => {
            if (!res.write(text) || behind > 0) behind += text.length
          })
          if (behind > MAX_BEHIND) stream.end()
        },
        end(): void {
          if (closed) return
          stop()
          answerLater(res, () => res.end())
        },
      }
      const send = (type: string, data: unknown): void => stream.write(`id: ${++seq}\nevent: ${type}\ndata: ${JSON.stringify(data)}\n\n`)
      const offEvent = link.onEvent((event) => send(event.type, event))
      const offLink = link.onLink((connected) => send('seed', { connected, at: Date.now() }))
      const offNodes = nodes ? watch.subscribe((list) => send('nodes', { at: Date.now(), nodes: list })) : () => {}
      streams.add(stream)
      res.onWritable(() => {
        behind = 0
        return true
      })
      res.onAborted(() => {
        if (!closed) stop()
      })
      res.writeStatus('200 OK').writeHeader('Content-Type', 'text/event-stream').writeHeader('Cache-Control', 'no-cache').writeHeader('X-Accel-Buffering', 'no')
      res.write(`retry: 2000\n: heartbeat\n\n`)
      send('seed', { connected: link.client.connected, at: Date.now() })
      if (ending) stream.end()
      return stream
    },
    close() {
      ending = true
      clearInterval(heartbeat)
      for (const s of [...streams]) s.end()
    },
  }
}
