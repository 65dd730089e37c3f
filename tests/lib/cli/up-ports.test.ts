import t from 'tap'
import { createServer, type Server } from 'node:net'
import { assertUpPortsFree, MAX_PORT_BASE, UP_PORT_SPAN, upPorts } from '../../../lib/cli/up-ports.js'
import { ROLE_NAMES } from '../../../lib/core/config.js'
import { freePortBlock } from '../../helpers/up.js'

t.test('--port-base B takes exactly B .. B+16, every port once', async (t) => {
  const plan = upPorts(21000)
  const ports = plan.all.map((p) => p.port).sort((a, b) => a - b)
  t.equal(UP_PORT_SPAN, 17)
  t.same(ports, [...Array(UP_PORT_SPAN).keys()].map((i) => 21000 + i), 'contiguous, no gaps, no duplicates')
  t.equal(plan.meta, 21000)
  t.same(ROLE_NAMES.map((r) => plan.roles[r]), [21001, 21002, 21003, 21004, 21005, 21006, 21007], 'public ports in role order')
  t.same(ROLE_NAMES.map((r) => plan.metrics[r]), [21008, 21009, 21010, 21011, 21012, 21013, 21014], 'metrics ports next')
  t.equal(plan.roles.live + plan.liveLinkOffset, 21015, 'the Live link next')
  t.equal(plan.smtp, 21016, 'the SMTP port is the last port')
  t.equal(MAX_PORT_BASE + UP_PORT_SPAN - 1, 65535)
  // The case from the issue: up --port-base 22000 beside up --port-base 21000 shares nothing.
  const beside = new Set(upPorts(22000).all.map((p) => p.port))
  t.notOk(plan.all.some((p) => beside.has(p.port)), 'two clusters 1000 apart do not overlap')
})

t.test('the defaults are the documented ports', async (t) => {
  const plan = upPorts()
  t.equal(plan.meta, 7000)
  t.match(plan.roles, { seed: 7001, proxy: 8080, fileserver: 8081, app: 8082, live: 8083, mail: 8084, admin: 8085 })
  t.match(plan.metrics, { seed: 8001, proxy: 9080, admin: 9085 })
  t.equal(plan.roles.live + plan.liveLinkOffset, 10083)
  t.equal(plan.smtp, 2525)
})

t.test('every taken port is named in one error that names --port-base', async (t) => {
  const base = await freePortBlock()
  const hold = (port: number) => new Promise<Server>((resolve) => {
    const s = createServer()
    s.listen({ host: '127.0.0.1', port }, () => resolve(s))
  })
  const held = await Promise.all([hold(base + 9), hold(base + 15)])
  t.teardown(() => held.forEach((s) => s.close()))
  await t.rejects(assertUpPortsFree('127.0.0.1', upPorts(base)), {
    code: 'ESPRA_ERR_NODE_LISTEN',
    message: `--port-base: ports ${base + 9} (proxy metrics port), ${base + 15} (live link port) already in use; up needs ${base}-${base + 16} free. ` +
      'Is another cluster running? Pick a free range with --port-base <port> (it takes 17 ports from there)',
  })
  held.forEach((s) => s.close())
  await assertUpPortsFree('127.0.0.1', upPorts(base))
  t.pass('free again: no error')
})
