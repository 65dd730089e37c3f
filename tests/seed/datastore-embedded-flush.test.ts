// The embedded stores answer a write only once it is flushed to disk, not merely committed (lmdb-js's overlappingSync
// resolves a write at commit): what the product answers on (mail 250, sendMail, upload complete, build push) must
// survive a power loss, which a kill -9 test cannot show. Here: the order of a write's promise and the environment's
// `flushed` promise, on real LMDB files; the unflushed view (a group commit's, flushed once) resolves first.
import t from 'tap'
import { openEmbeddedDatastore } from '../../seed/datastore-embedded.js'
import { openEmbeddedTaskQueue } from '../../seed/tasks-embedded.js'
import { newTask } from '../../lib/tasks/task.js'
import { testDir } from '../helpers/temp-dir.js'

/** Which of the write and the flush resolved first. */
async function order(write: Promise<unknown>, flushed: Promise<unknown>): Promise<string[]> {
  const seen: string[] = []
  await Promise.all([write.then(() => seen.push('write')), flushed.then(() => seen.push('flushed'))])
  return seen
}

t.test('datastore: put, putIf and delete resolve after the flush; the unflushed view at commit', async (t) => {
  const ds = await openEmbeddedDatastore({ dir: testDir('espra-ds-flush-') })
  t.teardown(() => ds.close())
  for (let i = 0; i < 3; i++) {
    t.same(await order(ds.put('mailInbound', `a${i}`, { n: i }), ds.flushed()), ['flushed', 'write'], `put #${i}`)
    t.same(await order(ds.putIf('mailInbound', `b${i}`, { n: i }, null), ds.flushed()), ['flushed', 'write'], `putIf #${i}`)
    t.same(await order(ds.delete('mailInbound', `a${i}`), ds.flushed()), ['flushed', 'write'], `delete #${i}`)
  }
  const view = ds.unflushed()
  t.same(await order(view.put('mailInbound', 'c', { n: 1 }), ds.flushed()), ['write', 'flushed'], 'the unflushed view answers at commit')
  t.same(await view.get('mailInbound', 'c'), { n: 1 }, 'and both see the same records')
  t.same(await ds.get('mailInbound', 'c'), { n: 1 })
})

t.test('task queue: enqueue resolves after the flush; the unflushed view at commit', async (t) => {
  const q = await openEmbeddedTaskQueue({ dir: testDir('espra-q-flush-') })
  t.teardown(() => q.close())
  for (let i = 0; i < 3; i++) t.same(await order(q.enqueue(newTask('x', { i })), q.flushed()), ['flushed', 'write'], `enqueue #${i}`)
  t.same(await order(q.unflushed().enqueue(newTask('x', { i: 9 })), q.flushed()), ['write', 'flushed'], 'the unflushed view answers at commit')
  t.equal((await q.counts()).ready, 4)
})
