// The canary plan, how many nodes it picks, the latency quantile and the rules that judge the figures.
import t from 'tap'
import { canaryCount, figuresOf, judge, judgeEarly, parseCanaryPlan, type Tally } from '../../../lib/builds/canary.js'
import { LATENCY_BOUNDS_MS, latencyBucket, quantileOf } from '../../../lib/core/latency-histogram.js'

t.test('parseCanaryPlan keeps a clean plan and names the bad field', async (t) => {
  t.same(parseCanaryPlan({ nodes: 2, timeMs: 5000, extra: 1 }), { nodes: 2, timeMs: 5000 })
  t.same(parseCanaryPlan({ percent: 12.5, timeMs: 3_600_000 }), { percent: 12.5, timeMs: 3_600_000 })
  t.throws(() => parseCanaryPlan(null), { code: 'ESPRA_ERR_META_BAD_REQUEST', details: { field: 'canary' } })
  t.throws(() => parseCanaryPlan({ nodes: 1, timeMs: Infinity }), { code: 'ESPRA_ERR_META_BAD_REQUEST', details: { field: 'canary.timeMs' } })
  t.throws(() => parseCanaryPlan({ percent: Number.NaN, timeMs: 5000 }), { code: 'ESPRA_ERR_META_BAD_REQUEST', details: { field: 'canary.percent' } })
  t.throws(() => parseCanaryPlan({ nodes: 1001, timeMs: 5000 }), { code: 'ESPRA_ERR_META_BAD_REQUEST', details: { field: 'canary.nodes' } })
})

t.test('canaryCount: at least one, never all, none below two app nodes', async (t) => {
  t.equal(canaryCount({ nodes: 1, timeMs: 5000 }, 1), 0)
  t.equal(canaryCount({ nodes: 1, timeMs: 5000 }, 2), 1)
  t.equal(canaryCount({ nodes: 5, timeMs: 5000 }, 3), 2, 'capped at all but one')
  t.equal(canaryCount({ percent: 1, timeMs: 5000 }, 10), 1, 'rounded up to one')
  t.equal(canaryCount({ percent: 25, timeMs: 5000 }, 10), 3, '2.5 rounds up')
  t.equal(canaryCount({ percent: 99, timeMs: 5000 }, 4), 3)
})

t.test('latency buckets and quantiles', async (t) => {
  t.equal(latencyBucket(0.3), 0)
  t.equal(latencyBucket(1), 0, 'bounds are inclusive')
  t.equal(latencyBucket(1.01), 1)
  t.equal(latencyBucket(99_999), LATENCY_BOUNDS_MS.length - 1, 'slower than the last bound: the last bucket')
  t.equal(quantileOf([], 0.99), null)
  const counts = new Array<number>(LATENCY_BOUNDS_MS.length).fill(0)
  counts[2] = 989
  counts[7] = 11
  t.equal(quantileOf(counts, 0.99), 250, '1.1 % above 100 ms: p99 in the 250 ms bucket')
  counts[2] = 990
  counts[7] = 10
  t.equal(quantileOf(counts, 0.99), 5, 'exactly 1 % slow: p99 still 5 ms')
})

const tally = (requests: number, errors5xx: number, bucket = 2, crashes = 0): Tally => {
  const latency = new Array<number>(LATENCY_BOUNDS_MS.length).fill(0)
  latency[bucket] = requests
  return { requests, errors5xx, crashes, latency }
}
const judged = (canary: Tally, baseline: Tally) => judge(figuresOf(['c'], canary), figuresOf(['b'], baseline))

t.test('the rules', async (t) => {
  t.same(judged(tally(1000, 10), tally(1000, 0)), [], '1.00 % is not above 1 %')
  t.match(judged(tally(1000, 11), tally(1000, 0)), [/5xx rate 1\.10 % over the limit 1\.00 %/])
  t.same(judged(tally(1000, 50), tally(1000, 30)), [], 'baseline at 3 %: the limit is 6 %')
  t.match(judged(tally(1000, 70), tally(1000, 30)), [/over the limit 6\.00 %/])
  t.same(judged(tally(99, 99), tally(1000, 0)), [], 'fewer than 100 canary answers: rates not judged')
  t.match(judged(tally(10, 0, 2, 1), tally(0, 0)), [/1 worker crash/], 'a crash counts whatever the traffic')
  t.same(judged(tally(1000, 0, 5), tally(1000, 0, 2)), [], 'p99 50 ms against 5 ms: within 2 × 5 + 50')
  t.match(judged(tally(1000, 0, 6), tally(1000, 0, 2)), [/p99 100 ms over the limit 60 ms/])
  t.same(judged(tally(1000, 0, 9), tally(99, 0, 2)), [], 'p99 needs 100 baseline answers too')
})

t.test('the early rule: twice the limit over at least 500 answers', async (t) => {
  const early = (canary: Tally, baseline: Tally) => judgeEarly(figuresOf(['c'], canary), figuresOf(['b'], baseline))
  t.same(early(tally(499, 499), tally(0, 0)), [], 'not before 500 answers')
  t.same(early(tally(1000, 20), tally(1000, 0)), [], '2 % is not above twice 1 %')
  t.match(early(tally(1000, 21), tally(1000, 0)), [/5xx rate 2\.10 % over twice the limit 1\.00 % after 1000 answers/])
  t.same(early(tally(1000, 150), tally(1000, 40)), [], 'baseline 4 %: the limit is 8 %, early at over 16 %')
  t.match(early(tally(1000, 170), tally(1000, 40)), [/over twice the limit 8\.00 %/])
})
