// The address an app's handler gets: behind a balancer in --trusted-proxies, the client its X-Forwarded-For names
// (rightmost untrusted, lib/core/client-address.ts); without the option, the TCP peer whatever the header says.
import t from 'tap'
import { startAppCluster, writeBuild } from '../../helpers/app-cluster.js'
import { get } from '../../helpers/cluster.js'

const app = writeBuild({ 'server/index.js': 'export async function handle(req) { return { body: req.address } }\n' })

t.test('req.address: the client from a trusted balancer, the peer otherwise', async (t) => {
  const cluster = await startAppCluster(t, { children: 1, threads: 1 })
  const trusting = await cluster.startApp({ 'trusted-proxies': '127.0.0.0/8' })
  const plain = await cluster.startApp()
  await cluster.push(app, 'b1')
  await Promise.all([cluster.serving(trusting, 'b1'), cluster.serving(plain, 'b1')])

  const claim = { 'x-forwarded-for': '192.0.2.1, 198.51.100.9' }
  t.equal((await get(trusting.port, '/', false, claim)).body, '198.51.100.9', 'trusted peer: the rightmost untrusted entry')
  t.equal((await get(trusting.port, '/', false, { 'x-forwarded-for': '198.51.100.9, 127.0.0.5' })).body, '198.51.100.9', 'trusted hops passed')
  t.match((await get(trusting.port, '/', false)).body, /127\.0\.0\.1$/, 'no header: the peer')
  t.match((await get(plain.port, '/', false, claim)).body, /127\.0\.0\.1$/, 'nothing trusted by default: the peer, whatever the header says')
})
