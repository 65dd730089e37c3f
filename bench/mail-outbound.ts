/**
 * Outbound mail bench: N messages (one recipient each, spread over D
 * recipient domains) queued durably on the outbound queue from this process
 * (a window of W in flight, the same enqueue `ctx.sendMail` does), then
 * delivered by one real mail node through `--smtp-relay` to a receiving
 * smtp-server run here. Once half are delivered the mail node is killed with
 * SIGKILL (parent and children) and a new one started; its leases expire
 * after `--mail-lease` and the rest is delivered.
 *
 * Prints the enqueue rate, the delivery rate (messages/s from the first mail
 * node's start to the last 250, the kill and the lease wait included),
 * delivered = enqueued (none lost), duplicates (copies the receiver answered
 * 250 more than once) and copies cut before the 250 (the receiver read them
 * but the sender died first: not delivered, sent again). Needs `npm run build`.
 *
 *   npx tsx bench/mail-outbound.ts [--messages 10000] [--window 64] [--domains 20] [--lease-s 5] [--concurrency 50]
 */
import { arg, helpFrom, sleep } from './args.js'
import { createLogger } from '../lib/core/log.js'
import { composeOutMessage, checkOutMessage, newOutId, recipientsByDomain } from '../lib/mail/outbound.js'
import { enqueueOutbound } from '../lib/mail/outbound-store.js'
import { createDatastoreClient } from '../lib/storage/datastore-client.js'
import { createMetaTaskQueue } from '../lib/tasks/queue-meta.js'
import { createMetaClient } from '../lib/transport/meta-client.js'
import { startReceiver, type Received } from '../tests/helpers/smtp-receiver.js'
import { BENCH_SECRET, freePorts, guard, killAll } from './live-common.js'
import { startRegistered, startSeed } from './nodes.js'

helpFrom(import.meta.url)

const MESSAGES = arg('messages', 10_000)
const WINDOW = arg('window', 64)
const DOMAINS = arg('domains', 20)
const LEASE_S = arg('lease-s', 5)
const CONCURRENCY = arg('concurrency', 50)

const log = createLogger('silent', { role: 'bench', node: 'bench' })

async function main(): Promise<void> {
  const timer = guard(20 * 60_000)
  const receiver = await startReceiver()
  const ids = new Map<Received, string>()
  const idOf = (r: Received): string => {
    let id = ids.get(r)
    if (id === undefined) ids.set(r, (id = /Message-ID: <(o[0-9a-z]+)@/i.exec(r.raw.toString('latin1'))?.[1] ?? '?'))
    return id
  }
  /** Message id → copies answered 250, from the receiver's records (a copy is answered once `acked` is set). */
  const tally = (): Map<string, number> => {
    const acked = new Map<string, number>()
    for (const r of receiver.received) if (r.acked) acked.set(idOf(r), (acked.get(idOf(r)) ?? 0) + 1)
    return acked
  }
  let lastAck = 0
  let lastCount = 0
  const watch = setInterval(() => {
    const n = receiver.received.length
    if (n !== lastCount) {
      lastCount = n
      lastAck = performance.now()
    }
  }, 10)

  const seed = await startSeed()
  const client = createMetaClient({ seeds: [seed.address], secret: BENCH_SECRET, peer: { kind: 'admin' }, maxFrame: 16 * 1024 ** 2, log, reconnect: false })
  await client.ready
  const deps = { datastore: createDatastoreClient(client), queue: createMetaTaskQueue(client, 'mailq'), blobs: null }

  const enqueueStart = performance.now()
  let next = 0
  await Promise.all(Array.from({ length: WINDOW }, async () => {
    while (next < MESSAGES) {
      const i = next++
      const m = checkOutMessage({ from: 'bench@espra.test', to: `user${i}@d${i % DOMAINS}.bench.test`, subject: `bench ${i}`, text: `message ${i}\n${'x'.repeat(900)}` })
      const id = newOutId()
      const { raw, messageId } = await composeOutMessage(m, id, async () => null)
      await enqueueOutbound(deps, { id, from: m.from.address, rcptsByDomain: recipientsByDomain(m), raw, subject: m.subject, messageId, kind: 'message' })
    }
  }))
  const enqueueRate = MESSAGES / ((performance.now() - enqueueStart) / 1000)
  console.log(`enqueued ${MESSAGES} messages (${DOMAINS} domains) at ${enqueueRate.toFixed(0)}/s`)

  const flags = { 'smtp-relay': `smtp://127.0.0.1:${receiver.port}`, 'mail-lease': `${LEASE_S}s`, 'mail-concurrency': CONCURRENCY, 'mail-events': 'false', children: 1 }
  const deliverStart = performance.now()
  const first = await startRegistered('mail', seed, { ...flags, 'smtp-port': await freePorts(), 'node-id': 'mail-a' })
  while (tally().size < MESSAGES / 2) await sleep(50)
  const atKill = tally().size
  for (const pid of [...first.children(), first.pid]) {
    try {
      process.kill(pid, 'SIGKILL')
    } catch {
      // gone
    }
  }
  console.log(`killed the mail node (SIGKILL, parent and children) with ${atKill} delivered`)
  await startRegistered('mail', seed, { ...flags, 'smtp-port': await freePorts(), 'node-id': 'mail-b' })
  const deadline = performance.now() + 10 * 60_000
  while (tally().size < MESSAGES && performance.now() < deadline) await sleep(200)
  const done = lastAck
  await sleep(LEASE_S * 1000 + 2000) // late duplicates, if any, arrive within a lease
  clearInterval(watch)
  const acked = tally()
  const cut = receiver.received.filter((r) => !r.acked).length
  const delivered = acked.size
  const duplicates = [...acked.values()].reduce((n, c) => n + c - 1, 0)
  const rate = delivered / ((done - deliverStart) / 1000)
  console.log(`delivered ${delivered} of ${MESSAGES} enqueued (${MESSAGES - delivered} lost) at ${rate.toFixed(0)} messages/s (mail node start to last 250, kill and ${LEASE_S}s lease included)`)
  console.log(`duplicates answered 250 twice: ${duplicates}; copies cut before their 250 and sent again: ${cut}`)
  await client.close()
  await receiver.close()
  clearTimeout(timer)
  killAll()
  process.exit(delivered === MESSAGES ? 0 : 1)
}

main().catch((err: unknown) => {
  console.error(err)
  killAll()
  process.exit(1)
})
