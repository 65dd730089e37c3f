/**
 * The admin API token of an `up` cluster: `<data-dir>/admin-tokens` (the
 * admin node's `--admin-tokens-file`, one operator `up` holding the token's
 * sha256) and `<data-dir>/admin-token` (the token itself, for the operator
 * and for scripts: `curl -H "Authorization: Bearer $(cat .espra/admin-token)"`),
 * both mode 0600. Kept across runs of `up` while both are there, so scripts
 * keep working; written afresh when either is missing.
 */
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { adminTokenLine, newAdminToken } from '../core/options-admin.js'

export const UP_OPERATOR = 'up'

export interface UpAdminToken {
  readonly tokensFile: string
  readonly tokenFile: string
  readonly created: boolean
}

/** Writes through a temporary file and a rename: a reader never sees half a file, and the mode is 0600 from the start. */
function writePrivate(file: string, text: string): void {
  const tmp = `${file}.${process.pid}.tmp`
  writeFileSync(tmp, text, { mode: 0o600 })
  renameSync(tmp, file)
}

export function ensureUpAdminToken(dataDir: string): UpAdminToken {
  const tokensFile = join(dataDir, 'admin-tokens')
  const tokenFile = join(dataDir, 'admin-token')
  if (existsSync(tokensFile) && existsSync(tokenFile) && readFileSync(tokenFile, 'utf8').trim() !== '') return { tokensFile, tokenFile, created: false }
  const token = newAdminToken()
  writePrivate(tokensFile, `# espra-node up: the admin API's operators, <name> <viewer|operator> <sha256 of the token>\n${adminTokenLine(UP_OPERATOR, 'operator', token)}\n`)
  writePrivate(tokenFile, `${token}\n`)
  return { tokensFile, tokenFile, created: true }
}
