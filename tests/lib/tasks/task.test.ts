// What enqueue accepts: names, payloads, delay and attempts; each refusal names its field.
import t from 'tap'
import { backoff, decodePayload, MAX_PAYLOAD_BYTES, newTask } from '../../../lib/tasks/task.js'

t.test('good tasks encode once and decode the same', async (t) => {
  const task = newTask('mail.digest:v2', { a: [1, 'x', null, true], nested: { d: new Date(5) }, skipped: undefined })
  t.same({ name: task.name, delay: task.delay, attempts: task.attempts }, { name: 'mail.digest:v2', delay: 0, attempts: 3 }, 'defaults: no delay, 3 attempts')
  t.same(decodePayload(task.payload), { a: [1, 'x', null, true], nested: { d: new Date(5) } })
  t.equal(decodePayload(newTask('n', undefined).payload), null, 'no payload: null')
  t.match(newTask('n', 1, { delay: 500, attempts: 10 }), { delay: 500, attempts: 10 })
})

t.test('bad input is ESPRA_ERR_TASK_INVALID naming the field', async (t) => {
  class Thing { x = 1 }
  const cases: [string, () => unknown, string][] = [
    ['empty name', () => newTask('', 1), 'name'],
    ['name with a space', () => newTask('a b', 1), 'name'],
    ['name too long', () => newTask('x'.repeat(65), 1), 'name'],
    ['name not a string', () => newTask(7, 1), 'name'],
    ['a function', () => newTask('n', { f: () => 1 }), 'payload'],
    ['a class instance', () => newTask('n', new Thing()), 'payload'],
    ['a Map', () => newTask('n', new Map()), 'payload'],
    ['a bigint', () => newTask('n', 10n), 'payload'],
    ['NaN', () => newTask('n', [NaN]), 'payload'],
    ['too deep', () => newTask('n', JSON.parse('['.repeat(40) + ']'.repeat(40))), 'payload'],
    ['too big', () => newTask('n', 'x'.repeat(MAX_PAYLOAD_BYTES)), 'payload'],
    ['negative delay', () => newTask('n', 1, { delay: -1 }), 'delay'],
    ['fractional delay', () => newTask('n', 1, { delay: 1.5 }), 'delay'],
    ['delay over 30 days', () => newTask('n', 1, { delay: 31 * 86_400_000 }), 'delay'],
    ['zero attempts', () => newTask('n', 1, { attempts: 0 }), 'attempts'],
    ['attempts as text', () => newTask('n', 1, { attempts: '3' }), 'attempts'],
    ['unknown option', () => newTask('n', 1, { retries: 3 }), 'options.retries'],
    ['options not an object', () => newTask('n', 1, 5), 'options'],
  ]
  for (const [what, fn, field] of cases) t.throws(fn, { code: 'ESPRA_ERR_TASK_INVALID', details: { field } }, what)
})

t.test('backoff doubles from the base, at most an hour', async (t) => {
  t.same([1, 2, 3, 4].map((n) => backoff(1000, n)), [1000, 2000, 4000, 8000])
  t.equal(backoff(1000, 40), 3_600_000)
  t.equal(backoff(0, 5), 0)
})
