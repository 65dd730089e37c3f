// The `leader:` line of `admin status`, for every answer the `leader` op can give.
import t from 'tap'
import { formatLeader } from '../../../../lib/cli/admin/status.js'

const base = { seed: 'seed-b', fenced: true, leaseMs: 2000, leader: false, epoch: 3, holder: 'seed-a', address: '10.0.0.5:7000' }

t.test('formatLeader', async (t) => {
  t.equal(formatLeader(base), 'leader: seed-a at 10.0.0.5:7000 (epoch 3, lease 2000 ms)')
  t.equal(formatLeader({ ...base, holder: null, address: null }), 'leader: none holds the lease right now (last epoch 3; a seed takes over within 2000 ms)')
  t.equal(formatLeader({ ...base, fenced: false, leaseMs: 0, leader: true, epoch: null, holder: 'seed-x' }), 'leader: seed-x (embedded datastore: the only seed)')
  t.equal(formatLeader({ error: { code: 'ESPRA_ERR_META_UNKNOWN_OP', message: "unknown op 'leader'" } }), "leader: unknown (unknown op 'leader')", 'an older seed')
})
