/**
 * bench/mail-inbound-op.ts: the seed's `mail.inbound.commit` alone (issue #12), in this process, over real embedded
 * LMDB files (a fresh datastore and task queue under /var/tmp, on disk, flushed as the seed flushes them): groups of
 * `--group-size` unique 10 KB messages whose bytes ride in the record, `--in-flight` groups at a time as several mail children
 * send them. Prints messages/s and the group's p50/p99, with the load average. What `bench/mail-inbound` measures
 * end to end minus SMTP, the mail node and the link: when the `record` stage there is far above this op's latency,
 * the time goes outside the op.
 *
 * npx tsx bench/mail-inbound-op.ts [--groups 300] [--group-size 10] [--in-flight 4] [--rounds 3] [--against <checkout>]
 *
 * `--against` runs another checkout's seed code (its seed/ and lib/ sources, e.g. a worktree of main) in the same
 * run, the two alternating round by round, and prints both medians and their ratio.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { arg, helpFrom, textArg } from './args.js'
import { loadAverage } from './wrk.js'

helpFrom(import.meta.url)
const GROUPS = arg('groups', 300)
const IN_FLIGHT = arg('in-flight', 4)
const ROUNDS = arg('rounds', 3)
const GROUP_SIZE = arg('group-size', 10)
const BYTES = Buffer.alloc(10_240, 'x')

interface Round { msgPerS: number; p50: number; p99: number }

/** One round over the code in `root`: fresh stores, `GROUPS` groups, `IN_FLIGHT` at a time. */
async function round(root: string): Promise<Round> {
  const { openEmbeddedDatastore } = await import(join(root, 'seed/datastore-embedded.ts')) as typeof import('../seed/datastore-embedded.js')
  const { openEmbeddedTaskQueue } = await import(join(root, 'seed/tasks-embedded.ts')) as typeof import('../seed/tasks-embedded.js')
  const { mailInboundHandlers } = await import(join(root, 'seed/mail-inbound-ops.ts')) as typeof import('../seed/mail-inbound-ops.js')
  const { rawMailKey } = await import(join(root, 'lib/mail/inbound.ts')) as typeof import('../lib/mail/inbound.js')
  const dir = mkdtempSync('/var/tmp/espra-bench-mail-op-')
  const store = await openEmbeddedDatastore({ dir })
  const queue = await openEmbeddedTaskQueue({ dir })
  const commit = new Map(mailInboundHandlers(store, queue)).get('mail.inbound.commit')!
  let n = 0
  const entry = () => {
    const at = Date.now()
    const id = `m${at.toString(36)}${(++n).toString(16).padStart(12, '0')}`
    return {
      id, at, bytes: BYTES, messageId: `${n}@bench.test`, auth: null,
      raw: { key: rawMailKey(id, at), size: BYTES.length, sha256: n.toString(16).padStart(64, '0'), store: 'ds' },
      envelope: { from: 'a@sender.test', to: ['b@example.test'], remoteAddress: '127.0.0.1', helo: 'client.test' },
    }
  }
  const latencies: number[] = []
  let started = 0
  const t0 = performance.now()
  const sender = async (): Promise<void> => {
    while (started < GROUPS) {
      started++
      const entries = Array.from({ length: GROUP_SIZE }, entry)
      const t = performance.now()
      await commit({ windowMs: 60_000, entries }, {} as never)
      latencies.push(performance.now() - t)
    }
  }
  await Promise.all(Array.from({ length: IN_FLIGHT }, sender))
  const seconds = (performance.now() - t0) / 1000
  await queue.close()
  await store.close()
  rmSync(dir, { recursive: true, force: true })
  latencies.sort((a, b) => a - b)
  const at = (q: number) => latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * q))]!
  return { msgPerS: (GROUPS * GROUP_SIZE) / seconds, p50: at(0.5), p99: at(0.99) }
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)]!
const against = textArg('against')
const sides = [{ name: 'this checkout', root: resolve(import.meta.dirname, '..') }, ...(against ? [{ name: `against ${against}`, root: resolve(against) }] : [])]
console.log(`bench/mail-inbound-op.ts: ${GROUPS} groups of ${GROUP_SIZE} × ${BYTES.length} bytes, ${IN_FLIGHT} in flight, ${ROUNDS} round(s); load average before: ${loadAverage()}`)
// One round each first, not counted: the first rounds in a process ran at a third of the speed of later ones (JIT, file cache).
for (const side of sides) await round(side.root)
const results = new Map<string, Round[]>(sides.map((s) => [s.name, []]))
for (let r = 0; r < ROUNDS; r++) {
  // The order turns each round: neither side always runs first.
  for (const side of r % 2 === 0 ? sides : [...sides].reverse()) {
    const got = await round(side.root)
    results.get(side.name)!.push(got)
    console.log(`round ${r + 1} ${side.name}: ${got.msgPerS.toFixed(0)} msg/s, group p50 ${got.p50.toFixed(1)} ms, p99 ${got.p99.toFixed(1)} ms`)
  }
}
const medians = sides.map((s) => ({ name: s.name, msgPerS: median(results.get(s.name)!.map((x) => x.msgPerS)), p50: median(results.get(s.name)!.map((x) => x.p50)) }))
for (const m of medians) console.log(`median ${m.name}: ${m.msgPerS.toFixed(0)} msg/s, group p50 ${m.p50.toFixed(1)} ms`)
if (medians.length === 2) console.log(`this / against: ${(medians[0]!.msgPerS / medians[1]!.msgPerS).toFixed(2)}x msg/s`)
console.log(`load average after: ${loadAverage()}`)
