/** Reading whole build blobs out of the blob store (they are bounded by the manifest limits). */
import type { BlobStore } from '../storage/blob-store.js'

/** The whole object as one buffer, or null when there is none. */
export async function readBlob(store: BlobStore, key: string): Promise<Buffer | null> {
  const object = await store.get(key)
  if (object === null) return null
  const chunks: Buffer[] = []
  for await (const chunk of object.body) chunks.push(typeof chunk === 'string' ? Buffer.from(chunk) : (chunk as Buffer))
  return Buffer.concat(chunks)
}
