// SIZE enforced while the data streams, on a real mail node with one child (so every message goes to the
// child whose memory is measured). No seed is needed: an oversized message is refused before anything is recorded.
import { readFileSync } from 'node:fs'
import net from 'node:net'
import { Readable } from 'node:stream'
import nodemailer from 'nodemailer'
import t from 'tap'
import { createLocalBlobStore } from '../../../lib/storage/local-blob-store.js'
import { freePort, startNode, waitFor } from '../../helpers/cluster.js'
import { testDir } from '../../helpers/temp-dir.js'

const vmRss = (pid: number): number => Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) * 1024

t.test('a 50 MB message against the 10 MB limit is refused 552, and memory does not grow per message', async (t) => {
  const smtpPort = await freePort()
  const blobDir = testDir('espra-mail-size-')
  const mail = await startNode(t, 'mail', { children: 1, 'smtp-port': smtpPort, 'mail-domains': 'example.test', 'blob-dir': blobDir })
  const transport = () => nodemailer.createTransport({ host: '127.0.0.1', port: smtpPort, secure: false, ignoreTLS: true })
  const socket = net.connect(smtpPort, '127.0.0.1')
  let heard = ''
  socket.on('data', (d: Buffer) => (heard += d.toString('latin1')))
  await waitFor('greeting', () => heard.includes('220 '))
  socket.write('EHLO c.test\r\n')
  await waitFor('EHLO answered', () => /^250 /m.test(heard))
  socket.write('MAIL FROM:<a@sender.test> SIZE=52428800\r\nQUIT\r\n')
  await waitFor('the dialog', () => /^221 /m.test(heard))
  t.match(heard, /^250[ -]SIZE 10485760\r$/m, 'SIZE advertised in EHLO')
  t.match(heard, /^552 .*\r\n221 /m, 'a declared SIZE over the limit is refused at MAIL FROM')
  socket.destroy()
  const bigMessage = () => {
    let sent = 0
    return new Readable({
      read() {
        if (sent === 0) this.push('From: a@sender.test\r\nTo: big@example.test\r\nSubject: big\r\n\r\n')
        if (sent >= 50 * 1024 * 1024) return this.push(null)
        sent += 64 * 1024
        this.push(('y'.repeat(76) + '\r\n').repeat(840))
      },
    })
  }
  const send = () => transport().sendMail({ envelope: { from: 'a@sender.test', to: ['big@example.test'] }, raw: bigMessage() }).then(() => null, (e: { responseCode?: number; response?: string }) => e)
  // The first large stream grows a child's heap to its working size once (about 33 MB here, measured the same
  // with --mail-max-size 1KB, where nothing at all is stored); what must not grow is the cost per message.
  const pids = mail.childPids()
  t.equal(pids.length, 1)
  const cold = pids.map(vmRss)
  t.equal((await send())?.responseCode, 552, 'the first is refused')
  t.equal((await send())?.responseCode, 552, 'the second is refused')
  const before = pids.map(vmRss)
  const err = await send()
  t.equal(err?.responseCode, 552, 'refused at the end of DATA')
  t.match(err?.response, /^552 5\.3\.4/)
  const grown = pids.map((pid, i) => vmRss(pid) - before[i]!)
  t.comment(`RSS of the child: ${cold.map((b) => (b / 1024 ** 2).toFixed(1)).join(', ')} MB cold, ${before.map((b) => (b / 1024 ** 2).toFixed(1)).join(', ')} MB after two 50 MB messages, grown ${grown.map((g) => (g / 1024 ** 2).toFixed(1)).join(', ')} MB by the third`)
  // Buffering the message would cost 50 MB, keeping the 10 MB taken before the limit 10 MB.
  t.ok(Math.max(...grown) < 8 * 1024 ** 2, 'a third 50 MB message grows no child by 8 MB or more')
  const blobs = await createLocalBlobStore(blobDir)
  const sizes: number[] = []
  for await (const entry of blobs.list('mail/in/')) sizes.push(entry.size)
  t.same(sizes, [], 'nothing of the refused messages is kept in the blob store (partial objects deleted)')
  await blobs.close()
})
