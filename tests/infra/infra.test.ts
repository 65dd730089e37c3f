// infra/ as an operator uses it: the systemd unit verifies, the EC2 user data is shellcheck-clean.
import t from 'tap'
import { spawnSync } from 'node:child_process'
import { copyFileSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'

const INFRA = resolve(import.meta.dirname, '../../infra')

t.test('systemd-analyze verify passes on the unit, as a template and as an instance', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'espra-systemd-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  for (const name of ['espra-node@.service', 'espra-node@live.service']) {
    copyFileSync(join(INFRA, 'systemd/espra-node@.service'), join(dir, name))
    const run = spawnSync('systemd-analyze', ['verify', join(dir, name)], { encoding: 'utf8' })
    t.equal(run.status, 0, `${name}: ${run.stderr}`)
    t.equal(run.stderr.trim(), '', `${name}: no warnings`)
  }
})

t.test('the unit stops for longer than a drain plus a default ELB deregistration delay', async (t) => {
  const unit = readFileSync(join(INFRA, 'systemd/espra-node@.service'), 'utf8')
  const stop = Number(/^TimeoutStopSec=(\d+)$/m.exec(unit)?.[1])
  t.ok(stop > 300 + 10, `TimeoutStopSec=${stop}`)
  for (const line of ['KillSignal=SIGTERM', 'Restart=on-failure', 'NoNewPrivileges=true', 'ProtectSystem=strict', 'PrivateTmp=true', 'ReadWritePaths=/var/lib/espra-node']) {
    t.match(unit, new RegExp(`^${line}$`, 'm'), line)
  }
})

t.test('shellcheck passes on the EC2 user data and the test-package script', async (t) => {
  for (const file of [join(INFRA, 'ec2/user-data.sh'), resolve(import.meta.dirname, '../system-packages.sh')]) {
    const run = spawnSync('shellcheck', [file], { encoding: 'utf8' })
    t.equal(run.status, 0, `${file}: ${run.stdout}${run.stderr}`)
  }
})
