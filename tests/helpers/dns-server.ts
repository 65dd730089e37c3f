/**
 * A small authoritative DNS server over UDP for mail tests: answers MX, A and
 * AAAA queries from a table (other names: NXDOMAIN; a known name without the
 * asked type: no answers, NODATA). Enough of RFC 1035 for Node's resolver.
 */
import dgram from 'node:dgram'

export interface Zone {
  readonly mx?: readonly (readonly [number, string])[]
  readonly a?: readonly string[]
}

const TYPE_A = 1
const TYPE_MX = 15

function encodeName(name: string): Buffer {
  const labels = name.replace(/\.$/, '').split('.').filter(Boolean)
  return Buffer.concat([...labels.map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l, 'ascii')])), Buffer.from([0])])
}

function record(type: number, rdata: Buffer): Buffer {
  const head = Buffer.alloc(12)
  head.writeUInt16BE(0xc00c, 0) // the name: a pointer to the question's
  head.writeUInt16BE(type, 2)
  head.writeUInt16BE(1, 4)
  head.writeUInt32BE(60, 6)
  head.writeUInt16BE(rdata.length, 10)
  return Buffer.concat([head, rdata])
}

export async function startDnsServer(zones: Record<string, Zone>): Promise<{ address: string; close(): Promise<void> }> {
  const socket = dgram.createSocket('udp4')
  socket.on('message', (msg, from) => {
    if (msg.length < 12) return
    // The question: labels up to the zero byte, then type and class.
    let i = 12
    const labels: string[] = []
    while (i < msg.length && msg[i]! !== 0) {
      labels.push(msg.subarray(i + 1, i + 1 + msg[i]!).toString('ascii'))
      i += msg[i]! + 1
    }
    const qtype = msg.readUInt16BE(i + 1)
    const question = msg.subarray(12, i + 5)
    const zone = zones[labels.join('.').toLowerCase()]
    const answers: Buffer[] = []
    if (zone !== undefined && qtype === TYPE_MX) for (const [pref, exchange] of zone.mx ?? []) answers.push(record(TYPE_MX, Buffer.concat([Buffer.from([pref >> 8, pref & 255]), encodeName(exchange)])))
    if (zone !== undefined && qtype === TYPE_A) for (const a of zone.a ?? []) answers.push(record(TYPE_A, Buffer.from(a.split('.').map(Number))))
    const head = Buffer.alloc(12)
    head.writeUInt16BE(msg.readUInt16BE(0), 0)
    head.writeUInt16BE(zone === undefined ? 0x8583 : 0x8580, 2) // response, authoritative; NXDOMAIN for unknown names
    head.writeUInt16BE(1, 4)
    head.writeUInt16BE(answers.length, 6)
    socket.send(Buffer.concat([head, question, ...answers]), from.port, from.address)
  })
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve))
  return { address: `127.0.0.1:${socket.address().port}`, close: () => new Promise<void>((resolve) => socket.close(() => resolve())) }
}
