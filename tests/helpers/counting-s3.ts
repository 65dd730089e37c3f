/**
 * A real S3-protocol server (s3rver) with one bucket, behind a pass-through
 * front that counts every request by method and path: point nodes at
 * `endpoint` to have their blob-store traffic counted, write fixtures
 * through `direct` (not counted).
 */
import { once } from 'node:events'
import { createServer, request } from 'node:http'
import S3rver from 's3rver'
import { testDir } from './temp-dir.js'

export interface CountingS3 {
  readonly endpoint: string
  readonly direct: string
  /** Requests seen so far for one object, e.g. count('GET', 'a/b'). */
  count(method: string, key: string): number
  /** Every request seen so far. */
  total(): number
  /** Holds object PUTs (counted, not forwarded) until the returned function releases them. */
  holdPuts(): () => void
  close(): Promise<void>
}

export async function startCountingS3(bucket: string): Promise<CountingS3> {
  const s3 = new S3rver({
    address: '127.0.0.1', port: 0, silent: true, resetOnClose: true,
    directory: testDir('espra-s3rver-'), configureBuckets: [{ name: bucket }],
  })
  const { port } = await s3.run()
  const seen = new Map<string, number>()
  let held: (() => void)[] | null = null
  const front = createServer((req, res) => {
    const line = `${req.method} ${decodeURIComponent(new URL(req.url!, 'http://x').pathname)}`
    seen.set(line, (seen.get(line) ?? 0) + 1)
    const forward = (): void => {
      const up = request({ host: '127.0.0.1', port, method: req.method, path: req.url, headers: req.headers }, (answer) => {
        res.writeHead(answer.statusCode!, answer.headers)
        answer.pipe(res)
      })
      up.on('error', () => res.destroy())
      req.pipe(up)
    }
    if (held !== null && req.method === 'PUT') held.push(forward)
    else forward()
  })
  front.listen(0, '127.0.0.1')
  await once(front, 'listening')
  return {
    endpoint: `http://127.0.0.1:${(front.address() as { port: number }).port}`,
    direct: `http://127.0.0.1:${port}`,
    count: (method, key) => seen.get(`${method} /${bucket}/${key}`) ?? 0,
    total: () => [...seen.values()].reduce((a, b) => a + b, 0),
    holdPuts() {
      held ??= []
      return () => {
        const waiting = held ?? []
        held = null
        for (const forward of waiting) forward()
      }
    },
    async close() {
      front.close()
      await s3.close()
    },
  }
}
