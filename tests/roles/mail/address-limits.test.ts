// Per-address limits of a mail node, through a real mail node (no seed needed: these replies come before
// anything is stored), the limiter and the address key. Across children: address-limits-children.test.ts.
import net from 'node:net'
import t from 'tap'
import { addressKey } from '../../../roles/mail/address-key.js'
import { createAddressLimits } from '../../../roles/mail/address-limits.js'
import { freePort, startNode, waitFor } from '../../helpers/cluster.js'

t.test('the limiter counts open connections and messages per address', async (t) => {
  const limits = createAddressLimits(2, 3)
  t.ok(limits.connected(1, 'a', '1.1.1.1'))
  t.ok(limits.connected(1, 'b', '1.1.1.1'))
  t.notOk(limits.connected(1, 'c', '1.1.1.1'), 'a third connection is refused')
  t.ok(limits.connected(1, 'd', '2.2.2.2'), 'another address is counted apart')
  limits.closed(1, 'a')
  limits.closed(1, 'c') // never counted: nothing changes
  t.ok(limits.connected(1, 'e', '1.1.1.1'), 'a closed connection frees its place')
  t.notOk(limits.connected(1, 'f', '1.1.1.1'))
  const unlimited = createAddressLimits(0, 0)
  for (let i = 0; i < 1000; i++) unlimited.connected(1, String(i), '1.1.1.1')
  t.ok(unlimited.connected(1, 'x', '1.1.1.1'), '0: no connection limit')
  t.ok([...Array(1000)].every(() => unlimited.message('1.1.1.1')), '0: no message limit')
})

t.test('connections are counted for the node, and a child that exits gives back its own', async (t) => {
  const limits = createAddressLimits(3, 2)
  t.ok(limits.connected(10, 's1', '1.1.1.1'))
  t.ok(limits.connected(20, 's1', '1.1.1.1'), 'the same session id in another child is another connection')
  t.ok(limits.connected(20, 's2', '::ffff:1.1.1.1'))
  t.notOk(limits.connected(10, 's3', '1.1.1.1'), 'the fourth, whichever child it is in, is refused')
  limits.closed(10, 's2') // child 10 never held s2: nothing changes
  t.notOk(limits.connected(10, 's3', '1.1.1.1'))
  t.same(limits.size(), { connections: 3, connectedAddresses: 1, messageAddresses: 0 })
  t.equal(limits.childGone(20), 2, 'child 20 held two')
  t.equal(limits.childGone(20), 0, 'and nothing more once gone')
  t.same(limits.size(), { connections: 1, connectedAddresses: 1, messageAddresses: 0 })
  t.ok(limits.connected(10, 's3', '1.1.1.1'))
  t.ok(limits.connected(10, 's4', '1.1.1.1'))
  t.notOk(limits.connected(10, 's5', '1.1.1.1'))
  for (const s of ['s1', 's3', 's4']) limits.closed(10, s)
  t.same(limits.size(), { connections: 0, connectedAddresses: 0, messageAddresses: 0 }, 'nothing held once all closed')
  t.ok(limits.message('2001:db8:1:2::1'))
  t.ok(limits.message('2001:db8:1:2:ffff::9'))
  t.notOk(limits.message('2001:db8:1:2:aaaa::1'), 'one /64 is one sender')
  t.ok(limits.message('2001:db8:1:3::1'), 'the next /64 is another')
  t.equal(limits.size().messageAddresses, 2)
})

t.test('the key of an address: IPv4-mapped IPv6 is the IPv4 address, IPv6 its /64', async (t) => {
  t.equal(addressKey('127.0.0.1'), '127.0.0.1')
  t.equal(addressKey('::ffff:127.0.0.1'), '127.0.0.1')
  t.equal(addressKey('::FFFF:127.0.0.1'), '127.0.0.1')
  t.equal(addressKey('::ffff:7f00:1'), '127.0.0.1', 'the hex form too')
  t.equal(addressKey('0:0:0:0:0:ffff:c000:0201'), '192.0.2.1')
  t.equal(addressKey('2001:db8::1'), '2001:db8:0:0::/64')
  t.equal(addressKey('2001:0DB8:0000:0000:1234::1'), '2001:db8:0:0::/64')
  t.equal(addressKey('2001:db8:aa:bb:cc:dd:ee:ff'), '2001:db8:aa:bb::/64')
  t.equal(addressKey('fe80::1%eth0'), 'fe80:0:0:0::/64', 'a zone index is left out')
  t.equal(addressKey('::1'), '0:0:0:0::/64')
  t.equal(addressKey('::'), '0:0:0:0::/64')
  t.equal(addressKey('::127.0.0.1'), '0:0:0:0::/64', 'IPv4-compatible (deprecated) is not mapped')
  t.equal(addressKey('not an address'), 'not an address', 'anything else as given')
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
