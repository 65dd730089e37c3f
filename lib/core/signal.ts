/** A promise and its resolve, for "wait until the next time X happens" (Node 20 has no Promise.withResolvers). */
export function signal(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void
  const promise = new Promise<void>((r) => (resolve = r))
  return { promise, resolve }
}
