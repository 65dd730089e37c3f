/**
 * Everything the dashboard's browser loads, read once when the child starts
 * and served from memory: the two HTML shells (no data in them, no inline
 * script or style), the stylesheet, the compiled page modules
 * (roles/admin/dashboard/client/, built to dist next to this file) and
 * uPlot's own files from node_modules. Nothing is fetched from anywhere else
 * at run time, so the strict CSP below holds.
 */
import { readdirSync, readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { fileURLToPath } from 'node:url'
import { createError } from '../../../lib/core/errors.js'
import { DASHBOARD_CSS } from './styles.js'

/** Sent with every dashboard answer (and the API's): no inline script, no framing, no other origin. */
export const SECURITY_HEADERS: Readonly<Record<string, string>> = {
  'Content-Security-Policy': "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
  'X-Content-Type-Options': 'nosniff',
  'Referrer-Policy': 'no-referrer',
  'X-Frame-Options': 'DENY',
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Resource-Policy': 'same-origin',
}

export interface Asset {
  readonly type: string
  readonly body: Buffer
}

const page = (title: string, script: string, body: string): string => `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${title}</title>
<link rel="stylesheet" href="/dashboard/assets/uPlot.min.css">
<link rel="stylesheet" href="/dashboard/assets/dashboard.css">
${script === 'app.js' ? '<script src="/dashboard/assets/uPlot.iife.min.js"></script>\n' : ''}<script type="module" src="/dashboard/assets/${script}"></script>
</head>
<body>
${body}
</body>
</html>
`

const LOGIN_HTML = page('espra admin: log in', 'login.js', `<main class="login">
<h1>espra admin</h1>
<form id="login" autocomplete="off">
<label for="token">Operator token</label>
<input id="token" name="token" type="password" required autofocus spellcheck="false">
<button type="submit">Log in</button>
<p id="error" class="error" role="alert"></p>
</form>
<p class="hint">The token is one of <code>--admin-tokens-file</code>'s (<code>espra-node up</code> writes one to <code>.espra/admin-token</code>).</p>
</main>`)

const APP_HTML = page('espra admin', 'app.js', `<header class="top">
<span class="brand">espra admin</span>
<nav id="nav" aria-label="pages">
<a href="#/overview">Overview</a><a href="#/builds">Builds</a><a href="#/tasks">Tasks</a><a href="#/events">Events</a><a href="#/audit">Audit</a><a href="#/alerts">Alerts</a><a href="#/mail">Mail</a><a href="#/ops">Operations</a>
</nav>
<span id="link" class="link" role="status"></span>
<span id="who" class="who"></span>
<button id="logout" type="button">Log out</button>
</header>
<main id="main" tabindex="-1"></main>
<div id="toast" class="toast" role="status" aria-live="polite"></div>`)

/** Loads every asset; throws when the client was not built (a broken install, said plainly at start). */
export function loadAssets(): Map<string, Asset> {
  const assets = new Map<string, Asset>()
  const add = (name: string, type: string, body: string | Buffer): void => void assets.set(name, { type, body: Buffer.from(body) })
  add('login.html', 'text/html; charset=utf-8', LOGIN_HTML)
  add('app.html', 'text/html; charset=utf-8', APP_HTML)
  add('dashboard.css', 'text/css; charset=utf-8', DASHBOARD_CSS)
  const clientDir = fileURLToPath(new URL('./client/', import.meta.url))
  let files: string[]
  try {
    files = readdirSync(clientDir).filter((f) => f.endsWith('.js'))
  } catch (err) {
    throw createError('ESPRA_ERR_INTERNAL', { reason: `the dashboard's page modules are missing from ${clientDir} (npm run build builds them): ${(err as Error).message}`, dir: clientDir })
  }
  for (const f of files) add(f, 'text/javascript; charset=utf-8', readFileSync(clientDir + f))
  const require = createRequire(import.meta.url)
  add('uPlot.iife.min.js', 'text/javascript; charset=utf-8', readFileSync(require.resolve('uplot/dist/uPlot.iife.min.js')))
  add('uPlot.min.css', 'text/css; charset=utf-8', readFileSync(require.resolve('uplot/dist/uPlot.min.css')))
  return assets
}

/** An asset name as a URL may ask for it: one plain file name, nothing that climbs. */
export const ASSET_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/
