/**
 * uWS listens with SO_REUSEPORT, so a stale process on the same port would
 * silently share it with a new node. Before a node starts we bind the port
 * exclusively once: if anything holds it, that is a clear start-up error.
 */
import { createServer } from 'node:net'
import { EspraError } from '../core/errors.js'

export function assertPortFree(host: string, port: number, option: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', (err: NodeJS.ErrnoException) => {
      reject(
        new EspraError('ESPRA_ERR_NODE_LISTEN', `${option}: cannot listen on ${host}:${port} (${err.code ?? err.message}); is another node running?`, {
          option,
          port,
        }),
      )
    })
    server.listen({ host, port, exclusive: true }, () => server.close(() => resolve()))
  })
}
