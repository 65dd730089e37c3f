import t from 'tap'
import { chmodSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { NODE_OPTIONS, ROLE_NAMES } from '../../lib/core/config.js'
import { runCli } from '../helpers/up.js'
import { testDir } from '../helpers/temp-dir.js'

const env = { ...process.env, ESPRA_SECRET: 'y'.repeat(32) }

t.test('--help is complete: every option, its env name, every role and what it does not do yet', async (t) => {
  const r = await runCli(['--help'], { env })
  t.equal(r.code, 0)
  for (const o of NODE_OPTIONS) {
    t.match(r.stdout, o.flag.split(' ')[0]!, `documents ${o.flag}`)
    t.match(r.stdout, o.env, `names ${o.env}`)
  }
  for (const role of ROLE_NAMES) t.match(r.stdout, new RegExp(`^  ${role} `, 'm'), `describes ${role}`)
  t.match(r.stdout, 'not built yet')
  for (const sub of ['up', 'admin', 'config', 'version']) t.match(r.stdout, new RegExp(`^  ${sub}\\b`, 'm'), `lists ${sub}`)
})

t.test('bad values exit 2 with one line naming the option and what is allowed', async (t) => {
  const cases: [string[], RegExp][] = [
    [['--role=live', '--children=0'], /^espra-node: --children: must be an integer from 1 to 256 \(got "0"\)\n$/],
    [['--role=wizard'], /^espra-node: --role: must be one of seed, proxy, live, fileserver, app, mail, admin/],
    [['--role=live', '--drain-timeout=forever'], /^espra-node: --drain-timeout: must be a duration/],
    [['--role=live', '--seed=nowhere'], /^espra-node: --seed: must be host:port/],
    [['--region=us-1'], /^espra-node: --role: is required/],
  ]
  for (const [args, message] of cases) {
    const r = await runCli(args, { env })
    t.equal(r.code, 2, `${args.join(' ')} exits 2`)
    t.match(r.stderr, message)
    t.equal(r.stderr.trim().split('\n').length, 1, 'one line')
  }
  const unknown = await runCli(['--role=live', '--bogus'], { env })
  t.equal(unknown.code, 2, 'unknown option exits 2')
  t.match(unknown.stderr, /unknown option '--bogus'/)
  const noSecret = await runCli(['config', 'check', '--role=seed', '--secret-file=/nonexistent/secret'], { env: { ...process.env, ESPRA_SECRET: '' } })
  t.equal(noSecret.code, 2)
  t.match(noSecret.stderr, /^espra-node: --secret-file: cannot read \/nonexistent\/secret \(ENOENT\)/)
})

t.test('--data-dir under a regular file: one line naming the option, exit 2 (up and a node)', async (t) => {
  const dir = testDir('espra-bin-')
  const file = join(dir, 'plain')
  writeFileSync(file, 'x')
  for (const args of [['up', '--data-dir', join(file, 'state')], ['config', 'check', '--role=live', `--data-dir=${join(file, 'state')}`]]) {
    const r = await runCli(args, { env, cwd: dir })
    t.equal(r.code, 2, `${args[0]} exits 2`)
    t.equal(r.stderr, `espra-node: --data-dir: cannot use ${join(file, 'state')}: ${file} is a file, not a directory\n`, 'one line, said once')
    t.notMatch(r.stderr, 'ENOTDIR')
  }
})

t.test('a secret file open to other users is refused with the chmod to run; admin refuses it too', async (t) => {
  const dir = testDir('espra-bin-')
  const secretFile = join(dir, 'secret')
  writeFileSync(secretFile, `${'z'.repeat(32)}\n`)
  chmodSync(secretFile, 0o644)
  const noEnvSecret = { ...process.env, ESPRA_SECRET: '' }
  const r = await runCli(['config', 'check', '--role=seed', `--secret-file=${secretFile}`], { env: noEnvSecret })
  t.equal(r.code, 2)
  t.equal(r.stderr, `espra-node: --secret-file: ${secretFile} is open to other users (mode 0644); run: chmod 600 ${secretFile} (or pass --insecure-secret-file)\n`)
  const forced = await runCli(['config', 'check', '--role=seed', `--secret-file=${secretFile}`, '--insecure-secret-file'], { env: noEnvSecret })
  t.equal(forced.code, 0, forced.stderr)
  t.equal((JSON.parse(forced.stdout) as { insecureSecretFile: boolean }).insecureSecretFile, true)
  const admin = await runCli(['admin', 'nodes', '--seed', '127.0.0.1:1', `--secret-file=${secretFile}`], { env: noEnvSecret })
  t.equal(admin.code, 2)
  t.match(admin.stderr, /is open to other users/)
  const heartbeat = await runCli(['config', 'check', '--role=seed', '--heartbeat-timeout', '100ms', '--heartbeat-interval', '1s'], { env })
  t.equal(heartbeat.code, 2)
  t.match(heartbeat.stderr, /^espra-node: --heartbeat-timeout: must be at least twice --heartbeat-interval \(1000ms\)/)
})

t.test('config check prints the resolved config without the secret', async (t) => {
  const r = await runCli(['config', 'check', '--role=proxy', '--children=3'], { env: { ...env, ESPRA_REGION: 'eu-1' } })
  t.equal(r.code, 0, r.stderr)
  const config = JSON.parse(r.stdout) as Record<string, unknown>
  t.match(config, { role: 'proxy', children: 3, region: 'eu-1', port: 8080 })
  t.notOk('secret' in config)
  t.notMatch(r.stdout, 'y'.repeat(32))
})

t.test('config defaults lists every option', async (t) => {
  const r = await runCli(['config', 'defaults', '--json'])
  t.equal(r.code, 0)
  t.same((JSON.parse(r.stdout) as { key: string }[]).map((o) => o.key), NODE_OPTIONS.map((o) => o.key))
})

t.test('version', async (t) => {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }
  const r = await runCli(['version'])
  t.equal(r.stdout.trim(), pkg.version)
})

t.test('admin against no seed fails clearly', async (t) => {
  const r = await runCli(['admin', 'nodes', '--seed', '127.0.0.1:1'], { env })
  t.equal(r.code, 1)
  t.match(r.stderr, /^espra-node: ESPRA_ERR_SEED_UNREACHABLE: /)
})

t.test('docs/configuration.md documents every option with its environment variable and the default the table gives', async (t) => {
  const reference = readFileSync(new URL('../../docs/configuration.md', import.meta.url), 'utf8')
  const rows = reference.split('\n').filter((l) => l.startsWith('| `--'))
  t.equal(rows.length, NODE_OPTIONS.length, 'one row per option')
  // A cell as written: code spans and the escapes of lib/core/options-doc.ts removed.
  const plain = (c: string) => c.trim().replaceAll('`', '').replaceAll('\\<', '<').replaceAll('\\|', '|')
  for (const o of NODE_OPTIONS) {
    const row = rows.find((l) => l.startsWith(`| \`${o.flag.replaceAll('|', '\\|')}\` |`))
    if (!row) {
      t.fail(`docs/configuration.md has a row for ${o.flag}`)
      continue
    }
    const [, env, defaultText] = row.slice(1).split(/ (?<!\\)\| /).map(plain)
    t.equal(env, o.env, `${o.flag}: environment variable`)
    t.equal(defaultText, o.defaultText, `${o.flag}: default`)
  }
})
