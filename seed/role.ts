/**
 * The seed role: the coordinator. It runs in the node's parent process only
 * (the registry must live in one place) and serves the meta port.
 */
import type { Role } from '../lib/process/role.js'
import { startSeed } from './seed.js'

export const seedRole: Role = {
  name: 'seed',
  summary: 'coordinator: node registry, failure detection, per-region routing tables, the datastore and task queue (embedded, or PostgreSQL with --datastore, where several seeds serve and one leads by a fenced lease), app-build store and push, on the internal meta port',
  notYet: [
    'cluster config store and push',
    'several seeds on the embedded datastore (each has its own store: use --datastore postgres:// for interchangeable seeds)',
    'task enqueues, leases and settlements sent again over a seed failover (they fail with ESPRA_ERR_TASK_UNAVAILABLE; renewals, counts and datastore reads and writes are sent again)',
  ],
  forks: false,
  parent: (ctx) => startSeed({ config: ctx.config, log: ctx.log, metrics: ctx.metrics }),
}
