// Restarts that fail nothing: under continuous keep-alive load, a SIGHUP of a node of `up` replaces
// its children one at a time and not one request fails (any status but 200, any socket error), not
// one publish fails, and a Live subscriber that resumes by sequence misses nothing. Regression for
// issue 11: the app node answered 2,667 of 11,882 requests 503 (new children took requests before
// they had loaded the build, the draining one answered 503) and the fileserver 157 of 72,350 with
// 404 (new children listened before the build was in memory).
import t from 'tap'
import { childPids, pidAlive, startUp, waitFor, type UpCluster } from '../helpers/up.js'
import { checkRestartUnderLoad, loadToken, upNodes } from '../helpers/reload-load.js'

const cluster: UpCluster = await startUp(t)
await waitFor('the sample app served by the app node', async () => (await fetch(`http://127.0.0.1:${cluster.port('app')}/`)).status === 200, 30_000)
await waitFor('the sample app assets on the fileserver', async () => (await fetch(`http://127.0.0.1:${cluster.port('fileserver')}/app/public/style.css`)).status === 200, 30_000)
const token = await loadToken(cluster)

/** SIGHUP the node's parent; resolves once every child is new, every old one has exited, and health is ok. */
async function sighup(role: string): Promise<void> {
  const node = (await upNodes(cluster)).find((n) => n.role === role)!
  const before = childPids(node.pid)
  process.kill(node.pid, 'SIGHUP')
  await waitFor(`${role}: every child replaced`, () => {
    const now = childPids(node.pid)
    return now.length === before.length && now.every((p) => !before.includes(p)) && before.every((p) => !pidAlive(p))
  }, 60_000)
  await waitFor(`${role}: registered and healthy`, async () => (await upNodes(cluster)).some((n) => n.role === role && n.pid === node.pid && n.health === 'ok'), 20_000)
}

for (const role of ['app', 'fileserver', 'proxy', 'live']) {
  t.test(`SIGHUP of the ${role} node under load: 0 failed requests, 0 failed publishes, no gap`, async (t) => {
    await checkRestartUnderLoad(t, cluster, role, token, 'SIGHUP', () => sighup(role))
  })
}
