/**
 * The floor for bench/live-fanout.ts (`--floor` starts it): a plain
 * uWS server in one process, no Live node, speaking just enough of the
 * protocol for the bench's load processes and publisher. `sub` on `/ws`
 * subscribes the socket to the channel's topic and answers `sub-ok` (seq 0);
 * `POST /pub/<ch>` numbers the message, publishes the same `msg` frame a Live
 * child writes (JSON text) to the topic and answers `{ch, seq, ts}`. No
 * tokens, history, hops or checks: what the fan-out costs without the Live
 * node around it, on the same load. Tells its parent `{type: 'listening'}`.
 *
 *   npx tsx bench/live-fanout-floor.ts <port>   (bench/live-fanout.ts --floor forks it)
 */
import { uws } from '../lib/http/uws.js'
import { helpFrom } from './args.js'

helpFrom(import.meta.url)

const port = Number(process.argv[2])
const seqs = new Map<string, number>()
const app = uws.App()
app.ws('/ws', {
  idleTimeout: 120,
  message(ws, message) {
    let frame: { op?: string; ch?: string }
    try {
      frame = JSON.parse(Buffer.from(message).toString('utf8')) as { op?: string; ch?: string }
    } catch {
      return
    }
    if (frame.op !== 'sub' || typeof frame.ch !== 'string') return
    ws.subscribe(`j:${frame.ch}`)
    ws.send(JSON.stringify({ op: 'sub-ok', ch: frame.ch, seq: seqs.get(frame.ch) ?? 0, recovered: true }), false)
  },
})
app.post('/pub/*', (res, req) => {
  const ch = decodeURIComponent(req.getUrl().slice('/pub/'.length))
  const chunks: Buffer[] = []
  res.onAborted(() => {})
  res.onData((chunk, last) => {
    chunks.push(Buffer.from(chunk.slice(0)))
    if (!last) return
    let data: unknown
    try {
      data = JSON.parse(Buffer.concat(chunks).toString('utf8'))
    } catch {
      return void res.cork(() => res.writeStatus('400 Bad Request').end())
    }
    const seq = (seqs.get(ch) ?? 0) + 1
    seqs.set(ch, seq)
    const ts = Date.now()
    app.publish(`j:${ch}`, JSON.stringify({ op: 'msg', ch, seq, ts, data }), false)
    res.cork(() => res.writeStatus('200 OK').writeHeader('Content-Type', 'application/json').end(JSON.stringify({ ch, seq, ts })))
  })
})
app.listen('127.0.0.1', port, (listening) => {
  if (!listening) {
    console.error(`live-fanout-floor: cannot listen on ${port}`)
    process.exit(1)
  }
  process.send?.({ type: 'listening' })
})
process.on('disconnect', () => process.exit(0))
