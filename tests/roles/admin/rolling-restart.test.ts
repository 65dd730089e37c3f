// The flags of `admin rolling-restart`, checked once before the seed is asked anything: each bad value
// is refused with ESPRA_ERR_CONFIG_INVALID naming the option and what is allowed (the CLI exits 2).
import t from 'tap'
import { planOf, type RollingRestartFlags } from '../../../roles/admin/rolling-restart.js'

const refusal = (flags: RollingRestartFlags) => {
  try {
    planOf(flags)
    return null
  } catch (err) {
    return err as { code: string; message: string; details?: { option?: string } }
  }
}

t.test('defaults: batch 1, no --min-healthy, 120 s per node, every region', async (t) => {
  t.same(planOf({ role: 'app' }), { role: 'app', region: null, batch: 1, minHealthy: null, timeoutMs: 120_000 })
  t.same(planOf({ role: 'live', region: 'eu-1', batch: '3', minHealthy: '2', timeout: '2m', mode: 'reload' }), { role: 'live', region: 'eu-1', batch: 3, minHealthy: 2, timeoutMs: 120_000 })
})

t.test('bad flags name the option and what is allowed', async (t) => {
  const cases: [RollingRestartFlags, string, RegExp][] = [
    [{}, '--role', /^--role: required: one of proxy, live, fileserver, app, mail, admin$/],
    [{ role: 'nope' }, '--role', /^--role: must be one of seed, proxy, live, fileserver, app, mail, admin$/],
    [{ role: 'seed' }, '--role', /^--role: the seed runs in its parent only/],
    [{ role: 'app', batch: '0' }, '--batch', /^--batch: must be an integer from 1 to 1000$/],
    [{ role: 'app', batch: '1001' }, '--batch', /^--batch: must be an integer from 1 to 1000$/],
    [{ role: 'app', batch: 'two' }, '--batch', /^--batch: must be an integer from 1 to 1000$/],
    [{ role: 'app', batch: '1.5' }, '--batch', /^--batch: must be an integer from 1 to 1000$/],
    [{ role: 'app', minHealthy: '-1' }, '--min-healthy', /^--min-healthy: must be an integer from 0 to 100000$/],
    [{ role: 'app', timeout: '5' }, '--timeout', /^--timeout: must be a duration from 1000ms to 3600000ms$/],
    [{ role: 'app', timeout: 'soon' }, '--timeout', /^--timeout: must be a duration such as/],
    [{ role: 'app', region: 'EU West' }, '--region', /^--region: lower-case letters, digits and dashes, at most 32$/],
    [{ role: 'app', mode: 'sideways' }, '--mode', /^--mode: must be one of reload, restart$/],
  ]
  for (const [flags, option, message] of cases) {
    const err = refusal(flags)
    t.equal(err?.code, 'ESPRA_ERR_CONFIG_INVALID', JSON.stringify(flags))
    t.equal(err?.details?.option, option)
    t.match(err?.message, message)
  }
})

t.test('--mode restart is refused as not built yet (drain-then-stop restarts are another piece of work)', async (t) => {
  const err = refusal({ role: 'app', mode: 'restart' })
  t.equal(err?.code, 'ESPRA_ERR_NOT_IMPLEMENTED')
  t.match(err?.message, /--mode restart .* is not built yet/)
})
