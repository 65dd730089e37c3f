/**
 * One client connection through the proxy: one state machine per direction.
 *
 * Client → Live: request heads are parsed (just enough to route and frame),
 * re-written only to add the X-Forwarded-* lines, and forwarded with their
 * bodies as the bytes came. Live → client: response heads are parsed only to
 * find where each response ends; the bytes are forwarded untouched (a head
 * is re-written only to say `Connection: close` when the proxy is closing).
 *
 * Each client connection has its own keep-alive connection to the Live node
 * its requests route to, so responses come back in request order with no
 * pool and no re-framing. A request that routes to another node waits until
 * the current node has answered everything before it; after a 101 both
 * sockets are piped as a tunnel (WebSocket).
 */
import { connect, type Socket } from 'node:net'
import { TLSSocket, type SecureContext } from 'node:tls'
import { forwardedClient, parseProxyV2, plainAddress } from '../../lib/core/client-address.js'
import { ChunkedScanner, WsFrameTracker, wsCloseFrame } from './framing.js'
import { parseResponseHead, withConnectionClose, type ResponseHead } from './answers.js'
import type { ProxyCore, RoutingNode } from './context.js'
import type { QuickReason } from './counters.js'
import { wantsJson } from '../../lib/http/maintenance.js'
import { forwardedHeaderCount, headerValue, LIVE_MAX_HEADERS, methodServed, parseRequestHead, type RequestHead } from './request-head.js'
import { adopt, copyRead, hasBareLf, HEAD_PROBE, headAt, onread, readText } from './reads.js'

/** bytes[from..] (read as a Buffer or as text) as a Buffer to keep; null when nothing is left. */
function rest(bytes: Buffer | string, from: number): Buffer | null {
  if (from >= bytes.length) return null
  return typeof bytes === 'string' ? Buffer.from(bytes.slice(from), 'latin1') : bytes.subarray(from)
}

const LAST_CHUNK = Buffer.from('0\r\n\r\n', 'latin1')
/** A WebSocket being closed for a node that left gets this long to reach a frame boundary. */
const WS_CLOSE_GRACE_MS = 1000
/** Largest response head accepted from a Live node. */
const MAX_RESPONSE_HEAD = 64 * 1024

const enum In {
  Head,
  BodyLength,
  BodyChunked,
  /** Parsing paused: an earlier response must finish first (or the 101 to an upgrade). */
  Waiting,
  Tunnel,
  /** The client said close, or was answered with close: nothing more is read. */
  Done,
}

const enum Out {
  Head,
  BodyLength,
  BodyChunked,
  /** No framing: the body ends when the Live node closes. */
  BodyEof,
  Tunnel,
}

interface Expect {
  readonly head: boolean
  readonly upgrade: boolean
  readonly websocket: boolean
  /**
   * The request as forwarded, kept when sending it again is safe (GET, HEAD
   * or OPTIONS without a body): see {@link ClientConnection.retry}.
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
function bodyLength(expect: Expect, res: ResponseHead): number {
  return expect.head || res.status === 204 || res.status === 304 ? 0 : res.contentLength
}

/** The connection to one Live node, owned by one client connection. */
class Upstream {
  readonly socket: Socket
  state = Out.Head
  pending: Buffer | null = null
  remaining = 0
  readonly chunks = new ChunkedScanner()
  readonly queue: Expect[] = []
  /** The head of the response now streaming has been forwarded. */
  headSent = false
  ws: WsFrameTracker | null = null
  closed = false

  constructor(readonly node: RoutingNode, onRead: (n: number) => void) {
    this.socket = connect({ host: node.address, port: node.port, noDelay: true, onread: onread(onRead) })
  }
}

export class ClientConnection {
  /**
   * The client of this connection: the peer, or the source a trusted peer's
   * PROXY v2 header names. What X-Forwarded-For gets; requests from a
   * trusted peer may name their own client in X-Forwarded-For.
   */
  address: string
  /** The address this connection counts against --max-conns-per-address; null when not counted (a trusted balancer's own connection). */
  counted: string | null = null
  lastSeen: number
  private state = In.Head
  private pending: Buffer | null = null
  private remaining = 0
  private readonly chunks = new ChunkedScanner(false)
  private up: Upstream | null = null
  /** Close the client once every answer it is owed went out. */
  private closeAfter = false
  private overConnectionLimit = false
  /** The request being read said `Connection: close`: nothing after it is read. */
  private last = false
  /** The head about to be parsed again was already counted and rate-limited. */
  private replay = false
  private isTunnel = false
  private tunnelKey: string | null = null
  private goingAway = false
  private goingAwayReason = 'live node left: reconnect'
  private closed = false
  /** The peer is in --trusted-proxies: its X-Forwarded-For is walked for the client. */
  private readonly peerTrusted: boolean
  /** A trusted peer's first bytes, on the plain port, may be a PROXY v2 header (told by its signature). */
  private proxyHeader: boolean
  /** No request head was read yet: the head deadline runs from the accept (TLS: the handshake included). */
  private fresh = true
  /** A quick answer owed after the responses still in flight (then the connection closes). */
  private owedAnswer: Buffer | null = null
  private xffBoth: string | null = null
  private xffOnly: string | null = null
  private clientBlocked = false
  /** Writes to the Live node are to be corked until the pass over the client's bytes ends; the socket corked. */
  private corkNext = false
  private corked: Socket | null = null
  private upBlocked = false

  /** What X-Forwarded-Proto says: the client reached us over TLS or not. */
  private readonly scheme: 'http' | 'https'

  readonly socket: Socket

  /**
   * `accepted` comes from a server with `pauseOnConnect`, nothing read yet.
   * With `tls` (the TLS port) it is wrapped in a server TLSSocket here, so
   * the handshake counts as the start of the first head (TLS sockets read as
   * streams). `proxySource`: the client a trusted peer's PROXY v2 header
   * named, when it was read before the TLS handshake (./proxy-header.ts).
   */
  constructor(
    accepted: Socket,
    private readonly core: ProxyCore,
    /** Called once, when the client connection has closed. */
    private readonly onClosed: (conn: ClientConnection) => void,
    tls: SecureContext | null,
    proxySource: string | null = null,
  ) {
    this.scheme = tls !== null ? 'https' : 'http'
    const socket = this.socket = tls !== null
      ? new TLSSocket(accepted, { isServer: true, secureContext: tls, ALPNProtocols: ['http/1.1'] })
      : adopt(accepted, onread((n) => this.onClientRead(n)))
    if (tls !== null) socket.on('data', (chunk: Buffer) => this.onClientData(chunk))
    this.address = plainAddress(socket.remoteAddress ?? '')
    this.lastSeen = core.tick
    this.peerTrusted = !core.trusted.none && core.trusted.has(this.address)
    this.proxyHeader = this.peerTrusted && tls === null
    if (proxySource !== null) this.address = proxySource
    // A trusted balancer's connection carries many clients: counted only once a PROXY header names its one client.
    if (!this.peerTrusted || proxySource !== null) this.count()
    socket.setNoDelay(true)
    socket.on('error', () => {})
    socket.on('close', () => this.onClientClose())
    socket.on('drain', () => this.onClientDrain())
  }

  private count(): void {
    this.counted = this.address
    this.overConnectionLimit = !this.core.limits.connect(this.address)
  }

  /**
   * The first bytes from a trusted peer on the plain port: a PROXY v2 header
   * (AWS NLB, HAProxy `send-proxy-v2`) names the connection's client, and is
   * taken off; anything else is the connection's own bytes. Returns what is
   * left to read, or null when nothing is (yet).
   */
  private takeProxyHeader(chunk: Buffer): Buffer | null {
    const buf = this.pending === null ? chunk : Buffer.concat([this.pending, chunk])
    this.pending = null
    const header = parseProxyV2(buf)
    switch (header.kind) {
      case 'incomplete':
        this.pending = buf
        return null
      case 'invalid':
        this.proxyHeader = false
        this.refuse(this.core.answers.badRequest)
        return null
      case 'absent':
        this.proxyHeader = false
        return buf
      case 'header':
        this.proxyHeader = false
        if (header.source !== null) {
          this.address = header.source
          this.count()
        }
        return header.length < buf.length ? buf.subarray(header.length) : null
    }
  }

  /** Nothing is owed to the client and nothing half-read: closing now loses nothing. */
  get idle(): boolean {
    return (this.state === In.Head && this.pending === null) && (this.up === null || this.up.queue.length === 0)
  }

  get tunnel(): boolean {
    return this.state === In.Tunnel
  }

  /** A head is due: one is half-read, or none came yet since the connection was accepted. */
  get waitingForHead(): boolean {
    return this.state === In.Head && (this.pending !== null || this.fresh)
  }

  /** The Live node this connection talks to, if any. */
  get nodeId(): string | undefined {
    return this.up?.node.id
  }

  /**
   * The routing key of a long-lived exchange (a WebSocket tunnel, or a
   * streaming response such as SSE: its head is out and it is the only
   * answer owed); null for anything that ends soon by itself.
   */
  get longLivedKey(): string | null {
    const up = this.up
    if (up === null || this.closed || this.goingAway) return null
    if (up.state === Out.Tunnel) return this.tunnelKey
    return up.headSent && up.queue.length === 1 && (up.state === Out.BodyChunked || up.state === Out.BodyEof) ? up.queue[0]!.key : null
  }

  // ---- client → Live ----

  /**
   * A read from the client. The common one, exactly one request head with
   * no answer owed before it, is handled as the text it is read as: no copy
   * of the bytes. Anything else goes through onClientData as a Buffer.
   */
  private onClientRead(n: number): void {
    if (this.proxyHeader) return this.onClientData(copyRead(n))
    if (n <= HEAD_PROBE && this.state === In.Head && this.pending === null && (this.up === null || this.up.queue.length === 0)) {
      const text = readText(n)
      if (text.indexOf('\r\n\r\n') === n - 4 && n <= this.core.maxHeaderSize) {
        this.lastSeen = this.core.tick
        this.onHead(text, 0, n, text)
        return this.uncorkUp()
      }
    }
    this.onClientData(copyRead(n))
  }

  private onClientData(data: Buffer): void {
    this.lastSeen = this.core.tick
    const chunk = this.proxyHeader ? this.takeProxyHeader(data) : data
    if (chunk === null) return
    switch (this.state) {
      case In.Tunnel:
        return this.writeUp(chunk)
      case In.Waiting:
        this.pending = this.pending === null ? chunk : Buffer.concat([this.pending, chunk])
        return
      case In.Done:
        return
      default: {
        let buf = chunk
        if (this.pending !== null) {
          buf = Buffer.concat([this.pending, chunk])
          this.pending = null
        }
        this.consume(buf, 0)
        this.uncorkUp()
      }
    }
  }

  private consume(buf: Buffer, start: number): void {
    let off = start
    const len = buf.length
    while (off < len) {
      switch (this.state) {
        case In.Head: {
          const text = headAt(buf, off)
          if (text === null) {
            if (len - off > this.core.maxHeaderSize) return void this.refuse(this.core.answers.tooLarge)
            // A bare LF: the head would never end, only time out.
            if (hasBareLf(buf, off)) return void this.refuse(this.core.answers.badRequest)
            this.pending = off === 0 ? buf : buf.subarray(off)
            return
          }
          if (text.length > this.core.maxHeaderSize) return void this.refuse(this.core.answers.tooLarge)
          const headEnd = off + text.length
          // A head with its body, or pipelined requests, leave in one write: corked when more bytes follow the head.
          this.corkNext = headEnd < len
          off = this.onHead(buf, off, headEnd, text)
          if (off < 0) return
          break
        }
        case In.BodyLength: {
          const n = Math.min(this.remaining, len - off)
          this.writeUp(off === 0 && n === len ? buf : buf.subarray(off, off + n))
          off += n
          this.remaining -= n
          if (this.remaining === 0) this.endOfRequest()
          break
        }
        case In.BodyChunked: {
          const end = this.chunks.scan(buf, off, len)
          if (this.chunks.error) return this.refuseBody()
          this.writeUp(buf.subarray(off, end))
          off = end
          if (this.chunks.done) this.endOfRequest()
          break
        }
        case In.Waiting:
          this.pending = buf.subarray(off)
          return
        case In.Tunnel:
          return this.writeUp(buf.subarray(off))
        case In.Done:
          return
      }
    }
  }

  /**
   * Handles one request head, `text` = bytes[start, headEnd), where `bytes`
   * is what was read, as a Buffer or as its text; returns where the body
   * starts, or -1 when parsing stops here.
   */
  private onHead(bytes: Buffer | string, start: number, headEnd: number, text: string): number {
    const core = this.core
    this.fresh = false
    const head = parseRequestHead(text, core.headSpec)
    const replay = this.replay
    this.replay = false
    if (head === null) return this.refuse(core.answers.badRequest)
    const hasBody = head.contentLength > 0 || head.chunked
    // Quick answers: never reach a Live node. In order behind any answer still owed.
    // Health checks come first: a load balancer's checks are never limited.
    if ((head.method === 'GET' || head.method === 'HEAD') && core.isHealthPath(head.target)) {
      return this.answerLocally(bytes, start, headEnd, core.healthAnswer(head.method === 'HEAD'), head.close || hasBody || core.draining)
    }
    // From a trusted balancer, X-Forwarded-For names the client (rightmost untrusted): for the rate limit and the `ip` key.
    const client = this.peerTrusted ? forwardedClient(this.address, head.xff, core.trusted) : this.address
    if (!replay) {
      core.counters.requestRead()
      if (this.overConnectionLimit) return this.refuse(core.answers.tooManyConnections)
      if (!core.limits.request(client)) return this.refuse(core.answers.tooManyRequests)
    }
    // What a Live node would leave unanswered is answered here (checked against a real one: tests/roles/proxy/live-quick-answers.test.ts).
    if (!methodServed(head.method)) return this.refuse(core.answers.notImplemented)
    if (forwardedHeaderCount(head) > LIVE_MAX_HEADERS) return this.refuse(core.answers.tooManyHeaders)
    if (head.websocket && head.wsVersion !== '13') return this.refuse(core.answers.wsVersion)
    if (!core.servesHost(head.host)) return this.answerLocally(bytes, start, headEnd, core.answers.unknownHost, head.close || hasBody)
    // Planned maintenance (lib/http/maintenance.ts): an upgrade gets the 503 too, and the connection closes after it.
    if (core.maintenance !== null) {
      const m = core.maintenance
      const now = Date.now()
      if (m.applies(head.host, client, now)) {
        const close = head.close || hasBody || head.upgrade
        return this.answerLocally(bytes, start, headEnd, m.response(wantsJson(headerValue(text, 'accept')), head.method === 'HEAD', close, now), close, 'maintenance')
      }
    }
    if (this.scheme === 'http') {
      const redirect = core.redirect(head.target)
      if (redirect !== null) return this.answerLocally(bytes, start, headEnd, redirect, head.close || hasBody, 'redirect')
    }
    const table = core.table
    if (table === null) return this.answerLocally(bytes, start, headEnd, core.answers.noTable, true)
    const key = core.routeKeys.key(head, client)
    const node = table.pick(key)
    if (node === undefined) return this.answerLocally(bytes, start, headEnd, core.answers.noNode, true)

    let up = this.up
    if (up !== null && (up.node !== node || up.closed)) {
      // Responses come back in request order: the next node waits until this one has answered.
      if (up.queue.length > 0) return this.wait(bytes, start)
      this.dropUpstream()
      up = null
    }
    if (up === null) up = this.openUpstream(node)
    const sent = this.writeHead(text, head)
    const safe = !hasBody && !head.upgrade && (head.method === 'GET' || head.method === 'HEAD' || head.method === 'OPTIONS')
    up.queue.push({ head: head.method === 'HEAD', upgrade: head.upgrade, websocket: head.websocket, replay: safe ? sent : null, key, retried: false, start: performance.now(), status: 0 })
    core.counters.forwarded()
    if (head.close) this.last = this.closeAfter = true
    if (head.upgrade) {
      // Until the answer: a 101 makes the rest tunnel bytes, anything else the next request.
      this.state = In.Waiting
      this.pending = rest(bytes, headEnd)
      this.socket.pause()
      return -1
    }
    if (head.chunked) {
      this.state = In.BodyChunked
      this.chunks.reset()
    } else if (head.contentLength > 0) {
      this.state = In.BodyLength
      this.remaining = head.contentLength
    } else {
      this.endOfRequest()
      if (this.last) return -1
    }
    return headEnd
  }

  /** Forwards a request head with X-Forwarded-For / -Proto added (an existing X-Forwarded-For is extended); returns what went. */
  private writeHead(text: string, head: RequestHead): string {
    let out: string
    if (head.xffStart < 0) {
      const added = head.hasProto ? (this.xffOnly ??= `X-Forwarded-For: ${this.address}\r\n`) : (this.xffBoth ??= `X-Forwarded-For: ${this.address}\r\nX-Forwarded-Proto: ${this.scheme}\r\n`)
      out = `${text.slice(0, -2)}${added}\r\n`
    } else {
      const proto = head.hasProto ? '' : `X-Forwarded-Proto: ${this.scheme}\r\n`
      out = `${text.slice(0, head.xffStart)}X-Forwarded-For: ${head.xff}, ${this.address}\r\n${text.slice(head.xffEnd, -2)}${proto}\r\n`
    }
    this.writeUp(out)
    return out
  }

  /** Ends a pass over the client's bytes: what was corked for it goes out. */
  private uncorkUp(): void {
    this.corkNext = false
    if (this.corked === null) return
    this.corked.uncork()
    this.corked = null
  }

  private endOfRequest(): void {
    this.state = this.last ? In.Done : In.Head
  }

  /** Writes to the Live node; a string is a head, written as latin1 (one byte per char). */
  private writeUp(chunk: Buffer | string): void {
    const up = this.up
    if (up === null || chunk.length === 0) return
    if (this.corkNext && this.corked === null) {
      this.corked = up.socket
      this.corked.cork()
    }
    if (!up.socket.write(chunk, 'latin1') && !this.clientBlocked) {
      this.clientBlocked = true
      this.socket.pause()
    }
  }

  /** Writes a quick answer once nothing else is owed before it; -1 stops parsing (waiting or closed). */
  private answerLocally(bytes: Buffer | string, start: number, headEnd: number, answer: Buffer, close: boolean, reason?: QuickReason): number {
    if (this.up !== null && this.up.queue.length > 0) return this.wait(bytes, start)
    // Counted here, past the wait: a head parsed again after waiting is one answer.
    this.core.counters.quickAnswer(answer, reason)
    if (close) {
      this.endClient(answer)
      return -1
    }
    this.socket.write(answer)
    return headEnd
  }

  /** A request that cannot be read on: answer and close (never forwarded); returns -1 (parsing stops). */
  private refuse(answer: Buffer): -1 {
    this.state = In.Done
    this.pending = null
    this.core.counters.quickAnswer(answer)
    if (this.up !== null && this.up.queue.length > 0) {
      // Answers owed before this one come first.
      this.closeAfter = true
      this.owedAnswer = answer
      return -1
    }
    this.endClient(answer)
    return -1
  }

  /**
   * A request body that cannot be read (a bad chunk size or line): its
   * request never completes at the Live node, so that connection is dropped
   * and the client answered 400, unless an answer is already under way or
   * owed before it (then the client is cut).
   */
  private refuseBody(): void {
    const up = this.up
    if (up !== null && (up.headSent || up.queue.length > 1)) return this.destroy()
    this.dropUpstream()
    this.refuse(this.core.answers.badRequest)
  }

  /** Ends the client connection after `last`; reading on lets the close complete. */
  private endClient(last?: Buffer): void {
    this.state = In.Done
    this.socket.resume()
    if (last === undefined) this.socket.end()
    else this.socket.end(last)
  }

  private wait(bytes: Buffer | string, from: number): number {
    this.state = In.Waiting
    this.pending = rest(bytes, from)
    this.replay = true
    this.socket.pause()
    return -1
  }

  /** Everything owed was answered: read on from where parsing stopped. */
  private resume(): void {
    if (this.state !== In.Waiting || this.closed) return
    this.state = In.Head
    const pending = this.pending
    this.pending = null
    if (!this.clientBlocked) this.socket.resume()
    if (pending !== null) {
      this.consume(pending, 0)
      this.uncorkUp()
    }
  }

  private onClientDrain(): void {
    if (this.upBlocked) {
      this.upBlocked = false
      this.up?.socket.resume()
    }
  }

  // ---- Live → client ----

  private openUpstream(node: RoutingNode): Upstream {
    const up: Upstream = new Upstream(node, (n) => this.onUpRead(up, n))
    this.up = up
    const counters = this.core.counters
    counters.upstreamOpening()
    up.socket.on('error', () => {})
    up.socket.on('close', () => {
      counters.upstreamClosed()
      this.onUpClose(up)
    })
    up.socket.on('drain', () => {
      if (this.clientBlocked) {
        this.clientBlocked = false
        if (this.state !== In.Waiting && this.state !== In.Done) this.socket.resume()
      }
    })
    return up
  }

  /** Writes to the client; a string is bytes read as latin1 (one byte per char). */
  private writeClient(up: Upstream, chunk: Buffer | string): void {
    if (chunk.length === 0) return
    if (!this.socket.write(chunk, 'latin1') && !this.upBlocked) {
      this.upBlocked = true
      up.socket.pause()
    }
  }

  /**
   * A read from the Live node. The common one, exactly one whole response
   * whose length its head gives, is forwarded as the text it is read as: no
   * copy of the bytes. Anything else goes through onUpData as a Buffer.
   */
  private onUpRead(up: Upstream, n: number): void {
    if (n <= HEAD_PROBE && up.state === Out.Head && up.pending === null && up === this.up && !this.closed && !this.closeAfter && !this.core.draining) {
      const text = readText(n)
      if (this.wholeResponse(up, text)) return
    }
    this.onUpData(up, copyRead(n))
  }

  /** Forwards `text` and returns true when it is exactly one final response, framed by its length, the Live node keeping the connection open. */
  private wholeResponse(up: Upstream, text: string): boolean {
    const expect = up.queue[0]
    const i = text.indexOf('\r\n\r\n')
    if (expect === undefined || i < 0) return false
    const res = parseResponseHead(text, i + 4)
    if (res === null || res.close || res.status < 200 || res.status === 101) return false
    const length = bodyLength(expect, res)
    if (length < 0 || i + 4 + length !== text.length) return false
    expect.status = res.status
    this.lastSeen = this.core.tick
    this.writeClient(up, text)
    this.answered(up)
    return true
  }

  private onUpData(up: Upstream, chunk: Buffer): void {
    if (up !== this.up || this.closed) return void up.socket.destroy()
    this.lastSeen = this.core.tick
    if (up.state === Out.Tunnel) {
      if (up.ws !== null) {
        if (this.goingAway) return this.wsGoAwayFrom(up, chunk)
        up.ws.track(chunk, 0, chunk.length)
      }
      return this.writeClient(up, chunk)
    }
    let buf = chunk
    if (up.pending !== null) {
      buf = Buffer.concat([up.pending, chunk])
      up.pending = null
    }
    const len = buf.length
    let off = 0
    let from = 0 // first byte not yet forwarded
    while (off < len) {
      switch (up.state) {
        case Out.Head: {
          const text = headAt(buf, off)
          if (text === null) {
            if (len - off > MAX_RESPONSE_HEAD) return this.upstreamFailed(up)
            this.writeClient(up, buf.subarray(from, off))
            up.pending = buf.subarray(off)
            return
          }
          const headEnd = off + text.length
          const res = parseResponseHead(text)
          const expect = up.queue[0]
          if (res === null || expect === undefined) return this.upstreamFailed(up)
          if (res.status < 200 && res.status !== 101) {
            off = headEnd // informational: forwarded as is, the final answer follows
            break
          }
          if (res.status === 101 && !expect.upgrade) return this.upstreamFailed(up)
          if (res.status === 101) {
            this.writeClient(up, buf.subarray(from, len))
            return this.becomeTunnel(up, expect, buf, headEnd)
          }
          expect.status = res.status
          if (res.close) this.closeAfter = true
          if (this.closeAfter || this.core.draining) {
            this.writeClient(up, buf.subarray(from, off))
            this.writeClient(up, withConnectionClose(text))
            from = headEnd
            this.closeAfter = true
          }
          up.headSent = true
          off = headEnd
          const length = bodyLength(expect, res)
          if (length === 0) {
            from = this.responseDone(up, buf, from, off)
          } else if (res.chunked) {
            up.state = Out.BodyChunked
            up.chunks.reset()
          } else if (length > 0) {
            up.state = Out.BodyLength
            up.remaining = length
          } else {
            up.state = Out.BodyEof
            this.closeAfter = true
          }
          break
        }
        case Out.BodyLength: {
          const n = Math.min(up.remaining, len - off)
          off += n
          up.remaining -= n
          if (up.remaining === 0) from = this.responseDone(up, buf, from, off)
          break
        }
        case Out.BodyChunked: {
          off = up.chunks.scan(buf, off, len)
          if (up.chunks.error) return this.upstreamFailed(up)
          if (up.chunks.done) from = this.responseDone(up, buf, from, off)
          break
        }
        case Out.BodyEof:
          off = len
          break
      }
      if (this.closed || up !== this.up) return
    }
    if (from === 0 && off === len) this.writeClient(up, buf)
    else this.writeClient(up, buf.subarray(from, off))
  }

  /** One response fully read: forward it, then act on what comes next. Returns the new "forwarded up to". */
  private responseDone(up: Upstream, buf: Buffer, from: number, off: number): number {
    this.writeClient(up, from === 0 && off === buf.length ? buf : buf.subarray(from, off))
    return this.answered(up) ? off : buf.length
  }

  /** One response fully forwarded: the next can come; false when the client is being closed instead. */
  private answered(up: Upstream): boolean {
    this.measured(up.queue.shift())
    this.core.counters.settled()
    up.state = Out.Head
    up.headSent = false
    if (up.queue.length > 0) return true
    // The node left the table while this answer was owed: the answer came, so the next request routes afresh.
    if (this.goingAway && up === this.up) {
      this.goingAway = false
      this.dropUpstream()
    }
    if (this.closeAfter) {
      this.closeClient()
      return false
    }
    if (this.state === In.Waiting) queueMicrotask(() => this.resume())
    return true
  }

  /** A forwarded request fully answered: into the latency histogram. */
  private measured(e: Expect | undefined): void {
    if (e !== undefined) this.core.counters.latency.record(e.status, performance.now() - e.start)
  }

  private becomeTunnel(up: Upstream, expect: Expect, buf: Buffer, headEnd: number): void {
    up.queue.shift()
    this.core.counters.tunnelOpened()
    up.state = Out.Tunnel
    this.state = In.Tunnel
    this.isTunnel = true
    this.tunnelKey = expect.key
    if (expect.websocket) {
      up.ws = new WsFrameTracker()
      up.ws.track(buf, headEnd, buf.length)
    }
    const pending = this.pending
    this.pending = null
    if (pending !== null) this.writeUp(pending)
    if (!this.clientBlocked) this.socket.resume()
    if (this.goingAway) this.goAway()
  }

  private onUpClose(up: Upstream): void {
    up.closed = true
    if (up !== this.up || this.closed) return
    if (up.state === Out.BodyEof) {
      // The body ran until the close: the response is complete.
      this.measured(up.queue.shift())
      this.core.counters.settled()
      return this.closeClient()
    }
    if (up.state === Out.Tunnel) return this.closeClient()
    if (up.queue.length === 0) {
      // An idle keep-alive connection closed by the Live node: the next request opens another.
      this.up = null
      if (this.state === In.Waiting) queueMicrotask(() => this.resume())
      return
    }
    if (!this.retry(up)) this.upstreamFailed(up)
  }

  /**
   * The Live node closed the connection before a byte of the next answer
   * came: typically a kept-alive connection it closed just as a request went
   * out. When every request waiting on it is safe to send again and none was
   * sent twice yet, they go once more, in order, on a new connection to the
   * node their key picks now. Anything else is answered 502.
   */
  private retry(up: Upstream): boolean {
    if (up.headSent || up.pending !== null || up.state !== Out.Head) return false
    if (!up.queue.every((e) => e.replay !== null && !e.retried)) return false
    const node = this.core.table?.pick(up.queue[0]!.key)
    if (node === undefined) return false
    const next = this.openUpstream(node)
    next.socket.cork()
    for (const e of up.queue) {
      e.retried = true
      next.queue.push(e)
      next.socket.write(e.replay!, 'latin1')
    }
    next.socket.uncork()
    this.core.log.debug({ node: node.id, requests: next.queue.length }, 'Live connection closed before answering: safe requests sent again')
    up.queue.length = 0
    return true
  }

  /** The Live node failed mid-exchange: a 502 if the client has heard nothing of this answer yet, else a cut. */
  private upstreamFailed(up: Upstream): void {
    this.core.counters.upstreamFailures++
    const answered = up.headSent
    this.core.counters.settled(up.queue.length)
    up.queue.length = 0
    up.closed = true
    up.socket.destroy()
    this.up = null
    if (answered) return this.destroy()
    const answer = this.goingAway ? this.core.answers.nodeGone : this.core.answers.upstreamFailed
    this.core.counters.quickAnswer(answer)
    this.endClient(answer)
  }

  // ---- closing ----

  private dropUpstream(): void {
    const up = this.up
    if (up === null) return
    this.core.counters.settled(up.queue.length)
    up.queue.length = 0
    up.closed = true
    up.socket.destroy()
    this.up = null
  }

  private closeClient(): void {
    this.dropUpstream()
    if (!this.closed) this.endClient(this.owedAnswer ?? undefined)
  }

  destroy(): void {
    this.state = In.Done
    this.dropUpstream()
    this.socket.destroy()
  }

  private onClientClose(): void {
    if (this.closed) return
    this.closed = true
    if (this.isTunnel) this.core.counters.tunnelClosed()
    this.dropUpstream()
    this.onClosed(this)
  }

  /**
   * Stop: the next answer says `Connection: close` and the connection closes
   * after it. An idle connection is not closed here: its client may be
   * sending its next request right now, and a close would reset it. The core
   * closes what is still idle once the drain has gone quiet.
   */
  drain(): void {
    this.closeAfter = true
    if (this.state === In.Tunnel) this.goAway()
  }

  /** Closes the connection if nothing is owed and nothing half-read. */
  closeIfIdle(): void {
    if (this.idle) this.closeClient()
  }

  /**
   * The Live node this connection talks to left the routing table. An idle
   * connection just forgets it (its next request routes afresh); a request
   * already sent waits for its answer (a drained node still answers; a dead
   * one closes the connection, and then a safe request is sent again to the
   * key's new owner and anything else gets a 503 telling the client to
   * retry), and the connection forgets the node after it; a WebSocket gets a
   * close frame 1012 (service restart) between two frames; a streaming
   * chunked response (SSE) is ended cleanly between two chunks; anything
   * else is cut. Clients reconnect through the proxy to the key's new owner.
   * `reason` is the close frame's text.
   */
  goAway(reason = 'live node left: reconnect'): void {
    const up = this.up
    if (up === null) return
    this.goingAway = true
    this.goingAwayReason = reason
    if (up.queue.length === 0 && up.state !== Out.Tunnel) return this.dropUpstream()
    if (up.state === Out.Tunnel) {
      if (up.ws === null) return this.destroy()
      if (up.ws.atBoundary) return this.wsClose()
      setTimeout(() => this.destroy(), WS_CLOSE_GRACE_MS).unref()
      return
    }
    if (!up.headSent) return
    if (up.state === Out.BodyChunked && up.chunks.atChunkBoundary) {
      this.socket.write(LAST_CHUNK)
      return this.closeClient()
    }
    this.destroy()
  }

  private wsGoAwayFrom(up: Upstream, chunk: Buffer): void {
    // Forward only up to the end of the frame in flight, then close between frames.
    const ws = up.ws!
    let i = 0
    while (i < chunk.length && !ws.atBoundary) {
      ws.track(chunk, i, i + 1)
      i++
    }
    this.writeClient(up, chunk.subarray(0, i))
    if (ws.atBoundary) this.wsClose()
  }

  private wsClose(): void {
    this.state = In.Done
    this.socket.write(wsCloseFrame(1012, this.goingAwayReason))
    this.closeClient()
  }
}
