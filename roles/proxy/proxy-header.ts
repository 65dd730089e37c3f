/**
 * A PROXY protocol v2 header on the TLS port: it comes before the TLS
 * ClientHello, so it is read off the raw socket of a trusted peer before the
 * socket is wrapped in TLS (on the plain port the connection reads it
 * itself: ./connection.ts). The rule and the parser: lib/core/client-address.ts.
 */
import type { Socket } from 'node:net'
import { parseProxyV2 } from '../../lib/core/client-address.js'

/** The most a header can be: 16 bytes and a 16-bit length. */
const MAX_HEADER = 16 + 0xffff

/**
 * Reads what `socket` (accepted with `pauseOnConnect`) starts with: a PROXY
 * v2 header is taken off and `done` gets the client it names (null for a
 * LOCAL header); anything else is put back and `done` gets null. The socket
 * is left paused with what follows unread. A malformed header, a close, or
 * nothing decisive within `timeoutMs` destroys the socket (no HTTP answer
 * can be given before TLS) and `done` is not called.
 */
export function readProxyHeader(socket: Socket, timeoutMs: number, done: (source: string | null) => void): void {
  let buf: Buffer | null = null
  const finish = (): void => {
    clearTimeout(timer)
    socket.off('data', onData)
    socket.pause()
  }
  const timer = setTimeout(() => {
    finish()
    socket.destroy()
  }, timeoutMs)
  const onData = (chunk: Buffer): void => {
    buf = buf === null ? chunk : Buffer.concat([buf, chunk])
    const header = parseProxyV2(buf)
    switch (header.kind) {
      case 'incomplete':
        if (buf.length > MAX_HEADER) {
          finish()
          socket.destroy()
        }
        return
      case 'invalid':
        finish()
        return void socket.destroy()
      case 'absent':
        finish()
        socket.unshift(buf)
        return done(null)
      case 'header':
        finish()
        if (header.length < buf.length) socket.unshift(buf.subarray(header.length))
        return done(header.source)
    }
  }
  socket.on('error', () => {})
  socket.once('close', () => clearTimeout(timer))
  socket.on('data', onData)
  socket.resume()
}
