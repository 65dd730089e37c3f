/**
 * uWS listens with SO_REUSEPORT, so a stale process on the same port would
 * silently share it with a new node. Before a node starts we bind the port
 * exclusively once: if anything holds it, that is a clear start-up error.
 */
import { createServer } from 'node:net'
import { createError } from '../core/errors.js'

export function assertPortFree(host: string, port: number, option: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', (err: NodeJS.ErrnoException) => {
      reject(
        createError('ESPRA_ERR_NODE_LISTEN', { option, host, port, reason: err.code ?? err.message }),
      )
    })
    server.listen({ host, port, exclusive: true }, () => server.close(() => resolve()))
  })
}
