import t from 'tap'
import { checkManifest, checkMessage, contentTypeOf, isCompressible, isContentHashedName, pathProblem } from '../../../lib/builds/manifest.js'

const HASH = 'a'.repeat(64)
const file = (path: string, extra: Record<string, unknown> = {}) => ({ path, size: 3, hash: HASH, type: 'text/plain', ...extra })

t.test('paths: relative, no traversal, no NUL, no backslash, no %', async (t) => {
  for (const ok of ['index.html', 'a/b/c.js', 'name with space.txt', '.well-known/x']) t.equal(pathProblem(ok), null, ok)
  for (const bad of ['', '/abs', '../x', 'a/../b', 'a/./b', 'a//b', 'a/', 'a\0b', 'a\\b', '%2e%2e/x', 'x'.repeat(513), 'a\nb']) {
    t.type(pathProblem(bad), 'string', JSON.stringify(bad))
  }
})

t.test('manifests are checked strictly with coded errors naming the field', async (t) => {
  t.same(checkManifest({ files: [file('a.txt', { extra: 1 })] }), { files: [file('a.txt')] }, 'unknown fields dropped')
  const cases: [unknown, string][] = [
    [null, 'manifest'],
    [{ files: [] }, 'manifest.files'],
    [{ files: [file('../x')] }, 'manifest.files[0].path'],
    [{ files: [file('a'), file('a')] }, 'manifest.files[1].path'],
    [{ files: [file('a', { size: -1 })] }, 'manifest.files[0].size'],
    [{ files: [file('a', { size: 65 * 1024 ** 2 })] }, 'manifest.files[0].size'],
    [{ files: [file('a', { hash: 'ABC' })] }, 'manifest.files[0].hash'],
    [{ files: [file('a', { type: 'bad\ntype' })] }, 'manifest.files[0].type'],
    [{ files: Array.from({ length: 5001 }, (_, i) => file(`f${i}`)) }, 'manifest.files'],
  ]
  for (const [value, field] of cases) {
    t.throws(() => checkManifest(value), { code: 'ESPRA_ERR_BUILD_INVALID', details: { field } }, field)
  }
  t.equal(checkMessage(undefined), '')
  t.throws(() => checkMessage('x'.repeat(501)), { code: 'ESPRA_ERR_BUILD_INVALID' })
  t.throws(() => checkMessage('a\0b'), { code: 'ESPRA_ERR_BUILD_INVALID' })
})

t.test('types, compressibility, content-hashed names', async (t) => {
  t.equal(contentTypeOf('a/b.JS'), 'text/javascript; charset=utf-8')
  t.equal(contentTypeOf('noext'), 'application/octet-stream')
  t.equal(contentTypeOf('dir.v1/noext'), 'application/octet-stream')
  t.ok(isCompressible('text/html; charset=utf-8'))
  t.ok(isCompressible('image/svg+xml'))
  t.notOk(isCompressible('image/png'))
  t.ok(isContentHashedName('js/app.3f2a9c1d.js'))
  t.ok(isContentHashedName('app.0123456789abcdef.css'))
  t.notOk(isContentHashedName('app.js'))
  t.notOk(isContentHashedName('app.3f2a9c1.js'), 'seven hex digits are not enough')
  t.notOk(isContentHashedName('3f2a9c1d.3f2a9c1d/app.js'))
})
