// A Live node whose internal link cannot listen stops at start with one line naming the option that places the link
// (--live-link-offset), in either --live-homes mode: the parent's one link port, or a child's two (its own and the one
// a replacement takes while its predecessor still holds the first).
import { createServer, type Server } from 'node:net'
import t, { type Test } from 'tap'
import { freePort, startNode } from '../../helpers/cluster.js'

const OFFSET = 1000

async function hold(t: Test, port: number): Promise<void> {
  const server: Server = createServer()
  await new Promise<void>((resolve) => server.listen({ host: '127.0.0.1', port, exclusive: true }, resolve))
  t.teardown(() => server.close())
}

for (const [homes, taken] of [['node', [0]], ['children', [0, 1]]] as const) {
  t.test(`--live-homes ${homes}: every link port taken`, async (t) => {
    const port = await freePort()
    for (const i of taken) await hold(t, port + OFFSET + i)
    const node = await startNode(t, 'live', { port, bind: '127.0.0.1', children: 1, 'live-homes': homes, 'live-link-offset': OFFSET }, { noWait: true })
    const exit = await Promise.race([node.exited, new Promise<null>((resolve) => setTimeout(() => resolve(null), 20_000).unref())])
    t.equal(exit?.code, 1, 'exit 1')
    t.equal(node.stderr(), `espra-node: ESPRA_ERR_NODE_LISTEN: --live-link-offset: cannot listen on 127.0.0.1:${port + OFFSET + taken.at(-1)!} (EADDRINUSE); is another node running?\n`, 'one line naming --live-link-offset and the last port tried')
  })
}
