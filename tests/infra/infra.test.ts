// infra/ as an operator uses it: the systemd unit verifies, the EC2 user data is shellcheck-clean.
import t from 'tap'
import { spawnSync } from 'node:child_process'
import { copyFileSync, readFileSync, rmSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { RESTART_EXIT_CODE } from '../../lib/transport/drain-order.js'
import { testDir } from '../helpers/temp-dir.js'

const INFRA = resolve(import.meta.dirname, '../../infra')

t.test('systemd-analyze verify passes on the unit, as a template and as an instance', async (t) => {
  const dir = testDir('espra-systemd-')
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
  for (const line of ['KillSignal=SIGTERM', 'Restart=on-failure', `SuccessExitStatus=${RESTART_EXIT_CODE}`, `RestartForceExitStatus=${RESTART_EXIT_CODE}`, 'NoNewPrivileges=true', 'ProtectSystem=strict', 'PrivateTmp=true', 'ReadWritePaths=/var/lib/espra-node']) {
    t.match(unit, new RegExp(`^${line}$`, 'm'), line)
  }
})

t.test('shellcheck passes on the EC2 user data and the test-package script', async (t) => {
  for (const file of [join(INFRA, 'ec2/user-data.sh'), resolve(import.meta.dirname, '../system-packages.sh')]) {
    const run = spawnSync('shellcheck', [file], { encoding: 'utf8' })
    t.equal(run.status, 0, `${file}: ${run.stdout}${run.stderr}`)
  }
})

t.test('the IAM policy allows exactly the ELB calls the code makes, on the bucket and the secret only', async (t) => {
  const policy = JSON.parse(readFileSync(join(INFRA, 'iam/espra-node-policy.json'), 'utf8')) as { Statement: { Action: string[]; Resource: string | string[] }[] }
  const allowed = policy.Statement.flatMap((s) => s.Action)
  const source = readFileSync(resolve(import.meta.dirname, '../../lib/elb/target-group.ts'), 'utf8')
  const called = [...new Set([...source.matchAll(/new (\w+)Command\(/g)].map((m) => `elasticloadbalancing:${m[1]}`))].sort()
  t.same(allowed.filter((a) => a.startsWith('elasticloadbalancing:')).sort(), called, 'ELB actions = the commands lib/elb/target-group.ts sends')
  t.notOk(allowed.some((a) => a.includes('*')), 'no wildcard actions')
  for (const s of policy.Statement) {
    const resources = ([] as string[]).concat(s.Resource)
    // Describe* calls take no resource-level permission in IAM: they are the only ones allowed on "*".
    if (resources.includes('*')) t.ok(s.Action.every((a) => /^elasticloadbalancing:Describe/.test(a)), `${s.Action.join()} on "*"`)
    else t.ok(resources.every((r) => /^arn:aws:(s3:::ESPRA_BUCKET|elasticloadbalancing:\*:\*:targetgroup\/espra-|ssm:)/.test(r)), resources.join())
  }
})
