/**
 * The admin node's alert sinks (docs/alerts.md, "Sinks"): one queue per
 * webhook URL (`--alert-webhook`, signed with `--alert-webhook-secret-file`,
 * body per `--alert-webhook-format`) and one for mail (`--alert-email`), which
 * puts each notification on the cluster's outbound mail queue like
 * `admin mail send` does; a mail node delivers it.
 */
import type { NodeConfig } from '../../../lib/core/config.js'
import { readWebhookSecret } from '../../../lib/core/options-alerts.js'
import type { Logger } from '../../../lib/core/log.js'
import type { AlertNotification } from '../../../lib/alerts/alert.js'
import { jsonBody, mailSubject, mailText, slackBody } from '../../../lib/alerts/message.js'
import { signBody } from '../../../lib/alerts/signature.js'
import { createSinkQueue, type SinkQueue } from '../../../lib/alerts/sink-queue.js'
import type { SinkStatus } from '../../../lib/alerts/store.js'
import { checkOutMessage, composeOutMessage, newOutId, recipientsByDomain } from '../../../lib/mail/outbound.js'
import { enqueueOutbound } from '../../../lib/mail/outbound-store.js'
import { openOutboundQueue } from '../../../lib/mail/outbound-queue.js'
import type { Datastore } from '../../../lib/storage/datastore.js'
import type { MetaRequester } from '../../../lib/tasks/queue-meta.js'
import type { TaskQueue } from '../../../lib/tasks/queue.js'

/** A webhook that has not answered within this failed (and is retried). */
export const WEBHOOK_TIMEOUT_MS = 10_000

export interface AlertSinks {
  readonly queues: readonly SinkQueue[]
  notify(n: AlertNotification): void
  close(): Promise<void>
  destroy(): void
}

export interface SinkDeps {
  readonly config: NodeConfig
  readonly log: Logger
  readonly datastore: Datastore
  readonly seed: MetaRequester
  readonly onStatus: (status: SinkStatus) => void
  /** Whether this node still holds the engine lease of `epoch` (read back from the datastore); asked before every delivery attempt. */
  readonly confirm: (epoch: number) => Promise<boolean>
  /** Tests shorten the retry backoff. */
  readonly backoffMinMs?: number
}

/** The name a webhook shows under: its number and origin, never its path or query (they often hold a token). */
export const webhookName = (url: string, index: number): string => `webhook ${index + 1} ${new URL(url).origin}`

/** Thrown before a delivery whose sender no longer holds the lease it was sent under: the queue drops it. */
class StaleNotification extends Error {
  readonly stale = true
}

export async function createAlertSinks(deps: SinkDeps): Promise<AlertSinks> {
  const { config, log } = deps
  // The lease is checked before every attempt, so a holder that lost it (paused past its lease, cut off) sends nothing stale.
  const fenced = (deliver: (n: AlertNotification) => Promise<void>) => async (n: AlertNotification): Promise<void> => {
    // `seed-link` from an admin node that reaches no seed (./seed-cutoff.ts): no lease can be held or checked then.
    if (n.epoch === undefined && n.alert.rule === 'seed-link') return deliver(n)
    if (n.epoch === undefined) throw new StaleNotification('notification without an engine lease epoch')
    let held: boolean
    try {
      held = await deps.confirm(n.epoch)
    } catch (err) {
      throw new Error(`the engine lease could not be checked: ${(err as Error).message}`)
    }
    if (!held) {
      log.warn({ alert: n.alert.id, event: n.event, epoch: n.epoch }, 'notification dropped: this admin node no longer holds the alert engine lease it was made under')
      throw new StaleNotification(`stale: the engine lease of epoch ${n.epoch} is no longer held by this admin node`)
    }
    await deliver(n)
  }
  const key = config.alertWebhookSecretFile === null ? null : readWebhookSecret(config.alertWebhookSecretFile)
  const common = { onStatus: deps.onStatus, ...(deps.backoffMinMs !== undefined ? { backoffMinMs: deps.backoffMinMs } : {}) }
  const queues: SinkQueue[] = config.alertWebhook.map((url, i) => createSinkQueue({
    ...common, name: webhookName(url, i), kind: 'webhook',
    deliver: fenced(async (n) => {
      const body = config.alertWebhookFormat === 'slack' ? slackBody(n) : jsonBody(n)
      const res = await fetch(url, {
        method: 'POST', body, signal: AbortSignal.timeout(WEBHOOK_TIMEOUT_MS),
        headers: {
          'content-type': 'application/json', 'user-agent': 'espra-node-alerts',
          ...(n.epoch !== undefined ? { 'x-espra-alert-epoch': String(n.epoch) } : {}),
          ...(key !== null ? signBody(key, body) : {}),
        },
      }).catch((err: Error) => {
        throw new Error(err.name === 'TimeoutError' ? `no answer within ${WEBHOOK_TIMEOUT_MS} ms` : `${err.message}${(err.cause as Error | undefined)?.message ? ` (${(err.cause as Error).message})` : ''}`)
      })
      await res.arrayBuffer().catch(() => {})
      if (res.status < 200 || res.status > 299) throw new Error(`HTTP ${res.status}`)
    }),
  }))
  let mailQueue: TaskQueue | null = null
  if (config.alertEmail.length > 0) {
    const queue = (mailQueue = await openOutboundQueue(config.redis, log, deps.seed))
    queues.push(createSinkQueue({
      ...common, name: `email ${config.alertEmail.join(', ')}`.slice(0, 300), kind: 'email',
      deliver: fenced(async (n) => {
        const m = checkOutMessage({ from: config.alertEmailFrom, to: [...config.alertEmail], subject: mailSubject(n), text: mailText(n) })
        const id = newOutId()
        const { raw, messageId } = await composeOutMessage(m, id, async () => null)
        await enqueueOutbound({ datastore: deps.datastore, queue, blobs: null }, { id, from: m.from.address, rcptsByDomain: recipientsByDomain(m), raw, subject: m.subject, messageId, kind: 'message' })
      }),
    }))
  }
  for (const q of queues) log.info({ sink: q.name }, 'alert sink ready')
  return {
    queues,
    notify(n) {
      for (const q of queues) q.push(n)
    },
    async close() {
      await Promise.all(queues.map((q) => q.close()))
      await mailQueue?.close()
    },
    destroy() {
      for (const q of queues) q.destroy()
      void mailQueue?.close()
    },
  }
}
