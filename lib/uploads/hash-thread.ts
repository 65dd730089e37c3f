/**
 * A hash computed on a worker thread, fed the same chunks as the caller's
 * other work: an upload's whirlpool (OpenSSL's runs at about 150–200 MB/s,
 * slower than receiving, sha256 and writing together) runs beside the main
 * thread's sha256 and file write instead of after them on each chunk. One
 * thread per process serves every upload of it (each hash its own id), and is
 * started on first use. Memory stays bounded: {@link ThreadHash.update}
 * returns false once more than {@link IN_FLIGHT_BYTES} wait for the thread,
 * and the caller waits for {@link ThreadHash.drained} before it takes more.
 */
import { Worker } from 'node:worker_threads'
import { createError } from '../core/errors.js'

/** Bytes handed to the thread and not yet hashed, per hash, above which the caller should wait. */
export const IN_FLIGHT_BYTES = 4 * 1024 * 1024

/** The thread's code (plain JavaScript, evaluated: the same from the sources and from dist/). */
const THREAD_SOURCE = `
const { parentPort } = require('node:worker_threads')
const { createHash } = require('node:crypto')
const hashes = new Map()
parentPort.on('message', (m) => {
  try {
    if (m.t === 'start') hashes.set(m.id, createHash(m.algorithm))
    else if (m.t === 'data') {
      hashes.get(m.id).update(new Uint8Array(m.bytes))
      parentPort.postMessage({ t: 'ack', id: m.id, n: m.bytes.byteLength })
    } else if (m.t === 'end') {
      const hash = hashes.get(m.id)
      hashes.delete(m.id)
      parentPort.postMessage({ t: 'done', id: m.id, hex: hash.digest('hex') })
    } else if (m.t === 'drop') hashes.delete(m.id)
  } catch (err) {
    hashes.delete(m.id)
    parentPort.postMessage({ t: 'error', id: m.id, message: String(err && err.message || err) })
  }
})
`

type FromThread =
  | { t: 'ack'; id: number; n: number }
  | { t: 'done'; id: number; hex: string }
  | { t: 'error'; id: number; message: string }

/** The process's hash thread and the hashes it holds. */
let thread: { worker: Worker; hashes: Map<number, ThreadHash> } | null = null
let nextId = 1

function hashThread(): { worker: Worker; hashes: Map<number, ThreadHash> } {
  if (thread !== null) return thread
  const worker = new Worker(THREAD_SOURCE, { eval: true })
  // Idle, it must not keep the process alive; a hash in progress keeps it referenced (see ThreadHash).
  worker.unref()
  const current = { worker, hashes: new Map<number, ThreadHash>() }
  worker.on('message', (m: FromThread) => current.hashes.get(m.id)?.fromThread(m))
  const fail = (err: Error): void => {
    if (thread === current) thread = null
    for (const hash of current.hashes.values()) hash.fromThread({ t: 'error', id: 0, message: err.message })
    current.hashes.clear()
  }
  worker.on('error', fail)
  worker.on('exit', (code) => fail(new Error(`the hash thread exited (${code})`)))
  thread = current
  return current
}

/** One hash (for example `whirlpool`) on the process's hash thread. */
export class ThreadHash {
  private readonly id = nextId++
  /** The thread, once the first byte (or the digest) asked for it: a hash never used holds nothing. */
  private owner: { worker: Worker; hashes: Map<number, ThreadHash> } | null = null
  private inFlight = 0
  private failure: Error | null = null
  private waiting: Array<() => void> = []
  private result: { resolve: (hex: string) => void; reject: (err: Error) => void } | null = null
  private finished = false

  constructor(private readonly algorithm: string) {}

  private thread(): { worker: Worker; hashes: Map<number, ThreadHash> } {
    if (this.owner !== null) return this.owner
    const owner = hashThread()
    owner.hashes.set(this.id, this)
    if (owner.hashes.size === 1) owner.worker.ref()
    owner.worker.postMessage({ t: 'start', id: this.id, algorithm: this.algorithm })
    this.owner = owner
    return owner
  }

  /** Hands a copy of `chunk` to the thread; false when the caller should wait for {@link drained} before the next. */
  update(chunk: Buffer): boolean {
    if (this.finished) throw createError('ESPRA_ERR_INTERNAL', { reason: 'a thread hash was updated after its digest' })
    const bytes = new Uint8Array(chunk).buffer
    this.inFlight += bytes.byteLength
    this.thread().worker.postMessage({ t: 'data', id: this.id, bytes }, [bytes])
    return this.inFlight <= IN_FLIGHT_BYTES
  }

  /** Resolves once the bytes waiting for the thread are at most {@link IN_FLIGHT_BYTES} (at once when they are); rejects when the thread failed. */
  drained(): Promise<void> {
    if (this.failure !== null) return Promise.reject(this.failure)
    if (this.inFlight <= IN_FLIGHT_BYTES) return Promise.resolve()
    return new Promise((resolve, reject) => this.waiting.push(() => (this.failure === null ? resolve() : reject(this.failure))))
  }

  /** The hex digest of every byte given, once the thread has hashed them all. */
  digest(): Promise<string> {
    if (this.failure !== null) return Promise.reject(this.failure)
    if (this.finished) throw createError('ESPRA_ERR_INTERNAL', { reason: 'a thread hash was digested twice' })
    this.finished = true
    return new Promise((resolve, reject) => {
      this.result = { resolve, reject }
      this.thread().worker.postMessage({ t: 'end', id: this.id })
    })
  }

  /** Forgets the hash (an upload that failed): the thread drops it. */
  abandon(): void {
    this.finished = true
    if (this.owner === null || !this.owner.hashes.has(this.id)) return
    this.owner.worker.postMessage({ t: 'drop', id: this.id })
    this.forget()
  }

  /** @internal What the thread said about this hash. */
  fromThread(m: FromThread): void {
    if (m.t === 'ack') {
      this.inFlight -= m.n
      if (this.inFlight <= IN_FLIGHT_BYTES) this.wake()
      return
    }
    this.forget()
    if (m.t === 'done') this.result?.resolve(m.hex)
    else {
      this.failure = createError('ESPRA_ERR_INTERNAL', { reason: `the hash thread failed: ${m.message}` })
      this.wake()
      this.result?.reject(this.failure)
    }
  }

  private wake(): void {
    const waiting = this.waiting
    this.waiting = []
    for (const w of waiting) w()
  }

  private forget(): void {
    if (this.owner === null || !this.owner.hashes.delete(this.id)) return
    if (this.owner.hashes.size === 0) this.owner.worker.unref()
  }
}
