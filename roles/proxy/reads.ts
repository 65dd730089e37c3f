/**
 * How the proxy reads, on its hot path. Plain sockets read without Node's
 * stream machinery: every read of a child lands in one shared buffer (net's
 * `onread`), and what is kept or forwarded of it leaves through copyRead
 * or readText before the read callback returns, so no view of the buffer
 * ever outlives it. That saves a 64 KB allocation and a Readable push per
 * read (docs/benchmarks.md, bench/proxy).
 */
import { Socket, type OnReadOpts, type SocketConstructorOpts } from 'node:net'

const READ_BUFFER = Buffer.allocUnsafe(64 * 1024)

/** Buffer's native latin1 slice (what `toString('latin1', ...)` ends in, without its argument checks). */
const latin1 = (buf: Buffer, start: number, end: number): string => (buf as unknown as { latin1Slice(s: number, e: number): string }).latin1Slice(start, end)

/** `onread` options for a socket: `onRead(n)` gets the size of each read, to take with copyRead or readText. */
export function onread(onRead: (n: number) => void): OnReadOpts {
  return {
    buffer: READ_BUFFER,
    callback(n) {
      onRead(n)
      return true
    },
  }
}

/** The n bytes just read, copied. */
export function copyRead(n: number): Buffer {
  const chunk = Buffer.allocUnsafe(n)
  READ_BUFFER.copy(chunk, 0, 0, n)
  return chunk
}

/** The n bytes just read, as latin1 text (one char per byte: written back as latin1, they are the same bytes). */
export function readText(n: number): string {
  return latin1(READ_BUFFER, 0, n)
}

/**
 * net.Server cannot accept a socket with `onread`: the accepted socket
 * (paused by the server's `pauseOnConnect`, not a byte read yet) hands its
 * handle over to a new Socket that reads with it, and is dropped.
 */
export function adopt(accepted: Socket, read: OnReadOpts): Socket {
  const owner = accepted as unknown as { _handle: unknown }
  const handle = owner._handle
  owner._handle = null
  return new Socket({ handle, onread: read } as SocketConstructorOpts)
}

/**
 * Heads are looked for in the text of this many bytes first (a string search
 * beats a Buffer one when the text is needed anyway); a read up to this size
 * may be handled as text.
 */
export const HEAD_PROBE = 2048
const CRLFCRLF = Buffer.from('\r\n\r\n', 'latin1')

/** The head starting at buf[off], through its CRLF CRLF, as text; null when it does not end in buf. */
export function headAt(buf: Buffer, off: number): string | null {
  const probeEnd = Math.min(buf.length, off + HEAD_PROBE)
  const probe = latin1(buf, off, probeEnd)
  const i = probe.indexOf('\r\n\r\n')
  if (i >= 0) return i + 4 === probe.length ? probe : probe.slice(0, i + 4)
  if (probeEnd === buf.length) return null
  const idx = buf.indexOf(CRLFCRLF, probeEnd - 3)
  return idx < 0 ? null : latin1(buf, off, idx + 4)
}

/**
 * buf[off..] holds a LF with no CR before it: a head with one never ends in
 * CRLF CRLF, and is malformed anyway (RFC 9112 §2.2: no bare LF here).
 */
export function hasBareLf(buf: Buffer, off: number): boolean {
  for (let i = buf.indexOf(0x0a, off); i >= 0; i = buf.indexOf(0x0a, i + 1)) {
    if (i === off || buf[i - 1] !== 0x0d) return true
  }
  return false
}
