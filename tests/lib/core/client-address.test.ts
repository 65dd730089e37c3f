// The client-address rule, driven directly: trusted blocks, the rightmost-untrusted X-Forwarded-For walk, PROXY v2.
import t from 'tap'
import { checkCidr, createTrustedProxies, forwardedClient, parseProxyV2, plainAddress, PROXY_V2_SIGNATURE } from '../../../lib/core/client-address.js'

t.test('trusted blocks: IPv4, IPv6, single addresses, IPv4-mapped; nothing by default', async (t) => {
  const trusted = createTrustedProxies(['10.0.0.0/8', '192.0.2.7', 'fd00::/8'])
  t.ok(trusted.has('10.200.3.4'))
  t.ok(trusted.has('::ffff:10.1.2.3'), 'the IPv4-mapped form of a trusted IPv4 address')
  t.ok(trusted.has('192.0.2.7'))
  t.notOk(trusted.has('192.0.2.8'))
  t.ok(trusted.has('fd12::1'))
  t.notOk(trusted.has('2001:db8::1'))
  t.notOk(trusted.has('not an address'))
  const none = createTrustedProxies([])
  t.ok(none.none)
  t.notOk(none.has('10.0.0.1'))
  t.notOk(none.has('127.0.0.1'), 'not even loopback')
})

t.test('checkCidr accepts addresses and blocks, refuses the rest with a sentence', async (t) => {
  for (const ok of ['10.0.0.0/8', '0.0.0.0/0', '127.0.0.1', 'fd00::/8', '::1', '2001:db8::/128']) t.equal(checkCidr(ok), ok)
  for (const bad of ['10.0.0.0/33', '::/129', '10.0.0/8', 'example.com', '10.0.0.0/', '10.0.0.0/x', '']) t.throws(() => checkCidr(bad), bad)
})

t.test('X-Forwarded-For: the rightmost untrusted address', async (t) => {
  const trusted = createTrustedProxies(['10.0.0.0/8'])
  t.equal(forwardedClient('203.0.113.5', '198.51.100.1', trusted), '203.0.113.5', 'an untrusted peer is the client, whatever it says')
  t.equal(forwardedClient('10.0.0.2', undefined, trusted), '10.0.0.2', 'a trusted peer with no header is the client')
  t.equal(forwardedClient('10.0.0.2', '198.51.100.1', trusted), '198.51.100.1', 'one balancer')
  t.equal(forwardedClient('10.0.0.2', '1.1.1.1, 198.51.100.1, 10.0.0.9', trusted), '198.51.100.1', 'two trusted hops passed; what the client prepended is ignored')
  t.equal(forwardedClient('10.0.0.2', '10.0.0.8,10.0.0.9', trusted), '10.0.0.8', 'all trusted: the leftmost')
  t.equal(forwardedClient('10.0.0.2', '198.51.100.1, garbage', trusted), '10.0.0.2', 'an entry that is no address: the last trusted hop')
  t.equal(forwardedClient('10.0.0.2', ' , 2001:db8::5 ,', trusted), '2001:db8::5', 'blanks and empty entries skipped, IPv6')
  t.equal(forwardedClient('10.0.0.2', '::ffff:198.51.100.1', trusted), '198.51.100.1', 'IPv4-mapped written plainly')
  t.equal(forwardedClient('10.0.0.2', '198.51.100.1', createTrustedProxies([])), '10.0.0.2', 'nothing trusted by default')
})

function v2(cmd: number, family: number, addr: Buffer, tlv = Buffer.alloc(0)): Buffer {
  const head = Buffer.alloc(4)
  head[0] = 0x20 | cmd
  head[1] = (family << 4) | 1
  head.writeUInt16BE(addr.length + tlv.length, 2)
  return Buffer.concat([PROXY_V2_SIGNATURE, head, addr, tlv])
}
const inet = Buffer.from([198, 51, 100, 7, 10, 0, 0, 1, 0x1f, 0x90, 0x00, 0x50])
const inet6 = Buffer.concat([Buffer.from('20010db8000000000000000000000005', 'hex'), Buffer.alloc(16), Buffer.from([0, 1, 0, 2])])
const mapped = Buffer.concat([Buffer.from('00000000000000000000ffffc6336407', 'hex'), Buffer.alloc(16), Buffer.from([0, 1, 0, 2])])

t.test('PROXY v2: IPv4, IPv6, TLVs, LOCAL, partial, absent, invalid', async (t) => {
  const http = Buffer.from('GET / HTTP/1.1\r\n\r\n')
  const four = v2(1, 1, inet, Buffer.from([0x03, 0x00, 0x04, 1, 2, 3, 4]))
  t.same(parseProxyV2(Buffer.concat([four, http])), { kind: 'header', length: four.length, source: '198.51.100.7' }, 'TLVs skipped, the request left after it')
  t.same(parseProxyV2(v2(1, 2, inet6)), { kind: 'header', length: 16 + 36, source: '2001:db8:0:0:0:0:0:5' })
  t.same(parseProxyV2(v2(1, 2, mapped)), { kind: 'header', length: 16 + 36, source: '198.51.100.7' }, 'IPv4-mapped written plainly')
  t.same(parseProxyV2(v2(0, 0, Buffer.alloc(0))), { kind: 'header', length: 16, source: null }, 'LOCAL (a health check): no client')
  for (let cut = 1; cut < four.length; cut++) t.equal(parseProxyV2(four.subarray(0, cut)).kind, 'incomplete', `cut at ${cut}`)
  t.equal(parseProxyV2(http).kind, 'absent')
  t.equal(parseProxyV2(Buffer.from('\r\n\r\nGET')).kind, 'absent')
  t.equal(parseProxyV2(Buffer.concat([PROXY_V2_SIGNATURE, Buffer.from([0x11, 0x11, 0, 12]), inet])).kind, 'invalid', 'version 1 in a v2 header')
  t.equal(parseProxyV2(Buffer.concat([PROXY_V2_SIGNATURE, Buffer.from([0x22, 0x11, 0, 12]), inet])).kind, 'invalid', 'unknown command')
  t.equal(parseProxyV2(Buffer.concat([PROXY_V2_SIGNATURE, Buffer.from([0x21, 0x11, 0, 4]), inet.subarray(0, 4)])).kind, 'invalid', 'too short for its family')
})

t.test('plainAddress', async (t) => {
  t.equal(plainAddress('::ffff:127.0.0.1'), '127.0.0.1')
  t.equal(plainAddress('::1'), '::1')
  t.equal(plainAddress('10.0.0.1'), '10.0.0.1')
})
