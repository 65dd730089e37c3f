// SPF, DKIM, DMARC and ARC of an inbound message through mailauth, the message read as a stream: a message signed
// by nodemailer's DKIM option, DNS answered by a local resolver function holding the test's records (no network).
import { generateKeyPairSync } from 'node:crypto'
import { Readable } from 'node:stream'
import nodemailer from 'nodemailer'
import t from 'tap'
import { createMailVerifier, dnsResolver, type VerifyInput } from '../../../lib/mail/mail-auth.js'
import { startDnsServer } from '../../helpers/dns-server.js'

const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 })
const pub = publicKey.export({ type: 'spki', format: 'der' }).toString('base64')

/** The test's DNS: TXT records by name; anything else is "not found", as a resolver says it. */
export function recordsResolver(records: Record<string, string>) {
  return async (name: string, type: string): Promise<string[][]> => {
    const txt = records[name.toLowerCase()]
    if (type === 'TXT' && txt !== undefined) return [[txt]]
    throw Object.assign(new Error(`queryTxt ENOTFOUND ${name}`), { code: 'ENOTFOUND' })
  }
}

const records = {
  'sel._domainkey.sender.test': `v=DKIM1; k=rsa; p=${pub}`,
  'sender.test': 'v=spf1 ip4:192.0.2.10 -all',
  '_dmarc.sender.test': 'v=DMARC1; p=reject',
}

async function signed(extra: { subject?: string } = {}): Promise<Buffer> {
  const transport = nodemailer.createTransport({
    streamTransport: true, buffer: true,
    dkim: { domainName: 'sender.test', keySelector: 'sel', privateKey: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString() },
  })
  const info = await transport.sendMail({ from: 'Ann <ann@sender.test>', to: 'bob@example.test', subject: extra.subject ?? 'signed', text: 'hello\n'.repeat(2000), messageId: '<auth-1@sender.test>' })
  return info.message as Buffer
}

/** The message in 1 KB pieces, as it arrives from a client. */
const stream = (raw: Buffer) => Readable.from(Array.from({ length: Math.ceil(raw.length / 1024) }, (_, i) => raw.subarray(i * 1024, (i + 1) * 1024)))

const from = (ip: string): VerifyInput => ({ ip, helo: 'mx.sender.test', sender: 'ann@sender.test' })

t.test('a DKIM-signed message from an SPF-allowed address passes SPF, DKIM and DMARC', async (t) => {
  const verifier = createMailVerifier({ resolver: recordsResolver(records), timeoutMs: 5000, mta: 'mx.example.test' })
  const r = await verifier.start(stream(await signed()), from('192.0.2.10')).results()
  t.match(r, {
    spf: { result: 'pass', domain: 'sender.test' },
    dkim: { result: 'pass', signatures: [{ result: 'pass', domain: 'sender.test', selector: 'sel', aligned: true }] },
    dmarc: { result: 'pass', domain: 'sender.test', policy: 'reject' },
    arc: { result: 'none' },
  })
  t.match(r.header, /^mx\.example\.test;.*dkim=pass.*spf=pass.*dmarc=pass/)
})

// mailauth answers a body hash mismatch `neutral` ("body hash did not verify", RFC 8601 allows it), not `fail`.
t.test('a changed body does not pass DKIM; from an address SPF does not allow, DMARC fails with the domain\'s reject policy', async (t) => {
  const verifier = createMailVerifier({ resolver: recordsResolver(records), timeoutMs: 5000, mta: 'mx.example.test' })
  const good = (await signed()).toString('latin1')
  const at = good.lastIndexOf('hello')
  t.ok(at > good.indexOf('\r\n\r\n'), 'a body line to change')
  const raw = good.slice(0, at) + 'HELLO' + good.slice(at + 5)
  const r = await verifier.start(stream(Buffer.from(raw, 'latin1')), from('198.51.100.7')).results()
  t.match(r, { spf: { result: 'fail' }, dkim: { result: 'neutral', signatures: [{ result: 'neutral', domain: 'sender.test' }] }, dmarc: { result: 'fail', policy: 'reject' } })
})

t.test('no signature, no records: none everywhere', async (t) => {
  const verifier = createMailVerifier({ resolver: recordsResolver({}), timeoutMs: 5000, mta: 'mx.example.test' })
  const r = await verifier.start(stream(Buffer.from('From: a@other.test\r\nSubject: plain\r\n\r\nbody\r\n')), { ip: '192.0.2.1', helo: 'x.other.test', sender: 'a@other.test' }).results()
  t.match(r, { spf: { result: 'none' }, dkim: { result: 'none', signatures: [] }, dmarc: { result: 'none' }, arc: { result: 'none' } })
})

t.test('DNS that never answers: temperror once the timeout passes, not a hang and not a refusal', async (t) => {
  const verifier = createMailVerifier({ resolver: () => new Promise(() => undefined), timeoutMs: 300, mta: 'mx.example.test' })
  const r = await verifier.start(stream(await signed()), from('192.0.2.10')).results()
  t.match(r, { spf: { result: 'temperror' }, dkim: { result: 'temperror' }, dmarc: { result: 'temperror' } })
  t.match(r.header, /not finished within 300 ms/)
})

t.test('garbage, an empty message and a broken stream give results, never a throw', async (t) => {
  const verifier = createMailVerifier({ resolver: recordsResolver(records), timeoutMs: 2000, mta: 'mx.example.test' })
  for (const raw of [Buffer.alloc(0), Buffer.from('\x00\xff\r\n\r\n\r\n'), Buffer.from('DKIM-Signature: v=1; a=rsa-sha256; d=sender.test; s=sel; b=@@@; bh=!!!\r\n\r\nx')]) {
    const r = await verifier.start(stream(raw), from('192.0.2.10')).results()
    t.ok(['none', 'neutral', 'fail', 'permerror', 'temperror'].includes(r.dkim.result), `dkim ${r.dkim.result} for ${JSON.stringify(raw.toString('latin1').slice(0, 20))}`)
  }
  const broken = new Readable({ read() { this.destroy(new Error('client went away')) } })
  const r = await verifier.start(broken, from('192.0.2.10')).results()
  t.equal(r.dkim.result, 'temperror', 'a stream that fails is temperror')
})

t.test('an abandoned message (the client left, the store failed) stops being read and is not reported as a failure', async (t) => {
  const errors: unknown[] = []
  const verifier = createMailVerifier({ resolver: recordsResolver(records), timeoutMs: 30_000, mta: 'mx.example.test', onError: (err) => errors.push(err) })
  // A client that keeps sending, slowly.
  const endless = new Readable({ read() { setTimeout(() => this.push('X-Header: more\r\n'), 5) } })
  const pending = verifier.start(endless, from('192.0.2.10'))
  await new Promise((r) => setTimeout(r, 20))
  pending.abandon()
  const r = await pending.results()
  t.equal(r.dkim.result, 'temperror', 'results at once, not after the 30 s timeout')
  t.ok(endless.destroyed, 'the input is destroyed')
  t.same(errors, [], 'nothing logged as a verification failure')
})

t.test('a resolver with a cache asks the DNS server once per name for the cache time; timeouts are not kept', async (t) => {
  const dns = await startDnsServer({ 'sender.test': { txt: 'v=spf1 -all' } })
  t.teardown(() => dns.close())
  const cached = dnsResolver([dns.address], 2000, 300)
  const first = await cached('sender.test', 'TXT')
  t.same(first, [['v=spf1 -all']])
  ;(first as string[][])[0]!.push('changed by a caller')
  t.same(await Promise.all([cached('SENDER.test', 'TXT'), cached('sender.test', 'TXT')]), [[['v=spf1 -all']], [['v=spf1 -all']]], 'the same answer, each caller its own copy')
  await t.rejects(cached('nowhere.test', 'TXT'), { code: 'ENOTFOUND' })
  await t.rejects(cached('nowhere.test', 'TXT'), { code: 'ENOTFOUND' }, 'no such name: kept too')
  t.same(dns.asked.filter((q) => /sender\.test|nowhere\.test/i.test(q)).length, 2, 'one question per name')
  await new Promise((r) => setTimeout(r, 350))
  await cached('sender.test', 'TXT')
  t.equal(dns.asked.filter((q) => /sender\.test/i.test(q)).length, 2, 'asked again once the cache time passed')
  const plain = dnsResolver([dns.address], 2000)
  await plain('sender.test', 'TXT')
  await plain('sender.test', 'TXT')
  t.equal(dns.asked.filter((q) => /sender\.test/i.test(q)).length, 4, 'without a cache every lookup is a question')
  dns.hold()
  const hung = dnsResolver([dns.address], 100, 60_000)
  await t.rejects(hung('late.test', 'TXT'), { code: 'ETIMEOUT' })
  dns.release()
  t.same(await hung('sender.test', 'TXT'), [['v=spf1 -all']])
  await t.rejects(hung('late.test', 'TXT'), { code: 'ENOTFOUND' }, 'a timeout is not kept: the name is asked again')
})
