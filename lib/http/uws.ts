/**
 * Loads the uWebSockets.js native addon directly. The package would quietly
 * fall back to a slow `ws`-based implementation when its binary does not load;
 * we fail at start with a clear error instead.
 */
import { createRequire } from 'node:module'
import type * as UWS from 'uWebSockets.js'
import { createError } from '../core/errors.js'

declare module 'uWebSockets.js' {
  interface TemplatedApp {
    /** Closes every listen socket and connection of the app (present in the addon, missing from its types). */
    close(): void
  }
}

export type { HttpRequest, HttpResponse, TemplatedApp, us_listen_socket, WebSocket } from 'uWebSockets.js'

const require = createRequire(import.meta.url)

function loadNative(): typeof UWS {
  const binary = `uWebSockets.js/binaries/uws_${process.platform}_${process.arch}_${process.versions.modules}.node`
  try {
    return require(binary) as typeof UWS
  } catch (err) {
    throw createError('ESPRA_ERR_UWS_NATIVE', { binary, reason: (err as Error).message })
  }
}

/** The native uWS module. Import this, never 'uWebSockets.js' directly. */
export const uws: typeof UWS = loadNative()
