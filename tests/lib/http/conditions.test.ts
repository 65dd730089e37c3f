// The request headers every file answer reads (lib/http/conditions.ts): HTTP-dates, validators, byte ranges and
// Accept-Encoding, shared by /app, /f/ and vhost files.
import t from 'tap'
import { accepts, ifRangeMatches, MAX_RANGES, multipartBody, multipartLayout, notModifiedSince, parseHttpDate, parseRanges } from '../../../lib/http/conditions.js'

const NOW = Date.UTC(2026, 11, 2, 12, 0, 0)

t.test('HTTP-dates: the three forms HTTP allows, nothing else', async (t) => {
  const ms = Date.UTC(1994, 10, 6, 8, 49, 37)
  t.equal(parseHttpDate('Sun, 06 Nov 1994 08:49:37 GMT', NOW), ms, 'IMF-fixdate')
  t.equal(parseHttpDate('Sunday, 06-Nov-94 08:49:37 GMT', NOW), ms, 'RFC 850')
  t.equal(parseHttpDate('Sun Nov  6 08:49:37 1994', NOW), ms, 'asctime')
  t.equal(parseHttpDate('Wednesday, 02-Dec-26 08:00:00 GMT', NOW), Date.UTC(2026, 11, 2, 8), 'a two-digit year in this century')
  for (const bad of [
    'Sat, 01 Jan 10000 00:00:00 GMT', // Date.parse takes it, far in the future
    '+010000-01-01T00:00:00.000Z', '2026-12-02T12:00:00Z', '1796236986070', 'yesterday', '',
    'Sun, 31 Feb 2026 00:00:00 GMT', 'Sun, 06 Nov 1994 24:00:00 GMT', 'Sun, 06 Nov 1994 08:49:37 PST',
    'sun, 06 nov 1994 08:49:37 gmt', 'Sun, 6 Nov 1994 08:49:37 GMT', ' Sun, 06 Nov 1994 08:49:37 GMT',
  ]) t.equal(parseHttpDate(bad, NOW), null, `not a date: ${JSON.stringify(bad)}`)
})

t.test('If-Modified-Since: a valid date, not in the future, no earlier than Last-Modified (to the second)', async (t) => {
  const modified = Date.UTC(2026, 10, 1, 10, 0, 0, 500)
  t.equal(notModifiedSince('Sun, 01 Nov 2026 10:00:00 GMT', modified, NOW), true, 'the same second')
  t.equal(notModifiedSince('Mon, 30 Nov 2026 10:00:00 GMT', modified, NOW), true, 'later')
  t.equal(notModifiedSince('Sun, 01 Nov 2026 09:59:59 GMT', modified, NOW), false, 'earlier')
  t.equal(notModifiedSince('Sat, 01 Jan 10000 00:00:00 GMT', modified, NOW), false, 'the year 10000 is ignored')
  t.equal(notModifiedSince('Fri, 01 Jan 2100 00:00:00 GMT', modified, NOW), false, 'a date in the future is ignored')
  t.equal(notModifiedSince('garbage', modified, NOW), false)
  t.equal(notModifiedSince('', modified, NOW), false)
})

t.test('If-Range: the strong tag sent, or a date no earlier than Last-Modified', async (t) => {
  const modified = Date.UTC(2026, 10, 1, 10, 0, 0)
  t.equal(ifRangeMatches('', '"a"', modified), true)
  t.equal(ifRangeMatches('"a"', '"a"', modified), true)
  t.equal(ifRangeMatches('"b"', '"a"', modified), false)
  t.equal(ifRangeMatches('W/"a"', '"a"', modified), false, 'a weak tag never matches')
  t.equal(ifRangeMatches('Sun, 01 Nov 2026 10:00:00 GMT', '"a"', modified), true)
  t.equal(ifRangeMatches('Sat, 31 Oct 2026 10:00:00 GMT', '"a"', modified), false)
  t.equal(ifRangeMatches('Sat, 01 Jan 10000 00:00:00 GMT', '"a"', modified), false, 'an invalid date never matches')
})

t.test('Range: one or several, merged and sorted; unsatisfiable; ignored', async (t) => {
  t.same(parseRanges('bytes=0-9', 100), [{ start: 0, end: 9 }])
  t.same(parseRanges('bytes=90-', 100), [{ start: 90, end: 99 }])
  t.same(parseRanges('bytes=-10', 100), [{ start: 90, end: 99 }])
  t.same(parseRanges('bytes=-500', 100), [{ start: 0, end: 99 }], 'a suffix longer than the body is the body')
  t.same(parseRanges('bytes=50-500', 100), [{ start: 50, end: 99 }], 'an end past the body is clipped')
  t.same(parseRanges('bytes=0-0, -1', 100), [{ start: 0, end: 0 }, { start: 99, end: 99 }], 'several')
  t.same(parseRanges('bytes=50-59,0-9', 100), [{ start: 0, end: 9 }, { start: 50, end: 59 }], 'sorted')
  t.same(parseRanges('bytes=0-9,5-19,20-29', 100), [{ start: 0, end: 29 }], 'overlapping and adjacent ranges merged')
  t.same(parseRanges('bytes=0-9,200-300', 100), [{ start: 0, end: 9 }], 'an unsatisfiable one among others is left out')
  t.equal(parseRanges('bytes=100-', 100), 'unsatisfiable')
  t.equal(parseRanges('bytes=200-300,150-', 100), 'unsatisfiable')
  t.equal(parseRanges('bytes=-0', 100), 'unsatisfiable')
  t.equal(parseRanges('bytes=0-', 0), 'unsatisfiable', 'nothing of an empty body')
  for (const ignored of ['items=0-9', 'bytes=', 'bytes=-', 'bytes=9-0', 'bytes=a-b', 'bytes=0-9,x', 'bytes 0-9']) t.equal(parseRanges(ignored, 100), 'ignore', ignored)
  const many = `bytes=${Array.from({ length: MAX_RANGES + 1 }, (_, i) => `${i * 2}-${i * 2}`).join(',')}`
  t.equal(parseRanges(many, 1000), 'ignore', `more than ${MAX_RANGES} ranges: the whole body`)
  const manyOverlapping = `bytes=${Array.from({ length: 50 }, () => '0-10').join(',')}`
  t.same(parseRanges(manyOverlapping, 1000), [{ start: 0, end: 10 }], 'the same range asked 50 times is sent once')
})

t.test('multipart/byteranges: each part typed and ranged, the length known before the body', async (t) => {
  const body = Buffer.from('0123456789abcdefghij')
  const layout = multipartLayout([{ start: 0, end: 2 }, { start: 10, end: 12 }], body.length, 'text/plain')
  const whole = multipartBody(layout, body)
  t.equal(whole.length, layout.length)
  const boundary = /boundary=(\S+)$/.exec(layout.contentType)![1]!
  t.match(layout.contentType, /^multipart\/byteranges; boundary=/)
  t.equal(whole.toString(), `--${boundary}\r\nContent-Type: text/plain\r\nContent-Range: bytes 0-2/20\r\n\r\n012\r\n--${boundary}\r\nContent-Type: text/plain\r\nContent-Range: bytes 10-12/20\r\n\r\nabc\r\n--${boundary}--\r\n`)
})

t.test('Accept-Encoding: named with q > 0, x-gzip for gzip, or through *', async (t) => {
  t.ok(accepts('gzip, br', 'br'))
  t.ok(accepts('x-gzip', 'gzip'), 'x-gzip is gzip')
  t.notOk(accepts('gzip;q=0, br', 'gzip'), 'q=0 refuses')
  t.ok(accepts('*', 'deflate'), '* allows any')
  t.notOk(accepts('*;q=0', 'br'), '*;q=0 allows none')
  t.notOk(accepts('identity', 'gzip'))
  t.notOk(accepts('', 'gzip'), 'no header, no encoding')
})
