/**
 * The one literal map from role name to role. Only this file sees every
 * role; roles never import each other.
 *
 * Each entry loads its role when asked: a node process (parent and children)
 * loads only the role it runs, not every role's dependencies (the S3 SDK,
 * LMDB, Redis, ...). That is about 30 MB less per process, which `up` (a
 * dozen processes on one machine) needs to stay small.
 */
import { ROLE_NAMES, type RoleName } from '../lib/core/config.js'
import type { Role } from '../lib/process/role.js'

export const ROLE_LOADERS: Readonly<Record<RoleName, () => Promise<Role>>> = Object.freeze({
  seed: async () => (await import('../seed/role.js')).seedRole,
  proxy: async () => (await import('./proxy/role.js')).proxyRole,
  live: async () => (await import('./live/role.js')).liveRole,
  fileserver: async () => (await import('./fileserver/role.js')).fileserverRole,
  app: async () => (await import('./app/role.js')).appRole,
  mail: async () => (await import('./mail/role.js')).mailRole,
  admin: async () => (await import('./admin/role.js')).adminRole,
})

/** One role, loaded. */
export function loadRole(name: RoleName): Promise<Role> {
  return ROLE_LOADERS[name]()
}

/** Every role, loaded (`--help` lists them all). */
export async function loadRoles(): Promise<Readonly<Record<RoleName, Role>>> {
  const roles = await Promise.all(ROLE_NAMES.map((name) => loadRole(name)))
  return Object.freeze(Object.fromEntries(ROLE_NAMES.map((name, i) => [name, roles[i]!]))) as Record<RoleName, Role>
}
