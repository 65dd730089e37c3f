/**
 * Op ids: how an op whose repetition would change something (a datastore
 * `consume` or `putIf`; a task `enqueue`, `lease`, `settle` or `retry`) can
 * still be sent again after the link dropped. The caller draws one id per
 * op and sends it with every attempt (field `opId` of the op's body); the
 * seed applies the op once per id and answers a repeat with the answer it
 * recorded (docs/postgres.md, "Op ids").
 */
import { randomBytes } from 'node:crypto'
import type { Problem } from './datastore.js'

/**
 * How long a seed remembers an op id. A resend goes out at most the
 * caller's retry window (10 s) after the first send, and is answered or
 * times out within one request timeout; five minutes covers both many
 * times over, and bounds the table at a few minutes of ops.
 */
export const OP_ID_TTL_MS = 5 * 60_000

const OP_ID = /^[A-Za-z0-9_-]{16,64}$/

/** 16 random bytes, base64url (22 characters). */
export const newOpId = (): string => randomBytes(16).toString('base64url')

/** Null when `opId` is absent or a well-formed op id. */
export function opIdProblem(opId: unknown): Problem | null {
  if (opId === undefined || opId === null) return null
  return typeof opId === 'string' && OP_ID.test(opId) ? null : { field: 'opId', allowed: '16 to 64 characters of A-Z a-z 0-9 _ -' }
}
