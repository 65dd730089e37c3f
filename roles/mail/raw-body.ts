/**
 * Where a message's raw bytes go while they stream (docs/mail.md,
 * "Durability"): held in memory up to a threshold, so that a small message
 * (most mail) costs no files at all and rides to the seed with its record;
 * past the threshold, what was held and the rest stream into a staged blob
 * put, as every message did before. Nothing is ever held beyond the
 * threshold.
 */
import { PassThrough, type Readable } from 'node:stream'
import type { StagedPut } from '../../lib/storage/blob-store.js'

export type RawBody =
  | { readonly bytes: Buffer; readonly staged: null }
  | { readonly bytes: null; readonly staged: StagedPut }

/**
 * Reads `body` to its end: resolves with its bytes when it ends within
 * `inlineMax` bytes, otherwise with what `stage` made of the whole stream
 * (the bytes held so far first). Rejects when `body` fails (or `stage`
 * does); nothing is left staged then.
 */
export function takeRawBody(body: Readable, inlineMax: number, stage: (rest: Readable) => Promise<StagedPut>): Promise<RawBody> {
  return new Promise((resolve, reject) => {
    const held: Buffer[] = []
    let size = 0
    const off = () => {
      body.off('data', onData)
      body.off('end', onEnd)
      body.off('error', onError)
    }
    const onError = (err: Error) => {
      off()
      reject(err)
    }
    const onEnd = () => {
      off()
      resolve({ bytes: held.length === 1 ? held[0]! : Buffer.concat(held, size), staged: null })
    }
    const onData = (chunk: Buffer) => {
      held.push(chunk)
      size += chunk.length
      if (size <= inlineMax) return
      // Too big to hold: the blob store takes it from here, starting with what was held.
      off()
      body.pause()
      const rest = new PassThrough()
      for (const c of held.splice(0)) rest.write(c)
      body.once('error', (err) => rest.destroy(err))
      body.pipe(rest)
      stage(rest).then((staged) => resolve({ bytes: null, staged }), reject)
    }
    body.on('data', onData)
    body.once('end', onEnd)
    body.once('error', onError)
  })
}
