// The tus header parsers and state helpers of roles/fileserver/tus-protocol.ts, without processes.
import { createHash } from 'node:crypto'
import t from 'tap'
import {
  asTusState, checkVersion, isUploadId, newUploadId, parseChecksum, parseCount, parseMetadata, partKey, partsPrefix,
} from '../../../roles/fileserver/tus-protocol.js'
import { sweepInterval } from '../../../roles/fileserver/tus-sweep.js'

const b64 = (s: string) => Buffer.from(s).toString('base64')
const badRequest = (header: string) => ({ code: 'ESPRA_ERR_TUS_BAD_REQUEST', details: { header } })

t.test('Tus-Resumable: exactly 1.0.0, else 412', async (t) => {
  t.doesNotThrow(() => checkVersion('1.0.0'))
  for (const v of ['', '1.0', '1.0.0 ', '0.2.2', '2.0.0']) t.throws(() => checkVersion(v), { code: 'ESPRA_ERR_TUS_VERSION', status: 412 }, JSON.stringify(v))
})

t.test('counts: digits only, safe integers', async (t) => {
  t.equal(parseCount('0', 'Upload-Length'), 0)
  t.equal(parseCount('68719476736', 'Upload-Length'), 64 * 1024 ** 3)
  for (const v of ['', '-1', '1.0', '1e3', ' 1', '0x10', '99999999999999999', 'abc']) t.throws(() => parseCount(v, 'Upload-Offset'), badRequest('Upload-Offset'), JSON.stringify(v))
})

t.test('Upload-Metadata: pairs, empty values, unique keys, strict base64', async (t) => {
  t.same(parseMetadata(''), {})
  t.same(parseMetadata(`filename ${b64('wörld.txt')},filetype ${b64('text/plain')},flag`), { filename: 'wörld.txt', filetype: 'text/plain', flag: '' })
  t.same(parseMetadata(`a ${b64('x')}, b ${b64('y')}`), { a: 'x', b: 'y' }, 'spaces after commas are tolerated')
  for (const v of ['a b c', ',a', 'a,,b', `a ${b64('x')},a ${b64('y')}`, 'a ===', 'a YQ', 'a Y Q==', `k\u00e9y ${b64('x')}`, `a ${b64('x'.repeat(4000))}`]) {
    t.throws(() => parseMetadata(v), badRequest('Upload-Metadata'), JSON.stringify(v).slice(0, 60))
  }
})

t.test('Upload-Checksum: supported algorithms, base64 digests of the right length', async (t) => {
  const digest = createHash('sha256').update('x').digest()
  t.same(parseChecksum(`sha256 ${digest.toString('base64')}`), { algorithm: 'sha256', digest })
  t.equal(parseChecksum(`SHA1 ${createHash('sha1').update('x').digest('base64')}`)?.algorithm, 'sha1', 'algorithm names are case-insensitive')
  t.equal(parseChecksum(''), null)
  for (const v of ['sha256', `crc32 ${b64('abcd')}`, 'sha256 ***', `sha256 ${b64('short')}`, `sha1  ${b64('x')}`]) {
    t.throws(() => parseChecksum(v), badRequest('Upload-Checksum'), v)
  }
})

t.test('ids, part keys, state records, sweep interval', async (t) => {
  const id = newUploadId()
  t.ok(isUploadId(id))
  t.not(newUploadId(), id, 'fresh each time')
  for (const bad of ['', '..', `${id}/..`, id.toUpperCase(), `${id}0`, '%2e%2e', `${id.slice(0, 31)}\0`]) t.notOk(isUploadId(bad), JSON.stringify(bad))
  t.equal(partKey(id, 7, 'abc'), `tus/${id}/00007-abc`)
  t.ok(partKey(id, 10, 'a') > partKey(id, 9, 'z'), 'parts list in order')
  t.ok(partKey(id, 0, 'a').startsWith(partsPrefix(id)))
  t.equal(asTusState(null), null)
  t.equal(asTusState({ v: 2, offset: 0 }), null, 'a record this version does not know')
  const state = { v: 1, offset: 0, length: 5, parts: [], expires: 1, type: 'text/plain' }
  t.equal(asTusState(state), state)
  t.equal(sweepInterval(24 * 3_600_000), 10 * 60_000, 'at most every 10 minutes')
  t.equal(sweepInterval(1000), 1000, 'at least a second apart')
  t.equal(sweepInterval(60_000), 30_000, 'otherwise half the expiry')
})
