/**
 * `admin push-build`'s upload and commit (ops `build.plan`, `build.blob`,
 * `build.commit`, docs/meta-protocol.md): the blobs the leader lacks, in
 * chunks under the frame limit with a window in flight, then one commit.
 * Through a leader failover the plan is asked again and what the new leader
 * lacks is sent whole; a commit whose answer was lost is looked up by the
 * push's own id (`pushId`) and sent again only when no record has it.
 */
import { open } from 'node:fs/promises'
import { createError, type EspraError } from '../../core/errors.js'
import type { MetaClient } from '../../transport/meta-client.js'
import { formatBytes } from './format.js'
import { isFailover, REQUEST_TIMEOUT_MS, type LeaderCalls } from './leader-calls.js'
import type { packDirectory } from './pack.js'

/** Chunk requests in flight at once: keeps the link busy without buffering a whole file. */
const WINDOW = 8

const say = (line: string) => process.stderr.write(`${line}\n`)

function progress(done: number, total: number): void {
  if (!process.stderr.isTTY) return
  const width = 30
  const filled = total === 0 ? width : Math.round((done / total) * width)
  process.stderr.write(`\r[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${total === 0 ? 100 : Math.floor((done / total) * 100)}% ${formatBytes(done)} / ${formatBytes(total)}`)
  if (done >= total) process.stderr.write('\n')
}

/** Sends one file's bytes as `build.blob` chunks, up to {@link WINDOW} in flight. */
async function uploadBlob(client: MetaClient, hash: string, path: string, chunkSize: number, onBytes: (n: number) => void): Promise<void> {
  const fh = await open(path, 'r')
  try {
    const { size } = await fh.stat()
    const inflight = new Set<Promise<unknown>>()
    let offset = 0
    do {
      const chunk = Buffer.alloc(Math.min(chunkSize, size - offset))
      const { bytesRead } = await fh.read(chunk, 0, chunk.length, offset)
      if (bytesRead !== chunk.length) throw createError('ESPRA_ERR_BUILD_UPLOAD', { reason: `${path} changed while it was being sent`, path })
      const last = offset + chunk.length >= size
      const sent = client.request('build.blob', { hash, offset, chunk, last }, REQUEST_TIMEOUT_MS).then(() => onBytes(chunk.length))
      inflight.add(sent)
      void sent.finally(() => inflight.delete(sent)).catch(() => {})
      offset += chunk.length
      if (inflight.size >= WINDOW) await Promise.race(inflight)
    } while (offset < size)
    await Promise.all(inflight)
  } finally {
    await fh.close()
  }
}

export type Packed = Awaited<ReturnType<typeof packDirectory>>

/**
 * Sends the blobs the leader lacks (`build.plan`). A blob cut by a failover is not continued (the
 * new leader holds no part of it): the plan is asked again of the new leader and what it still
 * lacks is sent whole.
 */
async function upload(client: MetaClient, calls: LeaderCalls, packed: Packed): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    const plan = await calls.request<{ missing: string[]; chunkSize: number }>('build.plan', { manifest: packed.manifest })
    const sizes = new Map(packed.manifest.files.map((f) => [f.hash, f.size]))
    const total = plan.missing.reduce((n, h) => n + sizes.get(h)!, 0)
    let done = 0
    say(`${packed.manifest.files.length} files; sending ${plan.missing.length} new (${formatBytes(total)})`)
    progress(0, total)
    try {
      for (const hash of plan.missing) {
        await uploadBlob(client, hash, packed.sources.get(hash)!, plan.chunkSize, (n) => progress((done += n), total))
      }
      return
    } catch (err) {
      if (!isFailover(err) || attempt >= 3) throw err
      say(`the leader went away during the upload (${(err as EspraError).code}); asking the next one what it lacks`)
    }
  }
}

export interface Committed { id: string; files: number; bytes: number; uploadedBytes: number; staging: string[]; canary?: { nodes: string[]; timeMs: number } }

/**
 * Uploads and commits once. A commit whose answer the failover swallowed may or may not have been
 * recorded: the new leader's `build.list` tells (the record carries `pushId`); when no record has it
 * the upload and the commit are done again. Null `staging` in the answer: found, not committed here.
 */
export async function commitOnce(client: MetaClient, calls: LeaderCalls, packed: Packed, body: Record<string, unknown>, pushId: string): Promise<Committed | { id: string; staging: null }> {
  for (let attempt = 1; ; attempt++) {
    await upload(client, calls, packed)
    try {
      // Straight on the link, never asked again blindly: a second commit would record a second build.
      return await client.request<Committed>('build.commit', { ...body, pushId }, REQUEST_TIMEOUT_MS)
    } catch (err) {
      if (!isFailover(err) || attempt >= 3) throw err
      const { builds } = await calls.request<{ builds: { id: string; pushId?: string }[] }>('build.list', { limit: 50 })
      const found = builds.find((b) => b.pushId === pushId)
      if (found !== undefined) {
        say(`the leader went away before answering the commit; the new leader has it as build ${found.id}`)
        return { id: found.id, staging: null }
      }
      say('the leader went away before the commit was recorded; sending it again to the new leader')
    }
  }
}
