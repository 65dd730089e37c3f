// The app side of the mail handoff, over a real embedded datastore (the seed's claim op over it) and a local blob store: which authentication
// results reach handleMail. A task that carries the mail node's results (`auth`: --mail-dmarc-reject, or a task
// written by a previous version) hands them as they are; one that carries `verify` is verified here from the stored
// raw message (DNS answered by a resolver function holding the test's records, or one that never answers); one
// with neither (--mail-auth false) hands null and looks nothing up.
import { generateKeyPairSync } from 'node:crypto'
import { join } from 'node:path'
import { Packr } from 'msgpackr'
import nodemailer from 'nodemailer'
import t, { type Test } from 'tap'
import { createLogger } from '../../../lib/core/log.js'
import { inboundRawKey, inboundRecordKey, MAIL_TASK_NAME, rawMailKey } from '../../../lib/mail/inbound.js'
import type { AuthedInboundMessage, AuthedMailTaskPayload, HandoffVerification, MailAuthResults } from '../../../lib/mail/inbound-auth.js'
import type { InboundRecord } from '../../../lib/mail/inbound-record.js'
import type { DatastoreValue } from '../../../lib/storage/datastore.js'
import { createLocalBlobStore } from '../../../lib/storage/local-blob-store.js'
import { decodePayload, encodePayload, type LeasedTask } from '../../../lib/tasks/task.js'
import { createMailPreparer } from '../../../roles/app/mail-handoff.js'
import { createMailHandoffOps } from '../../../roles/app/mail-handoff-ops.js'
import { openEmbeddedDatastore } from '../../../seed/datastore-embedded.js'
import { mailHandoffHandlers } from '../../../seed/mail-handoff-ops.js'
import type { MetaPeer } from '../../../lib/transport/meta-server.js'
import { testDir } from '../../helpers/temp-dir.js'

const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 })
const records: Record<string, string> = {
  'sel._domainkey.sender.test': `v=DKIM1; k=rsa; p=${publicKey.export({ type: 'spki', format: 'der' }).toString('base64')}`,
  'sender.test': 'v=spf1 ip4:192.0.2.10 -all',
  '_dmarc.sender.test': 'v=DMARC1; p=reject',
}

/** The test's DNS, counting the questions: TXT records by name, anything else "not found". */
function recordsResolver(asked: string[]) {
  return async (name: string, type: string): Promise<string[][]> => {
    asked.push(`${name} ${type}`)
    const txt = records[name.toLowerCase()]
    if (type === 'TXT' && txt !== undefined) return [[txt]]
    throw Object.assign(new Error(`queryTxt ENOTFOUND ${name}`), { code: 'ENOTFOUND' })
  }
}

async function signedMessage(): Promise<Buffer> {
  const transport = nodemailer.createTransport({
    streamTransport: true, buffer: true,
    dkim: { domainName: 'sender.test', keySelector: 'sel', privateKey: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString() },
  })
  const info = await transport.sendMail({ from: 'Ann <ann@sender.test>', to: 'bob@example.test', subject: 'signed', text: 'hello\n'.repeat(200) })
  return info.message as Buffer
}

const VERIFY: HandoffVerification = { timeoutMs: 5000, dnsServers: [], mta: 'mx.example.test' }
const MAIL_NODE_RESULTS: MailAuthResults = {
  spf: { result: 'pass', domain: 'earlier.test' }, dkim: { result: 'none', signatures: [] }, dmarc: { result: 'none', domain: null, policy: null }, arc: { result: 'none' }, header: 'mx.earlier.test; spf=pass',
}

async function setUp(t: Test) {
  const dir = testDir('espra-mail-handoff-')
  const datastore = await openEmbeddedDatastore({ dir: join(dir, 'ds') })
  const blobs = await createLocalBlobStore(join(dir, 'blobs'))
  t.teardown(async () => {
    await blobs.close()
    await datastore.close()
  })
  const raw = await signedMessage()
  let n = 0
  /** A message stored as a mail node stores it (`inline`: its bytes in the datastore, else a blob), and its task. */
  async function stored(over: Partial<AuthedMailTaskPayload>, inline = true): Promise<LeasedTask> {
    const at = Date.now()
    const id = `m${at.toString(36)}${(++n).toString(16).padStart(12, '0')}`
    const ref = { key: rawMailKey(id, at), size: raw.length, sha256: '0'.repeat(64), ...(inline ? { store: 'ds' as const } : {}) }
    if (inline) await datastore.put('mailInbound', inboundRawKey(id), { bytes: raw })
    else await blobs.put(ref.key, raw, { contentType: 'message/rfc822' })
    const envelope = { from: 'ann@sender.test', to: ['bob@example.test'], remoteAddress: '192.0.2.10', helo: 'mx.sender.test' }
    const record: InboundRecord = { id, raw: ref, envelope, messageId: null, at, auth: null, task: null }
    await datastore.put('mailInbound', inboundRecordKey(id), record as unknown as DatastoreValue)
    const payload: AuthedMailTaskPayload = { id, raw: ref, envelope, receivedAt: at, auth: null, ...over }
    return { id: `t${n}`, name: MAIL_TASK_NAME, payload: encodePayload(payload), attempt: 1, attempts: 10, enqueuedAt: at }
  }
  // The seed's ops, called as the meta server calls them.
  const seedOps = new Map(mailHandoffHandlers(datastore))
  const ops = createMailHandoffOps({ request: async <R>(op: string, body: unknown) => (await seedOps.get(op)!(body, {} as MetaPeer)) as R }, datastore)
  const unpack = new Packr({ useRecords: false, moreTypes: false })
  const log = createLogger('silent', { role: 'test', node: 't' })
  /** handleMail's message for `task`, its lookups answered by `resolver` (a fresh one counting into `asked` by default). */
  async function handed(task: LeasedTask, asked: string[], resolver = recordsResolver(asked)): Promise<AuthedInboundMessage> {
    const prepared = await createMailPreparer(blobs, ops, { log, resolver: () => resolver })(task)!
    if ('skip' in prepared) throw new Error(`skipped: ${prepared.skip}`)
    return unpack.unpack(prepared.payload) as AuthedInboundMessage
  }
  return { stored, handed }
}

t.test('a task that says verify is verified at the handoff, from the datastore or the blob store', async (t) => {
  const { stored, handed } = await setUp(t)
  for (const inline of [true, false]) {
    const asked: string[] = []
    const message = await handed(await stored({ verify: VERIFY }, inline), asked)
    t.match(message.auth, {
      spf: { result: 'pass', domain: 'sender.test' },
      dkim: { result: 'pass', signatures: [{ result: 'pass', domain: 'sender.test', selector: 'sel', aligned: true }] },
      dmarc: { result: 'pass', domain: 'sender.test', policy: 'reject' },
      arc: { result: 'none' },
    }, `SPF, DKIM, DMARC and ARC results (raw bytes in the ${inline ? 'datastore' : 'blob store'})`)
    t.match(message.auth?.header, /^mx\.example\.test;/, 'the Authentication-Results value names the mail node, not the app node')
    t.equal(message.subject, 'signed', 'the message is parsed as well')
    t.ok(asked.includes('sel._domainkey.sender.test TXT'), 'the DKIM key was looked up')
  }
})

t.test('lookups that hang: temperror once the mail node\'s timeout passed, and the message is still handed', async (t) => {
  const { stored, handed } = await setUp(t)
  const asked: string[] = []
  const hanging = (name: string, type: string) => {
    asked.push(`${name} ${type}`)
    return new Promise<never>(() => undefined)
  }
  const message = await handed(await stored({ verify: { ...VERIFY, timeoutMs: 200 } }), asked, hanging)
  t.match(message.auth, { spf: { result: 'temperror' }, dkim: { result: 'temperror' }, dmarc: { result: 'temperror' }, arc: { result: 'temperror' } })
  t.match(message.auth?.header, /not finished within 200 ms/)
  t.ok(asked.length > 0, 'the lookups were asked')
  t.equal(message.subject, 'signed')
})

t.test('results the mail node attached are handed as they are; without verify nothing is verified', async (t) => {
  const { stored, handed } = await setUp(t)
  const asked: string[] = []
  // A task queued by a previous version (or with --mail-dmarc-reject): auth present, no verify.
  t.same((await handed(await stored({ auth: MAIL_NODE_RESULTS }), asked)).auth, MAIL_NODE_RESULTS, 'the mail node\'s results')
  // --mail-auth false: neither.
  t.equal((await handed(await stored({}), asked)).auth, null, 'null with --mail-auth false')
  // A task with no auth field at all (written before authentication results were built).
  const old = await stored({})
  const { auth: _auth, ...bare } = decodePayload(old.payload) as AuthedMailTaskPayload
  t.equal((await handed({ ...old, payload: encodePayload(bare) }, asked)).auth, null, 'null for a task without auth')
  t.same(asked, [], 'nothing was looked up')
})
