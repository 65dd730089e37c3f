// The embedded queue's gated enqueue (seed/tasks-embedded.ts, GatedEnqueue): the task is written at once but handed out
// only once its gate says yes; a gate that says no or fails deletes it, and nothing of it is handed, before or after a restart.
import t from 'tap'
import { decodePayload, newTask } from '../../lib/tasks/task.js'
import { openEmbeddedTaskQueue } from '../../seed/tasks-embedded.js'
import { testDir } from '../helpers/temp-dir.js'

const freshDir = () => testDir('espra-tasks-gated-')
const LEASE = { max: 10, leaseMs: 5000 }

function gate() {
  let open!: (go: boolean) => void
  let fail!: (err: Error) => void
  const promise = new Promise<boolean>((resolve, reject) => ((open = resolve), (fail = reject)))
  return { promise, open, fail }
}

t.test('a task is handed out only after its gate opens; a closed or failed gate deletes it', async (t) => {
  const dir = freshDir()
  const q = await openEmbeddedTaskQueue({ dir })
  const view = q.unflushed()
  const [yes, no, broken] = [gate(), gate(), gate()]
  const ids = [
    view.enqueueWhen(newTask('job', 1), yes.promise),
    view.enqueueWhen(newTask('job', 2), no.promise),
    view.enqueueWhen(newTask('job', 3), broken.promise),
  ]
  await q.flushed()
  await new Promise((r) => setTimeout(r, 50))
  t.same(await q.lease(LEASE), [], 'nothing handed out while the gates are shut, though the records are written')
  t.equal((await q.counts()).ready, 0)

  yes.open(true)
  no.open(false)
  broken.fail(new Error('the other write failed'))
  const [a, b, c] = await Promise.allSettled(ids)
  t.match(a, { status: 'fulfilled', value: /^t\d+$/ })
  t.same(b, { status: 'fulfilled', value: null }, 'a closed gate: no id')
  t.match(c, { status: 'rejected', reason: { message: 'the other write failed' } }, 'a failed gate: its error')
  const leased = await q.lease(LEASE)
  t.same(leased.map((l) => decodePayload(l.payload)), [1], 'only the opened one is handed out')
  await q.close()

  // After a restart only what the gates let through is there (the records of the others were deleted).
  const again = await openEmbeddedTaskQueue({ dir })
  t.teardown(() => again.close())
  const after = await again.lease(LEASE)
  t.same(after.map((l) => decodePayload(l.payload)), [1], 'the shut ones are gone from the file')
})

t.test('a crash before the gate opens leaves the written task: it is ready after the restart', async (t) => {
  // What the gate's user must tolerate (the mail handoff skips a message with no record): the task's commit, not its gate, is durable.
  const dir = freshDir()
  const q = await openEmbeddedTaskQueue({ dir })
  const pending = gate()
  const id = q.unflushed().enqueueWhen(newTask('job', 7), pending.promise)
  await q.flushed()
  await new Promise((r) => setTimeout(r, 50))
  await q.close()
  pending.open(true)
  await id.catch(() => undefined)
  const again = await openEmbeddedTaskQueue({ dir })
  t.teardown(() => again.close())
  t.same((await again.lease(LEASE)).map((l) => decodePayload(l.payload)), [7])
})
