/**
 * Who is calling the admin API: `Authorization: Bearer <token>` checked
 * against the operators of `--admin-tokens-file`. The file holds each
 * token's sha256; the presented token is hashed and compared with every
 * operator's hash in constant time (all of them, always), so neither the
 * answer's timing nor an early exit tells which operator came close.
 */
import { createHash, timingSafeEqual } from 'node:crypto'
import type { AdminOperator, AdminRole } from '../../lib/core/options-admin.js'

/** Longer headers are refused unread: no token is this long. */
const MAX_AUTHORIZATION = 1024

export interface TokenChecker {
  /** The operator the header names, or null (missing, malformed or unknown token). */
  check(authorization: string): AdminOperator | null
}

export function createTokenChecker(operators: readonly AdminOperator[]): TokenChecker {
  const hashes = operators.map((o) => ({ operator: o, hash: Buffer.from(o.tokenSha256, 'hex') }))
  return {
    check(authorization) {
      if (authorization.length === 0 || authorization.length > MAX_AUTHORIZATION) return null
      const m = /^Bearer +([\x21-\x7e]+) *$/i.exec(authorization)
      if (!m) return null
      const presented = createHash('sha256').update(m[1]!).digest()
      let found: AdminOperator | null = null
      for (const { operator, hash } of hashes) if (timingSafeEqual(presented, hash) && found === null) found = operator
      return found
    },
  }
}

/** Whether `role` may call a route that reads (`acts` false) or changes state (`acts` true). */
export const mayCall = (role: AdminRole, acts: boolean): boolean => !acts || role === 'operator'
