// Per-address limits of a mail child, through a real mail node (no seed needed: these replies come before
// anything is stored) and the limiter itself.
import net from 'node:net'
import t from 'tap'
import { createAddressLimits } from '../../../roles/mail/address-limits.js'
import { freePort, startNode, waitFor } from '../../helpers/cluster.js'

t.test('the limiter counts open connections and messages per address', async (t) => {
  const limits = createAddressLimits(2, 3)
  t.ok(limits.connected('1.1.1.1', 'a'))
  t.ok(limits.connected('1.1.1.1', 'b'))
  t.notOk(limits.connected('1.1.1.1', 'c'), 'a third connection is refused')
  t.ok(limits.connected('2.2.2.2', 'd'), 'another address is counted apart')
  limits.closed('a')
  limits.closed('c') // never counted: nothing changes
  t.ok(limits.connected('1.1.1.1', 'e'), 'a closed connection frees its place')
  t.notOk(limits.connected('1.1.1.1', 'f'))
  const unlimited = createAddressLimits(0, 0)
  for (let i = 0; i < 1000; i++) unlimited.connected('1.1.1.1', String(i))
  t.ok(unlimited.connected('1.1.1.1', 'x'), '0: no connection limit')
  t.ok([...Array(1000)].every(() => unlimited.message('1.1.1.1')), '0: no message limit')
})

t.test('a mail node answers 421 past the connections and 450 past the messages of one address', async (t) => {
  const smtpPort = await freePort()
  await startNode(t, 'mail', { children: 1, 'smtp-port': smtpPort, 'mail-domains': 'example.test', 'smtp-max-conns-per-address': 2, 'smtp-max-messages-per-minute': 3 })
  const open = async (): Promise<{ socket: net.Socket; heard: () => string }> => {
    const socket = net.connect(smtpPort, '127.0.0.1')
    let heard = ''
    socket.on('data', (d: Buffer) => (heard += d.toString('latin1')))
    socket.on('error', () => undefined)
    await waitFor('a first reply', () => /^\d{3} /m.test(heard))
    t.teardown(() => socket.destroy())
    return { socket, heard: () => heard }
  }
  const a = await open()
  const b = await open()
  t.match(a.heard(), /^220 /)
  t.match(b.heard(), /^220 /)
  const c = await open()
  t.match(c.heard(), /^421 4\.7\.0/, 'the third connection from 127.0.0.1 is refused')
  c.socket.destroy()

  // Messages per minute: a minute that turns during the test starts the count again, so try once more then.
  let refused = false
  for (let round = 0; round < 2 && !refused; round++) {
    const minute = Math.floor(Date.now() / 60_000)
    const beforeEhlo = a.heard().length
    a.socket.write('EHLO c.test\r\n')
    await waitFor('EHLO answered', () => /^250 /m.test(a.heard().slice(beforeEhlo)))
    const replies: string[] = []
    for (let i = 0; i < 4; i++) {
      const before = a.heard().length
      a.socket.write(`MAIL FROM:<s${i}@sender.test>\r\nRSET\r\n`)
      await waitFor('MAIL and RSET answered', () => (a.heard().slice(before).match(/^\d{3} /gm) ?? []).length >= 2)
      replies.push(a.heard().slice(before).split('\r\n').find((l) => /^\d{3} /.test(l))!)
    }
    if (Math.floor(Date.now() / 60_000) !== minute) continue
    t.match(replies.slice(0, 3), [/^250 /, /^250 /, /^250 /], 'three messages a minute are allowed')
    t.match(replies[3], /^450 4\.7\.1/, 'the fourth is deferred')
    refused = true
  }
  t.ok(refused)
})
