import t from 'tap'
import { encodeFrame, FrameDecoder } from '../../../lib/codec/frame.js'
import { EspraError } from '../../../lib/core/errors.js'

const VALUES: unknown[] = [
  { t: 'req', id: 1, op: 'ping', body: {} },
  'plain string',
  42,
  -1.5,
  null,
  [1, 'two', { three: 3 }],
  { bin: Buffer.from([0, 1, 2, 255]), nested: { deep: [true, false] }, big: 2 ** 40 },
]

function header(length: number): Buffer {
  const b = Buffer.alloc(4)
  b.writeUInt32BE(length, 0)
  return b
}

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn()
  } catch (err) {
    return (err as EspraError).code
  }
  return undefined
}

t.test('round trip of several values in one chunk', async (t) => {
  const decoder = new FrameDecoder(1024 * 1024)
  const out = decoder.push(Buffer.concat(VALUES.map(encodeFrame)))
  t.same(out, VALUES)
  t.equal(decoder.pending, false)
})

t.test('values split across many chunks, one byte at a time', async (t) => {
  const decoder = new FrameDecoder(1024 * 1024)
  const all = Buffer.concat(VALUES.map(encodeFrame))
  const out: unknown[] = []
  for (let i = 0; i < all.length; i++) out.push(...decoder.push(all.subarray(i, i + 1)))
  t.same(out, VALUES)
})

t.test('truncated input waits for the rest', async (t) => {
  const decoder = new FrameDecoder(1024)
  const frame = encodeFrame({ t: 'msg', op: 'heartbeat', body: { health: 'ok' } })
  t.same(decoder.push(frame.subarray(0, 2)), [], 'half a header')
  t.equal(decoder.pending, true)
  t.same(decoder.push(frame.subarray(2, frame.length - 1)), [], 'all but the last byte')
  t.equal(decoder.pending, true)
  t.same(decoder.push(frame.subarray(frame.length - 1)), [{ t: 'msg', op: 'heartbeat', body: { health: 'ok' } }])
  t.equal(decoder.pending, false)
})

t.test('an oversized header throws before its payload is buffered', async (t) => {
  const decoder = new FrameDecoder(1024)
  t.equal(codeOf(() => decoder.push(header(1025))), 'ESPRA_ERR_FRAME_TOO_LARGE', 'the header alone is enough')
  t.equal(codeOf(() => new FrameDecoder(1024).push(Buffer.from('GET / HTTP/1.1\r\n'))), 'ESPRA_ERR_FRAME_TOO_LARGE', 'HTTP bytes read as a huge length')
  t.same(new FrameDecoder(1024).push(Buffer.concat([header(1024), Buffer.alloc(0)])), [], 'exactly the limit is accepted (waits)')
})

t.test('the limit can be raised after a handshake', async (t) => {
  const decoder = new FrameDecoder(16)
  decoder.maxFrame = 4096
  const value = { text: 'x'.repeat(100) }
  t.same(decoder.push(encodeFrame(value)), [value])
})

t.test('malformed payloads throw', async (t) => {
  t.equal(codeOf(() => new FrameDecoder(1024).push(header(0))), 'ESPRA_ERR_FRAME_MALFORMED', 'empty payload')
  const two = Buffer.from([0x01, 0x02])
  t.equal(codeOf(() => new FrameDecoder(1024).push(Buffer.concat([header(2), two]))), 'ESPRA_ERR_FRAME_MALFORMED', 'two values in one frame')
  const truncatedMap = Buffer.from([0x82, 0xa1, 0x74]) // a map of 2 entries that ends after one key
  t.equal(codeOf(() => new FrameDecoder(1024).push(Buffer.concat([header(3), truncatedMap]))), 'ESPRA_ERR_FRAME_MALFORMED', 'truncated msgpack')
  const garbage = Buffer.from([0xdb, 0xff, 0xff, 0xff, 0xff, 0x41]) // str32 announcing 4 GB
  t.equal(codeOf(() => new FrameDecoder(1024).push(Buffer.concat([header(garbage.length), garbage]))), 'ESPRA_ERR_FRAME_MALFORMED', 'garbage')
})
