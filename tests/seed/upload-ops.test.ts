// upload.commit on a real seed, embedded (LMDB) and on PostgreSQL (a real server): the token spent and the
// file recorded in one transaction, a resend with the same op id answered as the first (not "token used"),
// a used token writing nothing, concurrent commits with one token (exactly one wins), files.changed pushed
// to a subscribed fileserver once a record is new, bad bodies refused with the field named.
import { createHash, randomBytes } from 'node:crypto'
import t from 'tap'
import { createDatastoreClient } from '../../lib/storage/datastore-client.js'
import { newOpId } from '../../lib/storage/op-id.js'
import { startPostgres } from '../helpers/postgres.js'
import { client, startTestSeed } from '../helpers/seed.js'

interface Answer { used: boolean; record?: Record<string, unknown> | null; fresh?: boolean }

const postgres = await startPostgres(t)

function file(content = randomBytes(32)) {
  const sha256 = createHash('sha256').update(content).digest('hex')
  return { sha256, blobKey: `files/${sha256}`, record: { key: `files/${sha256}`, sha256, size: content.length, type: 'application/octet-stream', storedAt: Date.now() } }
}

for (const backend of ['embedded', 'postgres'] as const) {
  t.test(`${backend}: upload.commit`, async (t) => {
    const config = backend === 'postgres' ? { datastore: await postgres.createDatabase() } : {}
    const { port } = await startTestSeed(t, config)
    const admin = client(t, port)
    await admin.ready
    const pushes: unknown[] = []
    const fileserver = client(t, port, { onPush: (op, body) => op === 'files.changed' && pushes.push(body) })
    await fileserver.ready
    await fileserver.request('subscribe', { files: true })
    const datastore = createDatastoreClient(admin)
    const token = async () => {
      const id = randomBytes(16).toString('base64url')
      await datastore.put('uploadTokens', id, { exp: Date.now() + 60_000 })
      return id
    }
    const commit = (body: Record<string, unknown>) => admin.request<Answer>('upload.commit', body)

    t.test('token spent and record written together; a resend with the same op id gets the first answer', async (t) => {
      const tok = await token()
      const f = file()
      const opId = newOpId()
      const first = await commit({ token: tok, file: f, opId })
      t.same(first, { used: false, record: f.record, fresh: true })
      t.equal(await datastore.get('uploadTokens', tok), null, 'the token is spent')
      t.same(await datastore.get('files', f.sha256), f.record, 'the record is written')
      const resent = await commit({ token: tok, file: f, opId })
      t.same(resent, first, 'a resend after a lost answer: the same answer, not "token used"')
      const reused = await commit({ token: tok, file: file(), opId: newOpId() })
      t.same(reused, { used: true }, 'the token used again, with a new op: used')
      await t.resolves(async () => {
        const deadline = Date.now() + 2000
        while (!pushes.some((p) => (p as { keys: string[] }).keys?.includes(f.blobKey))) {
          if (Date.now() > deadline) throw new Error('no files.changed push')
          await new Promise((r) => setTimeout(r, 20))
        }
      }, 'files.changed pushed to the subscribed fileserver')
    })

    t.test('a used token writes nothing', async (t) => {
      const tok = await token()
      await datastore.consume('uploadTokens', tok)
      const f = file()
      t.same(await commit({ token: tok, file: f, opId: newOpId() }), { used: true })
      t.equal(await datastore.get('files', f.sha256), null, 'no record')
    })

    t.test('the same bytes recorded before: the earlier record, not fresh; the token still spent', async (t) => {
      const f = file()
      t.match(await commit({ token: null, file: f }), { used: false, fresh: true })
      const tok = await token()
      const again = { ...f, record: { ...f.record, storedAt: 1, owner: 'second' } }
      t.same(await commit({ token: tok, file: again, opId: newOpId() }), { used: false, record: f.record, fresh: false })
      t.equal(await datastore.get('uploadTokens', tok), null, 'spent')
      t.same(await datastore.get('files', f.sha256), f.record, 'the first record kept')
    })

    t.test('a token alone (an upload kept pending): spent, nothing recorded', async (t) => {
      const tok = await token()
      t.same(await commit({ token: tok, opId: newOpId() }), { used: false, record: null, fresh: false })
      t.equal(await datastore.get('uploadTokens', tok), null)
      t.same(await commit({ token: tok, opId: newOpId() }), { used: true })
    })

    t.test('ten concurrent commits with one token: exactly one records its file', async (t) => {
      const tok = await token()
      const files = Array.from({ length: 10 }, () => file())
      const answers = await Promise.all(files.map((f) => commit({ token: tok, file: f, opId: newOpId() })))
      t.equal(answers.filter((a) => !a.used).length, 1, 'one won')
      const recorded = await Promise.all(files.map((f) => datastore.get('files', f.sha256)))
      t.equal(recorded.filter((r) => r !== null).length, 1, 'one record')
      t.equal(recorded.findIndex((r) => r !== null), answers.findIndex((a) => !a.used), 'the winner\'s')
    })

    t.test('bad bodies: refused with the field named, nothing spent', async (t) => {
      const tok = await token()
      const cases: [unknown, string][] = [
        [[], 'body'],
        [{}, 'body'],
        [{ token: '' }, 'token'],
        [{ token: tok, opId: 'short' }, 'opId'],
        [{ token: tok, file: { sha256: 'abc', record: {}, blobKey: 'k' } }, 'file.sha256'],
        [{ token: tok, file: { ...file(), record: [] } }, 'file.record'],
        [{ token: tok, file: { ...file(), record: { sha256: '0'.repeat(64) } } }, 'file.record'],
        [{ token: tok, file: { ...file(), blobKey: '' } }, 'file.blobKey'],
      ]
      for (const [body, field] of cases) {
        await t.rejects(commit(body as Record<string, unknown>), { code: 'ESPRA_ERR_META_BAD_REQUEST', details: { field } }, field)
      }
      t.not(await datastore.get('uploadTokens', tok), null, 'the token is unspent')
    })
  })
}
