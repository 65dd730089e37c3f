// Datastore writes across a leader failover, as real processes: two seeds on one real PostgreSQL, a writer on a
// reconnecting meta client linked to the leader, and the leader killed with SIGKILL mid-stream. Every put resolves
// (sent again over the next link) and every record is there afterwards; consume and putIf in flight at the kill
// are sent again with their op ids and applied once, each answered with the first attempt's answer; and, made
// deterministic with a proxy that holds back the seed's answers, a consume committed on the leader whose answer
// never came, its seed then killed: the resend to the survivor gets the value.
import t, { type Test } from 'tap'
import type { EspraError } from '../../lib/core/errors.js'
import { createDatastoreClient } from '../../lib/storage/datastore-client.js'
import { openPostgres } from '../../lib/storage/postgres.js'
import { createMetaClient, type MetaClient } from '../../lib/transport/meta-client.js'
import { startSeedPair, type StartedNode } from '../helpers/cluster.js'
import { holdingProxy } from '../helpers/holding-proxy.js'
import { captureLog, SECRET } from '../helpers/meta.js'
import { startPostgres } from '../helpers/postgres.js'
import { waitFor } from '../helpers/up.js'
import { testDir } from '../helpers/temp-dir.js'

const postgres = await startPostgres(t)
const LEASE_MS = 2000

async function twoSeeds(t: Test): Promise<{ seeds: StartedNode[]; addresses: string[]; url: string }> {
  const url = await postgres.createDatabase()
  const blobDir = testDir('espra-failover-writes-blobs-')
  const { seeds, addresses } = await startSeedPair(t, { datastore: url, 'seed-lease': `${LEASE_MS}ms`, 'blob-dir': blobDir, children: 1 }, ['seed-a', 'seed-b'])
  return { seeds, addresses, url }
}

/** A reconnecting admin link (it follows the leader) and the ops sent over it, counted. */
function writerLink(t: Test, addresses: string[]): { link: MetaClient; counted: Pick<MetaClient, 'request'>; sent: Map<string, number> } {
  const link = createMetaClient({ seeds: addresses, secret: SECRET, peer: { kind: 'admin' }, maxFrame: 1024 * 1024, log: captureLog('silent').log, reconnect: true, backoffMaxMs: 300 })
  t.teardown(() => link.destroy())
  const sent = new Map<string, number>()
  const counted = {
    request<T>(op: string, body: unknown, timeoutMs?: number): Promise<T> {
      sent.set(op, (sent.get(op) ?? 0) + 1)
      return link.request<T>(op, body, timeoutMs)
    },
  }
  return { link, counted, sent }
}

/** The leader, asked of the seed the link is on (it follows the leader), and its process. */
async function leaderOf(link: MetaClient, seeds: StartedNode[], addresses: string[]) {
  const l = await waitFor('a leader', async () => {
    const answer = await link.request<{ seed: string; leader: boolean; epoch: number }>('leader', {}).catch(() => null)
    return answer?.leader ? answer : undefined
  })
  const i = l.seed === 'seed-a' ? 0 : 1
  return { ...l, proc: seeds[i]!, other: seeds[1 - i]!, address: addresses[i]! }
}

t.test('a writer putting records while the leader is killed: every put resolves and every record is there', async (t) => {
  const { seeds, addresses } = await twoSeeds(t)
  const { link, counted, sent } = writerLink(t, addresses)
  await link.ready
  const victim = await leaderOf(link, seeds, addresses)
  t.equal(link.seed, victim.address, 'the writer is linked to the leader')
  const ds = createDatastoreClient(counted)

  // Four writers, each putting its next record as soon as the last one resolved.
  let writing = true
  let killedAt = 0
  const done: string[] = []
  const failed: string[] = []
  const writer = async (w: number) => {
    for (let i = 0; writing; i++) {
      const key = `w${w}/${String(i).padStart(5, '0')}`
      await ds.put('appTables', key, { w, i }).then(() => void done.push(key), (err: EspraError) => void failed.push(`${key}: ${err.code}`))
    }
  }
  const writers = [0, 1, 2, 3].map(writer)
  await waitFor('writes flowing', () => done.length >= 40)
  killedAt = done.length
  victim.proc.proc.kill('SIGKILL')
  const took = await victim.other.waitForLog((l) => l.msg === 'seed leads the cluster' && Number(l['epoch']) > victim.epoch, 'the other seed takes over', 20_000)
  // Writing goes on after the takeover until the writer has put records through the new leader too.
  const afterTakeover = done.length
  await waitFor('writes through the survivor', () => done.length >= afterTakeover + 40, 20_000)
  writing = false
  await Promise.all(writers)

  t.same(failed, [], 'no put failed')
  t.ok(done.length > killedAt + 40, `${done.length} puts resolved, ${done.length - killedAt} of them from the kill on`)
  t.equal(link.seed, addresses[victim.proc === seeds[0] ? 1 : 0], 'the writer is on the survivor now')
  t.ok(sent.get('ds.put')! > done.length, `puts were sent again over the new link (${sent.get('ds.put')} sends for ${done.length} puts)`)
  t.equal(took['epoch'], victim.epoch + 1)

  const stored = new Map<string, unknown>()
  for (let w = 0; w < 4; w++) {
    let after: string | undefined
    for (;;) {
      const page = await ds.list('appTables', { prefix: `w${w}/`, limit: 1000, ...(after === undefined ? {} : { after }) })
      for (const e of page.entries) stored.set(e.key, e.value)
      if (page.next === null) break
      after = page.next
    }
  }
  t.same(done.filter((k) => !stored.has(k)), [], 'every record whose put resolved is there')
  t.equal(stored.size, done.length, 'and nothing else')
  t.ok(done.every((k) => {
    const [w, i] = k.slice(1).split('/')
    const v = stored.get(k) as { w: number; i: number }
    return v.w === Number(w) && v.i === Number(i)
  }), 'each with its value')
})

t.test('consume and putIf in flight at the kill are sent again with their op ids: each answered, each applied once', async (t) => {
  const { seeds, addresses } = await twoSeeds(t)
  const { link, counted, sent } = writerLink(t, addresses)
  await link.ready
  const victim = await leaderOf(link, seeds, addresses)
  t.equal(link.seed, victim.address, 'the client is linked to the leader')
  const ds = createDatastoreClient(counted)
  const N = 150
  for (let i = 0; i < N; i++) await ds.put('uploadTokens', `tok${i}`, { i })
  sent.clear()

  // Sent together; the leader is killed as soon as the first is answered, before the last of them can be.
  const consumes = Array.from({ length: N }, (_, i) => ds.consume('uploadTokens', `tok${i}`).then((v) => ({ ok: v }), (err: EspraError) => ({ err })))
  const putIfs = Array.from({ length: N }, (_, i) => ds.putIf('tusUploads', `u${i}`, { offset: 1 }, null).then((v) => ({ ok: v }), (err: EspraError) => ({ err })))
  await Promise.race(consumes)
  victim.proc.proc.kill('SIGKILL')
  const results = await Promise.all([...consumes, ...putIfs])
  t.same(results.flatMap((r) => ('err' in r ? [r.err.code] : [])), [], 'every one answered')
  t.ok(sent.get('ds.consume')! + sent.get('ds.putIf')! > 2 * N, `some were sent again (${sent.get('ds.consume')} consume and ${sent.get('ds.putIf')} putIf sends for ${N} each)`)
  t.same(results.slice(0, N).map((r) => ('ok' in r ? r.ok : null)), Array.from({ length: N }, (_, i) => ({ i })), 'every consume answered its token\'s value')
  t.same(results.slice(N).map((r) => ('ok' in r ? r.ok : null)), Array.from({ length: N }, () => true), 'every putIf answered written')

  await victim.other.waitForLog((l) => l.msg === 'seed leads the cluster' && Number(l['epoch']) > victim.epoch, 'the other seed takes over', 20_000)
  const tokens = (await ds.list('uploadTokens', { limit: 1000 })).entries
  t.same(tokens, [], 'every token consumed')
  const uploads = (await ds.list('tusUploads', { limit: 1000 })).entries
  t.equal(uploads.length, N)
  t.ok(uploads.every((e) => (e.value as { offset: number }).offset === 1), 'every upload written')
})

t.test('a consume committed on the leader whose answer never arrived, its seed killed: the resend to the survivor answers the value', async (t) => {
  const { seeds, addresses, url } = await twoSeeds(t)
  const db = await openPostgres({ url, max: 1, log: captureLog('silent').log })
  t.teardown(() => db.close())
  // A proxy in front of each seed: passes everything, except that the seeds' bytes stop going back while held.
  const holding = await Promise.all(addresses.map((address) => holdingProxy(t, address)))
  const proxies = holding.map((p) => p.address)
  const hold = (on: boolean): void => holding.forEach((p) => p.hold(on))
  const link = createMetaClient({ seeds: proxies, secret: SECRET, peer: { kind: 'admin' }, maxFrame: 1024 * 1024, log: captureLog('silent').log, reconnect: true, backoffMaxMs: 300 })
  t.teardown(() => link.destroy())
  await link.ready
  const victim = await leaderOf(link, seeds, addresses)
  t.equal(link.seed, proxies[addresses.indexOf(victim.address)], 'the client is linked to the leader')
  const opIds: unknown[] = []
  const ds = createDatastoreClient({
    request<T>(op: string, body: unknown, timeoutMs?: number): Promise<T> {
      if (op === 'ds.consume') opIds.push((body as { opId: unknown }).opId)
      return link.request<T>(op, body, timeoutMs)
    },
  })
  await ds.put('uploadTokens', 'tok', { v: 42 })

  hold(true)
  const consumed = ds.consume('uploadTokens', 'tok')
  // Committed: its op id is in the table (written in the consume's own transaction), and the token is gone.
  await waitFor('the consume committed', async () => (await db.query(`SELECT 1 FROM espra_ops WHERE op = 'ds.consume'`)).rowCount === 1 || undefined)
  t.same((await db.query(`SELECT 1 FROM espra_records WHERE kind = 'uploadTokens' AND key = 'tok'`)).rows, [], 'the token is gone already')
  victim.proc.proc.kill('SIGKILL')
  hold(false)
  t.same(await consumed, { v: 42 }, 'the consume answers the value it took')
  t.ok(opIds.length >= 2, `sent again (${opIds.length} sends)`)
  t.equal(new Set(opIds).size, 1, 'with one op id')
  t.equal(link.seed, proxies[1 - addresses.indexOf(victim.address)], 'answered through the survivor')
  t.same(await ds.get('uploadTokens', 'tok'), null, 'and the token stays consumed')
})
