// A request to a channel's home answered MOVED is sent again to the home of the next table, within one overall
// deadline: the client hears 5030 before its child's wait for the parent ends, whatever the retries and waits add up to.
import t from 'tap'
import type { NodeConfig } from '../../../lib/core/config.js'
import { LiveError } from '../../../roles/live/errors.js'
import { createHomeLinks, type HomeLinksOptions } from '../../../roles/live/home-links.js'
import { captureLog } from '../../helpers/meta.js'

function links(answerHere: HomeLinksOptions['answerHere'], nextTable: () => Promise<void>, forwardDeadlineMs?: number) {
  return createHomeLinks({
    config: { nodeId: 'live-a', liveLinkOffset: 2000 } as NodeConfig,
    self: 'live-a',
    log: captureLog('silent').log,
    answerHere, nextTable,
    homeOf: () => 'live-a',
    entry: () => undefined,
    onEvent: () => {},
    onConnect: () => {},
    ...(forwardDeadlineMs !== undefined ? { forwardDeadlineMs } : {}),
  })
}

t.test('answered MOVED, a request is sent again once the next table is applied', async (t) => {
  let calls = 0
  const answer = await links(() => {
    if (++calls === 1) throw new LiveError('MOVED', 'not the home yet')
    return { seq: 7 }
  }, () => Promise.resolve()).homeRequest('live-a', 'pub', { ch: 'room:1', data: 1 })
  t.same(answer, { seq: 7 })
  t.equal(calls, 2)
})

t.test('MOVED from the home this node\'s table names, and no newer table here: that home is asked again (its table was behind)', async (t) => {
  let calls = 0
  // No table ever comes: before, the request waited for one until the deadline and was answered 5030.
  const answer = await links(() => {
    if (++calls === 1) throw new LiveError('MOVED', 'not the home yet')
    return { seq: 3 }
  }, () => new Promise<void>(() => {}), 5000).homeRequest('live-a', 'pub', { ch: 'room:1', data: 1 })
  t.same(answer, { seq: 3 })
  t.equal(calls, 2)
})

t.test('MOVED again and again with no newer table: 5030 at the deadline, not MOVED after every wait', async (t) => {
  let calls = 0
  const err = await links(() => {
    calls++
    throw new LiveError('MOVED', 'not the home')
  }, () => new Promise<void>(() => {}), 150).homeRequest('live-a', 'pub', { ch: 'room:1', data: 1 }).then(() => null, (e: LiveError) => e)
  t.match(err, { code: 5030, message: /no answer from the home of room:1 within 150 ms/ })
  t.equal(calls, 1, 'the home was asked once; the wait for a table took the rest of the deadline')
})
