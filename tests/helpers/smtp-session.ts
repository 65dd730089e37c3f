/**
 * Raw SMTP over a socket, for tests that need byte-exact control of what the
 * client sends (nodemailer folds long lines and would never send them).
 */
import net from 'node:net'

export interface SmtpSession {
  /** Sends one command line (CRLF added) and resolves with the last line of its reply. */
  command(line: string): Promise<string>
  /** Sends raw bytes (a message's data, with its terminating `.`) and resolves with the reply. */
  data(bytes: string | Buffer): Promise<string>
  /** Sends raw bytes without waiting for a reply; resolves once the socket took them. */
  write(bytes: string | Buffer): Promise<void>
  /** True once the server closed the connection. */
  readonly closed: boolean
  close(): void
}

/** Connects and reads the greeting (returned as `greeting`). */
export async function openSmtp(port: number): Promise<SmtpSession & { greeting: string }> {
  const socket = net.connect(port, '127.0.0.1')
  socket.setNoDelay(true)
  let buffer = ''
  let closed = false
  const replies: string[] = []
  const waiters: ((line: string) => void)[] = []
  socket.on('data', (chunk: Buffer) => {
    buffer += chunk.toString('latin1')
    let i
    while ((i = buffer.indexOf('\r\n')) !== -1) {
      const line = buffer.slice(0, i)
      buffer = buffer.slice(i + 2)
      // The last line of a reply: three digits and a space.
      if (!/^\d{3} /.test(line)) continue
      const waiter = waiters.shift()
      if (waiter) waiter(line)
      else replies.push(line)
    }
  })
  socket.on('error', () => undefined)
  socket.on('close', () => {
    closed = true
    for (const w of waiters.splice(0)) w('(closed)')
  })
  const next = (): Promise<string> => new Promise((resolve) => {
    if (replies.length > 0) return resolve(replies.shift()!)
    if (closed) return resolve('(closed)')
    waiters.push(resolve)
  })
  const greeting = await next()
  const write = (bytes: string | Buffer): Promise<string> => {
    const answer = next()
    socket.write(bytes)
    return answer
  }
  return {
    greeting,
    command: (line) => write(`${line}\r\n`),
    data: write,
    write: (bytes) => new Promise((resolve) => socket.write(bytes, () => resolve())),
    get closed() {
      return closed
    },
    close: () => socket.destroy(),
  }
}
