// The drain state machine's restart orders (lib/process/drainer.ts), without processes: the process a restart
// order names stops asking for the restart status; any other process (started after it) stays drained and idle.
import t from 'tap'
import { createDrainer } from '../../../lib/process/drainer.js'
import { captureLog } from '../../helpers/meta.js'

function drainer(startedAt: number) {
  const { log, lines } = captureLog('info')
  const seen = { draining: [] as boolean[], stops: [] as boolean[] }
  const d = createDrainer({ log, startedAt, setDraining: (v) => seen.draining.push(v), elb: () => null, stop: (restart) => seen.stops.push(restart) })
  return { d, seen, lines }
}

const settle = () => new Promise((r) => setTimeout(r, 20))

t.test('a restart order naming this process: drained, then stop(restart)', async (t) => {
  const { d, seen, lines } = drainer(1000)
  d.apply({ then: 'restart', graceMs: 0, at: 5000, restartOf: 1000 })
  await settle()
  t.same(seen, { draining: [true], stops: [true] })
  t.ok(lines.some((l) => l.msg === 'drain: grace over, stopping to be restarted by the process manager'))
  d.apply({ then: 'restart', graceMs: 0, at: 5000, restartOf: 1000 })
  await settle()
  t.same(seen.stops, [true], 'the same order pushed again (seed restart) is not carried out twice')
})

t.test('a restart order naming another process (this one started after it): drained and idle, never stopped', async (t) => {
  const { d, seen, lines } = drainer(9000)
  d.apply({ then: 'restart', graceMs: 0, at: 5000, restartOf: 1000 })
  await settle()
  t.same(seen, { draining: [true], stops: [] })
  t.ok(lines.some((l) => l.msg === 'drain: this process started after the restart order; it stays drained and idle (admin undrain brings it back)'))
  d.apply(null)
  t.same(seen.draining, [true, false], 'undrain lifts it')
})

t.test('a stop order still stops with the clean status', async (t) => {
  const { d, seen } = drainer(1000)
  d.apply({ then: 'stop', graceMs: 0, at: 5000 })
  await settle()
  t.same(seen.stops, [false])
})
