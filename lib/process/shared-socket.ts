/**
 * The public socket of a role that brings its own listener (`Role.listen`).
 * The parent binds it once, without listening, and every child inherits it
 * as fd {@link LISTEN_FD} and listens on it, which is what node's cluster does
 * in its SCHED_NONE mode. One socket means one accept queue: whichever child
 * accepts first serves the connection, and a child that stops accepting
 * (reload, drain, crash) leaves nothing stranded in a queue of its own.
 */
import { lookup } from 'node:dns/promises'
import net from 'node:net'
import { EspraError } from '../core/errors.js'

/** The fd a child finds the shared socket on: after stdin, stdout, stderr and the IPC channel. */
export const LISTEN_FD = 4

/** The fd of the role's `i`-th extra port (`Role.listenPorts`): right after {@link LISTEN_FD}. */
export const extraListenFd = (i: number): number => LISTEN_FD + 1 + i

export interface SharedSocket {
  readonly fd: number
  close(): void
}

interface TcpHandle {
  readonly fd: number
  close(): void
}

/**
 * Node's own helper that binds a TCP handle without listening (exported by
 * `node:net` for cluster, stable since node 0.x, not in its types).
 */
type CreateServerHandle = (address: string, port: number, addressType: 4 | 6, fd?: number, flags?: number) => TcpHandle | number
const createServerHandle = (net as unknown as { _createServerHandle: CreateServerHandle })._createServerHandle

export async function bindSharedSocket(host: string, port: number): Promise<SharedSocket> {
  const family = net.isIP(host)
  const address = family === 0 ? (await lookup(host)).address : host
  const handle = createServerHandle(address, port, net.isIP(address) === 6 ? 6 : 4)
  if (typeof handle === 'number') {
    throw new EspraError('ESPRA_ERR_LISTEN', `cannot listen on ${host}:${port} (errno ${-handle}); is another node running?`, { host, port })
  }
  return { fd: handle.fd, close: () => handle.close() }
}
