/**
 * The one literal map from role name to role. Only this file sees every
 * role; roles never import each other.
 */
import type { RoleName } from '../lib/core/config.js'
import type { Role } from '../lib/process/role.js'
import { seedRole } from '../seed/role.js'
import { adminRole } from './admin/role.js'
import { appRole } from './app/role.js'
import { fileserverRole } from './fileserver/role.js'
import { liveRole } from './live/role.js'
import { mailRole } from './mail/role.js'
import { proxyRole } from './proxy/role.js'

export const ROLES: Readonly<Record<RoleName, Role>> = Object.freeze({
  seed: seedRole,
  proxy: proxyRole,
  live: liveRole,
  fileserver: fileserverRole,
  app: appRole,
  mail: mailRole,
  admin: adminRole,
})
