/**
 * The upstream side of one client connection: its own keep-alive connection
 * to the Live node its requests route to, the requests forwarded on it (in
 * order, awaiting their answers), and the one state machine that reads the
 * Live node's answers (Live → client): response heads are parsed only to
 * find where each response ends; the bytes go to the client untouched (a
 * head is re-written only to say `Connection: close` when the client
 * connection is closing). A connection the Live node closed before a byte
 * of the next answer came may be retried once (see {@link Upstream.retry}).
 *
 * What to do with an answer, a failure or a tunnel is the connection's
 * decision (./connection.ts, through {@link UpstreamOwner}); writing to the
 * client, with its backpressure, the client side's (./client-side.ts).
 */
import { connect, type Socket } from 'node:net'
import { ChunkedScanner } from './framing.js'
import { parseResponseHead, withConnectionClose, type ResponseHead } from './answers.js'
import type { ProxyCore, RoutingNode } from './context.js'
import { copyRead, HEAD_PROBE, headAt, onread, readText } from './reads.js'

/** Largest response head accepted from a Live node. */
const MAX_RESPONSE_HEAD = 64 * 1024

export const enum Out {
  Head,
  BodyLength,
  BodyChunked,
  /** No framing: the body ends when the Live node closes. */
  BodyEof,
  Tunnel,
}

/** A request forwarded to the Live node, awaiting its answer. */
export interface Forwarded {
  readonly head: boolean
  readonly upgrade: boolean
  readonly websocket: boolean
  /**
   * The request as forwarded, kept when sending it again is safe (GET, HEAD
   * or OPTIONS without a body): see {@link Upstream.retry}.
   */
  readonly replay: string | null
  /** Its routing key, to pick the node again for a retry. */
  readonly key: string
  retried: boolean
  /** performance.now() when its head went to the Live node (the first time), for the latency histogram. */
  readonly start: number
  /** The status of its answer, once its head has come. */
  status: number
}

/** The length of the body a response head announces for its request: 0 for HEAD, 204 and 304; -1 when chunked or until the close. */
function bodyLength(forwarded: Forwarded, res: ResponseHead): number {
  return forwarded.head || res.status === 204 || res.status === 304 ? 0 : res.contentLength
}

/** What the client side does for an upstream: write to the client (pausing the upstream when the client is slow), read on when the upstream drains. */
export interface ClientWriter {
  /** Writes to the client; a string is bytes read as latin1 (one byte per char). */
  writeClient(up: Upstream, chunk: Buffer | string): void
  upstreamDrained(): void
}

/** What an upstream asks of its client connection (./connection.ts). */
export interface UpstreamOwner {
  readonly core: ProxyCore
  /** The client was answered with close, or will be after the answers owed: every head says so. */
  readonly closing: boolean
  /** `up` is the connection's upstream and the client still open: its bytes are wanted. */
  isCurrent(up: Upstream): boolean
  /** `up` is current and nothing needs re-writing: a whole response may go as it was read. */
  passesAsIs(up: Upstream): boolean
  /** Bytes came from the client's side of the exchange: for the idle clock. */
  seen(): void
  /** The client connection closes after the answers owed. */
  closeAfterAnswer(): void
  /** One response fully forwarded; false when the client is being closed instead. */
  answered(up: Upstream): boolean
  /** A 101 came: from `headEnd` on, `buf` is tunnel bytes. */
  becomeTunnel(up: Upstream, forwarded: Forwarded, buf: Buffer, headEnd: number): void
  /** Bytes from the Live node in a tunnel. */
  tunnelData(up: Upstream, chunk: Buffer): void
  /** The Live node failed mid-exchange. */
  failed(up: Upstream): void
  /** The Live node closed the connection (`up.closed` is set). */
  upstreamClosed(up: Upstream): void
  /** Opens the connection's new upstream to `node` (for a retry). */
  open(node: RoutingNode): Upstream
}

/** The connection to one Live node, owned by one client connection. */
export class Upstream {
  readonly socket: Socket
  state = Out.Head
  /** A response head read in part. */
  private pending: Buffer | null = null
  private remaining = 0
  readonly chunks = new ChunkedScanner()
  /** Requests forwarded and not yet answered, in order. */
  readonly queue: Forwarded[] = []
  /** The head of the response now streaming has been forwarded. */
  headSent = false
  closed = false

  constructor(readonly node: RoutingNode, private readonly owner: UpstreamOwner, private readonly client: ClientWriter) {
    const socket = this.socket = connect({ host: node.address, port: node.port, noDelay: true, onread: onread((n) => this.onRead(n)) })
    const counters = owner.core.counters
    counters.upstreamOpening()
    socket.on('error', () => {})
    socket.on('close', () => {
      counters.upstreamClosed()
      this.closed = true
      owner.upstreamClosed(this)
    })
    socket.on('drain', () => client.upstreamDrained())
  }

  /** Answers are owed on this connection. */
  get owes(): boolean {
    return this.queue.length > 0
  }

  /** Forgets what is owed (`n` requests settled) and closes the connection. */
  drop(): void {
    this.owner.core.counters.settled(this.queue.length)
    this.queue.length = 0
    this.closed = true
    this.socket.destroy()
  }

  /**
   * A read from the Live node. The common one, exactly one whole response
   * whose length its head gives, is forwarded as the text it is read as: no
   * copy of the bytes. Anything else goes through onData as a Buffer.
   */
  private onRead(n: number): void {
    if (n <= HEAD_PROBE && this.state === Out.Head && this.pending === null && this.owner.passesAsIs(this)) {
      const text = readText(n)
      if (this.wholeResponse(text)) return
    }
    this.onData(copyRead(n))
  }

  /** Forwards `text` and returns true when it is exactly one final response, framed by its length, the Live node keeping the connection open. */
  private wholeResponse(text: string): boolean {
    const forwarded = this.queue[0]
    const i = text.indexOf('\r\n\r\n')
    if (forwarded === undefined || i < 0) return false
    const res = parseResponseHead(text, i + 4)
    if (res === null || res.close || res.status < 200 || res.status === 101) return false
    const length = bodyLength(forwarded, res)
    if (length < 0 || i + 4 + length !== text.length) return false
    forwarded.status = res.status
    this.owner.seen()
    this.client.writeClient(this, text)
    this.owner.answered(this)
    return true
  }

  private onData(chunk: Buffer): void {
    const owner = this.owner
    if (!owner.isCurrent(this)) return void this.socket.destroy()
    owner.seen()
    if (this.state === Out.Tunnel) return owner.tunnelData(this, chunk)
    const client = this.client
    let buf = chunk
    if (this.pending !== null) {
      buf = Buffer.concat([this.pending, chunk])
      this.pending = null
    }
    const len = buf.length
    let off = 0
    let from = 0 // first byte not yet forwarded
    while (off < len) {
      switch (this.state) {
        case Out.Head: {
          const text = headAt(buf, off)
          if (text === null) {
            if (len - off > MAX_RESPONSE_HEAD) return owner.failed(this)
            client.writeClient(this, buf.subarray(from, off))
            this.pending = buf.subarray(off)
            return
          }
          const headEnd = off + text.length
          const res = parseResponseHead(text)
          const forwarded = this.queue[0]
          if (res === null || forwarded === undefined) return owner.failed(this)
          if (res.status < 200 && res.status !== 101) {
            off = headEnd // informational: forwarded as is, the final answer follows
            break
          }
          if (res.status === 101 && !forwarded.upgrade) return owner.failed(this)
          if (res.status === 101) {
            client.writeClient(this, buf.subarray(from, len))
            return owner.becomeTunnel(this, forwarded, buf, headEnd)
          }
          forwarded.status = res.status
          if (res.close) owner.closeAfterAnswer()
          if (owner.closing || owner.core.draining) {
            client.writeClient(this, buf.subarray(from, off))
            client.writeClient(this, withConnectionClose(text))
            from = headEnd
            owner.closeAfterAnswer()
          }
          this.headSent = true
          off = headEnd
          const length = bodyLength(forwarded, res)
          if (length === 0) {
            from = this.responseDone(buf, from, off)
          } else if (res.chunked) {
            this.state = Out.BodyChunked
            this.chunks.reset()
          } else if (length > 0) {
            this.state = Out.BodyLength
            this.remaining = length
          } else {
            this.state = Out.BodyEof
            owner.closeAfterAnswer()
          }
          break
        }
        case Out.BodyLength: {
          const n = Math.min(this.remaining, len - off)
          off += n
          this.remaining -= n
          if (this.remaining === 0) from = this.responseDone(buf, from, off)
          break
        }
        case Out.BodyChunked: {
          off = this.chunks.scan(buf, off, len)
          if (this.chunks.error) return owner.failed(this)
          if (this.chunks.done) from = this.responseDone(buf, from, off)
          break
        }
        case Out.BodyEof:
          off = len
          break
      }
      if (!owner.isCurrent(this)) return
    }
    if (from === 0 && off === len) client.writeClient(this, buf)
    else client.writeClient(this, buf.subarray(from, off))
  }

  /** One response fully read: forward it, then act on what comes next. Returns the new "forwarded up to". */
  private responseDone(buf: Buffer, from: number, off: number): number {
    this.client.writeClient(this, from === 0 && off === buf.length ? buf : buf.subarray(from, off))
    return this.owner.answered(this) ? off : buf.length
  }

  /** The answer in flight is done: the next response head comes next. */
  nextResponse(): Forwarded | undefined {
    this.state = Out.Head
    this.headSent = false
    return this.queue.shift()
  }

  /**
   * This connection closed before a byte of the next answer came: typically
   * a kept-alive connection the Live node closed just as a request went out.
   * When every request waiting on it is safe to send again and none was
   * sent twice yet, they go once more, in order, on a new connection to the
   * node their key picks now (the owner opens it). Returns it, or null when
   * that is not safe (the caller answers 502).
   */
  retry(): Upstream | null {
    if (this.headSent || this.pending !== null || this.state !== Out.Head) return null
    if (!this.queue.every((e) => e.replay !== null && !e.retried)) return null
    const core = this.owner.core
    const node = core.table?.pick(this.queue[0]!.key)
    if (node === undefined) return null
    const next = this.owner.open(node)
    next.socket.cork()
    for (const e of this.queue) {
      e.retried = true
      next.queue.push(e)
      next.socket.write(e.replay!, 'latin1')
    }
    next.socket.uncork()
    core.log.debug({ node: node.id, requests: next.queue.length }, 'Live connection closed before answering: safe requests sent again')
    this.queue.length = 0
    return next
  }
}
