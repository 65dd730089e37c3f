/** What the admin API's routes work with, made once per child (roles/admin/api-server.ts). */
import type { AdminSeedLink } from './api-seed-link.js'
import type { JobRunner } from './api-jobs.js'
import type { BlobUploads } from './api-push-upload.js'
import type { RegistryWatch } from './dashboard/registry-watch.js'

export interface ApiDeps {
  readonly link: AdminSeedLink
  /** The cluster secret: Live and upload tokens are signed with keys derived from it. */
  readonly secret: string
  readonly jobs: JobRunner
  /** File bytes of pushes over HTTP, on their way to the seed. */
  readonly uploads: BlobUploads
  /** The registry's history and snapshots (the dashboard's charts and live figures). */
  readonly watch: RegistryWatch
  /** `host:port` of the seed linked now, else the first of `--seed`. */
  seedAddress(): string
}
