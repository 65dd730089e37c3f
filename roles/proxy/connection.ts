/**
 * One client connection through the proxy, as a coordinator of its parts:
 * the client side (./client-side.ts: reading requests, answering, corking
 * and backpressure), the upstream side (./upstream.ts: the connection to
 * one Live node, its answers and the retry) and, after a 101, the tunnel
 * (./tunnel.ts). This file decides what follows an answer, a failure or a
 * close, and how the connection goes away when its node leaves or the
 * proxy drains; the parts do the per-byte work.
 *
 * Each client connection has its own keep-alive connection to the Live node
 * its requests route to, so responses come back in request order with no
 * pool and no re-framing. A request that routes to another node waits until
 * the current node has answered everything before it.
 */
import type { Socket } from 'node:net'
import type { SecureContext } from 'node:tls'
import { ClientSide, In, type ClientSideOwner } from './client-side.js'
import type { ProxyCore, RoutingNode } from './context.js'
import { Tunnel, type TunnelOwner } from './tunnel.js'
import { Out, Upstream, type Forwarded, type UpstreamOwner } from './upstream.js'

const LAST_CHUNK = Buffer.from('0\r\n\r\n', 'latin1')

const enum Phase {
  Open,
  /** The client is closed after the answers owed (it said close, was refused, or the proxy drains): every head says close. */
  Closing,
  /** The client connection has closed. */
  Closed,
}

export class ClientConnection implements ClientSideOwner, UpstreamOwner, TunnelOwner {
  private readonly client: ClientSide
  up: Upstream | null = null
  private tunnelled: Tunnel | null = null
  private phase = Phase.Open
  /** A quick answer owed after the responses still in flight (then the connection closes). */
  private owedAnswer: Buffer | null = null
  /** The Live node is going away (it left the table, or the proxy drains): a close frame's text; null while it is not. */
  leaving: string | null = null

  /**
   * `accepted` comes from a server with `pauseOnConnect`, nothing read yet;
   * `tls` (the TLS port) and `proxySource` (a trusted peer's PROXY v2
   * source, read before the handshake): see {@link ClientSide}.
   */
  constructor(
    accepted: Socket,
    readonly core: ProxyCore,
    /** Called once, when the client connection has closed. */
    private readonly onClosed: (conn: ClientConnection) => void,
    tls: SecureContext | null,
    proxySource: string | null = null,
  ) {
    this.client = new ClientSide(accepted, core, this, tls, proxySource)
  }

  /** The address this connection counts against --max-conns-per-address; null when not counted (a trusted balancer's own connection). */
  get counted(): string | null {
    return this.client.counted
  }

  /** core.tick when the client last sent or was sent something. */
  get lastSeen(): number {
    return this.client.lastSeen
  }

  get closed(): boolean {
    return this.phase === Phase.Closed
  }

  get closing(): boolean {
    return this.phase !== Phase.Open
  }

  /** Nothing is owed to the client and nothing half-read: closing now loses nothing. */
  get idle(): boolean {
    return this.client.betweenRequests && (this.up === null || this.up.queue.length === 0)
  }

  get tunnel(): boolean {
    return this.client.state === In.Tunnel
  }

  /** A head is due: one is half-read, or none came yet since the connection was accepted. */
  get waitingForHead(): boolean {
    return this.client.waitingForHead
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
    if (up === null || this.phase === Phase.Closed || this.leaving !== null) return null
    if (up.state === Out.Tunnel) return this.tunnelled!.key
    return up.headSent && up.queue.length === 1 && (up.state === Out.BodyChunked || up.state === Out.BodyEof) ? up.queue[0]!.key : null
  }

  // ---- what the parts ask ----

  closeAfterAnswer(owed?: Buffer): void {
    if (this.phase === Phase.Open) this.phase = Phase.Closing
    if (owed !== undefined) this.owedAnswer = owed
  }

  seen(): void {
    this.client.lastSeen = this.core.tick
  }

  isCurrent(up: Upstream): boolean {
    return up === this.up && this.phase !== Phase.Closed
  }

  passesAsIs(up: Upstream): boolean {
    return up === this.up && this.phase === Phase.Open && !this.core.draining
  }

  upstreamFor(node: RoutingNode): Upstream | null {
    const up = this.up
    if (up !== null && (up.node !== node || up.closed)) {
      // Responses come back in request order: the next node waits until this one has answered.
      if (up.queue.length > 0) return null
      this.dropUpstream()
      return this.open(node)
    }
    return up ?? this.open(node)
  }

  open(node: RoutingNode): Upstream {
    const up = new Upstream(node, this, this.client)
    this.up = up
    return up
  }

  /** One response fully forwarded: the next can come; false when the client is being closed instead. */
  answered(up: Upstream): boolean {
    this.measured(up.nextResponse())
    this.core.counters.settled()
    if (up.queue.length > 0) return true
    // The node left the table while this answer was owed: the answer came, so the next request routes afresh.
    if (this.leaving !== null && up === this.up) {
      this.leaving = null
      this.dropUpstream()
    }
    if (this.phase !== Phase.Open) {
      this.closeClient()
      return false
    }
    if (this.client.state === In.Waiting) queueMicrotask(() => this.client.resume())
    return true
  }

  /** A forwarded request fully answered: into the latency histogram. */
  private measured(f: Forwarded | undefined): void {
    if (f !== undefined) this.core.counters.latency.record(f.status, performance.now() - f.start)
  }

  becomeTunnel(up: Upstream, forwarded: Forwarded, buf: Buffer, headEnd: number): void {
    up.queue.shift()
    this.core.counters.tunnelOpened()
    up.state = Out.Tunnel
    this.tunnelled = new Tunnel(this, this.client, forwarded, buf, headEnd)
    this.client.becomeTunnel()
    if (this.leaving !== null) this.goAway()
  }

  tunnelData(up: Upstream, chunk: Buffer): void {
    this.tunnelled!.fromLive(up, chunk)
  }

  upstreamClosed(up: Upstream): void {
    if (up !== this.up || this.phase === Phase.Closed) return
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
      if (this.client.state === In.Waiting) queueMicrotask(() => this.client.resume())
      return
    }
    if (up.retry() === null) this.failed(up)
  }

  /** The Live node failed mid-exchange: a 502 if the client has heard nothing of this answer yet, else a cut. */
  failed(up: Upstream): void {
    this.core.counters.upstreamFailures++
    const answered = up.headSent
    up.drop()
    this.up = null
    if (answered) return this.destroy()
    const answer = this.leaving !== null ? this.core.answers.nodeGone : this.core.answers.upstreamFailed
    this.core.counters.quickAnswer(answer)
    this.client.end(answer)
  }

  clientClosed(): void {
    if (this.phase === Phase.Closed) return
    this.phase = Phase.Closed
    if (this.tunnelled !== null) this.core.counters.tunnelClosed()
    this.dropUpstream()
    this.onClosed(this)
  }

  endWith(last: Buffer): void {
    this.client.stop()
    this.client.socket.write(last)
    this.closeClient()
  }

  // ---- closing ----

  dropUpstream(): void {
    const up = this.up
    if (up === null) return
    up.drop()
    this.up = null
  }

  private closeClient(): void {
    this.dropUpstream()
    if (this.phase !== Phase.Closed) this.client.end(this.owedAnswer ?? undefined)
  }

  destroy(): void {
    this.client.stop()
    this.dropUpstream()
    this.client.socket.destroy()
  }

  /**
   * Stop: the next answer says `Connection: close` and the connection closes
   * after it. An idle connection is not closed here: its client may be
   * sending its next request right now, and a close would reset it. The core
   * closes what is still idle once the drain has gone quiet.
   */
  drain(): void {
    this.closeAfterAnswer()
    if (this.client.state === In.Tunnel) this.goAway()
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
    // Idle: nothing of the node is owed, so the connection only forgets it and is not left "leaving".
    if (up.state !== Out.Tunnel && up.queue.length === 0) return this.dropUpstream()
    this.leaving = reason
    if (up.state === Out.Tunnel) return this.tunnelled!.goAway()
    if (!up.headSent) return
    if (up.state === Out.BodyChunked && up.chunks.atChunkBoundary) return this.endWith(LAST_CHUNK)
    this.destroy()
  }
}
