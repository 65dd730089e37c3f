/**
 * An app child: the uWS server on the main thread hands each request
 * (method, path, query, headers, body up to `--max-body`, client address) to
 * the worker pool and writes the answer back; it follows the builds the seed
 * pushes (files from the blob store to disk, then a whole new generation of
 * workers) and tells the parent which build it serves or why it refused one.
 */
import { createTrustedProxies, forwardedClient, plainAddress } from '../../lib/core/client-address.js'
import { createLivePublisher } from '../../lib/live/publisher.js'
import { deriveTokenKey } from '../../lib/live/token.js'
import { statusLine } from '../../lib/http/server.js'
import type { HttpRequest, HttpResponse } from '../../lib/http/uws.js'
import { followBuild, waitForFirstBuild } from '../../lib/process/follow-build.js'
import type { ChildContext, ChildHandle } from '../../lib/process/role.js'
import { createAppTables } from '../../lib/storage/app-tables.js'
import { deriveUploadKey, mintUploadToken, type UploadMintOptions } from '../../lib/uploads/token.js'
import { blobStoreConfig, createBlobStore } from '../../lib/storage/blob-store.js'
import { createDatastoreClient } from '../../lib/storage/datastore-client.js'
import { checkNewTask } from '../../lib/tasks/task.js'
import { isMap } from '../../lib/transport/meta-shapes.js'
import { createAnswerMeter, type AnswersReport } from './answer-meter.js'
import { createAppBuildSwitch } from './build-switch.js'
import { createAppTaskQueue, startTaskConsumer } from './tasks.js'
import { createMailOutcomeNotes, createMailPreparer } from './mail-handoff.js'
import { createMailHandoffOps } from './mail-handoff-ops.js'
import { createHandoffSeedLink } from './handoff-seed-link.js'
import { ACCEPT_RECIPIENT_PATH, checkQuestion, SIGNATURE_HEADER } from '../../lib/mail/inbound-recipient.js'
import { createSendMail } from './send-mail.js'
import { openOutboundQueue } from '../../lib/mail/outbound-queue.js'
import { AppCounters } from './counters.js'
import { createWorkerPool, type WorkerPool } from './pool.js'
import { HttpSink, sendError } from './http-sink.js'
import type { PlatformOp, WireRequest } from './protocol.js'

/** Child → parent: the build this child serves, or one it refused. */
export type AppToParent = { t: 'serving'; id: string } | { t: 'load-failed'; id: string; code: string; message: string }

/** Child → parent request: a datastore op for the app's tables, sent on over the node's seed link. */
export interface AppSeedRequest {
  readonly t: 'app-seed'
  readonly op: string
  readonly body: unknown
}

const SEED_TIMEOUT_MS = 10_000

const decoder = new TextDecoder()
/** The body of a request without one (the worker gets its own copy, from the ring or a message). */
const NO_BODY = new Uint8Array(0)

/** The object `headersOf` fills: uWS calls back synchronously, so this stands in for a closure per request. */
const NOTHING: Record<string, string> = Object.freeze({}) as Record<string, string>
let filling = NOTHING

function addHeader(name: string, value: string): void {
  const had = filling[name]
  filling[name] = had === undefined ? value : `${had}${name === 'cookie' ? '; ' : ', '}${value}`
}

function headersOf(req: HttpRequest): Record<string, string> {
  const headers: Record<string, string> = {}
  filling = headers
  req.forEach(addHeader)
  // Not the request's object any more (nothing is written to it after this).
  filling = NOTHING
  return headers
}

export async function startAppServer(ctx: ChildContext, childIndex: number): Promise<ChildHandle> {
  const { config, log } = ctx
  const store = await createBlobStore(blobStoreConfig(config))
  const publisher = createLivePublisher({ secret: config.secret, id: `${config.nodeId}/${process.pid}`, log, linkOffset: config.liveLinkOffset, maxFrame: config.maxFrame, maxMessage: config.liveMaxMessage })
  let routingVersion = -1
  // Seed ops relayed by the parent over the node's seed link: the app's tables, upload token records, the mail queue.
  const viaParent = { request: <R>(op: string, body: unknown): Promise<R> => ctx.parent.request<R>({ t: 'app-seed', op, body } satisfies AppSeedRequest, SEED_TIMEOUT_MS) }
  // Mail handoffs over the child's own seed link, opened with the first one (handoff-seed-link.ts).
  const handoffLink = createHandoffSeedLink(ctx)
  const datastore = createDatastoreClient(viaParent)
  const tables = createAppTables(datastore)
  const uploadKey = deriveUploadKey(config.secret)
  // The task queue: Redis with --redis, else the seed's embedded queue: over the child's link once mail opened it.
  const taskQueue = await createAppTaskQueue(config, log, handoffLink.orElse(viaParent))
  // ctx.sendMail: the outbound mail queue (Redis under its own prefix with --redis, else the seed's mailq).
  const mailQueue = await openOutboundQueue(config.redis, log, viaParent)
  const sendMail = createSendMail({ config, log, blobs: store, datastore, queue: mailQueue, tasks: taskQueue })
  // What a worker's ctx asks the main thread for; arguments come from app code, so every one is checked by the callee.
  const platform: Record<PlatformOp, (...args: any[]) => Promise<unknown>> = {
    publish: (ch: string, data: unknown, options?: { id?: unknown }) => {
      const table = ctx.state().routing
      if (table && table.version !== routingVersion) {
        routingVersion = table.version
        publisher.setRouting(table)
      }
      return publisher.publish(ch, data, options?.id)
    },
    uploadToken: (opts: UploadMintOptions) => mintUploadToken(uploadKey, datastore, opts),
    'tables.get': (table, key) => tables.get(table, key),
    'tables.set': (table, key, value, ttlMs) => tables.set(table, key, value, ttlMs),
    'tables.delete': (table, key) => tables.delete(table, key),
    'tables.list': (table, options) => tables.list(table, options),
    enqueue: async (task: unknown) => {
      const id = await taskQueue.enqueue(checkNewTask(isMap(task) ? task : {}))
      consumer.poke()
      return id
    },
    sendMail: (message: unknown) => sendMail(message),
  }
  const counters = new AppCounters()
  const pool: WorkerPool = createWorkerPool({
    threads: config.threads,
    queueSize: config.queueSize,
    requestTimeoutMs: config.requestTimeout,
    log,
    child: childIndex,
    logLevel: config.logLevel,
    tokenKey: new Uint8Array(deriveTokenKey(config.secret)),
    appConfig: (build) => ({
      nodeId: config.nodeId, region: config.region, role: 'app', build,
      threads: config.threads, requestTimeout: config.requestTimeout, maxBody: config.maxBody, settings: config.appSettings,
    }),
    call: (op, args) => platform[op](...args),
    taskConcurrency: config.taskConcurrency,
    taskTimeoutMs: config.taskTimeout,
    initTimeoutMs: config.initTimeout,
    onWorkerCrash: (build) => {
      counters.workerCrashes++
      meter.crash(build)
    },
  })
  counters.register(ctx.metrics, pool.stats)
  // How this child answers with the build it serves, for canary deploys: to the parent at every heartbeat interval.
  const meter = createAnswerMeter()
  const reporter = setInterval(() => ctx.parent.send({ t: 'answers', load: meter.report(pool.build) } satisfies AnswersReport), config.heartbeatInterval)
  reporter.unref()
  const mailHandoff = createMailHandoffOps(handoffLink, datastore, config.maxFrame)
  // On the seed's queue (not --redis) a handoff's outcome note settles its task in the same op.
  const mailNotes = createMailOutcomeNotes(mailHandoff, log, config.redis === null)
  const consumer = startTaskConsumer({
    queue: taskQueue, pool, log, concurrency: config.taskConcurrency, leaseMs: config.taskLease, backoffMs: config.taskBackoff, paused: () => ctx.state().draining, prepare: createMailPreparer(store, mailHandoff, { log }),
    settled: (task, outcome, settlement) => {
      counters.taskSettled(outcome)
      return mailNotes(task, outcome, settlement)
    },
  })

  const trusted = createTrustedProxies(config.trustedProxies)
  const handler = (res: HttpResponse, req: HttpRequest): void => {
    // One object per request for its answer (roles/app/http-sink.ts), and one closure: uWS's onAborted.
    const sink = new HttpSink(res, performance.now(), meter, pool)
    res.onAborted(() => sink.abort())
    if (pool.build === null) return sendError(res, 'ESPRA_ERR_APP_NO_BUILD', 'no app build loaded yet')
    const query = req.getQuery() ?? ''
    const path = req.getUrl()
    const method = req.getMethod().toUpperCase()
    const headers = headersOf(req)
    // The client behind a trusted balancer (--trusted-proxies), the same rule as the proxy's: lib/core/client-address.ts.
    const address = forwardedClient(plainAddress(decoder.decode(res.getRemoteAddressAsText())), req.getHeader('x-forwarded-for') || undefined, trusted)
    const url = query === '' ? path : `${path}?${query}`
    const declared = Number(headers['content-length'] ?? 0)
    if (declared > config.maxBody) return tooLarge(res)
    if (method === 'GET' || method === 'HEAD' || (declared === 0 && headers['transfer-encoding'] === undefined)) {
      return submit({ method, url, path, query, headers, body: NO_BODY, address }, sink)
    }
    const chunks: Buffer[] = []
    let size = 0
    let over = false
    res.onData((chunk, isLast) => {
      if (over || sink.aborted) return
      size += chunk.byteLength
      if (size > config.maxBody) {
        over = true
        return tooLarge(res)
      }
      // uWS reuses the chunk's memory after this callback: copy it.
      chunks.push(Buffer.from(new Uint8Array(chunk).slice()))
      if (isLast) {
        const all = Buffer.concat(chunks, size)
        submit({ method, url, path, query, headers, body: new Uint8Array(all.buffer, all.byteOffset, all.byteLength), address }, sink)
      }
    })
  }
  const tooLarge = (res: HttpResponse): void => {
    res.cork(() => void res.writeStatus(statusLine(413)).writeHeader('Content-Type', 'application/json')
      .end(JSON.stringify({ code: 'ESPRA_ERR_APP_BODY_TOO_LARGE', message: `request body over ${config.maxBody} bytes` }), true))
  }
  const submit = (req: WireRequest, sink: HttpSink): void => {
    // The mail node's question about a recipient (mail-handoff.ts has the rest): only signed by the cluster secret reaches the build.
    if (req.path === ACCEPT_RECIPIENT_PATH && (req.method !== 'POST' || checkQuestion(config.secret, req.body, req.headers[SIGNATURE_HEADER]) === null)) {
      return sendError(sink.res, 'ESPRA_ERR_MAIL_RECIPIENT_FORBIDDEN', `${ACCEPT_RECIPIENT_PATH} takes only signed requests from a mail node of this cluster`)
    }
    pool.submit(req, sink)
  }
  // Every path but /_espra/health. The child registers its own '/*' fallback (uWS aborts on a
  // pattern registered twice), so the app takes the same ground with these three.
  for (const pattern of ['/', '/:segment', '/:segment/*']) ctx.app.any(pattern, handler)

  // Build switching (staging, activation, straight loads): build-switch.ts. A replacement child listens
  // once its workers run the build its siblings serve (files on disk, `init` done), not before: a 503
  // 'no build' during a reload is a failed request (issue 11). A fresh cluster (no build yet) starts at once.
  let firstSettled!: () => void
  const firstLoad = new Promise<void>((resolve) => (firstSettled = resolve))
  const follower = createAppBuildSwitch({
    store, pool, dataDir: config.dataDir, threads: config.threads, log,
    send(msg) {
      ctx.parent.send(msg)
      if (msg.t === 'serving' || msg.t === 'load-failed') firstSettled()
    },
    onServing: () => consumer.poke(),
  })
  await waitForFirstBuild(ctx, await followBuild(ctx, follower), firstLoad)

  // Stop taking tasks; the pool gives back those not started and lets running ones finish.
  const stopTaking = (): void => {
    clearInterval(reporter)
    consumer.stop()
  }
  return {
    drain: stopTaking,
    // After the HTTP drain: requests this child accepted, and those still arriving on kept-alive connections
    // before they heard `Connection: close`, were answered by the pool, not refused with 503.
    async close() {
      stopTaking()
      await pool.close()
      // Then the results of the tasks that ran go out, then what they used closes.
      await consumer.close()
      await Promise.all([store.close(), publisher.close(), taskQueue.close(), mailQueue.close(), handoffLink.close()])
    },
    destroy() {
      stopTaking()
      pool.destroy()
      void taskQueue.close()
      void mailQueue.close()
      handoffLink.destroy()
      void store.close()
      void publisher.close()
    },
  }
}
