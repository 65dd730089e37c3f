/**
 * A small real DNS server on a UDP port for tests that start a mail node
 * (which looks up SPF, DKIM and DMARC records with `--mail-dns-servers`):
 * answers TXT questions from a table, NOERROR with no answer for other types
 * of a known name, NXDOMAIN otherwise. Counts the questions it was asked.
 */
import dgram from 'node:dgram'

export interface TestDns {
  readonly address: string
  readonly asked: string[]
  close(): Promise<void>
}

function readName(msg: Buffer, offset: number): { name: string; end: number } {
  const labels: string[] = []
  let i = offset
  while (i < msg.length && msg[i]! > 0) {
    labels.push(msg.subarray(i + 1, i + 1 + msg[i]!).toString('latin1'))
    i += 1 + msg[i]!
  }
  return { name: labels.join('.').toLowerCase(), end: i + 1 }
}

function txtRdata(text: string): Buffer {
  const parts: Buffer[] = []
  const bytes = Buffer.from(text, 'latin1')
  for (let i = 0; i < bytes.length; i += 255) {
    const piece = bytes.subarray(i, i + 255)
    parts.push(Buffer.from([piece.length]), piece)
  }
  return Buffer.concat(parts)
}

export async function startTestDns(records: Record<string, string>): Promise<TestDns> {
  const socket = dgram.createSocket('udp4')
  const asked: string[] = []
  const table = new Map(Object.entries(records).map(([k, v]) => [k.toLowerCase(), v]))
  socket.on('message', (msg, rinfo) => {
    if (msg.length < 12) return
    const { name, end } = readName(msg, 12)
    const qtype = msg.readUInt16BE(end)
    asked.push(`${name} ${qtype}`)
    const question = msg.subarray(12, end + 4)
    const txt = table.get(name)
    const answers: Buffer[] = []
    if (txt !== undefined && qtype === 16) {
      const rdata = txtRdata(txt)
      const rr = Buffer.alloc(12)
      rr.writeUInt16BE(0xc00c, 0) // the name: a pointer to the question's
      rr.writeUInt16BE(16, 2)
      rr.writeUInt16BE(1, 4)
      rr.writeUInt32BE(60, 6)
      rr.writeUInt16BE(rdata.length, 10)
      answers.push(rr, rdata)
    }
    const header = Buffer.alloc(12)
    msg.copy(header, 0, 0, 2)
    header.writeUInt16BE(0x8180 | (txt === undefined ? 3 : 0), 2)
    header.writeUInt16BE(1, 4)
    header.writeUInt16BE(answers.length / 2, 6)
    socket.send(Buffer.concat([header, question, ...answers]), rinfo.port, rinfo.address)
  })
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', () => resolve()))
  return {
    address: `127.0.0.1:${socket.address().port}`,
    asked,
    close: () => new Promise((resolve) => socket.close(() => resolve())),
  }
}
