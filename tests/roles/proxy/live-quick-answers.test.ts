// Requests a Live node (uWS) would leave unanswered are answered by the proxy itself, and everything the proxy lets
// through gets an answer from the Live node: a real seed, a real Live node and a real proxy. Each read gives up at 3 s,
// far below the stalls these requests used to meet (a 9 s head timeout, a 19.5 s upstream wait, or no answer at all).
import { connect } from 'node:net'
import t from 'tap'
import { LIVE_HOST, liveBehindProxy } from '../../helpers/live-proxy.js'

const GIVE_UP_MS = 3000
const H = `Host: ${LIVE_HOST}\r\n`

/**
 * Writes `bytes` on a fresh connection; resolves the first response head (with `untilClose`, all that came before the
 * proxy closed), or 'silence' if it did not come within GIVE_UP_MS.
 */
function firstHead(port: number, bytes: string, untilClose = false): Promise<string> {
  return new Promise((resolve) => {
    let out = ''
    const socket = connect({ host: '127.0.0.1', port }, () => socket.write(Buffer.from(bytes, 'latin1')))
    const done = (answer: string): void => {
      clearTimeout(timer)
      socket.destroy()
      resolve(answer)
    }
    const timer = setTimeout(() => done('silence'), GIVE_UP_MS)
    socket.setEncoding('latin1')
    socket.on('data', (d: string) => {
      out += d
      const end = out.indexOf('\r\n\r\n')
      if (end >= 0 && !untilClose) done(out.slice(0, end + 4))
    })
    socket.on('close', () => done(out === '' ? 'closed' : out))
    socket.on('error', () => {})
  })
}

const status = (head: string): number => Number(/^HTTP\/1\.1 (\d{3}) /.exec(head)?.[1] ?? 0)
const headers = (n: number): string => Array.from({ length: n }, (_, i) => `X-H${i}: v\r\n`).join('')
const ws = (version: string | null): string =>
  `GET /ws HTTP/1.1\r\n${H}Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n${version === null ? '' : `Sec-WebSocket-Version: ${version}\r\n`}\r\n`

t.test('what a Live node would leave silent is answered by the proxy', async (t) => {
  const { proxy } = await liveBehindProxy(t)
  const cases: [string, string, number, RegExp?][] = [
    ['absolute-form target', `GET http://evil.example/x HTTP/1.1\r\n${H}\r\n`, 400],
    ['absolute-form target naming the live host', `GET http://${LIVE_HOST}/history/pub:a HTTP/1.1\r\n${H}\r\n`, 400],
    ['asterisk target', `OPTIONS * HTTP/1.1\r\n${H}\r\n`, 400],
    ['unknown method FOO', `FOO /history/pub:a HTTP/1.1\r\n${H}\r\n`, 501, /ESPRA_ERR_PROXY_METHOD/],
    ['WebDAV method PROPFIND', `PROPFIND /history/pub:a HTTP/1.1\r\n${H}\r\n`, 501],
    ['lower-case method', `get /history/pub:a HTTP/1.1\r\n${H}\r\n`, 501],
    ['TRACE', `TRACE /history/pub:a HTTP/1.1\r\n${H}\r\n`, 501],
    ['1,000 small headers', `GET /history/pub:a HTTP/1.1\r\n${H}${headers(999)}\r\n`, 431, /ESPRA_ERR_PROXY_TOO_MANY_HEADERS/],
    ['one header line too many once X-Forwarded-* are added', `GET /history/pub:a HTTP/1.1\r\n${H}${headers(46)}\r\n`, 431],
    ['bare-LF head', `GET /history/pub:a HTTP/1.1\n${H.replace('\r\n', '\n')}\n`, 400],
    ['control byte in a header value', `GET /history/pub:a HTTP/1.1\r\n${H}X-A: a\x01b\r\n\r\n`, 400],
    ['chunk size zz', `POST /pub/pub:a HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\nzz\r\nab\r\n0\r\n\r\n`, 400],
    ['negative chunk size', `POST /pub/pub:a HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n-1\r\nab\r\n0\r\n\r\n`, 400],
    ['overflowing chunk size', `POST /pub/pub:a HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n${'f'.repeat(20)}\r\nab\r\n0\r\n\r\n`, 400],
    ['chunk extension (a Live node drops the connection)', `POST /pub/pub:a HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n2;x=y\r\nab\r\n0\r\n\r\n`, 400],
    ['WebSocket version 8', ws('8'), 426, /\r\nSec-WebSocket-Version: 13\r\n/],
    ['WebSocket without a version', ws(null), 426, /\r\nSec-WebSocket-Version: 13\r\n/],
  ]
  for (const [why, bytes, expected, more] of cases) {
    const head = await firstHead(proxy.port, bytes, true)
    t.equal(status(head), expected, `${why}: ${expected} (got ${JSON.stringify(head.slice(0, 40))})`)
    t.notMatch(head, /uWebSockets/, `${why}: answered by the proxy, not the Live node`)
    if (more) t.match(head, more, `${why}: ${String(more)}`)
  }
})

t.test('whatever the proxy lets through, the Live node answers', async (t) => {
  const { proxy } = await liveBehindProxy(t)
  const cases: [string, string][] = [
    ...['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS'].map((m): [string, string] => [`method ${m}`, `${m} /history/pub:a HTTP/1.1\r\n${H}Content-Length: 0\r\n\r\n`]),
    // 46 header lines, then X-Forwarded-For and X-Forwarded-Proto: the most a Live node reads.
    ['the most header lines a Live node reads', `GET /history/pub:a HTTP/1.1\r\n${H}${headers(45)}\r\n`],
    ['the most header lines, X-Forwarded-For extended in place', `GET /history/pub:a HTTP/1.1\r\n${H}X-Forwarded-For: 203.0.113.7\r\n${headers(45)}\r\n`],
    ['a good chunked body', `POST /pub/pub:a HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n2 \r\nab\r\n0\r\nX-Trailer: 1\r\n\r\n`],
    ['UTF-8 in the target', `GET /history/pub:caf\xc3\xa9 HTTP/1.1\r\n${H}\r\n`],
    ['a tab and obs-text in a value', `GET /history/pub:a HTTP/1.1\r\n${H}X-A: a\tb\xe9\r\n\r\n`],
  ]
  for (const [why, bytes] of cases) {
    const head = await firstHead(proxy.port, bytes)
    t.ok(status(head) >= 200, `${why}: answered (got ${JSON.stringify(head.slice(0, 40))})`)
    t.match(head, /\r\nuWebSockets: 20\r\n/, `${why}: by the Live node`)
  }
  const upgraded = await firstHead(proxy.port, ws('13'))
  t.equal(status(upgraded), 101, 'WebSocket version 13 is upgraded by the Live node')
})
