/** Recognising a build push (`{op: 'build', body}`) from the seed. */
import { isBuildId, type BuildPush } from '../../lib/builds/manifest.js'
import { isMap } from '../../lib/transport/meta-shapes.js'

export function isBuildPush(body: unknown): body is BuildPush {
  return isMap(body) && isBuildId(body['id']) && isMap(body['manifest'])
}
