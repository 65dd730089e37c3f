/** What the admin API's routes work with, made once per child (roles/admin/api-server.ts). */
import type { AdminSeedLink } from './api-seed-link.js'
import type { JobRunner } from './api-jobs.js'

export interface ApiDeps {
  readonly link: AdminSeedLink
  /** The cluster secret: Live and upload tokens are signed with keys derived from it. */
  readonly secret: string
  readonly jobs: JobRunner
  /** `host:port` of the seed linked now, else the first of `--seed`. */
  seedAddress(): string
}
