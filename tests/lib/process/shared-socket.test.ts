// The parent's shared public socket: a port someone else holds is a start-up error naming the option,
// never a socket that the children's listen would bind afresh to a random port on every interface.
import { createServer } from 'node:net'
import t from 'tap'
import { bindSharedSocket } from '../../../lib/process/shared-socket.js'

t.test('a port already listened on is ESPRA_ERR_NODE_LISTEN naming the option', async (t) => {
  const holder = createServer()
  await new Promise<void>((resolve) => holder.listen({ host: '127.0.0.1', port: 0, exclusive: true }, resolve))
  t.teardown(() => holder.close())
  const { port } = holder.address() as { port: number }
  await t.rejects(bindSharedSocket('127.0.0.1', port, '--tls-port'), {
    code: 'ESPRA_ERR_NODE_LISTEN',
    message: `--tls-port: cannot listen on 127.0.0.1:${port} (EADDRINUSE); is another node running?`,
  })
})

t.test('a free port is bound where asked', async (t) => {
  const socket = await bindSharedSocket('127.0.0.1', 0)
  t.teardown(() => socket.close())
  t.ok(socket.fd > 2)
})
