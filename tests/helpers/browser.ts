/**
 * Debian's Chromium, headless, driven by playwright-core (which downloads no
 * browser): `.ci/run` installs it. Each call gets a fresh profile, closed and
 * removed at teardown.
 */
import { existsSync, rmSync } from 'node:fs'
import { chromium, type BrowserContext } from 'playwright-core'
import type { Test } from 'tap'
import { testDir } from './temp-dir.js'

export const CHROMIUM = process.env['CHROMIUM_PATH'] ?? '/usr/bin/chromium'
// The flags that work on this machine kind: no sandbox as root, and nothing that phones out.
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync']

/** False when Chromium is missing: the caller fails with {@link MISSING_CHROMIUM}. */
export const HAVE_CHROMIUM = existsSync(CHROMIUM)
export const MISSING_CHROMIUM = `${CHROMIUM} is missing: apt-get install -y chromium (or set CHROMIUM_PATH)`

export async function launchBrowser(t: Test): Promise<BrowserContext> {
  const profile = testDir('espra-chromium-')
  t.teardown(() => rmSync(profile, { recursive: true, force: true }))
  // launchPersistentContext: a fresh --user-data-dir of our own (plain launch() refuses that flag).
  const browser = await chromium.launchPersistentContext(profile, { executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS })
  t.teardown(() => browser.close())
  return browser
}
