// Body and frame boundaries, driven directly: the chunked scanner and the WebSocket frame tracker
// split at every byte, and the response-head parser the proxy frames Live answers with.
import t from 'tap'
import { parseResponseHead, withConnectionClose } from '../../../roles/proxy/answers.js'
import { ChunkedScanner, WsFrameTracker, wsCloseFrame } from '../../../roles/proxy/framing.js'

const latin1 = (s: string): Buffer => Buffer.from(s, 'latin1')

/** Feeds `buf` in the given pieces; returns where the body ended (absolute index) or -1, and the error flag. */
function scanPieces(buf: Buffer, cuts: number[]): { end: number; error: boolean; done: boolean } {
  const s = new ChunkedScanner()
  const bounds = [0, ...cuts, buf.length]
  for (let k = 0; k + 1 < bounds.length; k++) {
    const end = s.scan(buf, bounds[k]!, bounds[k + 1]!)
    if (s.error) return { end: -1, error: true, done: false }
    if (s.done) return { end, error: false, done: true }
  }
  return { end: -1, error: false, done: false }
}

const BODY = latin1(
  '5;name=value;quoted="a;b"\r\nhello\r\n' +
  '1A \t; ext\r\n' + 'abcdefghijklmnopqrstuvwxyz' + '\r\n' +
  '000c\r\n{"json":"x"}\r\n' +
  '0;last\r\n' +
  'Trailer-One: 1\r\nTrailer-Two: two words\r\n' +
  '\r\n',
)
const NEXT = latin1('GET /next HTTP/1.1\r\nHost: h\r\n\r\n')

t.test('chunked: a multi-chunk body with extensions and trailers, whole', async (t) => {
  const buf = Buffer.concat([BODY, NEXT])
  const r = scanPieces(buf, [])
  t.same(r, { end: BODY.length, error: false, done: true }, 'ends exactly at the body end; the next request is left alone')
})

t.test('chunked: split in two at every byte boundary', async (t) => {
  const buf = Buffer.concat([BODY, NEXT])
  let bad = 0
  for (let cut = 1; cut < BODY.length; cut++) {
    const r = scanPieces(buf, [cut])
    if (r.end !== BODY.length || r.error) {
      bad++
      t.fail(`split at ${cut}: ${JSON.stringify(r)}`)
    }
  }
  t.equal(bad, 0, `all ${BODY.length - 1} splits end at ${BODY.length}`)
})

t.test('chunked: split in three at every pair of boundaries', async (t) => {
  let bad = 0
  for (let a = 1; a < BODY.length; a++) {
    for (let b = a + 1; b < BODY.length; b++) {
      const r = scanPieces(BODY, [a, b])
      if (r.end !== BODY.length || r.error) bad++
    }
  }
  t.equal(bad, 0)
})

t.test('chunked: one byte at a time', async (t) => {
  const cuts = Array.from({ length: BODY.length - 1 }, (_, i) => i + 1)
  t.same(scanPieces(BODY, cuts), { end: BODY.length, error: false, done: true })
})

t.test('chunked: a body not yet complete is neither done nor an error, and reset starts over', async (t) => {
  const s = new ChunkedScanner()
  const head = BODY.subarray(0, BODY.length - 1)
  t.equal(s.scan(head, 0, head.length), head.length)
  t.equal(s.done, false)
  t.equal(s.error, false)
  s.reset()
  t.equal(s.scan(BODY, 0, BODY.length), BODY.length)
  t.equal(s.done, true)
})

t.test('chunked: the empty body and the chunk boundary flag', async (t) => {
  t.same(scanPieces(latin1('0\r\n\r\n'), []), { end: 5, error: false, done: true })
  const s = new ChunkedScanner()
  t.equal(s.atChunkBoundary, true, 'before the first chunk')
  const part = latin1('3\r\nab')
  s.scan(part, 0, part.length)
  t.equal(s.atChunkBoundary, false, 'inside chunk data')
  const rest = latin1('c\r\n')
  s.scan(rest, 0, rest.length)
  t.equal(s.atChunkBoundary, true, 'after a chunk')
  const size = latin1('1')
  s.scan(size, 0, 1)
  t.equal(s.atChunkBoundary, false, 'inside a size line')
})

const MALFORMED: [string, string][] = [
  ['no size', '\r\nabc\r\n0\r\n\r\n'],
  ['a non-hex size', 'g\r\n'],
  ['a negative size', '-1\r\n'],
  ['13 hex digits', `${'0'.repeat(12)}1\r\n`],
  ['a bare LF after the size', '3\nabc\r\n0\r\n\r\n'],
  ['a bare CR after the size', '3\rabc\r\n'],
  ['a bare LF in an extension', '3;a\nabc\r\n'],
  ['a size after whitespace', '3 3\r\nabc\r\n'],
  ['data longer than its size', '3\r\nabcd\r\n0\r\n\r\n'],
  ['data ending with a bare LF', '3\r\nabc\n0\r\n\r\n'],
  ['data ending with CR and no LF', '3\r\nabc\rx'],
  ['a bare LF for the final blank line', '0\r\n\n'],
  ['a bare LF ending a trailer', '0\r\nX: a\n\r\n'],
  ['a bare LF inside a trailer', '0\r\nX: a\nb\r\n\r\n'],
  ['a trailer CR without LF', '0\r\nX: a\rb\r\n\r\n'],
  ['the final CR without LF', '0\r\n\rx'],
]

t.test('chunked: malformed bodies set error, whole and split at every byte', async (t) => {
  for (const [why, text] of MALFORMED) {
    const buf = latin1(text)
    t.equal(scanPieces(buf, []).error, true, why)
    let missed = 0
    for (let cut = 1; cut < buf.length; cut++) if (!scanPieces(buf, [cut]).error) missed++
    t.equal(missed, 0, `${why}: every split`)
  }
})

t.test('chunked: a request body scanner (no extensions) refuses an extension after the size or its blanks', async (t) => {
  for (const text of ['2;x=y\r\nab\r\n0\r\n\r\n', '2 ;x\r\nab\r\n0\r\n\r\n', '2\r\nab\r\n0;last\r\n\r\n']) {
    const s = new ChunkedScanner(false)
    s.scan(latin1(text), 0, text.length)
    t.equal(s.error, true, JSON.stringify(text))
  }
  const plain = latin1('2 \r\nab\r\n0\r\nX-T: 1\r\n\r\n')
  const s = new ChunkedScanner(false)
  t.equal(s.scan(plain, 0, plain.length), plain.length)
  t.equal(s.done, true, 'blanks after the size and trailers still pass')
})

// ---- WebSocket frames ----

function frame(payloadLength: number, opts: { masked?: boolean; opcode?: number } = {}): Buffer {
  const masked = opts.masked ?? false
  const ext = payloadLength < 126 ? 0 : payloadLength < 65536 ? 2 : 8
  const out = Buffer.alloc(2 + ext + (masked ? 4 : 0) + payloadLength, 0x61)
  out[0] = 0x80 | (opts.opcode ?? 1)
  const mask = masked ? 0x80 : 0
  if (ext === 0) out[1] = mask | payloadLength
  else if (ext === 2) {
    out[1] = mask | 126
    out.writeUInt16BE(payloadLength, 2)
  } else {
    out[1] = mask | 127
    out.writeBigUInt64BE(BigInt(payloadLength), 2)
  }
  if (masked) out.writeUInt32BE(0x01020304, 2 + ext)
  return out
}

const FRAMES = [frame(0), frame(5), frame(125), frame(126), frame(300, { masked: true }), frame(65535), frame(70_000), frame(3, { masked: true, opcode: 9 })]
const STREAM = Buffer.concat(FRAMES)
/** Offsets where a frame ends (and the next starts). */
const BOUNDARIES = new Set(FRAMES.reduce<number[]>((acc, f) => [...acc, (acc.at(-1) ?? 0) + f.length], []))

t.test('ws: frames of every length form, whole', async (t) => {
  const ws = new WsFrameTracker()
  t.equal(ws.atBoundary, true)
  ws.track(STREAM, 0, STREAM.length)
  t.equal(ws.atBoundary, true, 'between frames after the last one')
})

t.test('ws: split in two at every byte, the boundary flag is right at each split', async (t) => {
  let wrong = 0
  // Every cut across the small frames and the headers; the long payloads are sampled at their edges.
  const cuts: number[] = []
  for (let c = 1; c < STREAM.length; c++) {
    const near = [...BOUNDARIES].some((b) => Math.abs(b - c) <= 16)
    if (c < 1200 || near) cuts.push(c)
  }
  for (const cut of cuts) {
    const ws = new WsFrameTracker()
    ws.track(STREAM, 0, cut)
    if (ws.atBoundary !== BOUNDARIES.has(cut)) {
      wrong++
      t.fail(`cut at ${cut}: atBoundary ${ws.atBoundary}`)
    }
    ws.track(STREAM, cut, STREAM.length)
    if (!ws.atBoundary) {
      wrong++
      t.fail(`cut at ${cut}: not at a boundary at the end`)
    }
  }
  t.equal(wrong, 0, `${cuts.length} splits`)
})

t.test('ws: one byte at a time across headers', async (t) => {
  const small = Buffer.concat([frame(1), frame(126), frame(130, { masked: true }), frame(0)])
  const ends = new Set([3, 3 + 130, 3 + 130 + 138, 3 + 130 + 138 + 2])
  const ws = new WsFrameTracker()
  let wrong = 0
  for (let i = 0; i < small.length; i++) {
    ws.track(small, i, i + 1)
    if (ws.atBoundary !== ends.has(i + 1)) wrong++
  }
  t.equal(wrong, 0)
})

t.test('ws: the close frame', async (t) => {
  const f = wsCloseFrame(1012, 'live node left: reconnect')
  t.equal(f[0], 0x88)
  t.equal(f[1], 2 + 'live node left: reconnect'.length)
  t.equal(f.readUInt16BE(2), 1012)
  t.equal(f.subarray(4).toString('utf8'), 'live node left: reconnect')
  const ws = new WsFrameTracker()
  ws.track(f, 0, f.length)
  t.equal(ws.atBoundary, true)
  t.ok(wsCloseFrame(1000, 'x'.repeat(500)).length <= 125, 'a long reason is cut to fit a control frame')
})

// ---- response heads ----

const res = (...lines: string[]): string => `${lines.join('\r\n')}\r\n\r\n`

t.test('response heads: framing facts', async (t) => {
  t.same(parseResponseHead(res('HTTP/1.1 200 OK', 'Content-Length: 12')), { status: 200, contentLength: 12, chunked: false, close: false })
  t.same(parseResponseHead(res('HTTP/1.1 200 OK', 'transfer-encoding: gzip, chunked')), { status: 200, contentLength: -1, chunked: true, close: false })
  t.same(parseResponseHead(res('HTTP/1.1 200 OK', 'Transfer-Encoding: gzip')), { status: 200, contentLength: -1, chunked: false, close: false }, 'not chunked: runs to the close')
  t.same(parseResponseHead(res('HTTP/1.1 200 OK', 'Content-Length: 3', 'Transfer-Encoding: chunked')), { status: 200, contentLength: -1, chunked: true, close: false }, 'Transfer-Encoding wins')
  t.match(parseResponseHead(res('HTTP/1.1 200 OK', 'Connection: close')), { close: true })
  t.match(parseResponseHead(res('HTTP/1.1 200 OK', 'Connection: keep-alive, Close')), { close: true })
  t.match(parseResponseHead(res('HTTP/1.0 200 OK')), { close: true }, 'HTTP/1.0 closes by default')
  t.match(parseResponseHead(res('HTTP/1.0 200 OK', 'Connection: keep-alive')), { close: false })
  t.match(parseResponseHead(res('HTTP/1.1 200 OK', 'Connection: x-closed-caption')), { close: false }, 'a token, not a substring')
  t.match(parseResponseHead(res('HTTP/1.1 101 Switching Protocols', 'Upgrade: websocket', 'Connection: Upgrade')), { status: 101 })
  t.match(parseResponseHead(res('HTTP/1.1 204')), { status: 204 }, 'no reason phrase')
  t.match(parseResponseHead(res('HTTP/1.1 200 OK', 'X-Long-Header-Name-Of-Seventeen: 1')), { contentLength: -1 })
})

const BAD_RESPONSES: [string, string][] = [
  ['not HTTP', res('SSH-2.0-OpenSSH')],
  ['HTTP/2', res('HTTP/2 200 OK')],
  ['a non-digit version', res('HTTP/1.x 200 OK')],
  ['a non-digit status', res('HTTP/1.1 2:0 OK')],
  ['a two-digit status', res('HTTP/1.1 20 OK')],
  ['a four-digit status', res('HTTP/1.1 2000 OK')],
  ['status below 100', res('HTTP/1.1 099 OK')],
  ['a header without a colon', res('HTTP/1.1 200 OK', 'oops')],
  ['an empty header name', res('HTTP/1.1 200 OK', ': x')],
  ['an empty Content-Length', res('HTTP/1.1 200 OK', 'Content-Length: ')],
  ['a hex Content-Length', res('HTTP/1.1 200 OK', 'Content-Length: 0x10')],
  ['an exponent Content-Length', res('HTTP/1.1 200 OK', 'Content-Length: 1e3')],
  ['a negative Content-Length', res('HTTP/1.1 200 OK', 'Content-Length: -1')],
  ['two Content-Lengths', res('HTTP/1.1 200 OK', 'Content-Length: 1', 'Content-Length: 2')],
]

t.test('response heads: malformed or ambiguous ones are refused', async (t) => {
  for (const [why, text] of BAD_RESPONSES) t.equal(parseResponseHead(text), null, why)
})

t.test('withConnectionClose replaces any Connection header', async (t) => {
  const out = withConnectionClose(res('HTTP/1.1 200 OK', 'Connection: keep-alive', 'Content-Length: 0', 'connection: foo')).toString('latin1')
  t.equal(out, res('HTTP/1.1 200 OK', 'Content-Length: 0', 'Connection: close'))
})

t.test('response heads: parsed where they end inside a longer text', async (t) => {
  const head = res('HTTP/1.1 200 OK', 'Content-Length: 27')
  const text = `${head}Content-Length: 9\r\nX\r\n\r\n`
  t.same(parseResponseHead(text, head.length), { status: 200, contentLength: 27, chunked: false, close: false }, 'the body is not read as head lines')
})
