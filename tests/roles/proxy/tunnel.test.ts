// The tunnel's go-away, driven directly: what reaches the client of a WebSocket whose Live node leaves, byte-exact,
// with the frame in flight split across reads. The connection around it is a recorder of what the tunnel asks.
import t from 'tap'
import { wsCloseFrame } from '../../../roles/proxy/framing.js'
import { Tunnel, type TunnelOwner } from '../../../roles/proxy/tunnel.js'
import type { ClientWriter, Forwarded, Upstream } from '../../../roles/proxy/upstream.js'

/** An unmasked text frame (server to client) with a short payload. */
const frame = (text: string): Buffer => Buffer.concat([Buffer.from([0x81, text.length]), Buffer.from(text, 'latin1')])
const UP = {} as Upstream
const forwarded = (websocket: boolean): Forwarded => ({ head: false, upgrade: true, websocket, replay: null, key: 'room-7', retried: false, start: 0, status: 0 })

function harness(websocket: boolean, first: Buffer = Buffer.alloc(0)) {
  const written: Buffer[] = []
  const events: string[] = []
  const owner: TunnelOwner & { leaving: string | null } = {
    leaving: null,
    destroy: () => void events.push('destroy'),
    endWith: (last) => {
      written.push(last)
      events.push('end')
    },
  }
  const client: ClientWriter = {
    writeClient: (_up, chunk) => void written.push(Buffer.from(chunk as Buffer)),
    upstreamDrained: () => {},
  }
  const tunnel = new Tunnel(owner, client, forwarded(websocket), first, 0)
  return { tunnel, owner, events, sent: () => Buffer.concat(written) }
}

t.test('frames pass untouched; once the node leaves, the frame in flight is finished and a 1012 follows it', async (t) => {
  const { tunnel, owner, events, sent } = harness(true)
  t.equal(tunnel.key, 'room-7', 'the key the client reconnects with')
  const a = frame('hello')
  const b = frame('a frame split across reads')
  tunnel.fromLive(UP, a)
  tunnel.fromLive(UP, b.subarray(0, 7))
  owner.leaving = 'live node left: reconnect'
  tunnel.goAway()
  t.same(events, [], 'mid-frame: no close yet')
  const c = frame('never sent')
  tunnel.fromLive(UP, Buffer.concat([b.subarray(7), c]))
  t.same(events, ['end'])
  t.same(sent(), Buffer.concat([a, b, wsCloseFrame(1012, 'live node left: reconnect')]), 'the rest of the frame, then the close frame, and nothing after')
})

t.test('at a frame boundary the close frame goes at once, with the reason given', async (t) => {
  const first = frame('after the 101')
  const { tunnel, owner, events, sent } = harness(true, first)
  owner.leaving = 'live node moved: reconnect'
  tunnel.goAway()
  t.same(events, ['end'])
  t.same(sent(), wsCloseFrame(1012, 'live node moved: reconnect'), 'the first frame (read with the 101) was tracked, not resent')
})

t.test('an upgrade that is not a WebSocket cannot end cleanly: it is cut', async (t) => {
  const { tunnel, owner, events, sent } = harness(false)
  tunnel.fromLive(UP, Buffer.from('any bytes'))
  owner.leaving = 'live node left: reconnect'
  tunnel.goAway()
  t.same(events, ['destroy'])
  t.equal(sent().toString('latin1'), 'any bytes')
})
