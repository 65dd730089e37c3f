/** The fileserver role: static files for `*.<file-domain>`. */
import type { Role } from '../../lib/process/role.js'

export const fileserverRole: Role = {
  name: 'fileserver',
  summary: 'static files: app assets, S3 objects through a local cache, per-Host files, uploads',
  notYet: [
    'app assets served from memory (current build)',
    'S3 objects through a bounded local disk cache',
    'per-Host (vhost) files',
    'token-checked uploads that are hashed, compressed and pushed to S3',
  ],
  forks: true,
}
