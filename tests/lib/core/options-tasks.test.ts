// The task-queue options: --redis URLs checked at load, the password never printed; the --task-* defaults.
import t from 'tap'
import { loadConfig, printable } from '../../../lib/core/config.js'

const load = (flags: Record<string, unknown>) => loadConfig({ flags: { role: 'app', ...flags }, env: { ESPRA_SECRET: 'test-cluster-secret-0123456789' } })

t.test('--redis: redis:// or rediss:// with a host and at most a database number', async (t) => {
  t.equal(load({}).redis, null, 'default: the embedded queue')
  t.equal(load({ redis: 'redis://127.0.0.1:6379/2' }).redis, 'redis://127.0.0.1:6379/2')
  t.equal(load({ redis: 'rediss://cache.internal:6380' }).redis, 'rediss://cache.internal:6380')
  for (const bad of ['127.0.0.1:6379', 'http://host:6379', 'redis://', 'redis://host/abc', 'not a url']) {
    t.throws(() => load({ redis: bad }), { code: 'ESPRA_ERR_CONFIG_INVALID', details: { option: '--redis' } }, bad)
  }
})

t.test('config check masks a Redis password', async (t) => {
  const shown = printable(load({ redis: 'redis://app:s3cret@10.0.0.5:6379/0' }))
  t.equal(shown['redis'], 'redis://app:***@10.0.0.5:6379/0')
  t.notMatch(JSON.stringify(shown), /s3cret/)
})

t.test('task defaults follow --threads', async (t) => {
  t.match(load({ threads: 4 }), { taskConcurrency: 2, taskTimeout: 300_000, taskLease: 30_000, taskBackoff: 1000 })
  t.equal(load({ threads: 1 }).taskConcurrency, 1, 'at least 1')
  t.equal(load({ threads: 4, taskConcurrency: 0 }).taskConcurrency, 0, '0: this node runs no tasks')
  t.throws(() => load({ taskLease: '10ms' }), { code: 'ESPRA_ERR_CONFIG_INVALID', message: /^--task-lease: / }, 'a lease shorter than 300ms')
})
