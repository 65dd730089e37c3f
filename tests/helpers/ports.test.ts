import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { createServer } from 'node:net'
import t from 'tap'
import { freePort, freePortsAt } from './ports.js'

const ephemeralFrom = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0])

t.test('ports come from below the ephemeral range and can be bound', async (t) => {
  for (let i = 0; i < 20; i++) {
    const port = await freePort()
    t.ok(port >= 10_000 && port < ephemeralFrom, `${port} is below ${ephemeralFrom}`)
    const server = createServer()
    await new Promise<void>((resolve, reject) => server.once('error', reject).listen({ host: '127.0.0.1', port, exclusive: true }, resolve))
    await new Promise((resolve) => server.close(resolve))
  }
  const base = await freePortsAt([0, 2000])
  t.ok(base + 2000 < ephemeralFrom, 'a port and its offset one both lie below the range')
})

t.test('another process never gets a port this one holds, nor does this one get a port twice', async (t) => {
  const mine = new Set(await Promise.all([...Array(300).keys()].map(() => freePort())))
  t.equal(mine.size, 300, 'concurrent calls in one process get different ports')
  const script = `import('${new URL('./ports.ts', import.meta.url).pathname}').then(async (p) => {
    const ports = []
    for (let i = 0; i < 300; i++) ports.push(await p.freePort())
    console.log(JSON.stringify(ports))
  })`
  const theirs = JSON.parse(execFileSync(process.execPath, ['--import', 'tsx', '-e', script], { encoding: 'utf8' })) as number[]
  t.equal(new Set(theirs).size, 300)
  t.same(theirs.filter((port) => mine.has(port)), [], 'no port of theirs is one of mine')
})
