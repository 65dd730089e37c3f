// A node's kept copy of the maintenance state: written on every change, read at start (so a restarted node answers
// the page before it reaches the seed), ignored once expired or when it is not a state.
import { readFileSync, writeFileSync, existsSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { loadConfig, type NodeConfig } from '../../../lib/core/config.js'
import { readMaintenanceFile, writeMaintenanceFile } from '../../../lib/process/maintenance-file.js'
import { captureLog, SECRET } from '../../helpers/meta.js'
import { testDir } from '../../helpers/temp-dir.js'

function config(): NodeConfig {
  const dataDir = testDir('espra-maint-file-')
  return loadConfig({ flags: { role: 'fileserver', nodeId: 'fs-7', dataDir }, env: { ESPRA_SECRET: SECRET } })
}
const state = (until: number) => ({ message: 'back soon', until, hosts: ['a.example'], allow: ['10.0.0.0/8'], at: Date.now() })

t.test('written, read back, removed', async (t) => {
  const cfg = config()
  const { log, lines } = captureLog('debug')
  t.equal(readMaintenanceFile(cfg, log), null, 'none yet')
  const s = state(Date.now() + 60_000)
  writeMaintenanceFile(cfg, s, log)
  const file = join(cfg.dataDir, 'state', 'fs-7.maintenance.json')
  t.same(JSON.parse(readFileSync(file, 'utf8')), s, 'kept under <data-dir>/state/<node-id>.maintenance.json')
  t.same(readMaintenanceFile(cfg, log), s)
  t.ok(lines.some((l) => l.msg === 'maintenance kept from the last run: in force until the seed says otherwise'))
  writeMaintenanceFile(cfg, null, log)
  t.notOk(existsSync(file), 'null removes it')
  t.equal(readMaintenanceFile(cfg, log), null)
})

t.test('an expired copy is ignored; a malformed one is ignored and said', async (t) => {
  const cfg = config()
  const { log, lines } = captureLog('debug')
  writeMaintenanceFile(cfg, state(Date.now() - 1), log)
  t.equal(readMaintenanceFile(cfg, log), null, 'expired: over by this node\'s clock')
  const file = join(cfg.dataDir, 'state', 'fs-7.maintenance.json')
  writeFileSync(file, '{"message": 5')
  t.equal(readMaintenanceFile(cfg, log), null)
  writeFileSync(file, JSON.stringify({ ...state(Date.now() + 60_000), allow: ['not-an-address'] }))
  t.equal(readMaintenanceFile(cfg, log), null)
  t.equal(lines.filter((l) => l.msg === 'the kept copy of the maintenance state is malformed: ignored').length, 2)
})
