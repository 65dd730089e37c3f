/**
 * Datastore options (seed only): where durable records and the task queue
 * live. `embedded` keeps them in LMDB under `<data-dir>/seed`; a
 * `postgres://` URL puts them in PostgreSQL (docs/postgres.md). Only seeds
 * connect to the database; other nodes keep using the meta port.
 */
import { durationIn, integer, oneOf, option, type OptionArea } from './config-parsers.js'
import { InvalidValue } from './errors.js'

export const TASK_BACKENDS = ['embedded', 'postgres'] as const
export type TaskBackend = (typeof TASK_BACKENDS)[number]

/** `embedded`, or `postgres://` / `postgresql://` with a host and a database. Throws a sentence saying what is allowed. */
export function datastoreUrl(raw: unknown): string {
  if (raw === 'embedded') return raw
  const allowed = 'must be embedded or postgres://user:password@host:5432/database'
  if (typeof raw !== 'string') throw new InvalidValue(allowed)
  let url: URL
  try {
    url = new URL(raw)
  } catch {
    throw new InvalidValue(allowed)
  }
  if (url.protocol !== 'postgres:' && url.protocol !== 'postgresql:') throw new InvalidValue(allowed)
  if (url.hostname === '' && !url.searchParams.has('host')) throw new InvalidValue(`${allowed} (a host is missing)`)
  if (url.pathname.length < 2) throw new InvalidValue(`${allowed} (the database name is missing)`)
  return raw
}

/** The URL with its password replaced by `***`: what logs, `config check` and errors show. */
export function maskPostgresUrl(raw: string): string {
  try {
    const url = new URL(raw)
    if (url.password !== '') url.password = '***'
    if (url.searchParams.has('password')) url.searchParams.set('password', '***')
    return url.toString()
  } catch {
    return '(an unparsable URL)'
  }
}

export const isPostgres = (datastore: string): boolean => datastore !== 'embedded'

export const DATASTORE_OPTIONS = [
  option({
    key: 'datastore', flag: '--datastore <url>', env: 'ESPRA_DATASTORE', defaultText: 'embedded',
    doc: 'seed: where durable records live: embedded (LMDB under <data-dir>/seed) or postgres://user:password@host:5432/database (the password is masked wherever the URL is printed)',
    details: "seed: where durable records live: `embedded` (LMDB under `<data-dir>/seed`) or `postgres://user:password@host:5432/database` ([postgres.md](postgres.md)); the password is masked wherever the URL is printed (logs, `config check`, errors). A database out of reach at start: exit 1 with one line naming the host and the driver's error",
    parse: datastoreUrl,
  }),
  option({
    key: 'datastorePool', flag: '--datastore-pool <n>', env: 'ESPRA_DATASTORE_POOL', defaultText: '10',
    doc: 'seed: PostgreSQL connections the datastore and task queues hold at most (the leader lease has one more of its own)',
    details: 'seed: PostgreSQL connections the datastore and task queues hold at most, plus one of its own for the leader lease (only seeds connect; other nodes use the meta port)',
    parse: integer(1, 200),
  }),
  option({
    key: 'tasks', flag: '--tasks <backend>', env: 'ESPRA_TASKS', defaultText: 'postgres with a postgres --datastore, else embedded',
    doc: `seed: backend of the seed's task queues (app tasks, outbound mail): ${TASK_BACKENDS.join(', ')} (postgres needs a postgres --datastore); app nodes with --redis use Redis instead`,
    default: (c) => (isPostgres(String(c['datastore'])) ? 'postgres' : 'embedded'), parse: oneOf(TASK_BACKENDS),
  }),
  option({
    key: 'seedLease', flag: '--seed-lease <duration>', env: 'ESPRA_SEED_LEASE', defaultText: '2s',
    doc: 'seed with a postgres --datastore: the leader\'s lease; seeds look at it every quarter lease, a leader that could not renew it for three quarters steps down, a follower takes over once it has run out',
    details: 'seed with a postgres `--datastore`: the leader\'s lease (400ms–60s). Seeds look at it every quarter lease; a leader that could not renew it for three quarters steps down by itself; a follower takes over once it has run out ([postgres.md](postgres.md), "Several seeds")',
    parse: durationIn(400, 60_000),
  }),
] as const

export const DATASTORE_AREA: OptionArea<typeof DATASTORE_OPTIONS> = { heading: 'Datastore, task queue backend and seeds', options: DATASTORE_OPTIONS }
