/**
 * tus 1.0.0 resumable uploads on `/uploads/` in a fileserver child: core
 * (HEAD, PATCH), creation (POST), termination (DELETE), checksum and
 * expiration, plus OPTIONS discovery and `X-HTTP-Method-Override`.
 *
 * Nothing about an upload lives in the child: its state is a `tusUploads`
 * record in the datastore and its bytes are parts in the blob store
 * (tus-protocol.ts), so any fileserver continues an upload another one
 * started, without sticky sessions.
 *
 * - POST spends an upload token (the same as `POST /upload`): its size limit,
 *   types (metadata `filetype`), owner and Live channel go into the state.
 * - PATCH streams its body to a local file (hashing `Upload-Checksum` on the
 *   way; 460 on a mismatch and nothing recorded), stores it as one part, then
 *   advances the offset by compare-and-set from the offset it started from:
 *   a PATCH that lost a race gets 409 and its part is deleted. A client that
 *   goes away mid-body without a checksum keeps what arrived (tus asks servers
 *   to store partial bodies).
 * - The PATCH that completes the upload is not stored as a part: the parts
 *   and its body are assembled into one local file (sha256 and whirlpool in
 *   one pass), handed to the upload pipeline as `POST /upload` does, and only
 *   then is the state marked done and the parts deleted. If that fails the
 *   offset did not move and the client retries the last PATCH.
 * - An upload past `Upload-Expires` answers 410 and is deleted; the parent's
 *   sweep (tus-sweep.ts) deletes those nobody asks about.
 */
import { createReadStream, createWriteStream } from 'node:fs'
import { stat, unlink } from 'node:fs/promises'
import { Readable, Transform, type TransformCallback } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { createError, EspraError, toWire, ERRORS, type ErrorCode } from '../../lib/core/errors.js'
import { answerLater, statusLine } from '../../lib/http/server.js'
import type { HttpRequest, HttpResponse } from '../../lib/http/uws.js'
import type { ChildContext } from '../../lib/process/role.js'
import type { DatastoreValue } from '../../lib/storage/datastore.js'
import { deriveUploadKey, MAX_UPLOAD_SIZE, typeAllowed } from '../../lib/uploads/token.js'
import {
  asTusState, checkVersion, CHECKSUM_ALGORITHMS, checksumHash, httpDate, isUploadId, MAX_PARTS, newNonce, newUploadId,
  parseChecksum, parseCount, parseMetadata, partKey, partsPrefix, PATCH_CONTENT_TYPE, TUS_EXTENSIONS, TUS_PATH, TUS_VERSION,
  type Checksum, type TusDone, type TusState,
} from './tus-protocol.js'
import { checkUploadToken, requestToken, spendUploadToken } from './upload.js'
import { cleanName, createProgressThrottle, Digest, diskError, openBody, PROGRESS_INTERVAL_MS, type UploadPipeline } from './upload-pipeline.js'
import { tmpUploadPath } from './upload-store.js'

const MEDIA_TYPE = /^[\x21-\x7e][\x20-\x7e]{0,254}$/
const METHODS = new Set(['POST', 'HEAD', 'PATCH', 'DELETE', 'OPTIONS'])

type Headers = Record<string, string>

/** A response and whether its client went away (then nothing may be written to it). */
interface Reply {
  readonly res: HttpResponse
  /** A HEAD answer carries no body, errors included. */
  readonly head: boolean
  aborted: boolean
}

const tusStatus = (status: number): string => (status === 460 ? '460 Checksum Mismatch' : statusLine(status))

/** Counts and bounds a PATCH body, hashes it for `Upload-Checksum`, reports progress. */
class PatchBody extends Transform {
  size = 0
  constructor(private readonly room: number, readonly hash: ReturnType<typeof checksumHash> | null, private readonly progress: (bytes: number) => void) {
    super()
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    this.size += chunk.length
    if (this.size > this.room) return done(createError('ESPRA_ERR_UPLOAD_TOO_LARGE', { what: 'the PATCH body', size: `over ${this.room}`, limit: 'the rest of Upload-Length', max: this.room }))
    this.hash?.update(chunk)
    this.progress(this.size)
    done(null, chunk)
  }
}

const doneHeaders = (done: TusDone | null): Headers => done === null ? {} : {
  'Espra-File-Key': done.key, 'Espra-File-Url': done.url, 'Espra-File-Sha256': done.sha256, 'Espra-File-Whirlpool': done.whirlpool,
  'Espra-File-Pending': String(done.pending),
}

/** Adds tus on `/uploads/` to the child's app. */
export function startTus(ctx: ChildContext, uploads: UploadPipeline): void {
  const { config, log } = ctx
  const tokenKey = deriveUploadKey(config.secret)
  const { blobs, datastore } = uploads

  function send({ res, head, aborted }: Reply, status: number, headers: Headers, body?: unknown): void {
    if (aborted) return
    answerLater(res, () => {
      res.writeStatus(tusStatus(status)).writeHeader('Tus-Resumable', TUS_VERSION)
      for (const [name, value] of Object.entries(headers)) res.writeHeader(name, value)
      if (head) res.endWithoutBody()
      else if (body === undefined) res.end()
      else res.writeHeader('Content-Type', 'application/json').end(JSON.stringify(body))
    })
  }

  function sendError(reply: Reply, err: unknown): void {
    const wire = toWire(err)
    const status = ERRORS[wire.code as ErrorCode]?.status ?? 500
    if (status >= 500) log.error({ err }, 'tus request failed')
    const headers: Headers = {}
    if (wire.code === 'ESPRA_ERR_TUS_VERSION') headers['Tus-Version'] = TUS_VERSION
    const offset = (err as EspraError).details?.['offset']
    if (wire.code === 'ESPRA_ERR_TUS_OFFSET' && typeof offset === 'number') headers['Upload-Offset'] = String(offset)
    send(reply, status, headers, wire.code === 'ESPRA_ERR_INTERNAL' ? { code: wire.code, message: 'internal error' } : wire)
  }

  const conflict = (offset: number, asked: number) =>
    createError('ESPRA_ERR_TUS_OFFSET', { asked, offset })

  async function load(id: string): Promise<TusState> {
    const state = asTusState(await datastore.get('tusUploads', id))
    if (state === null) throw createError('ESPRA_ERR_TUS_NOT_FOUND', { id, reason: 'never created, terminated, or expired and swept' })
    if (state.expires <= Date.now()) {
      await remove(id)
      throw createError('ESPRA_ERR_TUS_EXPIRED', { id, expires: httpDate(state.expires) })
    }
    return state
  }

  /** Deletes the state (atomically: one caller does the rest) and every part. */
  async function remove(id: string): Promise<boolean> {
    const state = asTusState(await datastore.consume('tusUploads', id))
    if (state === null) return false
    await deleteParts(id).catch((err: unknown) => log.warn({ err, id }, 'tus parts not deleted; the sweep will'))
    return true
  }

  async function deleteParts(id: string): Promise<void> {
    for await (const part of blobs.list(partsPrefix(id))) await blobs.delete(part.key)
  }

  /** Assembles the parts and the last body (`lastPath`) into one file and finishes it like `POST /upload`. */
  async function assemble(id: string, state: TusState, lastPath: string): Promise<TusDone> {
    const whole = tmpUploadPath(config, `tus-${id}-whole`)
    async function* bytes(): AsyncGenerator<Buffer> {
      for (const [index, [nonce]] of state.parts.entries()) {
        const part = await blobs.get(partKey(id, index, nonce))
        if (part === null) throw createError('ESPRA_ERR_STORAGE_FAILED', { store: `tus upload ${id}`, problem: `part ${index} is missing from the blob store`, id })
        for await (const chunk of part.body) yield chunk as Buffer
      }
      for await (const chunk of createReadStream(lastPath)) yield chunk as Buffer
    }
    try {
      const digest = new Digest(state.length, () => {})
      await pipeline(Readable.from(bytes()), digest, createWriteStream(whole, { flags: 'wx' })).catch((err: unknown) => {
        throw diskError(err)
      })
      if (digest.size !== state.length) throw createError('ESPRA_ERR_STORAGE_FAILED', { store: `tus upload ${id}`, problem: `its parts hold ${digest.size} bytes, not ${state.length}`, id })
      const got = { size: digest.size, ...(await digest.hashes()), type: state.type, filename: state.filename }
      const { result } = await uploads.finish(whole, got, { owner: state.owner ?? undefined, channel: state.channel ?? undefined, inline: state.inline === true })
      return { key: result.key, url: result.url, sha256: result.sha256, whirlpool: result.whirlpool, size: result.size, type: result.type, pending: result.pending }
    } finally {
      await unlink(whole).catch(() => {})
    }
  }

  /**
   * Records `size` bytes received into `path` at `state.offset`: a part, or the
   * finished file when they complete the upload; then the compare-and-set.
   */
  async function commit(id: string, state: TusState, path: string, size: number): Promise<TusState> {
    const offset = state.offset + size
    let next: TusState
    let part: string | null = null
    if (offset === state.length) {
      next = { ...state, offset, parts: [], done: await assemble(id, state, path) }
    } else {
      if (state.parts.length >= MAX_PARTS) {
        throw createError('ESPRA_ERR_TUS_BAD_REQUEST', { reason: `an upload takes at most ${MAX_PARTS} PATCH bodies: send the rest in fewer, larger ones` })
      }
      const nonce = newNonce()
      part = partKey(id, state.parts.length, nonce)
      // Exactly `size` bytes: after a client went away, a write may still land in the file after it was measured.
      await blobs.put(part, createReadStream(path, { start: 0, end: size - 1 }), { contentType: 'application/octet-stream' })
      next = { ...state, offset, parts: [...state.parts, [nonce, size]] }
    }
    if (!(await datastore.putIf('tusUploads', id, next as unknown as DatastoreValue, { offset: state.offset, done: null }))) {
      if (part !== null) await blobs.delete(part).catch(() => {})
      const now = asTusState(await datastore.get('tusUploads', id))
      if (now === null) throw createError('ESPRA_ERR_TUS_NOT_FOUND', { id, reason: 'terminated or expired meanwhile' })
      throw conflict(now.offset, state.offset)
    }
    if (next.done !== null) await deleteParts(id).catch((err: unknown) => log.warn({ err, id }, 'tus parts not deleted; the sweep will'))
    return next
  }

  async function create(reply: Reply, req: HttpRequest): Promise<void> {
    const lengthHeader = req.getHeader('upload-length')
    const deferHeader = req.getHeader('upload-defer-length')
    const metadataHeader = req.getHeader('upload-metadata')
    const contentLength = req.getHeader('content-length')
    const chunked = req.getHeader('transfer-encoding') !== ''
    const token = requestToken(req)
    if (deferHeader !== '') throw createError('ESPRA_ERR_TUS_BAD_REQUEST', { reason: 'Upload-Defer-Length is not supported (no creation-defer-length extension): send Upload-Length', header: 'Upload-Defer-Length' })
    if (lengthHeader === '') throw createError('ESPRA_ERR_TUS_BAD_REQUEST', { reason: 'Upload-Length is missing', header: 'Upload-Length' })
    const length = parseCount(lengthHeader, 'Upload-Length')
    if (length > MAX_UPLOAD_SIZE) throw createError('ESPRA_ERR_UPLOAD_TOO_LARGE', { what: 'Upload-Length', size: length, limit: 'Tus-Max-Size', max: MAX_UPLOAD_SIZE })
    const metadata = parseMetadata(metadataHeader)
    if (chunked || (contentLength !== '' && parseCount(contentLength, 'Content-Length') !== 0)) {
      throw createError('ESPRA_ERR_TUS_BAD_REQUEST', { reason: 'a creation request has no body here (no creation-with-upload extension): send the bytes with PATCH', header: 'Content-Length' })
    }
    const type = (metadata['filetype'] ?? '').trim() || 'application/octet-stream'
    if (!MEDIA_TYPE.test(type)) throw createError('ESPRA_ERR_TUS_BAD_REQUEST', { reason: 'Upload-Metadata: filetype must be printable ASCII, at most 255 characters', header: 'Upload-Metadata' })
    const claims = checkUploadToken(tokenKey, token)
    if (length > claims.maxSize) throw createError('ESPRA_ERR_UPLOAD_TOO_LARGE', { what: 'Upload-Length', size: length, limit: 'the token', max: claims.maxSize })
    if (!typeAllowed(claims, type)) throw createError('ESPRA_ERR_UPLOAD_TYPE', { type, allowed: claims.types.join(', ') })

    await spendUploadToken(uploads, claims)
    const id = newUploadId()
    const now = Date.now()
    let state: TusState = {
      v: 1, offset: 0, length, parts: [], metadata: metadataHeader === '' ? null : metadataHeader, type, filename: cleanName(metadata['filename']),
      owner: claims.owner ?? null, channel: claims.channel ?? null, ...(claims.inline === true ? { inline: true } : {}), maxSize: claims.maxSize, createdAt: now, expires: now + config.uploadExpiry, done: null,
    }
    if (length === 0) {
      // Nothing to PATCH: the empty file is finished at once.
      const empty = tmpUploadPath(config, `tus-${id}-empty`)
      await pipeline(Readable.from([]), createWriteStream(empty, { flags: 'wx' })).catch((err: unknown) => {
        throw diskError(err)
      })
      try {
        state = { ...state, done: await assemble(id, state, empty) }
      } finally {
        await unlink(empty).catch(() => {})
      }
    }
    if (!(await datastore.putIf('tusUploads', id, state as unknown as DatastoreValue, null))) throw createError('ESPRA_ERR_INTERNAL', { reason: `tus upload id ${id} exists already`, id })
    log.debug({ id, length, owner: state.owner }, 'tus upload created')
    send(reply, 201, { Location: `${TUS_PATH}/${id}`, 'Upload-Offset': '0', 'Upload-Expires': httpDate(state.expires), ...doneHeaders(state.done) })
  }

  async function head({ res, aborted }: Reply, id: string): Promise<void> {
    const state = await load(id)
    if (aborted) return
    res.cork(() => {
      res.writeStatus('200 OK').writeHeader('Tus-Resumable', TUS_VERSION).writeHeader('Cache-Control', 'no-store')
        .writeHeader('Upload-Offset', String(state.offset)).writeHeader('Upload-Length', String(state.length))
        .writeHeader('Upload-Expires', httpDate(state.expires))
      if (state.metadata !== null) res.writeHeader('Upload-Metadata', state.metadata)
      for (const [name, value] of Object.entries(doneHeaders(state.done))) res.writeHeader(name, value)
      res.endWithoutBody()
    })
  }

  async function patch(reply: Reply, req: HttpRequest, id: string): Promise<void> {
    const contentType = req.getHeader('content-type')
    const offsetHeader = req.getHeader('upload-offset')
    const lengthHeader = req.getHeader('content-length')
    const checksumHeader = req.getHeader('upload-checksum')
    if (contentType.split(';')[0]!.trim().toLowerCase() !== PATCH_CONTENT_TYPE) {
      throw createError('ESPRA_ERR_TUS_CONTENT_TYPE', { got: JSON.stringify(contentType.slice(0, 60)) })
    }
    if (offsetHeader === '') throw createError('ESPRA_ERR_TUS_BAD_REQUEST', { reason: 'Upload-Offset is missing', header: 'Upload-Offset' })
    const offset = parseCount(offsetHeader, 'Upload-Offset')
    const declared = lengthHeader === '' ? null : parseCount(lengthHeader, 'Content-Length')
    const checksum: Checksum | null = parseChecksum(checksumHeader)

    const body = openBody(reply.res, () => void (reply.aborted = true))
    const path = tmpUploadPath(config, `tus-${id}`)
    let state: TusState | null = null
    let received: PatchBody | null = null
    try {
      state = await load(id)
      if (state.offset !== offset) throw conflict(state.offset, offset)
      if (state.done !== null) {
        if (declared !== null && declared > 0) throw createError('ESPRA_ERR_UPLOAD_TOO_LARGE', { what: 'the PATCH body', size: declared, limit: `upload ${id}, complete already,`, max: 0 })
        body.drop()
        return send(reply, 204, { 'Upload-Offset': String(state.offset), 'Upload-Expires': httpDate(state.expires), ...doneHeaders(state.done) })
      }
      const room = state.length - state.offset
      if (declared !== null && declared > room) throw createError('ESPRA_ERR_UPLOAD_TOO_LARGE', { what: 'the PATCH body', size: declared, limit: `the rest of Upload-Length ${state.length}`, max: room })
      const at = state.offset
      const total = state.length
      const channel = state.channel ?? undefined
      const progress = channel === undefined ? () => {} : createProgressThrottle(PROGRESS_INTERVAL_MS, (bytes) => {
        uploads.publish(channel, { t: 'upload.progress', bytes: at + bytes, total })
      })
      received = new PatchBody(room, checksum === null ? null : checksumHash(checksum), progress)
      await pipeline(body.stream, received, createWriteStream(path, { flags: 'wx' })).catch((err: unknown) => {
        throw diskError(err)
      })
      if (checksum !== null && !received.hash!.digest().equals(checksum.digest)) {
        throw createError('ESPRA_ERR_TUS_CHECKSUM', { algorithm: checksum.algorithm })
      }
      const next = received.size === 0 ? state : await commit(id, state, path, received.size)
      body.drop()
      send(reply, 204, { 'Upload-Offset': String(next.offset), 'Upload-Expires': httpDate(next.expires), ...doneHeaders(next.done) })
    } catch (err) {
      body.drop()
      if (body.aborted && checksum === null && state !== null && state.done === null) await keepPartial(id, state, path)
      throw err
    } finally {
      await unlink(path).catch(() => {})
    }
  }

  /** A client gone mid-body, without a checksum to hold the bytes to: what reached the disk is recorded (tus: store as much as possible). */
  async function keepPartial(id: string, state: TusState, path: string): Promise<void> {
    try {
      const { size } = await stat(path)
      if (size === 0 || size >= state.length - state.offset) return
      const next = await commit(id, state, path, size)
      log.debug({ id, offset: next.offset }, 'tus: partial PATCH body kept')
    } catch (err) {
      log.debug({ err, id }, 'tus: partial PATCH body not kept')
    }
  }

  async function terminate(reply: Reply, id: string): Promise<void> {
    if (!(await remove(id))) throw createError('ESPRA_ERR_TUS_NOT_FOUND', { id, reason: 'nothing to terminate' })
    send(reply, 204, {})
  }

  function options(reply: Reply): void {
    send(reply, 204, {
      'Tus-Version': TUS_VERSION, 'Tus-Extension': TUS_EXTENSIONS, 'Tus-Max-Size': String(MAX_UPLOAD_SIZE),
      'Tus-Checksum-Algorithm': CHECKSUM_ALGORITHMS.join(','),
    })
  }

  async function route(res: HttpResponse, req: HttpRequest): Promise<void> {
    const url = req.getUrl()
    const rest = url.length <= TUS_PATH.length + 1 ? '' : url.slice(TUS_PATH.length + 1)
    const override = req.getHeader('x-http-method-override').trim().toUpperCase()
    const method = override || req.getMethod().toUpperCase()
    const version = req.getHeader('tus-resumable')
    const reply: Reply = { res, head: method === 'HEAD', aborted: false }
    res.onAborted(() => void (reply.aborted = true))
    try {
      if (!METHODS.has(method)) {
        throw override
          ? createError('ESPRA_ERR_TUS_BAD_REQUEST', { reason: `X-HTTP-Method-Override ${override.slice(0, 20)} is not a tus method`, header: 'X-HTTP-Method-Override' })
          : createError('ESPRA_ERR_HTTP_METHOD', { method, path: TUS_PATH, allowed: 'POST, HEAD, PATCH, DELETE, OPTIONS' })
      }
      // Upload ids are 32 hex digits: `..`, encoded or absolute paths, NUL and the like never name one.
      if (rest !== '' && !isUploadId(rest)) throw createError('ESPRA_ERR_HTTP_BAD_PATH', { path: url.slice(0, 80), reason: `an upload is ${TUS_PATH}/<32 hex digits>` })
      if (method === 'OPTIONS') return options(reply)
      checkVersion(version)
      if (rest === '') {
        if (method !== 'POST') throw createError('ESPRA_ERR_HTTP_METHOD', { method, path: `${TUS_PATH}/`, allowed: 'POST to create, OPTIONS' })
        return await create(reply, req)
      }
      if (method === 'HEAD') return await head(reply, rest)
      if (method === 'PATCH') return await patch(reply, req, rest)
      if (method === 'DELETE') return await terminate(reply, rest)
      throw createError('ESPRA_ERR_HTTP_METHOD', { method: 'POST', path: `${TUS_PATH}/<id>`, allowed: 'PATCH to upload, HEAD to resume, DELETE to terminate' })
    } catch (err) {
      sendError(reply, err)
    }
  }

  ctx.app.any(TUS_PATH, route)
  ctx.app.any(`${TUS_PATH}/*`, route)
}
