/**
 * `POST /upload` in a fileserver child: token-checked uploads. The token (an
 * `Authorization: Bearer` header or a `token` query parameter) is verified,
 * and checked unspent while the body arrives; the body, raw (its
 * `Content-Type` is the type, `X-Filename` optional) or a `multipart/form-data`
 * form with one file field, streams to `<data-dir>/uploads-tmp/` while sha256
 * and whirlpool are computed in the same pass; progress goes to the token's
 * Live channel (at most 4 events a second); then the upload pipeline
 * (upload-pipeline.ts, shared with tus) stores the file, then spends the
 * token and records the file in one transaction (single use: of two uploads
 * with one token, one is recorded and the other refused), and the client
 * gets its record as JSON (202 when it was kept pending).
 */
import { createWriteStream } from 'node:fs'
import { unlink } from 'node:fs/promises'
import type { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import busboy from 'busboy'
import { isCompressible } from '../../lib/builds/manifest.js'
import { createError } from '../../lib/core/errors.js'
import { answerLater, sendJson } from '../../lib/http/server.js'
import type { HttpRequest, HttpResponse } from '../../lib/http/uws.js'
import type { ChildContext } from '../../lib/process/role.js'
import { deriveUploadKey, typeAllowed, verifyUploadToken, type UploadClaims } from '../../lib/uploads/token.js'
import { cleanName, createProgressThrottle, Digest, diskError, openBody, PROGRESS_INTERVAL_MS, type Received, type UploadPipeline } from './upload-pipeline.js'
import { startGzipCopy } from './upload-gzip.js'
import { tmpUploadPath } from './upload-store.js'
import { startStreamedBlob, type StreamedBlob } from './upload-stream.js'

/** Room for multipart boundaries and part headers beyond the file itself. */
const MULTIPART_SLACK = 64 * 1024

/** The upload token of a request: `Authorization: Bearer <token>`, else the `token` query parameter ('' when neither). */
export function requestToken(req: HttpRequest): string {
  const auth = req.getHeader('authorization')
  return /^bearer /i.test(auth) ? auth.slice(7).trim() : (req.getQuery('token') ?? '')
}

/** Verifies an upload token's signature, shape and expiry (401 otherwise); does not spend it. */
export function checkUploadToken(key: Buffer, token: string): UploadClaims {
  if (token === '') throw createError('ESPRA_ERR_UPLOAD_TOKEN_INVALID', { state: 'missing' })
  const verified = verifyUploadToken(key, token)
  if (!verified.ok) throw createError('ESPRA_ERR_UPLOAD_TOKEN_INVALID', { state: verified.reason })
  return verified.claims
}

/** Spends a token (its datastore record, atomically): 403 when it was used before, 503 when the seed is out of reach. For tus, whose token is spent when the upload is created. */
export function spendUploadToken(uploads: UploadPipeline, claims: UploadClaims): Promise<void> {
  return requireToken(uploads, claims, 'consume')
}

/**
 * Whether a token is still unspent, asked while its body streams in (a
 * `ds.get`, which changes nothing): a used token is refused within one round
 * trip instead of after its whole body is stored. The token is spent, once,
 * by `upload.commit` with the file's record (upload-commit.ts).
 */
export function checkTokenUnspent(uploads: UploadPipeline, claims: UploadClaims): Promise<void> {
  return requireToken(uploads, claims, 'get')
}

/** The token's record read (`get`) or taken (`consume`): 403 when it is gone, 503 when the seed is out of reach. */
async function requireToken(uploads: UploadPipeline, claims: UploadClaims, how: 'get' | 'consume'): Promise<void> {
  let record: Record<string, unknown> | null
  try {
    record = await uploads.datastore[how]('uploadTokens', claims.id)
  } catch (err) {
    throw createError('ESPRA_ERR_UPLOAD_UNAVAILABLE', { reason: (err as Error).message })
  }
  if (record === null) throw createError('ESPRA_ERR_UPLOAD_TOKEN_USED')
}

/** Streams the file of a raw or multipart body through `digest` into `path`. */
async function receive(body: Readable, contentType: string, filename: string | null, claims: UploadClaims, path: string, digest: Digest, stream: () => StreamedBlob | null, streams: StreamedBlob[]): Promise<Received> {
  const write = async (source: Readable, type: string, name: string | null): Promise<Received> => {
    // On S3 the bytes as stored go to the store as they arrive (upload-stream.ts); the caller aborts it on failure.
    const streamed = stream()
    if (streamed !== null) streams.push(streamed)
    // A compressible type is gzipped on the way too (its `.gz` is removed with the received file, by the caller).
    const gzip = isCompressible(type) ? startGzipCopy(path, streamed?.tee ?? null) : null
    const file = createWriteStream(path, { flags: 'wx' })
    const toFile = gzip === null && streamed !== null ? [streamed.tee, file] as const : [file] as const
    try {
      await (gzip === null ? pipeline(source, digest, ...toFile) : pipeline(source, digest, gzip.tee, file))
      await gzip?.done
    } catch (err) {
      // The gzip's file is settled (closed) before the caller removes it.
      await gzip?.done.catch(() => {})
      throw diskError(err)
    }
    return { size: digest.size, ...(await digest.hashes()), type, filename: name, gzipPath: gzip?.path ?? null, streamed }
  }
  if (!/^multipart\/form-data/i.test(contentType)) return write(body, contentType.trim() || 'application/octet-stream', filename)

  let parser: busboy.Busboy
  try {
    parser = busboy({ headers: { 'content-type': contentType }, limits: { files: 1, fields: 50, parts: 60, fieldSize: 64 * 1024 } })
  } catch (err) {
    throw createError('ESPRA_ERR_UPLOAD_BAD_BODY', { reason: `multipart: ${(err as Error).message}` })
  }
  return new Promise<Received>((resolve, reject) => {
    let file: Promise<Received> | null = null
    parser.on('file', (_field, stream, info) => {
      if (file !== null) return void stream.resume()
      const type = info.mimeType || 'application/octet-stream'
      if (!typeAllowed(claims, type)) {
        stream.resume()
        file = Promise.reject(createError('ESPRA_ERR_UPLOAD_TYPE', { type, allowed: claims.types.join(', ') }))
        file.catch(reject)
        return
      }
      file = write(stream, type, cleanName(info.filename) ?? filename)
      file.catch(reject)
    })
    parser.on('error', (err: Error) => reject(createError('ESPRA_ERR_UPLOAD_BAD_BODY', { reason: `multipart: ${err.message}` })))
    parser.on('close', () => {
      if (file === null) reject(createError('ESPRA_ERR_UPLOAD_BAD_BODY', { reason: 'the form holds no file field' }))
      else file.then(resolve, reject)
    })
    // A body stopped on purpose (a used token, the client gone) ends the form too: busboy would wait for more.
    body.once('error', (err) => reject(err))
    body.pipe(parser)
  })
}

/** Adds `POST /upload` to the child's app. */
export function startUploads(ctx: ChildContext, uploads: UploadPipeline): void {
  const key = deriveUploadKey(ctx.config.secret)

  async function handle(res: HttpResponse, req: HttpRequest): Promise<void> {
    const token = requestToken(req)
    const contentType = req.getHeader('content-type')
    const lengthHeader = req.getHeader('content-length')
    const filename = cleanName(req.getHeader('x-filename'))
    const claims = checkUploadToken(key, token)
    const multipart = /^multipart\/form-data/i.test(contentType)
    const declared = lengthHeader === '' ? null : Number(lengthHeader)
    if (declared !== null && declared > claims.maxSize + (multipart ? MULTIPART_SLACK : 0)) {
      throw createError('ESPRA_ERR_UPLOAD_TOO_LARGE', { what: 'the body', size: declared, limit: 'the token', max: claims.maxSize })
    }
    if (!multipart && !typeAllowed(claims, contentType || 'application/octet-stream')) {
      throw createError('ESPRA_ERR_UPLOAD_TYPE', { type: contentType || '(none)', allowed: claims.types.join(', ') })
    }

    // Taken now (uWS hands the body only to an onData attached before the first await), read once the token is spent.
    const body = openBody(res)
    const path = tmpUploadPath(ctx.config, 'upload')
    const answer = (status: number, value: unknown): void => {
      body.drop()
      answerLater(res, () => sendJson(res, status, value))
    }
    // Checked while the body streams (not before: one round trip less ahead of the bytes); a refusal stops it.
    const unspent = checkTokenUnspent(uploads, claims)
    const streams: StreamedBlob[] = []
    unspent.catch((err: unknown) => body.stream.destroy(err as Error))
    try {
      const digest = new Digest(claims.maxSize, claims.channel === undefined ? () => {} : createProgressThrottle(PROGRESS_INTERVAL_MS, (bytes) => {
        uploads.publish(claims.channel, { t: 'upload.progress', bytes, total: multipart ? null : declared })
      }))
      const got = await receive(body.stream, contentType, filename, claims, path, digest, () => startStreamedBlob(uploads.blobs, ctx.config.nodeId), streams)
      await unspent
      const { status, result } = await uploads.finish(path, got, { ...claims, token: claims.id })
      answer(status, result)
    } catch (err) {
      // Whatever is still coming is read and dropped, so the answer reaches the client; nothing partial stays on disk or in the store.
      body.drop()
      await Promise.all([...streams.map((s) => s.abort().catch(() => {})), unlink(path).catch(() => {}), unlink(`${path}.gz`).catch(() => {})])
      throw err
    }
  }

  // The server wrapper answers what `handle` throws with its coded status (401, 403, 413, 415, 507, ...).
  ctx.app.post('/upload', (res, req) => handle(res, req))
}
