/**
 * A mail child's listeners, on the two sockets its parent bound once and
 * every child shares (lib/process/shared-socket.ts): the node's HTTP port
 * answers `GET /_espra/health` (and 404 otherwise); the SMTP port takes
 * inbound mail (smtp.ts). Datastore, embedded-queue and inbound-group
 * requests go to the seed over the child's own link (child-seed-link.ts),
 * through the parent's while that link is down (role.ts relays them).
 */
import { createServer, type Server } from 'node:http'
import { hostname } from 'node:os'
import type { Server as NetServer } from 'node:net'
import { HEALTH_PATH } from '../../lib/http/health.js'
import { readTlsFiles } from '../../lib/core/tls-files.js'
import type { Listener, ListenContext } from '../../lib/process/role.js'
import { blobStoreConfig, createBlobStore } from '../../lib/storage/blob-store.js'
import { createDatastoreClient } from '../../lib/storage/datastore-client.js'
import { createMetaTaskQueue } from '../../lib/tasks/queue-meta.js'
import type { TaskQueue } from '../../lib/tasks/queue.js'
import { createMailChildSeedLink } from './child-seed-link.js'
import { InboundCounters } from './counters.js'
import { createLimitsClient } from './limits-client.js'
import { createMailVerifier, dnsResolver } from '../../lib/mail/mail-auth.js'
import { createInboundStore } from './inbound-store.js'
import { createRecipientCheck } from './recipient-check.js'
import { createSmtpServer } from './smtp.js'

function listenOn(server: NetServer | Server, fd: number): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen({ fd }, () => {
      server.off('error', reject)
      const addr = server.address()
      resolve(typeof addr === 'object' && addr !== null ? addr.port : 0)
    })
  })
}

export async function startMailListener(ctx: ListenContext): Promise<Listener> {
  const { config, log } = ctx
  const seed = createMailChildSeedLink({ config, log, parent: ctx.parent, metrics: ctx.metrics })
  const blobs = await createBlobStore(blobStoreConfig(config))
  const datastore = createDatastoreClient(seed)
  // Redis with --redis (loaded only then), else the seed's embedded queue: the one the app nodes consume.
  const queue: TaskQueue = config.redis !== null
    ? (await import('../../lib/tasks/queue-redis.js')).createRedisTaskQueue({ url: config.redis, log })
    : createMetaTaskQueue(seed)

  let requests = 0
  let inflight = 0
  const http = createServer((req, res) => {
    requests++
    const path = (req.url ?? '/').split('?')[0]
    const { status, body } = path === HEALTH_PATH ? ctx.health() : { status: 404, body: { code: 'ESPRA_ERR_HTTP_NOT_FOUND', message: `no route for ${req.method ?? 'GET'} ${path}` } }
    res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body))
  })
  http.keepAliveTimeout = 5000

  const counters = new InboundCounters()
  counters.register(ctx.metrics)
  const smtp = createSmtpServer({
    log,
    counters,
    domains: config.mailDomains,
    maxSize: config.mailMaxSize,
    maxLineLength: config.mailMaxLineLength,
    maxHeaderSize: config.mailMaxHeaderSize,
    maxRecipients: config.mailMaxRecipients,
    // Read again in each child (as the proxy does), so a SIGHUP reload picks up renewed files.
    tls: config.smtpTlsCert !== null && config.smtpTlsKey !== null ? { ...readTlsFiles(config.smtpTlsCert, config.smtpTlsKey), required: config.smtpRequireTls } : null,
    limits: createLimitsClient({ parent: ctx.parent, log, counters, maxConnections: config.smtpMaxConnsPerAddress, maxPerMinute: config.smtpMaxMessagesPerMinute }),
    hostname: hostname(),
    // With the seed's embedded queue one mail.inbound.commit per group; with --redis single ops per message.
    store: createInboundStore({ blobs, datastore, queue, dedupeWindowMs: config.mailDedupeWindow, seed: config.redis === null ? seed : null, maxFrame: config.maxFrame }),
    // Verified before the 250 only when a DMARC failure may refuse the message; else the handoff verifies after it, with these settings.
    verifier: config.mailAuth && config.mailDmarcReject
      ? createMailVerifier({
        resolver: dnsResolver(config.mailDnsServers, config.mailAuthTimeout), timeoutMs: config.mailAuthTimeout, mta: hostname(),
        onError: (err) => log.warn({ err }, 'mail authentication failed to run: results are temperror'),
      })
      : null,
    verifyAtHandoff: config.mailAuth && !config.mailDmarcReject ? { timeoutMs: config.mailAuthTimeout, dnsServers: config.mailDnsServers, mta: hostname() } : null,
    dmarcReject: config.mailDmarcReject,
    recipients: createRecipientCheck({ seed, secret: config.secret, timeoutMs: config.mailRecipientTimeout, log }),
    recipientFail: config.mailRecipientFail,
  })
  smtp.server.on('connection', (socket) => {
    inflight++
    socket.once('close', () => inflight--)
  })

  const port = await listenOn(http, ctx.fd)
  await listenOn(smtp.server, ctx.extraFds[0]!)
  log.info({ smtpPort: config.smtpPort, domains: config.mailDomains }, 'mail child accepting SMTP')

  const closeAll = async (timeoutMs: number): Promise<{ cut: number }> => {
    const open = inflight
    http.close()
    http.closeIdleConnections()
    // smtp-server waits for open sessions up to closeTimeout, then answers them 421 and closes them.
    ;(smtp.options as { closeTimeout?: number }).closeTimeout = timeoutMs
    await new Promise<void>((resolve) => smtp.close(() => resolve()))
    await queue.close()
    await blobs.close()
    await seed.close()
    return { cut: Math.min(open, inflight) }
  }
  return {
    port,
    stats: () => ({ inflight, tracked: 0, requests }),
    drain: (timeoutMs) => closeAll(timeoutMs),
    close: async () => void (await closeAll(30_000)),
    destroy: () => {
      http.closeAllConnections()
      http.close()
      smtp.server.close()
      seed.destroy()
      for (const c of (smtp as unknown as { connections: Set<{ close(): void }> }).connections) c.close()
    },
  }
}
