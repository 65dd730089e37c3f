/**
 * The mail role: inbound SMTP on `--smtp-port`, each message durable (blob
 * store, datastore, task queue) before 250 and handed to the app's
 * `handleMail` through the task queue. docs/mail.md.
 */
import { isMap } from '../../lib/transport/meta-shapes.js'
import { EspraError } from '../../lib/core/errors.js'
import type { Role } from '../../lib/process/role.js'
import { startMailListener, type MailSeedRequest } from './listener.js'
import { startOutboundParent } from './outbound-parent.js'

/** The seed ops a mail child may send through its parent: the datastore, the embedded queue's enqueue, a group of inbound messages, and the node list (app nodes to ask about recipients). */
const RELAYED = new Set(['ds.get', 'ds.put', 'ds.delete', 'ds.putIf', 'tasks.enqueue', 'mail.inbound.commit', 'nodes'])

export const mailRole: Role = {
  name: 'mail',
  summary: 'mail: inbound SMTP, durable before 250, handed to the app\'s handleMail through the task queue; outbound mail from a durable queue with retries, bounces, suppression and DKIM',
  notYet: [
    'inbound: node-wide address limits (today per child)',
    'outbound: MTA-STS reporting (TLS-RPT)',
  ],
  forks: true,
  listenPorts: (config) => [{ port: config.smtpPort, option: '--smtp-port' }],
  parent: async (ctx) => {
    ctx.children.onRequest((_child, body) => {
      const req = body as MailSeedRequest
      if (!isMap(body) || req.t !== 'mail-seed' || !RELAYED.has(req.op)) throw new EspraError('ESPRA_ERR_INTERNAL', `mail child sent an unknown request ${JSON.stringify((body as { op?: unknown })?.op ?? null)}`)
      return ctx.seedRequest(req.op, req.body)
    })
    // Outbound delivery runs in the parent: one per node, so its node-wide and per-domain caps hold.
    return startOutboundParent(ctx)
  },
  listen: (ctx) => startMailListener(ctx),
}
