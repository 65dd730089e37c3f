// The shared maintenance rules: --until parsing, the compiled state's matching (host, client, the node's clock),
// Retry-After, the answers as bytes, and how a parent takes a push.
import t from 'tap'
import type { MaintenanceState } from '../../../lib/core/node-state.js'
import {
  compileMaintenance, createMaintenanceCache, MAX_MAINTENANCE_MS, MAX_RETRY_AFTER_S, maintenancePush, parseMaintenanceState,
  parseUntilArg, renderMaintenancePage, wantsJson,
} from '../../../lib/http/maintenance.js'
import { captureLog } from '../../helpers/meta.js'

const NOW = Date.parse('2026-12-02T12:00:00Z')
/** The sentence parseUntilArg throws (it throws text, as every option parser does), or null. */
function refusal(raw: string): string | null {
  try {
    parseUntilArg(raw, NOW)
    return null
  } catch (problem) {
    return String(problem)
  }
}
const state = (over: Partial<MaintenanceState> = {}): MaintenanceState =>
  ({ message: 'Back soon', until: NOW + 3_600_000, hosts: null, allow: [], at: NOW, ...over })

t.test('--until: durations from now, ISO-8601 times with a zone, nothing past or over 7 days', async (t) => {
  t.same(parseUntilArg('90s', NOW), { forMs: 90_000 })
  t.same(parseUntilArg('90m', NOW), { forMs: 5_400_000 })
  t.same(parseUntilArg('2h', NOW), { forMs: 7_200_000 })
  t.same(parseUntilArg('7d', NOW), { forMs: MAX_MAINTENANCE_MS }, 'exactly the maximum is allowed')
  t.same(parseUntilArg('2026-12-02T13:30Z', NOW), { until: NOW + 5_400_000 })
  t.same(parseUntilArg('2026-12-02T14:30:00+01:00', NOW), { until: NOW + 5_400_000 }, 'an offset zone')
  t.match(refusal('8d'), /more than 7 days away/)
  t.match(refusal('2026-12-10T12:00:01Z'), /more than 7 days away/)
  t.match(refusal('2026-12-02T11:59Z'), /in the past/)
  t.match(refusal('0s'), /too short/)
  t.match(refusal('2026-12-02T13:30'), /needs a date, a time and a zone/, 'no zone: refused, not guessed')
  t.match(refusal('2026-12-02'), /needs a date, a time and a zone/)
  t.match(refusal('2026-13-45T10:00Z'), /not a real date/)
  t.match(refusal('tomorrow'), /must be a duration/)
  t.match(refusal('1w'), /must be a duration/)
  t.match(refusal('-5m'), /must be a duration/)
})

t.test('every host, or only the hosts named (Host without case, port or trailing dot)', async (t) => {
  const all = compileMaintenance(state())
  t.ok(all.applies('anything.example:8080', '1.2.3.4', NOW))
  t.ok(all.applies(undefined, '1.2.3.4', NOW), 'an HTTP/1.0 request without Host too')
  const some = compileMaintenance(state({ hosts: ['a.example', 'b.example'] }))
  t.ok(some.applies('a.example', '1.2.3.4', NOW))
  t.ok(some.applies('B.Example.:443', '1.2.3.4', NOW))
  t.notOk(some.applies('c.example', '1.2.3.4', NOW))
  t.notOk(some.applies('a.example.evil', '1.2.3.4', NOW))
  t.notOk(some.applies(undefined, '1.2.3.4', NOW), 'no Host names none of them')
  t.notOk(some.applies('[::1]:80', '1.2.3.4', NOW))
})

t.test('allow-listed clients pass: IPv4 and IPv6 blocks, IPv4-mapped addresses', async (t) => {
  const m = compileMaintenance(state({ allow: ['10.0.0.0/8', '192.0.2.7', '2001:db8::/32'] }))
  t.notOk(m.applies('a', '10.1.2.3', NOW))
  t.notOk(m.applies('a', '192.0.2.7', NOW))
  t.notOk(m.applies('a', '::ffff:10.9.9.9', NOW))
  t.notOk(m.applies('a', '2001:db8:1::5', NOW))
  t.ok(m.applies('a', '11.0.0.1', NOW))
  t.ok(m.applies('a', '192.0.2.8', NOW))
  t.ok(m.applies('a', '2001:db9::1', NOW))
})

t.test('over at until by the node\'s own clock; Retry-After is the time left, 1 s to the cap', async (t) => {
  const m = compileMaintenance(state({ until: NOW + 90_500 }))
  t.ok(m.applies('a', '1.2.3.4', NOW + 90_499))
  t.notOk(m.applies('a', '1.2.3.4', NOW + 90_500))
  t.equal(m.retryAfter(NOW + 30_000), 61, 'rounded up')
  t.equal(m.retryAfter(NOW + 90_400), 1)
  t.equal(m.retryAfter(NOW + 90_500), 1, 'never 0')
  t.equal(compileMaintenance(state({ until: NOW + MAX_MAINTENANCE_MS })).retryAfter(NOW), MAX_RETRY_AFTER_S, 'capped')
})

t.test('answers: HTML (message escaped) or JSON, 503, no-store, Retry-After, HEAD without a body', async (t) => {
  const m = compileMaintenance(state({ message: 'Back <soon> & "well"\nsecond line', until: NOW + 120_000 }))
  const html = m.response(false, false, false, NOW).toString('utf8')
  const [head, body] = html.split('\r\n\r\n') as [string, string]
  t.match(head, /^HTTP\/1\.1 503 Service Unavailable\r\n/)
  t.match(head, /\r\nContent-Type: text\/html; charset=utf-8\r\n/)
  t.match(head, /\r\nCache-Control: no-store\r\n/)
  t.match(head, /\r\nRetry-After: 120$/)
  t.equal(Number(/Content-Length: (\d+)/.exec(head)?.[1]), Buffer.byteLength(body))
  t.match(body, 'Back &lt;soon&gt; &amp; &quot;well&quot;<br>second line')
  t.notMatch(body, '<soon>')
  t.match(body, '2026-12-02 12:02:00 UTC')
  const json = m.response(true, false, true, NOW).toString('utf8')
  t.match(json, /\r\nContent-Type: application\/json\r\n/)
  t.match(json, /\r\nConnection: close\r\n\r\n/)
  t.same(JSON.parse(json.split('\r\n\r\n')[1]!), { code: 'ESPRA_ERR_MAINTENANCE', message: 'Back <soon> & "well"\nsecond line', until: '2026-12-02T12:02:00Z' })
  const headOnly = m.response(false, true, false, NOW).toString('utf8')
  t.ok(headOnly.endsWith('\r\n\r\n'), 'HEAD: the head alone')
  t.match(headOnly, /Content-Length: [1-9]\d*/, 'with the length a GET would get')
  t.equal(renderMaintenancePage(state()), renderMaintenancePage(state()), 'rendering is a pure function of the state')
})

t.test('JSON when Accept names JSON before HTML', async (t) => {
  t.ok(wantsJson('application/json'))
  t.ok(wantsJson('application/problem+json'))
  t.ok(wantsJson('application/json, text/html;q=0.5'))
  t.notOk(wantsJson('text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8'), 'a browser')
  t.notOk(wantsJson('*/*'))
  t.notOk(wantsJson(''))
  t.notOk(wantsJson(undefined))
  t.notOk(wantsJson('text/html, application/json'))
})

t.test('compiled once per state object', async (t) => {
  const cache = createMaintenanceCache()
  const s = state()
  t.equal(cache(null), null)
  t.equal(cache(undefined), null)
  const first = cache(s)
  t.equal(cache(s), first, 'the same state: the same compiled answers')
  t.not(cache(state()), first, 'a new state: compiled again')
})

t.test('a parent takes pushes: new states, the same one again kept as it was, malformed ones ignored', async (t) => {
  const { log, lines } = captureLog('debug')
  const s = state()
  const held = maintenancePush({ state: s }, null, log)
  t.same(held, s)
  t.equal(maintenancePush({ state: { ...s } }, held, log), held, 'equal state pushed again (a re-register): the object kept, so children hear no change')
  t.equal(maintenancePush({ state: { ...s, message: 42 } }, held, log), held, 'malformed: ignored')
  t.ok(lines.some((l) => l.msg === 'malformed maintenance push ignored'))
  t.equal(maintenancePush('garbage', held, log), held)
  t.equal(maintenancePush({ state: null }, held, log), null, 'null ends it')
})

t.test('stored or pushed states are checked field by field', async (t) => {
  t.same(parseMaintenanceState(state()), state())
  t.equal(parseMaintenanceState(null), null)
  t.equal(parseMaintenanceState({ ...state(), until: 'soon' }), null)
  t.equal(parseMaintenanceState({ ...state(), hosts: ['Bad_Host'] }), null)
  t.equal(parseMaintenanceState({ ...state(), allow: ['10.0.0.0/99'] }), null)
  t.equal(parseMaintenanceState({ ...state(), message: '' }), null)
  t.equal(parseMaintenanceState({ ...state(), at: undefined }), null)
})
