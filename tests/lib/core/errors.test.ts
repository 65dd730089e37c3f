// Message templates of the error table: filling, details, the wire round trip, and a call missing a value not compiling.
import t from 'tap'
import { fillTemplate, placeholderNames } from '../../../lib/core/error-template.js'
import { createError, ERRORS, EspraError, fromWire, toWire } from '../../../lib/core/errors.js'

t.test('createError fills the template and keeps every value as details', async (t) => {
  const err = createError('ESPRA_ERR_NODE_LISTEN', { option: '--port', host: '127.0.0.1', port: 8080, reason: 'EADDRINUSE' })
  t.equal(err.message, '--port: cannot listen on 127.0.0.1:8080 (EADDRINUSE); is another node running?')
  t.same(err.details, { option: '--port', host: '127.0.0.1', port: 8080, reason: 'EADDRINUSE' })
  t.equal(err.code, 'ESPRA_ERR_NODE_LISTEN')
  t.equal(err.status, 500)
})

t.test('values beyond the placeholders are details too', async (t) => {
  const err = createError('ESPRA_ERR_NODE_LISTEN', { option: '--port', host: 'h', port: 1, reason: 'EACCES', child: 3 })
  t.equal(err.message, '--port: cannot listen on h:1 (EACCES); is another node running?')
  t.equal(err.details?.['child'], 3)
})

t.test('a template without placeholders is the whole message; details stay optional', async (t) => {
  t.equal(createError('ESPRA_ERR_HTTP_DRAINING').message, ERRORS.ESPRA_ERR_HTTP_DRAINING.message)
  t.equal(createError('ESPRA_ERR_HTTP_DRAINING').details, undefined)
  t.same(createError('ESPRA_ERR_HTTP_DRAINING', { node: 'a' }).details, { node: 'a' })
})

t.test('braces inside a value are printed as they are, never filled again', async (t) => {
  const err = createError('ESPRA_ERR_NODE_LISTEN', { option: '{host}', host: '{port}', port: 1, reason: '{reason} }{' })
  t.equal(err.message, '{host}: cannot listen on {port}:1 ({reason} }{); is another node running?')
  t.equal(fillTemplate('{a}{b}', { a: '{b}', b: '}' }), '{b}}')
})

t.test('a missing value (past the type checker) stays {name} in the text instead of throwing', async (t) => {
  t.equal(fillTemplate('{a} and {b}', { a: 1 }), '1 and {b}')
  t.equal(fillTemplate('{a}', undefined), '{a}')
  t.equal(fillTemplate('{a}', { a: undefined }), '{a}', 'undefined counts as missing')
  const values = { option: '--port', host: 'h', port: 1 } as unknown as { option: string; host: string; port: number; reason: string }
  t.equal(createError('ESPRA_ERR_NODE_LISTEN', values).message, '--port: cannot listen on h:1 ({reason}); is another node running?')
  t.equal(fillTemplate('falsy {a} {b} {c}', { a: 0, b: false, c: '' }), 'falsy 0 false ', 'falsy values are values')
})

t.test('the legacy form: free text kept; without text the template is filled from details', async (t) => {
  t.equal(new EspraError('ESPRA_ERR_NODE_LISTEN', 'a sentence of its own').message, 'a sentence of its own')
  t.equal(new EspraError('ESPRA_ERR_HTTP_DRAINING').message, 'node is draining')
  t.equal(
    new EspraError('ESPRA_ERR_NODE_LISTEN', undefined, { option: '--port', host: 'h', port: 2, reason: 'x' }).message,
    '--port: cannot listen on h:2 (x); is another node running?',
  )
})

t.test('wire round trip: the received message keeps its text, details cross', async (t) => {
  const err = createError('ESPRA_ERR_NODE_LISTEN', { option: '--port', host: 'h', port: 9, reason: 'EADDRINUSE' })
  const wire = JSON.parse(JSON.stringify(err.toWire())) as ReturnType<typeof err.toWire>
  t.same(wire, { code: err.code, message: err.message, details: err.details })
  const back = fromWire(wire)
  t.equal(back.message, err.message)
  t.same(back.details, err.details)
  t.equal(back.status, 500)
  t.same(toWire(back), wire)
  const peer = fromWire({ code: 'ESPRA_ERR_NODE_LISTEN', message: 'an older peer wrote this' })
  t.equal(peer.message, 'an older peer wrote this', 'a peer\'s text is not replaced by our template')
  t.equal(fromWire({ code: 'ESPRA_ERR_FROM_THE_FUTURE', message: 'kept' }).message, 'kept')
})

t.test('placeholderNames lists each name once, in order', async (t) => {
  t.same(placeholderNames('{b} {a} {b} {not a name} {}'), ['b', 'a'])
  t.same(placeholderNames(ERRORS.ESPRA_ERR_NODE_LISTEN.message), ['option', 'host', 'port', 'reason'])
})

t.test('every template in the table is well formed: braces only around names', async (t) => {
  for (const [code, { message }] of Object.entries(ERRORS)) {
    t.equal(message.replace(/\{[A-Za-z][A-Za-z0-9]*\}/g, '').match(/[{}]/), null, code)
  }
})

// Type level: checked by `tsc -p tsconfig.test.json` (an unused @ts-expect-error fails it).
export function typeChecks(): void {
  // @ts-expect-error a placeholder value is missing
  createError('ESPRA_ERR_NODE_LISTEN', { option: '--port', host: 'h', port: 1 })
  // @ts-expect-error a template with placeholders needs its values
  createError('ESPRA_ERR_NODE_LISTEN')
  // @ts-expect-error a placeholder takes a printable value, not an object
  createError('ESPRA_ERR_NODE_LISTEN', { option: '--port', host: 'h', port: {}, reason: 'x' })
  createError('ESPRA_ERR_HTTP_DRAINING')
}
