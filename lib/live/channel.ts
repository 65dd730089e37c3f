/**
 * Channel names and channel patterns (docs/live-protocol.md, "Channels").
 * Shared by the Live role, tokens and the publisher other nodes use.
 */

/** Longest channel name, in characters. */
export const MAX_CHANNEL_LENGTH = 128

const CHANNEL = /^[A-Za-z0-9_\-:.@]{1,128}$/
const PATTERN = /^[A-Za-z0-9_\-:.@*]{1,128}$/

/** Letters, digits and `_ - : . @`, 1 to 128 characters. */
export function isChannel(value: unknown): value is string {
  return typeof value === 'string' && CHANNEL.test(value)
}

/** A channel name where `*` stands for any run of characters (`room:*`, `*`). */
export function isChannelPattern(value: unknown): value is string {
  return typeof value === 'string' && PATTERN.test(value)
}

/** Compiles patterns once into one matcher; no pattern matches nothing. */
export function compilePatterns(patterns: readonly string[]): (channel: string) => boolean {
  if (patterns.length === 0) return () => false
  if (patterns.includes('*')) return () => true
  const exact = new Set(patterns.filter((p) => !p.includes('*')))
  const wild = patterns.filter((p) => p.includes('*'))
  const re = wild.length === 0 ? null : new RegExp(`^(?:${wild.map((p) => p.split('*').map(escape).join('.*')).join('|')})$`)
  return (channel) => exact.has(channel) || (re !== null && re.test(channel))
}

function escape(s: string): string {
  return s.replace(/[.\-]/g, '\\$&')
}

/** Longest publish id (`Idempotency-Key`, a WebSocket `pub` frame's string `id`, `ctx.publish`'s `id`). */
export const PUBLISH_ID_MAX = 128

/** Whether `id` can name a publish: 1 to 128 printable ASCII characters. */
export function isPublishId(id: unknown): id is string {
  return typeof id === 'string' && id.length > 0 && id.length <= PUBLISH_ID_MAX && /^[\x21-\x7e]+$/.test(id)
}
