/** The admin role: the operator's dashboard and HTTP API over the seed. */
import type { Role } from '../../lib/process/role.js'

export const adminRole: Role = {
  name: 'admin',
  summary: 'operator dashboard and HTTP API over the seed',
  notYet: [
    'operator web dashboard',
    'HTTP API over the seed: nodes, health, builds, deploys, drain, maintenance, alerts',
  ],
  forks: true,
}
