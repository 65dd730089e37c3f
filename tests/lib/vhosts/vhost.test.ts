// The vhost rules: host names, mapping paths, and how a request's Host and path are read.
import t from 'tap'
import {
  fileSha256, hostKey, hostPrefix, hostProblem, isVhostMapping, mappingKey, normalizeHost, pathProblem, requestHost, resolveRequestPath,
} from '../../../lib/vhosts/vhost.js'

t.test('host names: lower-case DNS names without a port, not IP addresses', async (t) => {
  for (const ok of ['www.example.test', 'localhost', 'a-b.c0.example', 'x'.repeat(63) + '.test', `${'a.'.repeat(125)}ab`]) {
    t.equal(hostProblem(ok), null, ok)
  }
  const bad: [unknown, RegExp][] = [
    ['', /DNS name/],
    [42, /DNS name/],
    ['www.example.test:8080', /without a port/],
    ['[::1]', /without a port/],
    ['WWW.example.test', /lower-case/],
    ['bad_host.test', /label "bad_host" must be 1 to 63 letters/],
    ['-a.test', /not starting or ending with a hyphen/],
    ['a..test', /empty labels/],
    ['.a.test', /empty labels/],
    ['a.test.', /empty labels/],
    [`${'x'.repeat(64)}.test`, /1 to 63/],
    [`${'a.'.repeat(127)}ab`, /at most 253/],
    ['10.0.0.1', /not an IP address/],
    ['a b.test', /label "a b"/],
    ['a/b.test', /label "a\/b"/],
  ]
  for (const [host, message] of bad) t.match(hostProblem(host), message, String(host))
  t.equal(normalizeHost('WWW.Example.Test.'), 'www.example.test')
})

t.test('mapping paths: absolute, a file, no traversal in any form', async (t) => {
  for (const ok of ['/index.html', '/docs/index.html', '/a/b/c.js', '/café.html', '/x.y..z']) t.equal(pathProblem(ok), null, ok)
  const bad: [unknown, RegExp][] = [
    ['', /a path such as/],
    ['index.html', /start with "\/"/],
    ['/', /not end with "\/".*served from \/index\.html/],
    ['/docs/', /served from \/docs\/index\.html/],
    ['/a/../b', /"\.\." segments/],
    ['/..', /"\.\." segments/],
    ['/./a', /"\.\." segments/],
    ['//etc/passwd', /empty/],
    ['/a%2e%2e/b', /"%"/],
    ['/a\\b', /"\\"/],
    ['/a?b=1', /"\?"/],
    ['/a\x00b', /NUL/],
    ['/a\nb', /control/],
    [`/${'x'.repeat(256)}`, /at most 256 bytes/],
  ]
  for (const [path, message] of bad) t.match(pathProblem(path), message, JSON.stringify(path))
})

t.test('a request Host: port and trailing dot dropped, lower-cased; IPv6 literals are never vhosts', async (t) => {
  t.equal(requestHost('WWW.Example.Test:8081'), 'www.example.test')
  t.equal(requestHost('www.example.test.'), 'www.example.test')
  t.equal(requestHost('www.example.test'), 'www.example.test')
  t.equal(requestHost('[::1]:8081'), null)
  t.equal(requestHost(''), null)
  t.equal(requestHost(':80'), null)
})

t.test('a request path: decoded once, a trailing / means index.html, traversal in any form is null (400)', async (t) => {
  t.equal(resolveRequestPath('/'), '/index.html')
  t.equal(resolveRequestPath('/docs/'), '/docs/index.html')
  t.equal(resolveRequestPath('/a%20b.txt'), '/a b.txt')
  t.equal(resolveRequestPath('/caf%C3%A9.html'), '/café.html')
  for (const hostile of ['/../etc/passwd', '/%2e%2e/etc/passwd', '/a/%2E%2E/b', '/a%2f..%2fb', '/a%00b', '/a%0ab', '//etc/passwd',
    '/%2Fetc%2Fpasswd', '/a%252e%252e/b', '/a%5c..%5cb', '/%', '/%zz', 'etc/passwd', 'http://evil/x', '/a/./b', '/.']) {
    t.equal(resolveRequestPath(hostile), null, hostile)
  }
  const long = `/${'x'.repeat(300)}`
  t.equal(resolveRequestPath(long), long, 'a long path is well formed: it is a 404, not a 400')
})

t.test('file keys, datastore keys and the mapping guard', async (t) => {
  const sha = 'ab'.repeat(32)
  t.equal(fileSha256(`files/${sha}`), sha)
  t.equal(fileSha256(sha), sha)
  for (const bad of [`files/${sha.toUpperCase()}`, `files/${sha}x`, 'files/', `other/${sha}`, 7]) t.equal(fileSha256(bad), null, String(bad))
  t.equal(mappingKey('a.test', '/x.html'), 'a.test/x.html')
  t.equal(hostKey('a.test'), 'host:a.test')
  t.ok(mappingKey('a.test', '/x').startsWith(hostPrefix('a.test')))
  t.notOk(mappingKey('a.test.more', '/x').startsWith(hostPrefix('a.test')), 'one host\'s prefix never lists another\'s')
  t.ok(isVhostMapping({ host: 'a.test', path: '/x', file: `files/${sha}`, sha256: sha, size: 1, type: 'text/plain', encoding: null, at: 1 }))
  t.notOk(isVhostMapping({ host: 'a.test', path: '/x', file: `files/${sha}` }))
  t.notOk(isVhostMapping(null))
})
