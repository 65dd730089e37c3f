// The slot ring and its entries (roles/app/slot-ring.ts, roles/app/slot-codec.ts) without threads: writer and
// reader in one thread over one SharedArrayBuffer, as an app child's main thread and a worker share it.
import t from 'tap'
import { SlotRing } from '../../../roles/app/slot-ring.js'
import { decodeRequest, decodeResponse, encodeRequest, encodeResponse } from '../../../roles/app/slot-codec.js'
import type { WireRequest } from '../../../roles/app/protocol.js'

const bytes = (s: string) => new TextEncoder().encode(s)

function put(ring: SlotRing, text: string): boolean {
  const buf = ring.free()
  if (buf === null) return false
  const n = buf.write(text)
  ring.publish(n)
  return true
}

function take(ring: SlotRing): string | null {
  const buf = ring.read()
  if (buf === null) return null
  const text = buf.toString()
  ring.consume()
  return text
}

t.test('entries are read in the order written, the ring fills up and wraps around', async (t) => {
  const writer = new SlotRing({ slots: 3, slotSize: 16 })
  const reader = new SlotRing(writer.buffer, 16)
  t.equal(reader.slots, 3)
  t.equal(reader.capacity, 12)
  t.equal(take(reader), null, 'nothing yet')
  t.ok(put(writer, 'a') && put(writer, 'bb') && put(writer, 'ccc'))
  t.notOk(put(writer, 'd'), 'full: every slot holds an unread entry')
  t.equal(writer.size, 3)
  t.equal(take(reader), 'a')
  t.ok(put(writer, 'd'), 'a slot read is free again')
  const seen: (string | null)[] = []
  for (let i = 0; i < 20; i++) {
    t.ok(put(writer, `x${i}`) || (seen.push(take(reader)), put(writer, `x${i}`)))
  }
  for (let s = take(reader); s !== null; s = take(reader)) seen.push(s)
  t.same(seen, ['bb', 'ccc', 'd', ...Array.from({ length: 20 }, (_, i) => `x${i}`)], 'every entry once, in order, across many wraps')
})

t.test('a sleeping reader is woken by the first entry only; a reader with entries waiting does not sleep', async (t) => {
  const writer = new SlotRing({ slots: 4, slotSize: 16 })
  const reader = new SlotRing(writer.buffer, 16)
  const wait = reader.sleep()
  t.ok(wait instanceof Promise, 'nothing to read: it waits')
  t.equal(reader.sleep(), wait, 'the same wait while it waits')
  const buf = writer.free()!
  t.equal(writer.publish(buf.write('one')), true, 'the first publish says to wake the reader')
  const buf2 = writer.free()!
  t.equal(writer.publish(buf2.write('two')), false, 'the next ones do not (batched)')
  writer.wake()
  await wait
  t.equal(take(reader), 'one')
  t.equal(reader.sleep(), null, 'an entry is there: no sleep')
  t.equal(take(reader), 'two')
  const again = reader.sleep()
  t.ok(again instanceof Promise)
  t.not(again, wait, 'a new wait once the last one ended')
  t.equal(writer.publish(writer.free()!.write('three')), true)
  writer.wake()
  await again
  t.equal(take(reader), 'three')
})

t.test('a ring needs a slot with room', async (t) => {
  t.throws(() => new SlotRing({ slots: 0, slotSize: 16 }), RangeError)
  t.throws(() => new SlotRing({ slots: 2, slotSize: 4 }), RangeError)
})

const REQUEST: WireRequest = {
  method: 'POST', url: '/a/é?x=1', path: '/a/é', query: 'x=1',
  headers: { host: 'example.test', 'x-obs': 'caf\xe9', cookie: 'a=1; b=2' },
  body: bytes('{"hello":"wörld"}'), address: '2001:db8::1',
}

t.test('a request written into a slot reads back the same, with a body of its own', async (t) => {
  const writer = new SlotRing({ slots: 2, slotSize: 512 })
  const reader = new SlotRing(writer.buffer, 512)
  const n = encodeRequest(writer.free()!, { seq: 4294967295, id: 0x7fffffff, cell: 4, req: REQUEST })
  t.ok(n > 0)
  writer.publish(n)
  const got = decodeRequest(reader.read()!)
  t.same(got, { seq: 4294967295, id: 0x7fffffff, cell: 4, req: REQUEST })
  t.ok(got.req.body.buffer instanceof ArrayBuffer, 'the body is copied out of the shared slot')
  reader.consume()
  encodeRequest(writer.free()!, { seq: 1, id: 1, cell: 0, req: { ...REQUEST, body: bytes('overwritten') } })
  t.same(Buffer.from(got.req.body).toString(), '{"hello":"wörld"}', 'reusing the slot leaves what was read alone')
})

t.test('what does not fit a slot is refused (sent as a message instead)', async (t) => {
  const slot = new SlotRing({ slots: 1, slotSize: 256 }).free()!
  t.equal(encodeRequest(slot, { seq: 1, id: 1, cell: 0, req: { ...REQUEST, body: new Uint8Array(300) } }), -1, 'a large body')
  t.equal(encodeRequest(slot, { seq: 1, id: 1, cell: 0, req: { ...REQUEST, headers: { 'x-big': 'v'.repeat(300) } } }), -1, 'large headers')
  t.equal(encodeRequest(slot, { seq: 1, id: 1, cell: 0, req: { ...REQUEST, url: '€'.repeat(80) } }), -1, 'multi-byte text past the slot')
  t.ok(encodeRequest(slot, { seq: 1, id: 1, cell: 0, req: { ...REQUEST, body: new Uint8Array(100) } }) > 0, 'a small one fits')
  t.equal(encodeResponse(slot, { id: 1, status: 200, headers: [], body: new Uint8Array(253) }), -1)
})

t.test('a whole response written into a slot reads back the same', async (t) => {
  const writer = new SlotRing({ slots: 1, slotSize: 256 })
  const reader = new SlotRing(writer.buffer, 256)
  const res = { id: 9, status: 404, headers: [['content-type', 'text/plain'], ['set-cookie', 'a=1'], ['set-cookie', 'b=2']] as [string, string][], body: bytes('not here') }
  writer.publish(encodeResponse(writer.free()!, res))
  t.same(decodeResponse(reader.read()!), res)
  reader.consume()
  writer.publish(encodeResponse(writer.free()!, { id: 10, status: 204, headers: [], body: new Uint8Array(0) }))
  t.same(decodeResponse(reader.read()!), { id: 10, status: 204, headers: [], body: new Uint8Array(0) }, 'empty body, no headers')
})

t.test('strings round-trip whether written as ASCII byte by byte or as UTF-8, at and past the short-string bound', async (t) => {
  const writer = new SlotRing({ slots: 1, slotSize: 2048 })
  const reader = new SlotRing(writer.buffer, 2048)
  const texts = ['', 'GET', 'a'.repeat(63), 'b'.repeat(64), 'c'.repeat(65), 'ascii then wörld', 'x'.repeat(60) + 'é', '€', '😀 emoji', '\u007f\u0080', 'd'.repeat(300) + 'ü']
  for (const text of texts) {
    const req = { ...REQUEST, url: text, headers: { [`x-${text.length}`]: text } }
    writer.publish(encodeRequest(writer.free()!, { seq: 1, id: 1, cell: 0, req }))
    t.same(decodeRequest(reader.read()!).req, req, `${JSON.stringify(text.slice(0, 12))} (${text.length} units)`)
    reader.consume()
  }
  // A slot exactly as large as a short ASCII entry needs takes it; one byte less refuses it.
  const fits = (size: number) => encodeResponse(new SlotRing({ slots: 1, slotSize: size }).free()!, { id: 1, status: 200, headers: [['ab', 'cd']], body: new Uint8Array(0) })
  const entry = 4 + 4 + 4 + (4 + 2) + (4 + 2) + 4
  // A slot is its entry's length (4 bytes) and the entry.
  t.equal(fits(4 + entry), entry)
  t.equal(fits(4 + entry - 1), -1)
})
