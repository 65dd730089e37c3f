// The proxy's request-head parser, driven directly: what it reads from a good head, and every head it must refuse.
import t from 'tap'
import { cookieValue, createHeadSpec, headerValue, forwardedHeaderCount, LIVE_MAX_HEADERS, methodServed, parseRequestHead } from '../../../roles/proxy/request-head.js'

const spec = createHeadSpec(['X-Espra-Key'])
const HOST = 'us-1.live.localhost'

/** A head from lines: CRLF after each, then the blank line. */
const head = (...lines: string[]): string => `${lines.join('\r\n')}\r\n\r\n`
const parse = (...lines: string[]) => parseRequestHead(head(...lines), spec)

t.test('a plain GET', async (t) => {
  const h = parse('GET /ch/a?x=1 HTTP/1.1', `Host: ${HOST}`, 'Accept: */*')
  t.match(h, {
    method: 'GET', target: '/ch/a?x=1', http10: false, host: HOST, cookie: undefined, contentLength: -1,
    chunked: false, upgrade: false, websocket: false, close: false, xffStart: -1, xff: undefined, hasProto: false,
  })
  t.same(h!.extra, [])
})

t.test('header names are case-insensitive, values trimmed, cookies joined', async (t) => {
  const h = parse('POST / HTTP/1.1', `hOsT:   ${HOST}  `, 'Cookie: a=1', 'COOKIE: espra_session=k', 'content-length: 12', 'x-espra-key: \tkey-1')
  t.equal(h?.host, HOST)
  t.equal(h?.cookie, 'a=1; espra_session=k')
  t.equal(h?.contentLength, 12)
  t.same(h?.extra, ['key-1'])
  t.equal(cookieValue(h?.cookie, 'espra_session'), 'k')
})

t.test('HTTP/1.0: no Host needed, closes unless keep-alive', async (t) => {
  t.match(parse('GET / HTTP/1.0'), { http10: true, close: true, host: undefined })
  t.match(parse('GET / HTTP/1.0', 'Connection: Keep-Alive'), { http10: true, close: false })
  t.match(parse('GET / HTTP/1.1', `Host: ${HOST}`, 'Connection: close'), { close: true })
  t.match(parse('GET / HTTP/1.1', `Host: ${HOST}`, 'Connection: foo', 'Connection: Close'), { close: true }, 'tokens across repeated lines')
})

t.test('chunked framing', async (t) => {
  t.match(parse('POST / HTTP/1.1', `Host: ${HOST}`, 'Transfer-Encoding: chunked'), { chunked: true, contentLength: -1 })
  t.match(parse('POST / HTTP/1.1', `Host: ${HOST}`, 'Transfer-Encoding: gzip, Chunked'), { chunked: true })
  t.match(parse('POST / HTTP/1.1', `Host: ${HOST}`, 'Transfer-Encoding: gzip', 'Transfer-Encoding: chunked'), { chunked: true }, 'codings across lines')
})

t.test('upgrade and WebSocket', async (t) => {
  t.match(parse('GET /ws HTTP/1.1', `Host: ${HOST}`, 'Connection: keep-alive, Upgrade', 'Upgrade: websocket'), { upgrade: true, websocket: true })
  t.match(parse('GET /ws HTTP/1.1', `Host: ${HOST}`, 'Connection: Upgrade', 'Upgrade: h2c'), { upgrade: true, websocket: false })
  t.match(parse('GET /ws HTTP/1.1', `Host: ${HOST}`, 'Upgrade: websocket'), { upgrade: false }, 'Upgrade without Connection: upgrade is no upgrade')
})

t.test('X-Forwarded-For position and X-Forwarded-Proto', async (t) => {
  const text = head('GET / HTTP/1.1', `Host: ${HOST}`, 'X-Forwarded-For: 203.0.113.9', 'X-Forwarded-Proto: https', 'Accept: */*')
  const h = parseRequestHead(text, spec)!
  t.equal(h.xff, '203.0.113.9')
  t.equal(text.slice(h.xffStart, h.xffEnd), 'X-Forwarded-For: 203.0.113.9\r\n')
  t.equal(h.hasProto, true)
})

t.test('targets: origin form, UTF-8 bytes', async (t) => {
  t.equal(parse('GET /a/b?c=d%20e HTTP/1.1', `Host: ${HOST}`)?.target, '/a/b?c=d%20e')
  t.equal(parse('GET /caf\u00c3\u00a9 HTTP/1.1', `Host: ${HOST}`)?.target, '/caf\u00c3\u00a9', 'UTF-8 as latin1 bytes')
})

t.test('header lines counted, with what the proxy adds', async (t) => {
  t.equal(parse('GET / HTTP/1.1', `Host: ${HOST}`, 'A: 1', 'B: 2')?.headerCount, 3)
  t.equal(forwardedHeaderCount(parse('GET / HTTP/1.1', `Host: ${HOST}`)!), 3, 'X-Forwarded-For and -Proto added')
  t.equal(forwardedHeaderCount(parse('GET / HTTP/1.1', `Host: ${HOST}`, 'X-Forwarded-For: 1.2.3.4')!), 3, 'X-Forwarded-For extended in place')
  t.equal(forwardedHeaderCount(parse('GET / HTTP/1.1', `Host: ${HOST}`, 'X-Forwarded-For: 1.2.3.4', 'X-Forwarded-Proto: https')!), 3)
  const most = ['GET / HTTP/1.1', `Host: ${HOST}`, ...Array.from({ length: LIVE_MAX_HEADERS - 3 }, (_, i) => `X-${i}: v`)]
  t.equal(forwardedHeaderCount(parse(...most)!), LIVE_MAX_HEADERS)
})

t.test('Sec-WebSocket-Version is read; methods a Live node serves', async (t) => {
  t.equal(parse('GET /ws HTTP/1.1', `Host: ${HOST}`, 'Connection: Upgrade', 'Upgrade: websocket', 'sec-websocket-version:  8 ')?.wsVersion, '8')
  t.equal(parse('GET /ws HTTP/1.1', `Host: ${HOST}`)?.wsVersion, undefined)
  for (const m of ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS']) t.ok(methodServed(m), m)
  for (const m of ['get', 'FOO', 'PROPFIND', 'TRACE', 'CONNECT', 'GETS']) t.notOk(methodServed(m), m)
})

t.test('a header whose name has a wanted length but is not wanted is skipped', async (t) => {
  t.ok(parse('GET / HTTP/1.1', `Host: ${HOST}`, 'Hist: x', 'Cookig: y'))
})

const REFUSED: [string, string][] = [
  ['bare LF ending a line', `GET / HTTP/1.1\nHost: ${HOST}\r\n\r\n`],
  ['bare LF inside a value', `GET / HTTP/1.1\r\nHost: ${HOST}\r\nX-A: a\nb\r\n\r\n`],
  ['bare CR inside a value', `GET / HTTP/1.1\r\nHost: ${HOST}\r\nX-A: a\rb\r\n\r\n`],
  ['NUL in a value', `GET / HTTP/1.1\r\nHost: ${HOST}\r\nX-A: a\0b\r\n\r\n`],
  ['a control byte in a value', `GET / HTTP/1.1\r\nHost: ${HOST}\r\nX-A: a\x01b\r\n\r\n`],
  ['ESC in a value', `GET / HTTP/1.1\r\nHost: ${HOST}\r\nX-A: \x1b[0m\r\n\r\n`],
  ['absolute-form target', head(`GET http://${HOST}/x HTTP/1.1`, `Host: ${HOST}`)],
  ['asterisk target', head('OPTIONS * HTTP/1.1', `Host: ${HOST}`)],
  ['NUL in the target', `GET /a\0 HTTP/1.1\r\nHost: ${HOST}\r\n\r\n`],
  ['obs-fold (space)', head('GET / HTTP/1.1', `Host: ${HOST}`, 'X-A: a', ' folded')],
  ['obs-fold (tab)', head('GET / HTTP/1.1', `Host: ${HOST}`, 'X-A: a', '\tfolded')],
  ['space before the colon', head('GET / HTTP/1.1', `Host : ${HOST}`)],
  ['tab before the colon', head('GET / HTTP/1.1', `Host: ${HOST}`, 'Content-Length\t: 1')],
  ['no colon', head('GET / HTTP/1.1', `Host: ${HOST}`, 'No colon here')],
  ['empty header name', head('GET / HTTP/1.1', `Host: ${HOST}`, ': value')],
  ['space inside a name of a wanted length', head('GET / HTTP/1.1', `Host: ${HOST}`, 'Ho t: x')],
  ['bad character in a name', head('GET / HTTP/1.1', `Host: ${HOST}`, 'X(A): x')],
  ['control byte in a name of a wanted length', head('GET / HTTP/1.1', `Host: ${HOST}`, 'Ho\x01t: x')],
  ['Content-Length with Transfer-Encoding', head('POST / HTTP/1.1', `Host: ${HOST}`, 'Content-Length: 3', 'Transfer-Encoding: chunked')],
  ['Transfer-Encoding with Content-Length after it', head('POST / HTTP/1.1', `Host: ${HOST}`, 'Transfer-Encoding: chunked', 'Content-Length: 3')],
  ['Transfer-Encoding not ending in chunked', head('POST / HTTP/1.1', `Host: ${HOST}`, 'Transfer-Encoding: chunked, gzip')],
  ['Transfer-Encoding empty', head('POST / HTTP/1.1', `Host: ${HOST}`, 'Transfer-Encoding: ')],
  ['Transfer-Encoding in HTTP/1.0', head('POST / HTTP/1.0', 'Transfer-Encoding: chunked')],
  ['negative Content-Length', head('POST / HTTP/1.1', `Host: ${HOST}`, 'Content-Length: -1')],
  ['signed Content-Length', head('POST / HTTP/1.1', `Host: ${HOST}`, 'Content-Length: +1')],
  ['hex Content-Length', head('POST / HTTP/1.1', `Host: ${HOST}`, 'Content-Length: 0x10')],
  ['empty Content-Length', head('POST / HTTP/1.1', `Host: ${HOST}`, 'Content-Length: ')],
  ['listed Content-Length', head('POST / HTTP/1.1', `Host: ${HOST}`, 'Content-Length: 1, 1')],
  ['Content-Length of 16 digits', head('POST / HTTP/1.1', `Host: ${HOST}`, `Content-Length: ${'9'.repeat(16)}`)],
  ['two different Content-Lengths', head('POST / HTTP/1.1', `Host: ${HOST}`, 'Content-Length: 1', 'Content-Length: 2')],
  ['two equal Content-Lengths', head('POST / HTTP/1.1', `Host: ${HOST}`, 'Content-Length: 1', 'Content-Length: 1')],
  ['two Hosts', head('GET / HTTP/1.1', `Host: ${HOST}`, 'Host: evil.example')],
  ['no Host in HTTP/1.1', head('GET / HTTP/1.1', 'Accept: */*')],
  ['empty Host in HTTP/1.1', head('GET / HTTP/1.1', 'Host: ')],
  ['two X-Forwarded-For lines', head('GET / HTTP/1.1', `Host: ${HOST}`, 'X-Forwarded-For: 1.2.3.4', 'X-Forwarded-For: 5.6.7.8')],
  ['garbage request line', head('hello there')],
  ['empty method', head(' / HTTP/1.1', `Host: ${HOST}`)],
  ['method with a bad character', head('GE(T / HTTP/1.1', `Host: ${HOST}`)],
  ['two spaces after the method', head('GET  / HTTP/1.1', `Host: ${HOST}`)],
  ['no target', head('GET HTTP/1.1', `Host: ${HOST}`)],
  ['target not starting with /', head('GET a/b HTTP/1.1', `Host: ${HOST}`)],
  ['authority-form target', head(`CONNECT ${HOST}:443 HTTP/1.1`, `Host: ${HOST}`)],
  ['tab in the target', head('GET /a\tb HTTP/1.1', `Host: ${HOST}`)],
  ['DEL in the target', head('GET /a\x7f HTTP/1.1', `Host: ${HOST}`)],
  ['control byte in the target', head('GET /a\x01 HTTP/1.1', `Host: ${HOST}`)],
  ['space inside the target', head('GET /a b HTTP/1.1', `Host: ${HOST}`)],
  ['HTTP/2.0', head('GET / HTTP/2.0', `Host: ${HOST}`)],
  ['HTTP/1.2', head('GET / HTTP/1.2', `Host: ${HOST}`)],
  ['lower-case version', head('GET / http/1.1', `Host: ${HOST}`)],
  ['version with a trailing space', head('GET / HTTP/1.1 ', `Host: ${HOST}`)],
  ['long version', head('GET / HTTP/1.11', `Host: ${HOST}`)],
  ['no version', head('GET /', `Host: ${HOST}`)],
]

t.test('malformed heads are refused', async (t) => {
  for (const [why, text] of REFUSED) t.equal(parseRequestHead(text, spec), null, why)
})

t.test('cookieValue finds whole names only', async (t) => {
  t.equal(cookieValue('xespra_session=no; espra_session=yes', 'espra_session'), 'yes')
  t.equal(cookieValue('espra_session=', 'espra_session'), undefined)
  t.equal(cookieValue('a=1;espra_session= v ;b=2', 'espra_session'), 'v')
  t.equal(cookieValue(undefined, 'espra_session'), undefined)
})

t.test('headerValue finds a header by its whole name, any case, never in the request line', async (t) => {
  const text = 'GET /accept:x HTTP/1.1\r\nHost: a\r\nX-Accept: no\r\nACCEPT:  application/json \r\nAccept: second\r\n\r\n'
  t.equal(headerValue(text, 'accept'), 'application/json', 'the first one, trimmed')
  t.equal(headerValue(text, 'host'), 'a')
  t.equal(headerValue('GET / HTTP/1.1\r\nHost: a\r\n\r\n', 'accept'), undefined)
})
