/**
 * The seed link for node parents and the admin CLI: connects to the first
 * reachable seed, authenticates both ways, and (with `reconnect`) walks the
 * seed list round-robin with exponential backoff and jitter whenever the link
 * drops. `onConnect` runs after every (re)connect, so registration and
 * subscriptions are redone against whichever seed answers. One attempt's
 * handshake is lib/transport/meta-client-handshake.ts.
 */
import { parseHostPort } from '../core/config-parsers.js'
import { createError, EspraError } from '../core/errors.js'
import type { Logger } from '../core/log.js'
import { deriveMetaKey } from './meta-auth.js'
import { handshakeWithSeed, type MetaPeerIdentity, type SeedTarget } from './meta-client-handshake.js'
import type { MetaSession } from './meta-session.js'
import { parseWelcomeLead, type WelcomeLead } from './meta-shapes.js'

export interface MetaClientOptions {
  /** `host:port` list, IPv6 hosts in brackets; the first reachable one is used. */
  readonly seeds: readonly string[]
  readonly secret: string
  readonly peer: MetaPeerIdentity
  readonly maxFrame: number
  readonly log: Logger
  /**
   * Keep reconnecting after a drop (nodes); false for one-shot callers (CLI).
   * `'once-linked'`: the first connect walks the list once and fails like
   * false (an operator's typo gets an answer, not a hang), and after that
   * every drop is followed to the next seed like true: for commands that run
   * for minutes and must live through a leader failover (`admin rolling-restart`).
   */
  readonly reconnect: boolean | 'once-linked'
  /** Runs after every (re)connect and authentication, before `connected` turns true. */
  readonly onConnect?: (client: MetaClient) => Promise<void> | void
  /** One-way messages from the seed (`routing`, `event`, ...). */
  readonly onPush?: (op: string, body: unknown) => void
  /** TCP connect plus handshake must finish within this (5 s). */
  readonly handshakeTimeoutMs?: number
  readonly requestTimeoutMs?: number
  /**
   * Ping the seed when nothing was sent or received for this long (5 s; 0 off).
   * Keeps idle admin links under the seed's 15 s idle limit and notices a seed
   * that vanished without closing the connection.
   */
  readonly keepAliveMs?: number
  readonly backoffMinMs?: number
  readonly backoffMaxMs?: number
  /**
   * Seeds that lead by a lease (docs/postgres.md): when the seed reached
   * says in its welcome that another seed leads, connect to that one instead
   * (once per attempt). On by default; false stays on whichever seed answered.
   */
  readonly followLeader?: boolean
  /**
   * What the other end is, in log lines and errors: `seed` by default; a
   * Live node's link to another Live node says which (`Live node live-b`),
   * so a stalled peer is not reported as a stalled seed.
   */
  readonly label?: string
}

export type MetaClientEvent = 'connected' | 'disconnected'

export interface MetaClient {
  /** True while authenticated and `onConnect` has finished. */
  readonly connected: boolean
  /** Address of the seed currently linked, or null. */
  readonly seed: string | null
  /** The highest leader epoch seen (welcomes and stamped pushes); pushes stamped with a lower one are ignored. Null before any. */
  readonly epoch: number | null
  /** What the linked seed's welcome said about leadership; null while unlinked or from a seed without a lease (embedded). */
  readonly lead: WelcomeLead | null
  /** Resolves after the first successful connect; rejects with `ESPRA_ERR_SEED_UNREACHABLE` when `reconnect` is not true and every seed failed. */
  readonly ready: Promise<void>
  /**
   * Rejects at once with `ESPRA_ERR_META_CLOSED` when no seed is linked; with
   * `details.stopped` true once the client is closed (or, without `reconnect`,
   * its one link is gone), so callers that retry know no link will come back.
   */
  request<T = unknown>(op: string, body: unknown, timeoutMs?: number): Promise<T>
  /** One-way message; false when no seed is linked (dropped) or the link is congested. */
  send(op: string, body: unknown): boolean
  on(event: MetaClientEvent, listener: () => void): void
  /** Stops reconnecting and ends the link after pending requests settle. */
  close(): Promise<void>
  destroy(err?: Error): void
}

/** While seeds answer but none leads, retries wait at most this step of the backoff (400 ms with the defaults: 200–400 ms). */
const LEADERLESS_BACKOFF_STEP = 3
/** Pushes that may arrive with the welcome, before the session is opened, and are delivered once it is (more: the seed is dropped). */
const EARLY_PUSHES_KEPT = 64

/** Creates the client and starts connecting at once. */
export function createMetaClient(options: MetaClientOptions): MetaClient {
  return new SeedLink(options)
}

class SeedLink implements MetaClient {
  readonly ready: Promise<void>
  private readonly opts: MetaClientOptions
  private readonly key: Buffer
  private readonly targets: SeedTarget[]
  private session: MetaSession<SeedLink> | null = null
  private linked = false
  /** Some link was open once (`reconnect: 'once-linked'` reconnects from then on). */
  private linkedOnce = false
  private stopped = false
  private connecting: MetaSession<SeedLink> | null = null
  private wake: (() => void) | null = null
  private readonly listeners = new Map<MetaClientEvent, (() => void)[]>()
  private settleReady!: (err?: Error) => void
  private epochValue: number | null = null
  private leadValue: WelcomeLead | null = null
  private staleLogged = -1
  private readonly loop: Promise<void>

  /** Whether a lost link (or a failed walk of the list) is followed by another try. */
  private get reconnecting(): boolean {
    return this.opts.reconnect === true || (this.opts.reconnect === 'once-linked' && this.linkedOnce)
  }

  constructor(opts: MetaClientOptions) {
    if (opts.seeds.length === 0) throw createError('ESPRA_ERR_CONFIG_INVALID', { option: '--seed', reason: 'no seed address given' })
    this.opts = opts
    this.key = deriveMetaKey(opts.secret)
    this.targets = opts.seeds.map((address) => {
      try {
        return { address, ...parseHostPort(address) }
      } catch (reason) {
        throw createError('ESPRA_ERR_CONFIG_INVALID', { option: '--seed', reason: `seed address ${address}: ${String(reason)}` })
      }
    })
    this.ready = new Promise<void>((resolve, reject) => {
      this.settleReady = (err) => (err ? reject(err) : resolve())
    })
    // Callers that never await `ready` must not crash the process with an unhandled rejection.
    this.ready.catch(() => {})
    this.loop = this.run()
  }

  get connected(): boolean {
    return this.linked
  }

  private get label(): string {
    return this.opts.label ?? 'seed'
  }

  /** Whom a log line is about: `seed: <address>`, or `link: <label>, address` for a link to something other than a seed. */
  private peerFields(address: string): { seed: string } | { link: string; address: string } {
    return this.opts.label === undefined ? { seed: address } : { link: this.opts.label, address }
  }

  get seed(): string | null {
    return this.linked && this.session ? this.session.remote : null
  }

  get epoch(): number | null {
    return this.epochValue
  }

  get lead(): WelcomeLead | null {
    return this.linked ? this.leadValue : null
  }

  private noteEpoch(epoch: number): void {
    if (this.epochValue === null || epoch > this.epochValue) this.epochValue = epoch
  }

  /** Fencing: a push stamped with an epoch older than one already seen comes from a seed that no longer leads. */
  private push(op: string, body: unknown, epoch: number | undefined, from: string): void {
    if (epoch !== undefined) {
      if (this.epochValue !== null && epoch < this.epochValue) {
        // Once per stale epoch: a deposed leader that keeps pushing does not flood the log.
        if (this.staleLogged !== epoch) this.opts.log.warn({ seed: from, op, epoch, current: this.epochValue }, 'push from a seed that no longer leads ignored')
        this.staleLogged = epoch
        return
      }
      this.noteEpoch(epoch)
    }
    this.opts.onPush?.(op, body)
  }

  request<T>(op: string, body: unknown, timeoutMs?: number): Promise<T> {
    // Closed on purpose (or a one-shot link that dropped): no link will come back, and callers that retry must not wait for one.
    if (this.stopped) return Promise.reject(createError('ESPRA_ERR_META_CLOSED', { reason: 'the seed link was stopped', stopped: true }))
    const session = this.session
    if (!session) return Promise.reject(createError('ESPRA_ERR_META_CLOSED', { reason: 'not connected to a seed' }))
    const answer = session.request<T>(op, body, timeoutMs)
    if (!this.reconnecting || this.opts.followLeader === false) return answer
    return answer.catch((err: EspraError) => {
      // Linked to a seed that does not lead (nobody held the lease when it welcomed us): look for the leader again.
      if (err.code === 'ESPRA_ERR_SEED_NOT_LEADER' && this.session === session) session.destroy()
      throw err
    })
  }

  send(op: string, body: unknown): boolean {
    return this.session ? this.session.send(op, body) : false
  }

  on(event: MetaClientEvent, listener: () => void): void {
    const list = this.listeners.get(event) ?? []
    list.push(listener)
    this.listeners.set(event, list)
  }

  async close(): Promise<void> {
    this.stop(createError('ESPRA_ERR_META_CLOSED', { reason: 'the meta client was closed before it connected' }))
    this.connecting?.destroy()
    await this.session?.close()
    await this.loop
  }

  destroy(err?: Error): void {
    this.stop(err ?? createError('ESPRA_ERR_META_CLOSED', { reason: 'the meta client was destroyed' }))
    this.connecting?.destroy()
    this.session?.destroy(err)
  }

  private stop(readyError: Error): void {
    this.stopped = true
    this.settleReady(readyError)
    this.wake?.()
  }

  private emit(event: MetaClientEvent): void {
    for (const listener of this.listeners.get(event) ?? []) {
      try {
        listener()
      } catch (err) {
        this.opts.log.error({ err, event }, 'meta client listener failed')
      }
    }
  }

  private async run(): Promise<void> {
    const errors = new Map<string, string>()
    let index = 0
    let failures = 0
    let redirect: SeedTarget | null = null
    // Some seed completed a handshake since the last link: the cluster is there, only its leader is not (yet).
    let seedAnswered = false
    while (!this.stopped) {
      const target: SeedTarget = redirect ?? this.targets[index]!
      const redirected: boolean = redirect !== null
      redirect = null
      let session: MetaSession<SeedLink> | null = null
      try {
        const linked = await this.handshake(target)
        session = linked.session
        const lead = parseWelcomeLead(linked.welcome)
        if (lead !== null) seedAnswered = true
        if (lead?.epoch != null) this.noteEpoch(lead.epoch)
        redirect = this.opts.followLeader !== false && !redirected && lead !== null && !lead.leader ? this.leaderTarget(lead, target.address) : null
        if (redirect !== null) {
          this.opts.log.info({ seed: target.address, leader: redirect.address, epoch: lead?.epoch }, 'seed does not lead; moving to the leader')
          session.destroy()
          continue
        }
        this.session = session
        this.leadValue = lead
        await this.opts.onConnect?.(this)
        if (session.state !== 'open') throw createError('ESPRA_ERR_META_CLOSED', { reason: `seed ${target.address} closed the link during onConnect`, seed: target.address })
      } catch (err) {
        this.session = null
        session?.destroy(err as Error)
        if (this.stopped) break
        failures++
        errors.set(target.address, (err as Error).message)
        this.logFailure(target.address, err as Error, failures)
        index = (index + 1) % this.targets.length
        if (!this.reconnecting && failures >= this.targets.length) {
          const list = [...errors].map(([a, m]) => `${a}: ${m}`)
          this.stop(createError('ESPRA_ERR_SEED_UNREACHABLE', { tried: list.join('; '), seeds: this.opts.seeds, errors: list }))
          break
        }
        // A seed answered but none leads yet (a takeover under way: the lease of a dead leader is running out, or
        // its address still named): look again soon rather than backing off as if every seed were gone.
        const leaderless = seedAnswered || (err as EspraError).code === 'ESPRA_ERR_SEED_NOT_LEADER'
        if (this.reconnecting) await this.sleep(this.backoff(leaderless ? Math.min(failures, LEADERLESS_BACKOFF_STEP) : failures))
        continue
      }
      failures = 0
      seedAnswered = false
      errors.clear()
      this.linkedOnce = true
      const reason = await this.serve(session, target.address)
      if (!this.reconnecting || this.stopped) break
      if (reason?.code === 'ESPRA_ERR_META_REPLACED') {
        // Two live processes claim one node id: back off fully so they do not take turns at full speed.
        this.opts.log.error({ seed: target.address, id: this.opts.peer.id }, 'another process registered this node id; check --node-id')
        await this.sleep(this.opts.backoffMaxMs ?? 5000)
        continue
      }
      // Retry the seed we just lost first (it may only be restarting), after a short jittered pause.
      await this.sleep(this.backoff(1))
    }
    this.stopped = true
  }

  /** Holds the link until it closes, pinging while idle. */
  private async serve(session: MetaSession<SeedLink>, address: string): Promise<EspraError | null> {
    const closed = new Promise<EspraError | null>((resolve) => session.onClose(resolve))
    this.linked = true
    this.opts.log.info(this.peerFields(address), 'meta link up')
    this.settleReady()
    this.emit('connected')
    const keepAlive = this.opts.keepAliveMs ?? 5000
    const timer = keepAlive > 0 ? this.keepAlive(session, keepAlive) : null
    const reason = await closed
    if (timer) clearInterval(timer)
    this.linked = false
    this.session = null
    if (!this.stopped) this.opts.log.warn({ ...this.peerFields(address), code: reason?.code, reason: reason?.message ?? `${this.label} closed the connection` }, 'meta link down')
    this.emit('disconnected')
    return reason
  }

  private keepAlive(session: MetaSession<SeedLink>, keepAliveMs: number): NodeJS.Timeout {
    const tick = Math.max(10, Math.floor(keepAliveMs / 5))
    let inFlight = false
    return setInterval(() => {
      const now = Date.now()
      const quiet = Math.max(now - session.lastSentAt, now - session.lastReceivedAt)
      if (inFlight || quiet < keepAliveMs - tick) return
      inFlight = true
      session.request('ping', {}, keepAliveMs).then(
        () => (inFlight = false),
        (err: EspraError) => {
          inFlight = false
          if (err.code === 'ESPRA_ERR_META_TIMEOUT') session.destroy(createError('ESPRA_ERR_META_TIMEOUT', { what: `a ping to the ${this.label}`, ms: keepAliveMs }))
        },
      )
    }, tick).unref()
  }

  /** Where a follower says the leader is, when that is somewhere else and parses. */
  private leaderTarget(lead: WelcomeLead, from: string): SeedTarget | null {
    if (lead.address === null || lead.address === from) return null
    try {
      return { address: lead.address, ...parseHostPort(lead.address) }
    } catch {
      return null
    }
  }

  private handshake(target: SeedTarget): Promise<{ session: MetaSession<SeedLink>; welcome: Record<string, unknown> }> {
    return handshakeWithSeed<SeedLink>(target, {
      key: this.key, peer: this.opts.peer, maxFrame: this.opts.maxFrame, log: this.opts.log, context: this, label: this.label,
      onMessage: (op, body, epoch) => this.push(op, body, epoch, target.address),
      maxEarlyFrames: EARLY_PUSHES_KEPT,
      ...(this.opts.handshakeTimeoutMs !== undefined ? { handshakeTimeoutMs: this.opts.handshakeTimeoutMs } : {}),
      ...(this.opts.requestTimeoutMs !== undefined ? { requestTimeoutMs: this.opts.requestTimeoutMs } : {}),
      onConnecting: (session) => {
        this.connecting = session
        if (session !== null && this.stopped) session.destroy()
      },
    })
  }

  /** Exponential backoff with equal jitter: the n-th failure waits in [d/2, d]. */
  private backoff(failures: number): number {
    const min = this.opts.backoffMinMs ?? 100
    const max = this.opts.backoffMaxMs ?? 5000
    const d = Math.min(max, min * 2 ** Math.min(failures - 1, 16))
    return d / 2 + Math.random() * (d / 2)
  }

  private sleep(ms: number): Promise<void> {
    if (this.stopped) return Promise.resolve()
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.wake = null
        resolve()
      }, ms)
      this.wake = () => {
        clearTimeout(timer)
        this.wake = null
        resolve()
      }
    })
  }

  // First failure of an outage is a warning; repeats are quieter so a long outage does not flood the log.
  private logFailure(address: string, err: Error, failures: number): void {
    const line = { ...this.peerFields(address), code: (err as EspraError).code, reason: err.message, failures }
    if (failures === 1 || failures % 20 === 0) this.opts.log.warn(line, 'meta link attempt failed')
    else this.opts.log.debug(line, 'meta link attempt failed')
  }
}
