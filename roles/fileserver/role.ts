/** The fileserver role: static files for `*.<file-domain>`. */
import type { Role } from '../../lib/process/role.js'
import { startAppAssets } from './app-assets.js'
import { startFileserverNode } from './node.js'

export const fileserverRole: Role = {
  name: 'fileserver',
  summary: 'static files: app assets, S3 objects through a local cache, per-Host files, uploads',
  notYet: [
    'S3 objects through a bounded local disk cache',
    'per-Host (vhost) files',
    'token-checked uploads that are hashed, compressed and pushed to S3',
  ],
  forks: true,
  // The current app build is pushed on every (re)connect and whenever it changes.
  subscribe: () => ({ builds: true }),
  parent: async (ctx) => startFileserverNode(ctx),
  child: (ctx) => startAppAssets(ctx),
}
