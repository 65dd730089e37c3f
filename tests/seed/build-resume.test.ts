// Which unfinished deploy a new leader resumes, and which builds it tells the nodes to drop (seed/build-resume.ts).
import t from 'tap'
import type { BuildRecord } from '../../lib/builds/manifest.js'
import { MAX_CANCELLED, planResume } from '../../seed/build-resume.js'

const rec = (n: number, fields: Partial<BuildRecord> = {}): BuildRecord => ({
  id: `b${n}`, n, at: 1000 * n, message: '', files: 1, bytes: 1, manifestKey: `builds/b${n}/manifest.json`, ...fields,
})
const resumable = (n: number, fields: Partial<BuildRecord> = {}) => rec(n, { state: 'staging', stagingAt: 1000 * n, canaryPlanned: false, ...fields })
const ids = (plan: ReturnType<typeof planResume>) => ({ resume: plan.resume?.id ?? null, activated: plan.activated?.id ?? null, cancel: plan.cancel })

t.test('the newest deploy left staging, written by code that can resume it, without a canary: resumed', async (t) => {
  t.same(ids(planResume([rec(1, { state: 'live' }), resumable(2)], 'b1')), { resume: 'b2', activated: null, cancel: [] })
})

t.test('nothing unfinished: nothing to do', async (t) => {
  t.same(ids(planResume([], null)), { resume: null, activated: null, cancel: [] })
  t.same(ids(planResume([rec(1, { state: 'live' }), rec(2, { state: 'refused' })], 'b1')), { resume: null, activated: null, cancel: [] })
})

t.test('a record of older code (no stagingAt, no canaryPlanned) stays abandoned, and nodes drop its build', async (t) => {
  t.same(ids(planResume([rec(1, { state: 'live' }), rec(2, { state: 'staging' })], 'b1')), { resume: null, activated: null, cancel: ['b2'] })
  t.same(ids(planResume([rec(1, { state: 'live' }), resumable(2, { canaryPlanned: undefined })], 'b1')), { resume: null, activated: null, cancel: ['b2'] })
})

const PLAN = { nodes: 1, timeMs: 60_000 }
const figures = (nodes: string[]) => ({ nodes, requests: 0, errors5xx: 0, errorRate: 0, crashes: 0, p99Ms: null })
const WATCH = { plan: PLAN, nodes: ['app-1'], startedAt: 5000, timeMs: 60_000, verdict: 'watching' as const, reasons: [], canary: figures(['app-1']), baseline: figures(['app-2']) }

t.test('a canary deploy whose record carries its plan is resumed: still staging, or its canary watched', async (t) => {
  t.same(ids(planResume([rec(1, { state: 'live' }), resumable(2, { canaryPlanned: true, canaryPlan: PLAN })], 'b1')), { resume: 'b2', activated: null, cancel: [] }, 'staging')
  t.same(ids(planResume([rec(1, { state: 'live' }), resumable(2, { state: 'canary', canaryPlanned: true, canaryPlan: PLAN, canary: WATCH })], 'b1')), { resume: 'b2', activated: null, cancel: [] }, 'watching')
  t.same(ids(planResume([rec(1, { state: 'live' }), resumable(2, { state: 'canary', canaryPlanned: true, canaryPlan: PLAN, canary: WATCH })], 'b2')), { resume: null, activated: 'b2', cancel: [] },
    'passed and made current before its record said so: written live')
})

t.test('a canary deploy without a usable plan or watch in its record is not resumed: its build is dropped', async (t) => {
  t.same(ids(planResume([rec(1, { state: 'live' }), resumable(2, { canaryPlanned: true })], 'b1')), { resume: null, activated: null, cancel: ['b2'] }, 'no plan (older code)')
  t.same(ids(planResume([rec(1, { state: 'live' }), resumable(2, { state: 'canary', canaryPlanned: true })], 'b1')), { resume: null, activated: null, cancel: ['b2'] }, 'canary, no plan')
  t.same(ids(planResume([rec(1, { state: 'live' }), resumable(2, { state: 'canary', canaryPlanned: true, canaryPlan: PLAN })], 'b1')), { resume: null, activated: null, cancel: ['b2'] }, 'canary, no watch recorded')
  t.same(ids(planResume([rec(1, { state: 'live' }), resumable(2, { canaryPlanned: true, canaryPlan: { nodes: 0, timeMs: 1 } as never })], 'b1')), { resume: null, activated: null, cancel: ['b2'] }, 'a malformed plan')
  t.same(ids(planResume([rec(1, { state: 'live' }), resumable(2, { state: 'canary', canaryPlanned: true, canaryPlan: PLAN, canary: { ...WATCH, nodes: [] } })], 'b1')), { resume: null, activated: null, cancel: ['b2'] }, 'a watch of no canaries')
})

t.test('superseded: an older record still says staging under a newer deploy; only the newest can be resumed', async (t) => {
  t.same(ids(planResume([rec(1, { state: 'live' }), resumable(2), rec(3, { state: 'live', stagingAt: 3000, canaryPlanned: false })], 'b3')), { resume: null, activated: null, cancel: ['b2'] })
  t.same(ids(planResume([rec(1, { state: 'live' }), resumable(2), resumable(3)], 'b1')), { resume: 'b3', activated: null, cancel: ['b2'] })
})

t.test('a rollback is the newest deploy by when it started, not by build number', async (t) => {
  const records = [rec(1, { state: 'staging', stagingAt: 9000, canaryPlanned: false }), rec(2, { state: 'live', stagingAt: 2000, canaryPlanned: false })]
  t.same(ids(planResume(records, 'b2')), { resume: 'b1', activated: null, cancel: [] })
})

t.test('the newest deploy already current (activated before its record said so): written live, not staged again', async (t) => {
  t.same(ids(planResume([rec(1, { state: 'live' }), resumable(2)], 'b2')), { resume: null, activated: 'b2', cancel: [] })
})

t.test('the current build is never cancelled, and at most the newest MAX_CANCELLED are', async (t) => {
  const many = Array.from({ length: 15 }, (_, i) => rec(i + 1, { state: 'staging' }))
  const plan = planResume(many, 'b15')
  t.equal(plan.cancel.length, MAX_CANCELLED)
  t.same(plan.cancel.slice(0, 2), ['b14', 'b13'], 'newest first')
  t.notOk(plan.cancel.includes('b15'))
})
