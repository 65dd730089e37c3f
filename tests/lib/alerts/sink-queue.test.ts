// A sink's queue: a failing delivery is retried with backoff, in order, and its state (pending, sent, last
// success, last error, dropped) follows; after the last attempt the notification is dropped; push never waits.
import t from 'tap'
import type { AlertNotification } from '../../../lib/alerts/alert.js'
import { createSinkQueue } from '../../../lib/alerts/sink-queue.js'
import type { SinkStatus } from '../../../lib/alerts/store.js'
import { waitFor } from '../../helpers/up.js'

const note = (id: string): AlertNotification => ({ event: 'opened', alert: { id } as AlertNotification['alert'] })

t.test('failures are retried until the sink takes it; order is kept; the state says what happened', async (t) => {
  let failuresLeft = 2
  const delivered: string[] = []
  const statuses: SinkStatus[] = []
  const q = createSinkQueue({
    name: 'test', kind: 'webhook', backoffMinMs: 5,
    deliver: async (n) => {
      if (failuresLeft-- > 0) throw new Error('HTTP 500')
      delivered.push(n.alert.id)
    },
    onStatus: (s) => void statuses.push(s),
  })
  t.teardown(() => q.destroy())
  q.push(note('a'))
  q.push(note('b'))
  t.equal(q.status().pending, 2, 'push returns before anything is delivered')
  await waitFor('both delivered', () => delivered.length === 2 || undefined, 5000)
  t.same(delivered, ['a', 'b'])
  const s = q.status()
  t.match(s, { pending: 0, sent: 2, dropped: 0, lastError: { message: 'HTTP 500' } })
  t.ok(s.lastSuccessAt !== null)
  t.ok(statuses.some((x) => x.pending === 2 && x.lastError?.message === 'HTTP 500'), 'a status with the error and both pending was reported')
})

t.test('after the last attempt the notification is dropped and the next goes on', async (t) => {
  const delivered: string[] = []
  const q = createSinkQueue({
    name: 'test', kind: 'webhook', backoffMinMs: 1, maxAttempts: 3,
    deliver: async (n) => {
      if (n.alert.id === 'bad') throw new Error('refused')
      delivered.push(n.alert.id)
    },
  })
  t.teardown(() => q.destroy())
  q.push(note('bad'))
  q.push(note('good'))
  await waitFor('good delivered', () => delivered.length === 1 || undefined, 5000)
  t.match(q.status(), { sent: 1, dropped: 1, pending: 0, lastError: { message: 'refused' } })
})
