/**
 * The mail role: inbound SMTP on `--smtp-port`, each message durable (blob
 * store, datastore, task queue) before 250 and handed to the app's
 * `handleMail` through the task queue. docs/mail.md.
 *
 * Every request and message a child sends its parent is in one of the two
 * tagged unions below and has its handler in one of the two tables; anything
 * else is an error that is logged (and, for a request, the child's answer).
 */
import { isMap } from '../../lib/transport/meta-shapes.js'
import { createError, EspraError } from '../../lib/core/errors.js'
import { routeByTag, type TagHandlers } from '../../lib/process/ipc.js'
import type { Role } from '../../lib/process/role.js'
import type { MailSeedRequest } from './child-seed-link.js'
import { startMailListener } from './listener.js'
import type { LimitsMessage, LimitsRequest } from './limits-client.js'
import { startLimitsParent } from './limits-parent.js'
import { startOutboundParent } from './outbound-parent.js'

/** The seed ops a mail child may send through its parent while its own link (child-seed-link.ts) is down: the datastore, the embedded queue's enqueue, a group of inbound messages, and the node list (app nodes to ask about recipients). */
const RELAYED = new Set(['ds.get', 'ds.put', 'ds.delete', 'ds.putIf', 'tasks.enqueue', 'mail.inbound.commit', 'nodes'])

/** Child → parent requests. */
type MailRequest = MailSeedRequest | LimitsRequest

/** Child → parent one-way messages. */
type MailMessage = LimitsMessage

export const mailRole: Role = {
  name: 'mail',
  summary: 'mail: inbound SMTP, durable before 250, handed to the app\'s handleMail through the task queue; outbound mail from a durable queue with retries, bounces, suppression and DKIM',
  notYet: [
    'outbound: MTA-STS reporting (TLS-RPT)',
  ],
  forks: true,
  listenPorts: (config) => [{ port: config.smtpPort, option: '--smtp-port' }],
  parent: async (ctx) => {
    const limits = startLimitsParent(ctx)
    /** What a child sent that no table knows: logged; a request is also refused with the error. */
    const unknown = (what: 'request' | 'message', body: unknown, child: number): EspraError => {
      const tag = String((body as { t?: unknown } | null)?.t).slice(0, 40)
      ctx.log.error({ childPid: child, tag }, `mail child ${child} sent an unknown ${what} '${tag}'`)
      return createError('ESPRA_ERR_IPC_UNKNOWN', { receiver: 'mail parent', what, tag })
    }
    const requests: TagHandlers<MailRequest, number> = {
      'mail-seed': (req, child) => {
        if (!isMap(req) || !RELAYED.has(req.op)) {
          // Reads as the app's and the fileserver's parents refuse an op they do not relay.
          throw createError('ESPRA_ERR_META_BAD_REQUEST', { field: 'op', reason: `is not relayed: mail nodes relay only ${[...RELAYED].join(', ')} (got ${JSON.stringify(String(req.op ?? null).slice(0, 40))} from child ${child})` })
        }
        return ctx.seedRequest(req.op, req.body)
      },
      'limit-connect': (req, child) => limits.connected(child, req.session, req.address),
      'limit-message': (req) => limits.message(req.address),
    }
    const messages: TagHandlers<MailMessage, number> = {
      'limit-closed': (msg, child) => limits.closed(child, msg.session),
    }
    const request = routeByTag(requests, (body, child) => {
      throw unknown('request', body, child)
    })
    const message = routeByTag(messages, (body, child) => void unknown('message', body, child))
    ctx.children.onRequest((child, body) => request(body, child))
    ctx.children.onMessage((child, body) => void message(body, child))
    // Outbound delivery runs in the parent: one per node, so its node-wide and per-domain caps hold.
    return startOutboundParent(ctx)
  },
  listen: (ctx) => startMailListener(ctx),
}
