/**
 * A client connection after a 101 (a WebSocket, or another upgrade): both
 * sockets are piped as they come, and the proxy only follows the Live
 * node's WebSocket frames, so that when the node leaves (or the proxy
 * drains) the client gets a close frame 1012 between two frames, never
 * inside one. An upgrade that is not a WebSocket cannot be ended cleanly:
 * it is cut.
 */
import { WsFrameTracker, wsCloseFrame } from './framing.js'
import type { ClientWriter, Forwarded, Upstream } from './upstream.js'

/** A WebSocket being closed for a node that left gets this long to reach a frame boundary. */
const WS_CLOSE_GRACE_MS = 1000

/** What a tunnel asks of its client connection (./connection.ts). */
export interface TunnelOwner {
  /** Why the Live node is going away (a close frame's text); null while it is not. */
  readonly leaving: string | null
  /** Cuts the client connection now. */
  destroy(): void
  /** Writes `last` to the client and closes it; nothing more is read. */
  endWith(last: Buffer): void
}

export class Tunnel {
  /** The routing key of the upgrade request: where its client lands when it reconnects. */
  readonly key: string
  /** Frame boundaries Live → client; null when the upgrade is not a WebSocket. */
  private readonly ws: WsFrameTracker | null

  /** `buf[headEnd..]` (after the 101's head) are the first tunnel bytes from the Live node. */
  constructor(private readonly owner: TunnelOwner, private readonly client: ClientWriter, forwarded: Forwarded, buf: Buffer, headEnd: number) {
    this.key = forwarded.key
    this.ws = forwarded.websocket ? new WsFrameTracker() : null
    this.ws?.track(buf, headEnd, buf.length)
  }

  /** Bytes from the Live node: to the client, up to the end of the frame in flight once the node is going away. */
  fromLive(up: Upstream, chunk: Buffer): void {
    const ws = this.ws
    if (ws !== null) {
      if (this.owner.leaving !== null) return this.forwardToBoundary(up, ws, chunk)
      ws.track(chunk, 0, chunk.length)
    }
    this.client.writeClient(up, chunk)
  }

  /** The Live node is going away: a close frame between two frames (within a grace), or a cut. */
  goAway(): void {
    if (this.ws === null) return this.owner.destroy()
    if (this.ws.atBoundary) return this.close()
    setTimeout(() => this.owner.destroy(), WS_CLOSE_GRACE_MS).unref()
  }

  private forwardToBoundary(up: Upstream, ws: WsFrameTracker, chunk: Buffer): void {
    let i = 0
    while (i < chunk.length && !ws.atBoundary) {
      ws.track(chunk, i, i + 1)
      i++
    }
    this.client.writeClient(up, chunk.subarray(0, i))
    if (ws.atBoundary) this.close()
  }

  private close(): void {
    this.owner.endWith(wsCloseFrame(1012, this.owner.leaving ?? ''))
  }
}
