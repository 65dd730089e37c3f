/**
 * A small authoritative DNS server over UDP for mail tests: answers MX, A and
 * TXT questions from a table (other names: NXDOMAIN; a known name without the
 * asked type: no answers, NODATA). Enough of RFC 1035 for Node's resolver and
 * mailauth's lookups. Keeps the questions it was asked (`name type`).
 * `hold()` makes it a DNS server that hangs: questions are kept unanswered
 * until `release()` answers them (and every later one).
 */
import dgram from 'node:dgram'

export interface Zone {
  readonly mx?: readonly (readonly [number, string])[]
  readonly a?: readonly string[]
  readonly txt?: string
}

export interface TestDns {
  readonly address: string
  readonly asked: string[]
  /** Questions answered so far. */
  readonly answered: () => number
  /** Questions held unanswered now. */
  readonly held: () => number
  /** From now on keep questions unanswered. */
  hold(): void
  /** Answer the held questions, and every later one at once. */
  release(): void
  close(): Promise<void>
}

const TYPE_A = 1
const TYPE_MX = 15
const TYPE_TXT = 16

function encodeName(name: string): Buffer {
  const labels = name.replace(/\.$/, '').split('.').filter(Boolean)
  return Buffer.concat([...labels.map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l, 'ascii')])), Buffer.from([0])])
}

/** TXT data: the text in character-strings of at most 255 bytes. */
function txtData(text: string): Buffer {
  const bytes = Buffer.from(text, 'latin1')
  const parts: Buffer[] = []
  for (let i = 0; i < bytes.length; i += 255) {
    const piece = bytes.subarray(i, i + 255)
    parts.push(Buffer.from([piece.length]), piece)
  }
  return Buffer.concat(parts)
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

function answersFor(zone: Zone, qtype: number): Buffer[] {
  if (qtype === TYPE_MX) return (zone.mx ?? []).map(([pref, exchange]) => record(TYPE_MX, Buffer.concat([Buffer.from([pref >> 8, pref & 255]), encodeName(exchange)])))
  if (qtype === TYPE_A) return (zone.a ?? []).map((a) => record(TYPE_A, Buffer.from(a.split('.').map(Number))))
  if (qtype === TYPE_TXT && zone.txt !== undefined) return [record(TYPE_TXT, txtData(zone.txt))]
  return []
}

export async function startDnsServer(zones: Record<string, Zone>): Promise<TestDns> {
  const socket = dgram.createSocket('udp4')
  const table = new Map(Object.entries(zones).map(([name, zone]) => [name.toLowerCase(), zone]))
  const asked: string[] = []
  let holding = false
  let answered = 0
  let held: (() => void)[] = []
  socket.on('message', (msg, from) => {
    if (msg.length < 12) return
    // The question: labels up to the zero byte, then type and class.
    let i = 12
    const labels: string[] = []
    while (i < msg.length && msg[i]! !== 0) {
      labels.push(msg.subarray(i + 1, i + 1 + msg[i]!).toString('latin1'))
      i += msg[i]! + 1
    }
    if (i + 5 > msg.length) return
    const name = labels.join('.').toLowerCase()
    const qtype = msg.readUInt16BE(i + 1)
    asked.push(`${name} ${qtype}`)
    const zone = table.get(name)
    const answers = zone === undefined ? [] : answersFor(zone, qtype)
    const head = Buffer.alloc(12)
    head.writeUInt16BE(msg.readUInt16BE(0), 0)
    head.writeUInt16BE(zone === undefined ? 0x8583 : 0x8580, 2) // response, authoritative; NXDOMAIN for unknown names
    head.writeUInt16BE(1, 4)
    head.writeUInt16BE(answers.length, 6)
    const answer = () => {
      answered++
      socket.send(Buffer.concat([head, msg.subarray(12, i + 5), ...answers]), from.port, from.address)
    }
    if (holding) held.push(answer)
    else answer()
  })
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve))
  return {
    address: `127.0.0.1:${socket.address().port}`,
    asked,
    answered: () => answered,
    held: () => held.length,
    hold: () => void (holding = true),
    release() {
      holding = false
      const waiting = held
      held = []
      for (const answer of waiting) answer()
    },
    close: () => new Promise<void>((resolve) => socket.close(() => resolve())),
  }
}
