// Per-address limits counted by the mail node's parent for all its children (issue #12), through a real
// node with 2 children: connections from one address land on both children (told apart by each child's
// open-session gauge) and the node still holds that address to the limit; messages per minute likewise;
// a killed child gives its connections back; a stopped parent makes the children fail open. No seed is needed: these replies come before anything is stored.
import net from 'node:net'
import t, { type Test } from 'tap'
import { freePort, startNode, waitFor, type StartedNode } from '../../helpers/cluster.js'
import { scrape } from '../../helpers/prom-text.js'

interface Conn {
  readonly socket: net.Socket
  readonly heard: () => string
  readonly closed: () => boolean
  /** The index of the child that serves it (null: refused). */
  child: string | null
}

/** Open SMTP sessions per child index (the mail child's in-flight gauge counts them). */
async function sessions(node: StartedNode): Promise<Map<string, number>> {
  const text = await scrape(node.metricsPort)
  return new Map(text.find('espra_mail_http_requests_in_flight').map((s) => [s.labels['child']!, s.value]))
}

const total = (m: Map<string, number>): number => [...m.values()].reduce((a, b) => a + b, 0)

/** Open connections the parent counts for the node. */
async function counted(node: StartedNode): Promise<number> {
  return (await scrape(node.metricsPort)).find('espra_mail_inbound_limit_connections').reduce((n, s) => n + s.value, 0)
}

async function refusedBy(node: StartedNode, reason: string): Promise<Map<string, number>> {
  const text = await scrape(node.metricsPort)
  return new Map(text.find('espra_mail_inbound_refusals_total', { reason }).map((s) => [s.labels['child']!, s.value]))
}

/** Connects, reads the first reply and, for a greeting, finds which child took it (the one whose session count rose). */
async function open(t: Test, node: StartedNode, smtpPort: number, held: readonly Conn[]): Promise<Conn> {
  const before = new Map<string, number>()
  for (const c of held) if (c.child !== null && !c.closed()) before.set(c.child, (before.get(c.child) ?? 0) + 1)
  const socket = net.connect(smtpPort, '127.0.0.1')
  let heard = ''
  let closed = false
  socket.on('data', (d: Buffer) => (heard += d.toString('latin1')))
  socket.on('error', () => undefined)
  socket.on('close', () => (closed = true))
  t.teardown(() => socket.destroy())
  await waitFor('a first reply', () => /^\d{3} /m.test(heard))
  const conn: Conn = { socket, heard: () => heard, closed: () => closed, child: null }
  if (!heard.startsWith('220 ')) return conn
  const now = await waitFor('the new session in a child', async () => {
    const m = await sessions(node)
    return total(m) === total(before) + 1 ? m : undefined
  })
  conn.child = [...now].find(([child, n]) => n > (before.get(child) ?? 0))![0]
  return conn
}

/** Closes a connection and waits until the parent no longer counts it. */
async function close(node: StartedNode, conn: Conn, stillCounted: number): Promise<void> {
  conn.socket.destroy()
  await waitFor('the parent gives the connection back', async () => (await counted(node)) === stillCounted || undefined)
}

/** Holds `limit` connections from 127.0.0.1 with both children serving some. */
async function holdOnBoth(t: Test, node: StartedNode, smtpPort: number, limit: number, held: Conn[]): Promise<void> {
  for (let tries = 0; held.length < limit; tries++) {
    if (tries > 200) throw new Error('the kernel never gave the second child a connection')
    const conn = await open(t, node, smtpPort, held)
    t.equal(conn.heard().slice(0, 4), '220 ', 'accepted below the limit')
    const children = new Set([...held, conn].map((c) => c.child))
    // The last place goes to a child not serving yet: close and connect again until one does.
    if (held.length === limit - 1 && children.size < 2) await close(node, conn, held.length)
    else held.push(conn)
  }
}

t.test('connections from one address are limited for the node across its children; a killed child gives its back', async (t) => {
  const smtpPort = await freePort()
  const limit = 4
  const node = await startNode(t, 'mail', { children: 2, 'smtp-port': smtpPort, 'mail-domains': 'example.test', 'smtp-max-conns-per-address': limit, 'smtp-max-messages-per-minute': 0 })
  await waitFor('two children listening', () => node.childPids().length === 2 || undefined)
  const held: Conn[] = []
  await holdOnBoth(t, node, smtpPort, limit, held)
  const serving = new Set(held.map((c) => c.child))
  t.equal(serving.size, 2, `both children serve connections of 127.0.0.1 (${held.map((c) => c.child).join(', ')})`)
  t.equal(await counted(node), limit, 'the parent counts every one')

  // Past the limit: 421 whichever child takes it. Until both children have refused one (or 40 tries).
  const before = await refusedBy(node, 'too_many_connections')
  let extra = 0
  for (; extra < 40; extra++) {
    const conn = await open(t, node, smtpPort, held)
    t.match(conn.heard(), /^421 4\.7\.0/, `connection ${limit + 1 + extra} from 127.0.0.1 is refused`)
    await waitFor('the refused connection closed', () => conn.closed() || undefined)
    const now = await refusedBy(node, 'too_many_connections')
    if ([...now].filter(([child, n]) => n > (before.get(child) ?? 0)).length === 2) break
  }
  const after = await refusedBy(node, 'too_many_connections')
  t.equal(total(after) - total(before), extra + 1, 'each refusal counted (too_many_connections)')
  t.comment(`refusals per child: ${JSON.stringify(Object.fromEntries(after))} after ${extra + 1} tries`)
  t.equal(await counted(node), limit, 'refused connections are not counted')

  // Kill the child that holds the most; its connections drop and the parent gives them back.
  const victim = [...serving].sort((a, b) => held.filter((c) => c.child === b).length - held.filter((c) => c.child === a).length)[0]!
  const victimPid = node.logs.filter((l) => l.msg === `child ${victim} listening`).at(-1)!.childPid!
  const lost = held.filter((c) => c.child === victim)
  const kept = held.filter((c) => c.child !== victim)
  process.kill(victimPid, 'SIGKILL')
  await waitFor('the killed child\'s connections dropped', () => lost.every((c) => c.closed()) || undefined)
  await waitFor('the parent gives them back', async () => (await counted(node)) === kept.length || undefined)
  await node.waitForLog((l) => l.msg === `child ${victim} listening` && l.childPid !== victimPid, 'the child respawned')
  t.ok(kept.every((c) => !c.closed()), 'the other child\'s connections stay open')

  // New connections are accepted again up to the limit, the next refused.
  const again: Conn[] = [...kept]
  while (again.length < limit) {
    const conn = await open(t, node, smtpPort, again)
    t.match(conn.heard(), /^220 /, `connection ${again.length + 1} accepted again after the kill`)
    again.push(conn)
  }
  const over = await open(t, node, smtpPort, again)
  t.match(over.heard(), /^421 4\.7\.0/, 'and one more is refused')
  t.equal(await counted(node), limit)
})

t.test('messages per minute from one address are limited for the node across its children', async (t) => {
  const smtpPort = await freePort()
  const node = await startNode(t, 'mail', { children: 2, 'smtp-port': smtpPort, 'mail-domains': 'example.test', 'smtp-max-conns-per-address': 10, 'smtp-max-messages-per-minute': 3 })
  await waitFor('two children listening', () => node.childPids().length === 2 || undefined)
  const held: Conn[] = []
  await holdOnBoth(t, node, smtpPort, 2, held)
  const [a, b] = held as [Conn, Conn]
  t.not(a.child, b.child, 'the two connections are in different children')
  const command = async (conn: Conn, line: string): Promise<string> => {
    const before = conn.heard().length
    conn.socket.write(`${line}\r\n`)
    const got = await waitFor(`${line} answered`, () => conn.heard().slice(before).split('\r\n').find((l) => /^\d{3} /.test(l)))
    return got
  }
  t.match(await command(a, 'EHLO a.test'), /^250 /)
  t.match(await command(b, 'EHLO b.test'), /^250 /)
  // A minute that turns during the test starts the count again, so try once more then.
  let done = false
  for (let round = 0; round < 2 && !done; round++) {
    const minute = Math.floor(Date.now() / 60_000)
    const replies: string[] = []
    for (const [i, conn] of [a, b, a, b].entries()) {
      replies.push(await command(conn, `MAIL FROM:<s${i}@sender.test>`))
      await command(conn, 'RSET')
    }
    if (Math.floor(Date.now() / 60_000) !== minute) continue
    t.match(replies.slice(0, 3), [/^250 /, /^250 /, /^250 /], 'three messages a minute from 127.0.0.1, in either child')
    t.match(replies[3], /^450 4\.7\.1/, 'the fourth is deferred in the child that took the second')
    done = true
  }
  t.ok(done)
  const refused = await refusedBy(node, 'rate_limited')
  t.equal(refused.get(b.child!), 1, 'counted as rate_limited by that child')
})

t.test('a parent that does not answer in time: the children fail open, count it, log it, and the late counts are undone', async (t) => {
  const smtpPort = await freePort()
  const node = await startNode(t, 'mail', { children: 2, 'smtp-port': smtpPort, 'mail-domains': 'example.test', 'smtp-max-conns-per-address': 2, 'smtp-max-messages-per-minute': 0 })
  await waitFor('two children listening', () => node.childPids().length === 2 || undefined)
  // A stopped parent cannot answer: every ask times out (1 s) while the children go on accepting on the shared socket.
  const parentPid = node.proc.pid!
  process.kill(parentPid, 'SIGSTOP')
  t.teardown(() => {
    try {
      process.kill(parentPid, 'SIGCONT')
    } catch {
      // already gone
    }
  })
  const conns = await Promise.all([0, 1, 2, 3].map(async () => {
    const socket = net.connect(smtpPort, '127.0.0.1')
    let heard = ''
    socket.on('data', (d: Buffer) => (heard += d.toString('latin1')))
    socket.on('error', () => undefined)
    t.teardown(() => socket.destroy())
    await waitFor('a first reply', () => /^\d{3} /m.test(heard), 10_000)
    return { socket, heard: () => heard }
  }))
  process.kill(parentPid, 'SIGCONT')
  t.match(conns.map((c) => c.heard().slice(0, 4)), ['220 ', '220 ', '220 ', '220 '], 'four connections from 127.0.0.1 over a limit of 2 are all taken (fail open)')
  await node.waitForLog((l) => l.level === 'warn' && /did not answer a limit check within 1000ms/.test(l.msg), 'the fail-open warning')
  const unchecked = (await scrape(node.metricsPort)).find('espra_mail_inbound_limit_unchecked_total', { limit: 'connections' }).reduce((n, s) => n + s.value, 0)
  t.equal(unchecked, 4, 'each counted in espra_mail_inbound_limit_unchecked_total')
  // The parent answered the asks late and counted up to the limit; the children tell it of every close.
  t.ok((await counted(node)) <= 2, 'the late answers counted no more than the limit')
  for (const c of conns) c.socket.destroy()
  await waitFor('nothing counted once all closed', async () => (await counted(node)) === 0 || undefined)
  const held: Conn[] = []
  held.push(await open(t, node, smtpPort, held))
  held.push(await open(t, node, smtpPort, held))
  t.match(held.map((c) => c.heard().slice(0, 4)), ['220 ', '220 '])
  t.match((await open(t, node, smtpPort, held)).heard(), /^421 4\.7\.0/, 'with the parent answering again, the third is refused')
})
