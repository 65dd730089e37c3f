/**
 * Requests and whole responses as bytes in one slot of a SlotRing
 * (roles/app/slot-ring.ts), written and read in place: a small hand-written
 * layout (little-endian Uint32 numbers; strings as a byte length and UTF-8
 * bytes; the body last). An encoder answers -1 when the entry does not fit
 * the slot: the caller sends it as a message instead.
 *
 * Request:  seq, id, cell, method, url, path, query, address, header count, (name, value)…, body
 * Response: id, status, header count, (name, value)…, body
 */
import type { WireRequest } from './protocol.js'

/** A request as a worker gets it: its place in the worker's order, and its offer in the claim gate. */
export interface SlotRequest {
  readonly seq: number
  readonly id: number
  readonly cell: number
  readonly req: WireRequest
}

export interface SlotResponse {
  readonly id: number
  readonly status: number
  readonly headers: [string, string][]
  readonly body: Uint8Array
}

/** Strings up to this many UTF-16 units are tried as ASCII first. */
const SHORT_STRING = 64

/** Writes into one slot; `ok` turns false at the first thing that does not fit. */
class Writer {
  at = 0
  ok = true
  constructor(private readonly buf: Buffer) {}

  u32(n: number): void {
    if (this.at + 4 > this.buf.length) return void (this.ok = false)
    this.buf.writeUInt32LE(n, this.at)
    this.at += 4
  }

  str(s: string): void {
    const room = this.buf.length - this.at - 4
    // Most strings are short enough for the cheap bound (3 bytes a UTF-16 unit at most); count exactly only near the end.
    if (s.length * 3 > room && Buffer.byteLength(s) > room) return void (this.ok = false)
    if (!this.ok) return
    const buf = this.buf
    const start = this.at + 4
    // Short ASCII strings (methods, paths, addresses, most header names and values) byte by byte in JS: a call into
    // C++ for each cost more than the copy (encodeRequest was 5% of an app child's main thread under wrk).
    if (s.length <= SHORT_STRING) {
      let i = 0
      for (; i < s.length; i++) {
        const c = s.charCodeAt(i)
        if (c > 0x7f) break
        buf[start + i] = c
      }
      if (i === s.length) {
        buf.writeUInt32LE(i, this.at)
        this.at = start + i
        return
      }
    }
    // Anything else (or what the loop began) as UTF-8 from the start.
    const n = buf.write(s, start, 'utf8')
    buf.writeUInt32LE(n, this.at)
    this.at = start + n
  }

  bytes(b: Uint8Array): void {
    this.u32(b.length)
    if (!this.ok || this.at + b.length > this.buf.length) return void (this.ok = false)
    this.buf.set(b, this.at)
    this.at += b.length
  }
}

class Reader {
  at = 0
  constructor(private readonly buf: Buffer) {}

  u32(): number {
    const n = this.buf.readUInt32LE(this.at)
    this.at += 4
    return n
  }

  str(): string {
    const n = this.u32()
    const s = this.buf.toString('utf8', this.at, this.at + n)
    this.at += n
    return s
  }

  /** A copy: the slot is reused once read. */
  bytes(): Uint8Array {
    const n = this.u32()
    const copy = new Uint8Array(n)
    copy.set(this.buf.subarray(this.at, this.at + n))
    this.at += n
    return copy
  }
}

/** The request's bytes in `buf` (their length), or -1 when it does not fit. */
export function encodeRequest(buf: Buffer, r: SlotRequest): number {
  const w = new Writer(buf)
  const { req } = r
  w.u32(r.seq)
  w.u32(r.id)
  w.u32(r.cell)
  w.str(req.method)
  w.str(req.url)
  w.str(req.path)
  w.str(req.query)
  w.str(req.address)
  const names = Object.keys(req.headers)
  w.u32(names.length)
  for (const name of names) {
    w.str(name)
    w.str(req.headers[name]!)
  }
  w.bytes(req.body)
  return w.ok ? w.at : -1
}

export function decodeRequest(buf: Buffer): SlotRequest {
  const r = new Reader(buf)
  const seq = r.u32()
  const id = r.u32()
  const cell = r.u32()
  const method = r.str()
  const url = r.str()
  const path = r.str()
  const query = r.str()
  const address = r.str()
  const headers: Record<string, string> = {}
  for (let n = r.u32(); n > 0; n--) {
    const name = r.str()
    headers[name] = r.str()
  }
  const body = r.bytes()
  return { seq, id, cell, req: { method, url, path, query, headers, body, address } }
}

/** The response's bytes in `buf` (their length), or -1 when it does not fit. */
export function encodeResponse(buf: Buffer, r: SlotResponse): number {
  const w = new Writer(buf)
  w.u32(r.id)
  w.u32(r.status)
  w.u32(r.headers.length)
  for (const [name, value] of r.headers) {
    w.str(name)
    w.str(value)
  }
  w.bytes(r.body)
  return w.ok ? w.at : -1
}

export function decodeResponse(buf: Buffer): SlotResponse {
  const r = new Reader(buf)
  const id = r.u32()
  const status = r.u32()
  const headers: [string, string][] = []
  for (let n = r.u32(); n > 0; n--) headers.push([r.str(), r.str()])
  const body = r.bytes()
  return { id, status, headers, body }
}
