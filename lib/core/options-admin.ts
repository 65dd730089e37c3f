/**
 * Options of the admin role's HTTP API (docs/admin-api.md): who may call it
 * (`--admin-tokens-file`), how much a body may weigh, how failed
 * authentication is limited and how long the audit log is kept. Other roles
 * ignore them.
 *
 * The tokens file is read here, once, by the parent's config loader (as the
 * cluster secret is), so children get the operators in their first IPC
 * message and never read files for config.
 */
import { createHash, randomBytes } from 'node:crypto'
import { readFileSync, statSync } from 'node:fs'
import { resolve } from 'node:path'
import { constant, durationIn, integer, option, type OptionArea, parseSize, text } from './config-parsers.js'
import { createError, EspraError, InvalidValue } from './errors.js'

export const ADMIN_ROLES = ['viewer', 'operator'] as const
export type AdminRole = (typeof ADMIN_ROLES)[number]

/** One operator of the tokens file. Only the token's sha256 is kept: the file never holds a token in clear. */
export interface AdminOperator {
  readonly name: string
  readonly role: AdminRole
  /** sha256 of the token, 64 lower-case hex digits. */
  readonly tokenSha256: string
}

/** Operator names: what the audit log shows. */
export const OPERATOR_NAME = /^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$/
const SHA256_HEX = /^[0-9a-f]{64}$/
/** Group or other permission bits: the file is readable (or replaceable) by someone else. */
const INSECURE_BITS = 0o077

const bad = (file: string, why: string): EspraError =>
  createError('ESPRA_ERR_CONFIG_INVALID', { option: '--admin-tokens-file', reason: `${file}: ${why}`, file })

/**
 * Parses the tokens file: one operator a line, `<name> <role> <sha256 of the token>`
 * separated by spaces; blank lines and lines starting with `#` are skipped.
 * Throws `ESPRA_ERR_CONFIG_INVALID` naming the line.
 */
export function parseAdminTokens(textOf: string, file: string): AdminOperator[] {
  const operators: AdminOperator[] = []
  const names = new Set<string>()
  const hashes = new Set<string>()
  textOf.split('\n').forEach((raw, i) => {
    const line = raw.trim()
    if (line === '' || line.startsWith('#')) return
    const [name, role, hash, ...rest] = line.split(/\s+/)
    const at = `line ${i + 1}`
    if (rest.length > 0 || hash === undefined) throw bad(file, `${at}: must be "<name> <role> <sha256 of the token>"`)
    if (!OPERATOR_NAME.test(name!)) throw bad(file, `${at}: the name must be letters, digits, ".", "_", "@" and "-", at most 64`)
    if (!ADMIN_ROLES.includes(role as AdminRole)) throw bad(file, `${at}: the role must be one of ${ADMIN_ROLES.join(', ')} (got '${role}')`)
    if (!SHA256_HEX.test(hash)) throw bad(file, `${at}: the third field must be the token's sha256, 64 lower-case hex digits (printf %s "$TOKEN" | sha256sum)`)
    if (names.has(name!)) throw bad(file, `${at}: operator '${name}' is listed twice`)
    if (hashes.has(hash)) throw bad(file, `${at}: two operators share one token`)
    names.add(name!)
    hashes.add(hash)
    operators.push(Object.freeze({ name: name!, role: role as AdminRole, tokenSha256: hash }))
  })
  return operators
}

/** Reads the tokens file, refusing one other users may read or write (as the cluster secret file is) unless `insecure`. */
export function readAdminTokens(file: string, insecure: boolean): AdminOperator[] {
  let mode: number
  let content: string
  try {
    mode = statSync(file).mode
    content = readFileSync(file, 'utf8')
  } catch (err) {
    throw bad(file, `cannot read it (${(err as NodeJS.ErrnoException).code ?? 'error'})`)
  }
  if ((mode & INSECURE_BITS) !== 0 && !insecure) {
    throw createError('ESPRA_ERR_SECRET_INSECURE', {
      option: '--admin-tokens-file', file, mode: (mode & 0o777).toString(8).padStart(4, '0'),
      fix: `chmod 600 ${file} (or pass --insecure-secret-file)`,
    })
  }
  return parseAdminTokens(content, file)
}

/** A new operator token: 32 random bytes, base64url, with a prefix that says what it is (and lets secret scanners find it). */
export function newAdminToken(): string {
  return `espra_admin_${randomBytes(32).toString('base64url')}`
}

/** The tokens-file line of an operator holding `token` (only its sha256 is written). */
export const adminTokenLine = (name: string, role: AdminRole, token: string): string =>
  `${name} ${role} ${createHash('sha256').update(token).digest('hex')}`

/** Fills `adminOperators` from the file (the config loader calls this once, after every option is parsed). */
export function loadAdminOperators(out: Record<string, unknown>): void {
  const file = out['adminTokensFile']
  out['adminOperators'] = Object.freeze(typeof file === 'string' ? readAdminTokens(file, out['insecureSecretFile'] === true) : [])
}

export const ADMIN_OPTIONS = [
  option({
    key: 'adminTokensFile', flag: '--admin-tokens-file <file>', env: 'ESPRA_ADMIN_TOKENS_FILE', defaultText: '(none: the API refuses every call)',
    doc: 'admin: the API\'s operators, one a line: `<name> <viewer|operator> <sha256 of the token>` (mode 0600; `up` writes one)',
    details: "admin: the HTTP API's operators, one a line `<name> <viewer|operator> <sha256 of the token>`; mode 0600 (refused otherwise, like the secret file); `up` writes one; [admin-api.md](admin-api.md)",
    default: constant(null), parse: (raw) => resolve(text(/^.{1,4096}$/, 'a file path')(raw)),
  }),
  option({
    key: 'adminMaxBody', flag: '--admin-max-body <size>', env: 'ESPRA_ADMIN_MAX_BODY', defaultText: '1MB',
    doc: 'admin: largest JSON request body the API reads (larger: 413)',
    parse: (raw) => {
      const n = parseSize(raw)
      if (n < 1024 || n > 64 * 1024 ** 2) throw new InvalidValue('must be a size from 1KB to 64MB')
      return n
    },
  }),
  option({
    key: 'adminAuthFailures', flag: '--admin-auth-failures <n>', env: 'ESPRA_ADMIN_AUTH_FAILURES', defaultText: '10',
    doc: 'admin: failed authentications one client address may make per --admin-auth-window; past that it gets 429 until the window ends',
    details: 'admin: failed authentications one client address may make per `--admin-auth-window`; past that every call from it gets 429 until the window ends',
    parse: integer(1, 100_000),
  }),
  option({
    key: 'adminAuthWindow', flag: '--admin-auth-window <duration>', env: 'ESPRA_ADMIN_AUTH_WINDOW', defaultText: '1m',
    doc: 'admin: the window --admin-auth-failures counts in',
    parse: durationIn(1000, 24 * 3_600_000),
  }),
  option({
    key: 'adminAuditRetention', flag: '--admin-audit-retention <duration>', env: 'ESPRA_ADMIN_AUDIT_RETENTION', defaultText: '2160h (90 days)',
    doc: 'admin: audit log entries older than this are deleted (swept hourly)',
    default: constant(90 * 24 * 3_600_000), parse: durationIn(3_600_000, 10 * 365 * 24 * 3_600_000),
  }),
] as const

export const ADMIN_AREA: OptionArea<typeof ADMIN_OPTIONS> = { heading: 'Admin API (admin node)', options: ADMIN_OPTIONS }
