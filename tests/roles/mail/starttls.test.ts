// STARTTLS on a real mail node (no seed needed for these replies): offered with --smtp-tls-cert, required with
// --smtp-require-tls, and bad options stop the node at start naming the option.
import { execFileSync } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import nodemailer from 'nodemailer'
import t from 'tap'
import { freePort, startNode } from '../../helpers/cluster.js'
import { runCli } from '../../helpers/up.js'
import { testDir } from '../../helpers/temp-dir.js'

const dir = testDir('espra-smtp-tls-')
const cert = join(dir, 'mx.crt')
const key = join(dir, 'mx.key')
execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=mx.example.test', '-addext', 'subjectAltName=DNS:mx.example.test', '-days', '1', '-keyout', key, '-out', cert], { stdio: 'ignore' })
const ca = readFileSync(cert)

t.test('STARTTLS is offered and, with --smtp-require-tls, required before MAIL FROM', async (t) => {
  const smtpPort = await freePort()
  await startNode(t, 'mail', { children: 1, 'smtp-port': smtpPort, 'mail-domains': 'example.test', 'smtp-tls-cert': cert, 'smtp-tls-key': key, 'smtp-require-tls': 'true' })
  // The handshake needs no seed (storing a message would: that is inbound.test.ts).
  const secure = nodemailer.createTransport({ host: '127.0.0.1', port: smtpPort, requireTLS: true, tls: { ca, servername: 'mx.example.test' } })
  t.equal(await secure.verify(), true, 'the client upgraded with STARTTLS, checking the certificate')
  const plain = nodemailer.createTransport({ host: '127.0.0.1', port: smtpPort, ignoreTLS: true })
  const err = await plain.sendMail({ from: 'a@sender.test', to: 'b@example.test', subject: 's', text: 't' }).then(() => null, (e: { responseCode?: number; response?: string }) => e)
  t.equal(err?.responseCode, 530, 'MAIL FROM without TLS is refused')
  t.match(err?.response, /^530 5\.7\.0/)
})

t.test('bad STARTTLS options stop the node at start with a line naming the option', async (t) => {
  const notPem = join(dir, 'not.pem')
  writeFileSync(notPem, 'hello')
  const base = ['--role=mail', '--smtp-port=2526', '--seed=127.0.0.1:1']
  const check = (args: string[]) => runCli(['config', 'check', ...base, ...args], { env: { ...process.env, ESPRA_SECRET: '0123456789abcdef0123456789abcdef' } })
  const noKey = await check([`--smtp-tls-cert=${cert}`])
  t.equal(noKey.code, 2)
  t.match(noKey.stderr, '--smtp-tls-key: is required with --smtp-tls-cert')
  const badCert = await check([`--smtp-tls-cert=${notPem}`, `--smtp-tls-key=${key}`])
  t.equal(badCert.code, 2)
  t.match(badCert.stderr, '--smtp-tls-cert:')
  t.match(badCert.stderr, 'holds no PEM certificate')
  const requireAlone = await check(['--smtp-require-tls=true'])
  t.equal(requireAlone.code, 2)
  t.match(requireAlone.stderr, '--smtp-require-tls: needs STARTTLS')
})
