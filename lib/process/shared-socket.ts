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
import { getSystemErrorName } from 'node:util'
import { createError } from '../core/errors.js'

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
  /** 0, or a negative errno: libuv reports a failed bind (EADDRINUSE) here, not from the bind itself. */
  getsockname(out: { port?: number }): number
  close(): void
}

/**
 * Node's own helper that binds a TCP handle without listening (exported by
 * `node:net` for cluster, stable since node 0.x, not in its types).
 */
type CreateServerHandle = (address: string, port: number, addressType: 4 | 6, fd?: number, flags?: number) => TcpHandle | number
const createServerHandle = (net as unknown as { _createServerHandle: CreateServerHandle })._createServerHandle

/**
 * Binds `host:port` (the port `option` sets) without listening. libuv defers
 * a failed bind (EADDRINUSE) to the listen, which here happens in the
 * children: their listen would then bind the socket afresh, to a random port
 * on every interface. So the bound address is read back now, and a socket
 * not bound where asked is an `ESPRA_ERR_NODE_LISTEN` naming the option.
 */
export async function bindSharedSocket(host: string, port: number, option = '--port'): Promise<SharedSocket> {
  const family = net.isIP(host)
  const address = family === 0 ? (await lookup(host)).address : host
  const fail = (errno: number): never => {
    throw createError('ESPRA_ERR_NODE_LISTEN', { option, host, port, reason: getSystemErrorName(errno) })
  }
  const handle = createServerHandle(address, port, net.isIP(address) === 6 ? 6 : 4)
  if (typeof handle === 'number') return fail(handle)
  const bound: { port?: number } = {}
  const err = handle.getsockname(bound)
  if (err !== 0 || bound.port === undefined || (port !== 0 && bound.port !== port)) {
    handle.close()
    return fail(err !== 0 ? err : -98)
  }
  return { fd: handle.fd, close: () => handle.close() }
}
