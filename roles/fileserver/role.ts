/** The fileserver role: static files for `*.<file-domain>`. */
import { guardMaintenance } from '../../lib/http/maintenance-guard.js'
import { closeInReverse, type Role } from '../../lib/process/role.js'
import { startAppAssets } from './app-assets.js'
import { createFileServing } from './cache-client.js'
import { startFilesRoute } from './files-route.js'
import { startFileserverNode } from './node.js'
import { startTus } from './tus.js'
import { startTusSweep } from './tus-sweep.js'
import { startUploads } from './upload.js'
import { startVhostFiles } from './vhost-files.js'
import { startVhostParent } from './vhost-parent.js'
import { createUploadPipeline } from './upload-pipeline.js'
import { startPendingUploads } from './upload-pending.js'
import { FileCounters } from './counters.js'

export const fileserverRole: Role = {
  name: 'fileserver',
  summary: 'static files: app assets, S3 objects through a local cache, per-Host files, uploads',
  notYet: [
    'tus uploads: the creation-with-upload, creation-defer-length and concatenation extensions; CORS answers for browsers uploading from another origin',
  ],
  forks: true,
  // Uploads hash with whirlpool, which OpenSSL 3 keeps in its legacy provider; children check it at start.
  childExecArgv: ['--openssl-legacy-provider'],
  // The current app build is pushed on every (re)connect and whenever it changes.
  // files.changed: keys that now exist or changed clear the negative caches (miss-cache.ts).
  // routing: upload progress is published to the channel's home Live node.
  // vhosts.changed: mapping changes drop cached mappings (vhost-files.ts) and keep the set of vhosts current.
  subscribe: (config) => ({ builds: true, files: true, routing: config.region, vhosts: true }),
  parent: async (ctx) => {
    const uploads = await startPendingUploads(ctx)
    const vhosts = startVhostParent(ctx)
    const handles = [uploads, vhosts, await startTusSweep(ctx), await startFileserverNode(ctx, { uploads, vhosts })]
    return {
      close: () => closeInReverse(handles),
      destroy: (err) => handles.forEach((h) => h.destroy(err)),
    }
  },
  child: async (ctx) => {
    // Before any route: planned maintenance answers every route added after it (health checks stay as they are).
    guardMaintenance(ctx.app, { maintenance: () => ctx.state().maintenance, trustedProxies: ctx.config.trustedProxies })
    const counters = new FileCounters()
    const files = createFileServing(ctx, counters)
    // First: it wraps ctx.app, so every route added after it answers requests for a vhost Host with vhost files.
    const vhosts = startVhostFiles(ctx, files)
    startFilesRoute(ctx, files)
    // POST /upload and tus (/uploads/) share one pipeline: hashing, storing, recording, notifying.
    const uploads = await createUploadPipeline(ctx, counters)
    startUploads(ctx, uploads)
    startTus(ctx, uploads)
    const handles = [files, vhosts, uploads, await startAppAssets(ctx)]
    return {
      close: () => closeInReverse(handles),
      destroy: (err) => handles.forEach((h) => h.destroy(err)),
    }
  },
}
