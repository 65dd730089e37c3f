/** The checks every `build.*` request of the seed (seed/builds.ts, build-uploads.ts) starts with. */
import { createError } from '../lib/core/errors.js'
import { isMap } from '../lib/transport/meta-shapes.js'

/** A field of a `build.*` request that is missing or malformed: `<field> <what it must be>`. */
export const invalid = (field: string, allowed: string) => createError('ESPRA_ERR_BUILD_INVALID', { field, reason: allowed })

/** The request's body, which must be a map. */
export function body(value: unknown): Record<string, unknown> {
  if (!isMap(value)) throw invalid('body', 'must be a map')
  return value
}

/** `build.commit`'s `pushId`: chosen by `admin push-build`, so it finds its build again after a failover. */
export function checkPushId(raw: unknown): string {
  if (typeof raw !== 'string' || !/^[A-Za-z0-9_-]{8,64}$/.test(raw)) throw invalid('pushId', 'must be 8 to 64 letters, digits, - or _')
  return raw
}
