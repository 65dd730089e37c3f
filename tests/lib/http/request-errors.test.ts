// How failed requests are logged (lib/http/request-errors.ts): client errors are info lines without stacks,
// rate limited; server faults are error lines with them. A real pino logger writing to a buffer.
import { Writable } from 'node:stream'
import { pino } from 'pino'
import t from 'tap'
import { EspraError } from '../../../lib/core/errors.js'
import { createRequestErrorLog } from '../../../lib/http/request-errors.js'

function capture() {
  const lines: Record<string, unknown>[] = []
  const sink = new Writable({ write(chunk: Buffer, _enc, done) { lines.push(JSON.parse(chunk.toString()) as Record<string, unknown>); done() } })
  const log = pino({ level: 'trace', formatters: { level: (label) => ({ level: label }) } }, sink)
  return { log, lines }
}
const tick = () => new Promise((r) => setImmediate(r))

t.test('a client error is one info line with code, status and message, and no stack', async (t) => {
  const { log, lines } = capture()
  const onError = createRequestErrorLog(log)
  onError(new EspraError('ESPRA_ERR_UPLOAD_TYPE', 'type text/html is not allowed'))
  onError(new EspraError('ESPRA_ERR_UPLOAD_BAD_BODY', 'the client went away'))
  await tick()
  t.match(lines, [
    { level: 'info', code: 'ESPRA_ERR_UPLOAD_TYPE', status: 415, reason: 'type text/html is not allowed' },
    { level: 'info', code: 'ESPRA_ERR_UPLOAD_BAD_BODY', status: 400 },
  ])
  t.notOk(JSON.stringify(lines).includes('stack'), 'no stack')
})

t.test('server faults are errors with the stack, never rate limited', async (t) => {
  const { log, lines } = capture()
  const onError = createRequestErrorLog(log, { limit: 1 })
  for (let i = 0; i < 3; i++) onError(new Error('boom'))
  onError(new EspraError('ESPRA_ERR_STORAGE_UNAVAILABLE'))
  await tick()
  t.equal(lines.length, 4)
  t.ok(lines.every((l) => l['level'] === 'error'))
  t.match(lines[0], { err: { message: 'boom', stack: /Error: boom/ } })
})

t.test('client errors past the limit are counted, and the count logged once the interval is over', async (t) => {
  const { log, lines } = capture()
  let now = 0
  const onError = createRequestErrorLog(log, { limit: 3, intervalMs: 1000, now: () => now })
  for (let i = 0; i < 1000; i++) onError(new EspraError('ESPRA_ERR_UPLOAD_TOKEN_INVALID'))
  await tick()
  t.equal(lines.length, 3, 'a flood of 1000 makes 3 lines')
  now = 1000
  onError(new EspraError('ESPRA_ERR_UPLOAD_TOKEN_INVALID'))
  await tick()
  t.match(lines.slice(3), [{ level: 'info', dropped: 997 }, { level: 'info', code: 'ESPRA_ERR_UPLOAD_TOKEN_INVALID' }])
})
