// The seed killed with SIGKILL right after it answered: every inbound message that got 250 and every outbound message
// `admin mail send` printed an id for is there when the seed comes back on the same data directory (the embedded
// datastore and queue answer a write once it is flushed, seed/datastore-embedded.ts; a power loss cannot be
// simulated here, a kill -9 of the seed's host process can). Then an app node is started and every message is handed once.
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import nodemailer from 'nodemailer'
import t from 'tap'
import { admin, killHard, writeBuild } from '../../helpers/app-cluster.js'
import { freePort, health, startNode, waitFor } from '../../helpers/cluster.js'
import { testDir } from '../../helpers/temp-dir.js'

const APP = `
import { appendFileSync } from 'node:fs'
import { join } from 'node:path'
let dir
export function init(ctx) { dir = ctx.config.settings.dir }
export function handle() { return 'ok' }
export async function handleMail(m) { appendFileSync(join(dir, 'mail.log'), m.id + '\\n') }
`

const handled = (dir: string): string[] => {
  try {
    return readFileSync(join(dir, 'mail.log'), 'utf8').trim().split('\n').filter(Boolean)
  } catch {
    return []
  }
}

t.test('kill -9 of the seed right after its answers loses nothing', async (t) => {
  const metaPort = await freePort()
  const seedAddress = `127.0.0.1:${metaPort}`
  const seedDir = testDir('espra-seed-kill-')
  const blobDir = testDir('espra-seed-kill-blobs-')
  const fast = { 'heartbeat-interval': '100ms', 'heartbeat-timeout': '2s', 'seed-grace': '0', 'blob-dir': blobDir }
  const seedFlags = { 'meta-port': metaPort, 'data-dir': seedDir, ...fast }
  let seed = await startNode(t, 'seed', seedFlags)
  const smtpPort = await freePort()
  const mail = await startNode(t, 'mail', { ...fast, seed: seedAddress, 'node-id': 'mail-1', children: 1, 'smtp-port': smtpPort, 'mail-domains': 'example.test', 'mail-auth': 'false' })
  await waitFor('mail registered', async () => (await health(mail.port)).body['seedConnected'] === true)

  // Ten messages at once (they go in groups), each answered 250; an outbound message queued; then the seed dies at once.
  const transport = nodemailer.createTransport({ host: '127.0.0.1', port: smtpPort, secure: false, ignoreTLS: true, pool: false })
  const sent = await Promise.all(Array.from({ length: 10 }, (_, i) => transport.sendMail({
    envelope: { from: 'ann@sender.test', to: ['bob@example.test'] },
    raw: `From: ann@sender.test\r\nTo: bob@example.test\r\nSubject: n${i}\r\nMessage-ID: <seed-kill-${i}@sender.test>\r\n\r\nbody ${i}\r\n`,
  })))
  const ids = sent.map((s) => /queued as (m[0-9a-z]+)/.exec(s.response)![1]!)
  const out = await admin(['mail', 'send', '--seed', seedAddress, '--from', 'shop@example.test', '--to', 'someone@elsewhere.test', '--subject', 'after', '--text', 'x'])
  t.equal(out.code, 0, out.stderr)
  const outId = out.stdout.trim().split('\n').pop()!
  await killHard(seed)

  seed = await startNode(t, 'seed', seedFlags)
  await waitFor('mail registered again', async () => (await health(mail.port)).body['seedConnected'] === true, 30_000)
  const shown = await admin(['mail', 'show', outId, '--seed', seedAddress])
  t.equal(shown.code, 0, `the outbound message is still there: ${shown.stderr}`)
  t.match(shown.stdout, outId)

  const dir = testDir('espra-seed-kill-app-')
  const app = await startNode(t, 'app', { ...fast, seed: seedAddress, 'node-id': 'app-1', 'app-settings': JSON.stringify({ dir }) })
  await waitFor('app registered', async () => (await health(app.port)).body['seedConnected'] === true)
  const pushed = await admin(['push-build', writeBuild({ 'server/index.js': APP }), '--seed', seedAddress])
  t.equal(pushed.code, 0, pushed.stderr)
  await waitFor('every message that got 250 handed', () => ids.every((id) => handled(dir).includes(id)), 60_000)
  await new Promise((r) => setTimeout(r, 1000))
  const got = handled(dir)
  t.equal(got.length, new Set(got).size, 'none handed twice')
  t.same([...new Set(got)].sort(), [...ids].sort(), 'exactly the ten')
})
