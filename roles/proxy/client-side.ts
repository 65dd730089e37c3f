/**
 * The client side of one client connection: the socket to the client, and
 * the one state machine that reads it (client → Live, {@link In}). Request
 * heads are parsed just enough to answer here or route; a routed head is
 * re-written only to add the X-Forwarded-* lines, and goes with its body as
 * the bytes came (pipelined requests and a head with its body leave in one
 * corked write). Answers go back to the client in request order: a request
 * that must wait for an earlier answer (or for the 101 to an upgrade)
 * pauses the reading until the connection resumes it. Backpressure runs
 * both ways here: a full Live socket pauses the client, a full client
 * socket pauses the Live node.
 *
 * One state machine ({@link In}), hence over 400 lines: the quick answers,
 * the backpressure and the corking all act on its state mid-pass, and
 * splitting them off would pass that state back and forth per request.
 */
import type { Socket } from 'node:net'
import { TLSSocket, type SecureContext } from 'node:tls'
import { forwardedClient, parseProxyV2, plainAddress } from '../../lib/core/client-address.js'
import { wantsJson } from '../../lib/http/maintenance.js'
import { ChunkedScanner } from './framing.js'
import type { ProxyCore, RoutingNode } from './context.js'
import type { QuickReason } from './counters.js'
import { forwardedHeaderCount, headerValue, LIVE_MAX_HEADERS, methodServed, parseRequestHead, type RequestHead } from './request-head.js'
import { adopt, copyRead, hasBareLf, HEAD_PROBE, headAt, onread, readText } from './reads.js'
import type { ClientWriter, Upstream } from './upstream.js'

/** bytes[from..] (read as a Buffer or as text) as a Buffer to keep; null when nothing is left. */
function rest(bytes: Buffer | string, from: number): Buffer | null {
  if (from >= bytes.length) return null
  return typeof bytes === 'string' ? Buffer.from(bytes.slice(from), 'latin1') : bytes.subarray(from)
}

export const enum In {
  /** A trusted peer's first bytes on the plain port: a PROXY v2 header may come first (told by its signature). */
  ProxyHeader,
  Head,
  BodyLength,
  BodyChunked,
  /** Parsing paused: an earlier response must finish first (or the 101 to an upgrade). */
  Waiting,
  Tunnel,
  /** The client said close, or was answered with close: nothing more is read. */
  Done,
}

/** What the client side asks of its connection (./connection.ts). */
export interface ClientSideOwner {
  /** The connection to the Live node now, if any. */
  readonly up: Upstream | null
  /** The client connection has closed. */
  readonly closed: boolean
  /** The connection to `node` for the next request; null when it must wait (answers are owed on another node's). */
  upstreamFor(node: RoutingNode): Upstream | null
  /** Close the client once every answer owed went out, then with `owed` when given. */
  closeAfterAnswer(owed?: Buffer): void
  dropUpstream(): void
  destroy(): void
  clientClosed(): void
}

export class ClientSide implements ClientWriter {
  readonly socket: Socket
  /**
   * The client of this connection: the peer, or the source a trusted peer's
   * PROXY v2 header names. What X-Forwarded-For gets; requests from a
   * trusted peer may name their own client in X-Forwarded-For.
   */
  address: string
  /** The address this connection counts against --max-conns-per-address; null when not counted (a trusted balancer's own connection). */
  counted: string | null = null
  lastSeen: number
  /** Where the reading is; the connection moves it only through stop() and becomeTunnel(). */
  state: In
  private pending: Buffer | null = null
  private remaining = 0
  private readonly chunks = new ChunkedScanner(false)
  private overConnectionLimit = false
  /** The request being read said `Connection: close`: nothing after it is read. */
  private last = false
  /** The head about to be parsed again was already counted and rate-limited. */
  private replay = false
  /** The peer is in --trusted-proxies: its X-Forwarded-For is walked for the client. */
  private readonly peerTrusted: boolean
  /** No request head was read yet: the head deadline runs from the accept (TLS: the handshake included). */
  private fresh = true
  private xffBoth: string | null = null
  private xffOnly: string | null = null
  /** The client is paused because the Live node's socket is full. */
  private clientBlocked = false
  /** The Live node is paused because the client's socket is full. */
  private upBlocked = false
  /** Writes to the Live node are to be corked until the pass over the client's bytes ends; the socket corked. */
  private corkNext = false
  private corked: Socket | null = null
  /** What X-Forwarded-Proto says: the client reached us over TLS or not. */
  private readonly scheme: 'http' | 'https'

  /**
   * `accepted` comes from a server with `pauseOnConnect`, nothing read yet.
   * With `tls` (the TLS port) it is wrapped in a server TLSSocket here, so
   * the handshake counts as the start of the first head (TLS sockets read as
   * streams). `proxySource`: the client a trusted peer's PROXY v2 header
   * named, when it was read before the TLS handshake (./proxy-header.ts).
   */
  constructor(accepted: Socket, private readonly core: ProxyCore, private readonly owner: ClientSideOwner, tls: SecureContext | null, proxySource: string | null) {
    this.scheme = tls !== null ? 'https' : 'http'
    const socket = this.socket = tls !== null
      ? new TLSSocket(accepted, { isServer: true, secureContext: tls, ALPNProtocols: ['http/1.1'] })
      : adopt(accepted, onread((n) => this.onRead(n)))
    if (tls !== null) socket.on('data', (chunk: Buffer) => this.onData(chunk))
    this.address = plainAddress(socket.remoteAddress ?? '')
    this.lastSeen = core.tick
    this.peerTrusted = !core.trusted.none && core.trusted.has(this.address)
    this.state = this.peerTrusted && tls === null ? In.ProxyHeader : In.Head
    if (proxySource !== null) this.address = proxySource
    // A trusted balancer's connection carries many clients: counted only once a PROXY header names its one client.
    if (!this.peerTrusted || proxySource !== null) this.count()
    socket.setNoDelay(true)
    socket.on('error', () => {})
    socket.on('close', () => owner.clientClosed())
    socket.on('drain', () => this.onDrain())
  }

  private count(): void {
    this.counted = this.address
    this.overConnectionLimit = !this.core.limits.connect(this.address)
  }

  /** Between two requests: nothing half-read (answers may still be owed). */
  get betweenRequests(): boolean {
    return (this.state === In.Head || this.state === In.ProxyHeader) && this.pending === null
  }

  /** A head is due: one is half-read, or none came yet since the connection was accepted. */
  get waitingForHead(): boolean {
    return (this.state === In.Head || this.state === In.ProxyHeader) && (this.pending !== null || this.fresh)
  }

  private owes(): boolean {
    const up = this.owner.up
    return up !== null && up.queue.length > 0
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
        this.state = In.Head
        this.refuse(this.core.answers.badRequest)
        return null
      case 'absent':
        this.state = In.Head
        return buf
      case 'header':
        this.state = In.Head
        if (header.source !== null) {
          this.address = header.source
          this.count()
        }
        return header.length < buf.length ? buf.subarray(header.length) : null
    }
  }

  /**
   * A read from the client. The common one, exactly one request head with
   * no answer owed before it, is handled as the text it is read as: no copy
   * of the bytes. Anything else goes through onData as a Buffer.
   */
  private onRead(n: number): void {
    if (n <= HEAD_PROBE && this.state === In.Head && this.pending === null && !this.owes()) {
      const text = readText(n)
      if (text.indexOf('\r\n\r\n') === n - 4 && n <= this.core.maxHeaderSize) {
        this.lastSeen = this.core.tick
        this.onHead(text, 0, n, text)
        return this.uncorkUp()
      }
    }
    this.onData(copyRead(n))
  }

  private onData(data: Buffer): void {
    this.lastSeen = this.core.tick
    const chunk = this.state === In.ProxyHeader ? this.takeProxyHeader(data) : data
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
        case In.ProxyHeader: // never here: onData takes the PROXY header off first
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

    // Responses come back in request order: a request for another node waits until this one has answered.
    const up = this.owner.upstreamFor(node)
    if (up === null) return this.wait(bytes, start)
    const sent = this.writeHead(text, head)
    const safe = !hasBody && !head.upgrade && (head.method === 'GET' || head.method === 'HEAD' || head.method === 'OPTIONS')
    up.queue.push({ head: head.method === 'HEAD', upgrade: head.upgrade, websocket: head.websocket, replay: safe ? sent : null, key, retried: false, start: performance.now(), status: 0 })
    core.counters.forwarded()
    if (head.close) {
      this.last = true
      this.owner.closeAfterAnswer()
    }
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
    const up = this.owner.up
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

  /** Writes to the client; a string is bytes read as latin1 (one byte per char). */
  writeClient(up: Upstream, chunk: Buffer | string): void {
    if (chunk.length === 0) return
    if (!this.socket.write(chunk, 'latin1') && !this.upBlocked) {
      this.upBlocked = true
      up.socket.pause()
    }
  }

  /** The Live node's socket took what was written: the client is read again, unless the reading is paused or over. */
  upstreamDrained(): void {
    if (this.clientBlocked) {
      this.clientBlocked = false
      if (this.state !== In.Waiting && this.state !== In.Done) this.socket.resume()
    }
  }

  private onDrain(): void {
    if (this.upBlocked) {
      this.upBlocked = false
      this.owner.up?.socket.resume()
    }
  }

  /** Writes a quick answer once nothing else is owed before it; -1 stops parsing (waiting or closed). */
  private answerLocally(bytes: Buffer | string, start: number, headEnd: number, answer: Buffer, close: boolean, reason?: QuickReason): number {
    if (this.owes()) return this.wait(bytes, start)
    // Counted here, past the wait: a head parsed again after waiting is one answer.
    this.core.counters.quickAnswer(answer, reason)
    if (close) {
      this.end(answer)
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
    // Answers owed before this one come first.
    if (this.owes()) this.owner.closeAfterAnswer(answer)
    else this.end(answer)
    return -1
  }

  /**
   * A request body that cannot be read (a bad chunk size or line): its
   * request never completes at the Live node, so that connection is dropped
   * and the client answered 400, unless an answer is already under way or
   * owed before it (then the client is cut).
   */
  private refuseBody(): void {
    const up = this.owner.up
    if (up !== null && (up.headSent || up.queue.length > 1)) return this.owner.destroy()
    this.owner.dropUpstream()
    this.refuse(this.core.answers.badRequest)
  }

  /** Ends the client connection after `last`; reading on lets the close complete. */
  end(last?: Buffer): void {
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
  resume(): void {
    if (this.state !== In.Waiting || this.owner.closed) return
    this.state = In.Head
    const pending = this.pending
    this.pending = null
    if (!this.clientBlocked) this.socket.resume()
    if (pending !== null) {
      this.consume(pending, 0)
      this.uncorkUp()
    }
  }

  /** Nothing more is read (the connection is ending). */
  stop(): void {
    this.state = In.Done
  }

  /** A 101 came: what the client sent after the upgrade request goes up, and from now on everything it sends. */
  becomeTunnel(): void {
    this.state = In.Tunnel
    const pending = this.pending
    this.pending = null
    if (pending !== null) this.writeUp(pending)
    if (!this.clientBlocked) this.socket.resume()
  }
}
