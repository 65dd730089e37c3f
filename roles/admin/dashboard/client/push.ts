/**
 * "Push a build" on the Builds page: a directory picked in the browser is
 * hashed here (crypto.subtle, one file at a time), planned with
 * `POST /api/builds`, the files the cluster lacks uploaded with a progress
 * bar (`PUT …/files/<sha256>`, a few at once), then committed; the caller
 * follows the build's staging from there (docs/admin-api.md, "Push a build").
 */
import { ApiError, api, currentSession } from './api.js'

export interface PushFile {
  readonly path: string
  readonly file: File
}

export interface PushProgress {
  /** What is happening, for the status line. */
  readonly phase: 'hashing' | 'planning' | 'uploading' | 'committing'
  readonly done: number
  readonly total: number
}

interface Planned {
  upload: string
  commit: string
  missing: { hash: string; size: number; href: string }[]
  missingBytes: number
}

/** Files sent at once. */
const PARALLEL = 3

/** The files of an `<input type=file webkitdirectory>` with paths relative to the directory picked (its own name dropped). */
export function filesOfDirectory(list: FileList): PushFile[] {
  return [...list].map((file) => {
    const rel = file.webkitRelativePath || file.name
    return { path: rel.includes('/') ? rel.slice(rel.indexOf('/') + 1) : rel, file }
  })
}

async function sha256(file: File): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', await file.arrayBuffer()))
  return [...digest].map((b) => b.toString(16).padStart(2, '0')).join('')
}

/** One file's bytes with the session's CSRF token; `onBytes` hears the bytes sent so far. */
function upload(href: string, file: File, onBytes: (sent: number) => void): Promise<void> {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest()
    xhr.open('PUT', href)
    xhr.setRequestHeader('X-CSRF-Token', currentSession()?.csrf ?? '')
    xhr.setRequestHeader('Content-Type', 'application/octet-stream')
    xhr.upload.onprogress = (e) => onBytes(e.loaded)
    xhr.onload = () => {
      if (xhr.status === 200) return resolve()
      let body: { code?: string; message?: string } = {}
      try {
        body = JSON.parse(xhr.responseText) as typeof body
      } catch {
        // not JSON: the status says it
      }
      reject(new ApiError(xhr.status, body.code ?? `HTTP_${xhr.status}`, body.message ?? `HTTP ${xhr.status}`))
    }
    xhr.onerror = () => reject(new ApiError(0, 'NETWORK', 'the upload failed (network error)'))
    xhr.send(file)
  })
}

/** Hashes, plans, uploads what is missing and commits; resolves the build id. */
export async function pushBuild(files: readonly PushFile[], message: string, onProgress: (p: PushProgress) => void): Promise<string> {
  if (files.length === 0) throw new ApiError(0, 'EMPTY', 'the directory holds no files')
  if (globalThis.crypto?.subtle === undefined) {
    throw new ApiError(0, 'INSECURE_CONTEXT', 'hashing in the browser needs a secure context (HTTPS, or the dashboard on localhost); use espra-node admin push-build <dir>')
  }
  const byHash = new Map<string, File>()
  const manifest: { path: string; size: number; hash: string }[] = []
  const totalBytes = files.reduce((n, f) => n + f.file.size, 0)
  let hashed = 0
  for (const f of files) {
    onProgress({ phase: 'hashing', done: hashed, total: totalBytes })
    const hash = await sha256(f.file)
    byHash.set(hash, f.file)
    manifest.push({ path: f.path, size: f.file.size, hash })
    hashed += f.file.size
  }
  onProgress({ phase: 'planning', done: 0, total: 0 })
  const plan = await api<Planned>('POST', '/api/builds', { manifest: { files: manifest }, ...(message !== '' ? { message } : {}) })
  const sent = new Map<string, number>()
  const report = (): void => onProgress({ phase: 'uploading', done: [...sent.values()].reduce((n, b) => n + b, 0), total: plan.missingBytes })
  report()
  const queue = [...plan.missing]
  const worker = async (): Promise<void> => {
    for (let m = queue.shift(); m !== undefined; m = queue.shift()) {
      const item = m
      await upload(item.href, byHash.get(item.hash)!, (n) => {
        sent.set(item.hash, n)
        report()
      })
      sent.set(item.hash, item.size)
      report()
    }
  }
  await Promise.all(Array.from({ length: Math.min(PARALLEL, queue.length) }, worker))
  onProgress({ phase: 'committing', done: plan.missingBytes, total: plan.missingBytes })
  const built = await api<{ id: string }>('POST', plan.commit)
  return built.id
}
