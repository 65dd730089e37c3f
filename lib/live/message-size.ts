/**
 * How big a Live message is, the one measure behind `--live-max-message`
 * (checked where a message enters its channel, on the home node, and by
 * the publisher before it sends) and `--live-history-bytes` (what a
 * channel's history may hold): the message data as JSON text, in UTF-8
 * bytes, which is what JSON clients receive and what history keeps.
 */

/**
 * The size of `data` in UTF-8 bytes of its JSON text; `null` when it has
 * none (a BigInt, a cycle, a bare `undefined`), which no channel accepts.
 */
export function messageBytes(data: unknown): number | null {
  let text: string | undefined
  try {
    text = JSON.stringify(data)
  } catch {
    return null
  }
  return text === undefined ? null : Buffer.byteLength(text)
}
