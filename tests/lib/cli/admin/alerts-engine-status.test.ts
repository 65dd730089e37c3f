// The `alert engine:` line of `admin status` in each state of the lease (docs/alerts.md, "One engine per cluster").
import t from 'tap'
import { formatAlertEngine } from '../../../../lib/cli/admin/status.js'

const now = 1_800_000_000_000
const lease = { holder: 'admin-1', epoch: 3, beat: 40, leaseMs: 10_000, acquiredAt: now - 60_000, renewedAt: now - 2_000, expiresAt: now + 8_000, held: true }

t.equal(formatAlertEngine({ lease }, now), 'alert engine: admin-1 (epoch 3, lease 10000 ms, renewed 2 s ago)')
t.equal(formatAlertEngine({ lease: null }, now), 'alert engine: none yet (no admin node with --alerts true has taken the lease)')
t.equal(formatAlertEngine({ lease: { ...lease, holder: null, expiresAt: 0, held: false } }, now), 'alert engine: none (released at epoch 3; an admin node with --alerts true takes it within 2500 ms)')
t.equal(formatAlertEngine({ lease: { ...lease, renewedAt: now - 30_000, expiresAt: now - 20_000, held: false } }, now),
  'alert engine: none holds the lease (admin-1 at epoch 3 ran out, renewed 30 s ago; a standby takes over within 20000 ms)')
t.equal(formatAlertEngine({ error: { code: 'ESPRA_ERR_META_TIMEOUT', message: 'no answer' } }, now), 'alert engine: unknown (no answer)')
