// The app child's answer meter: counts per build, the report drops other builds, crashes counted.
import t from 'tap'
import { createAnswerMeter } from '../../../roles/app/answer-meter.js'

t.test('counts answers of the build served; other builds are dropped at each report', async (t) => {
  const meter = createAnswerMeter()
  const now = performance.now()
  meter.answer('b1', 200, now)
  meter.answer('b1', 503, now)
  meter.answer('b1', 599, now)
  meter.answer('b1', 600, now)
  meter.answer('b2', 500, now)
  meter.crash('b1')
  const b1 = meter.report('b1')
  t.match(b1, { build: 'b1', requests: 4, errors5xx: 2, crashes: 1 })
  t.equal(b1.latency.reduce((a, b) => a + b, 0), 4, 'every answer in a latency bucket')
  t.match(meter.report('b2'), { build: 'b2', requests: 0, errors5xx: 0 }, 'b2 was dropped when b1 was reported')
  t.match(meter.report(null), { build: null, requests: 0 })
  meter.answer('b2', 200, now)
  t.match(meter.report('b2'), { requests: 1 })
})
