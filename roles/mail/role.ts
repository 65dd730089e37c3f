/** The mail role. For now its HTTP port answers health checks only. */
import type { Role } from '../../lib/process/role.js'

export const mailRole: Role = {
  name: 'mail',
  summary: 'mail: inbound SMTP handed to the app, outbound mail from a durable queue (HTTP port: health only for now)',
  notYet: [
    'inbound SMTP listener handing mail to the app',
    'outbound mail from a durable queue with retries and bounces',
    'DKIM signing of outbound mail',
  ],
  forks: true,
}
