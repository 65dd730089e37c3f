/**
 * A TCP proxy in front of a seed that can stop passing the seed's bytes back:
 * what a lost answer looks like to the client (its request arrived, the reply
 * never does). It holds once `hold(true)` is called, or once a client has sent
 * bytes containing `trigger`; `sent` keeps what clients sent, as latin1.
 */
import { connect, createServer, type Socket } from 'node:net'
import type { Test } from 'tap'

export interface HoldingProxy {
  readonly address: string
  hold(on: boolean): void
  held(): boolean
  sent(): string
}

export async function holdingProxy(t: Test, address: string, trigger?: string): Promise<HoldingProxy> {
  const [host, port] = address.split(':')
  const sockets = new Set<Socket>()
  let held = false
  let sent = ''
  const server = createServer((down) => {
    const up = connect(Number(port), host)
    sockets.add(down).add(up)
    down.on('data', (d: Buffer) => {
      sent += d.toString('latin1')
      if (trigger !== undefined && sent.includes(trigger)) held = true
      up.write(d)
    })
    up.on('data', (d) => held || down.write(d))
    const end = () => {
      up.destroy()
      down.destroy()
    }
    down.on('close', end).on('error', end)
    up.on('close', end).on('error', end)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => {
    for (const s of sockets) s.destroy()
    server.close()
  })
  return {
    address: `127.0.0.1:${(server.address() as { port: number }).port}`,
    hold: (on) => void (held = on),
    held: () => held,
    sent: () => sent,
  }
}
