/**
 * A real PostgreSQL server (Debian's `postgresql` package; tests/system-packages.sh
 * installs it) in a temp directory on a free loopback port, its unix socket in
 * that directory too; stopped and removed at teardown (docs/postgres.md, "Tests").
 *
 * PostgreSQL refuses to run as root: as root, initdb and pg_ctl run as the
 * `postgres` user Debian's package creates (`runuser -u postgres --`), and the
 * temp directory is handed to that user. Logins over TCP need the password
 * (scram-sha-256), so a wrong one is refused as in production; the unix
 * socket trusts the local superuser.
 */
import { execFileSync, spawnSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { chmodSync, chownSync, existsSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import pg from 'pg'
import type { Test } from 'tap'
import { freePort } from './cluster.js'
import { testDir } from './temp-dir.js'

export interface TestPostgres {
  readonly port: number
  readonly user: string
  readonly password: string
  /** A URL for `database` (created by {@link TestPostgres.createDatabase}). */
  url(database: string, password?: string): string
  /** A fresh, empty database; resolves with its URL. */
  createDatabase(name?: string): Promise<string>
  /** Stops the server at once (an outage, not a shutdown); resolves once it is gone. */
  stop(): Promise<void>
  /** Starts it again on the same port with the same data. */
  start(): Promise<void>
}

/** initdb/pg_ctl on PATH, else the newest of Debian's /usr/lib/postgresql/<version>/bin. */
export function postgresBin(): string {
  const onPath = spawnSync('sh', ['-c', 'command -v pg_ctl'], { encoding: 'utf8' }).stdout.trim()
  if (onPath !== '' && existsSync(join(onPath, '..', 'initdb'))) return join(onPath, '..')
  const root = '/usr/lib/postgresql'
  const versions = existsSync(root) ? readdirSync(root).filter((v) => /^\d+$/.test(v)).sort((a, b) => Number(b) - Number(a)) : []
  for (const v of versions) if (existsSync(join(root, v, 'bin', 'pg_ctl'))) return join(root, v, 'bin')
  throw new Error('no PostgreSQL server binaries (initdb, pg_ctl): apt-get install postgresql (tests/system-packages.sh)')
}

const asRoot = process.getuid?.() === 0
const RUN_AS = 'postgres'

/** Runs a server binary, as the `postgres` user when we are root. */
function run(bin: string, args: string[]): string {
  const [cmd, argv] = asRoot ? ['runuser', ['-u', RUN_AS, '--', bin, ...args]] : [bin, args]
  try {
    return execFileSync(cmd, argv, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })
  } catch (err) {
    const e = err as { stderr?: string; stdout?: string; message: string }
    throw new Error(`${bin.split('/').at(-1)} failed: ${(e.stderr || e.stdout || e.message).trim()}`)
  }
}

/** `t`: a tap test, or anything with `teardown` (benches stop it at exit). */
export async function startPostgres(t: Pick<Test, 'teardown'>): Promise<TestPostgres> {
  const bin = postgresBin()
  const dir = testDir('espra-pg-')
  const data = join(dir, 'data')
  const password = randomBytes(9).toString('base64url')
  const user = 'espra'
  writeFileSync(join(dir, 'pwfile'), `${password}\n`)
  if (asRoot) {
    const uid = Number(execFileSync('id', ['-u', RUN_AS], { encoding: 'utf8' }).trim())
    const gid = Number(execFileSync('id', ['-g', RUN_AS], { encoding: 'utf8' }).trim())
    chownSync(dir, uid, gid)
    chownSync(join(dir, 'pwfile'), uid, gid)
  }
  chmodSync(dir, 0o700)
  run(join(bin, 'initdb'), ['-D', data, '-U', user, `--pwfile=${join(dir, 'pwfile')}`, '-A', 'scram-sha-256', '--auth-local=trust', '-E', 'UTF8', '--locale=C', '--no-sync'])
  const port = await freePort()
  // fsync off: a test server need not survive the machine crashing. Commits stay synchronous, so an
  // immediate stop (the outage tests simulate) loses nothing a client was told is committed.
  const options = `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off -c max_connections=200`
  const pgCtl = (...args: string[]) => run(join(bin, 'pg_ctl'), ['-D', data, ...args])
  const start = async (): Promise<void> => void pgCtl('-o', options, '-l', join(dir, 'log'), '-w', '-t', '30', 'start')
  const stop = async (): Promise<void> => void pgCtl('-m', 'immediate', '-w', 'stop')
  let running = false
  const cleanup = (): void => {
    if (running) spawnSync(asRoot ? 'runuser' : join(bin, 'pg_ctl'), asRoot ? ['-u', RUN_AS, '--', join(bin, 'pg_ctl'), '-D', data, '-m', 'immediate', 'stop'] : ['-D', data, '-m', 'immediate', 'stop'])
    running = false
    rmSync(dir, { recursive: true, force: true })
  }
  // Also when the test process ends without its teardowns (a timed-out run): no server is left behind.
  process.once('exit', cleanup)
  t.teardown(cleanup)
  await start()
  running = true
  const url = (database: string, pw = password) => `postgres://${user}:${encodeURIComponent(pw)}@127.0.0.1:${port}/${database}`
  let databases = 0
  return {
    port, user, password, url,
    async createDatabase(name = `t${process.pid}_${++databases}`) {
      const admin = new pg.Client({ connectionString: url('postgres') })
      await admin.connect()
      try {
        await admin.query(`CREATE DATABASE ${name}`)
      } finally {
        await admin.end()
      }
      return url(name)
    },
    async stop() {
      await stop()
      running = false
    },
    async start() {
      await start()
      running = true
    },
  }
}
