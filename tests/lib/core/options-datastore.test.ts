// The datastore options: --datastore URLs checked at load, the password never printed; --tasks follows a postgres datastore.
import t from 'tap'
import { loadConfig, printable } from '../../../lib/core/config.js'
import { maskPostgresUrl } from '../../../lib/core/options-datastore.js'
import { postgresError, postgresWhere } from '../../../lib/storage/postgres.js'

const load = (flags: Record<string, unknown>, env: Record<string, string> = {}) =>
  loadConfig({ flags: { role: 'seed', ...flags }, env: { ESPRA_SECRET: 'test-cluster-secret-0123456789', ...env } })

t.test('--datastore: embedded or postgres:// with a host and a database', async (t) => {
  t.match(load({}), { datastore: 'embedded', datastorePool: 10, tasks: 'embedded' }, 'defaults')
  const url = 'postgres://espra:pw@db.internal:5432/espra'
  t.match(load({ datastore: url }), { datastore: url, tasks: 'postgres' }, 'the queue follows a postgres datastore')
  t.match(load({}, { ESPRA_DATASTORE: url, ESPRA_TASKS: 'embedded', ESPRA_DATASTORE_POOL: '3' }), { datastore: url, tasks: 'embedded', datastorePool: 3 }, 'from the environment; the queue may stay embedded')
  t.equal(load({ datastore: 'postgresql://h/db' }).datastore, 'postgresql://h/db')
  for (const bad of ['postgres://h', 'postgres://h/', 'mysql://h/db', 'h:5432/db', 'lmdb']) {
    t.throws(() => load({ datastore: bad }), { code: 'ESPRA_ERR_CONFIG_INVALID', details: { option: '--datastore' } }, bad)
  }
  t.throws(() => load({ tasks: 'postgres' }), { code: 'ESPRA_ERR_CONFIG_INVALID', message: /^--tasks: postgres needs --datastore/ })
  t.throws(() => load({ datastorePool: 0 }), { code: 'ESPRA_ERR_CONFIG_INVALID', message: /^--datastore-pool: / })
})

t.test('the password is masked in config check, in messages and in driver errors', async (t) => {
  const url = 'postgres://espra:s3cr%40t@10.0.0.5:5432/espra'
  const shown = printable(load({ datastore: url }))
  t.equal(shown['datastore'], 'postgres://espra:***@10.0.0.5:5432/espra')
  t.notMatch(JSON.stringify(shown), /s3cr/)
  t.equal(maskPostgresUrl('postgres://h/db?password=x'), 'postgres://h/db?password=***')
  t.equal(postgresWhere(url), '10.0.0.5:5432/espra')
  const err = postgresError(Object.assign(new Error('login for s3cr@t refused'), { code: '28P01' }), url)
  t.match(err, { code: 'ESPRA_ERR_DATASTORE_UNAVAILABLE', status: 503, details: { retryable: true } })
  t.equal(err.message, 'the datastore is unavailable: cannot use PostgreSQL at 10.0.0.5:5432/espra (login for *** refused)')
  t.match(postgresError(Object.assign(new Error('syntax error'), { code: '42601' }), url), { code: 'ESPRA_ERR_STORAGE_FAILED' }, 'a refusal is not an outage')
})
