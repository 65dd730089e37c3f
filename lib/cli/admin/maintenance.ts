/**
 * `espra-node admin maintenance on | off | status` (and `admin maintenance`
 * alone: the status): planned maintenance over the seed's meta port
 * (`maintenance.set`, `maintenance.clear`, `maintenance.get`; the seed pushes
 * every change to every node). Flags are checked here first with the seed's
 * own rules (lib/http/maintenance.ts), so a typo exits 2 before anything is
 * sent.
 */
import { createError } from '../../core/errors.js'
import type { MaintenanceState } from '../../core/node-state.js'
import { checkAllow, checkHosts, DEFAULT_MESSAGE, messageProblem, parseUntilArg } from '../../http/maintenance.js'
import type { MetaClient } from '../../transport/meta-client.js'
import { connect, type ConnectOptions } from './cli.js'
import { formatMaintenance } from './format.js'

const REQUEST_TIMEOUT_MS = 10_000

export interface MaintenanceOnOptions extends ConnectOptions {
  message?: string
  until?: string
  hosts?: string[]
  allow?: string[]
  json?: boolean
}

const usage = (option: string, problem: string) =>
  createError('ESPRA_ERR_CONFIG_INVALID', { option, reason: problem })

/** Comma-separated and repeatable flags as one list. */
const items = (values: readonly string[]): string[] => values.flatMap((v) => v.split(',')).map((v) => v.trim()).filter((v) => v !== '')

/** The `maintenance.set` body the flags ask for, checked; throws a usage error naming the flag. */
export function maintenanceBody(opts: MaintenanceOnOptions, now: number = Date.now()): Record<string, unknown> {
  if (opts.until === undefined) throw usage('--until', 'is required: a maintenance always ends by itself (a duration such as 90m, 2h, 1d, or an ISO-8601 time such as 2026-12-03T06:00Z; at most 7 days)')
  let when: { forMs: number } | { until: number }
  try {
    when = parseUntilArg(opts.until, now)
  } catch (problem) {
    throw usage('--until', String(problem))
  }
  const message = opts.message ?? DEFAULT_MESSAGE
  const mp = messageProblem(message)
  if (mp !== null) throw usage('--message', mp)
  const body: Record<string, unknown> = { message, ...when }
  try {
    if (opts.hosts !== undefined) body['hosts'] = checkHosts(items(opts.hosts))
  } catch (problem) {
    throw usage('--hosts', String(problem))
  }
  try {
    if (opts.allow !== undefined) body['allow'] = checkAllow(items(opts.allow))
  } catch (problem) {
    throw usage('--allow', String(problem))
  }
  return body
}

/** Starts (or replaces) a maintenance; `body` as {@link maintenanceBody} makes it. The seed tells every node. */
export async function setMaintenance(client: MetaClient, body: Record<string, unknown>): Promise<{ state: MaintenanceState; nodes: number }> {
  return client.request<{ state: MaintenanceState; nodes: number }>('maintenance.set', body, REQUEST_TIMEOUT_MS)
}

/** Ends the maintenance; `cleared` false when there was none. */
export async function clearMaintenance(client: MetaClient): Promise<{ cleared: boolean; nodes: number }> {
  return client.request<{ cleared: boolean; nodes: number }>('maintenance.clear', {}, REQUEST_TIMEOUT_MS)
}

/** The maintenance now (null: none) and the seed's clock. */
export async function readMaintenance(client: MetaClient): Promise<{ state: MaintenanceState | null; now: number }> {
  return client.request<{ state: MaintenanceState | null; now: number }>('maintenance.get', {}, REQUEST_TIMEOUT_MS)
}

export async function adminMaintenanceOn(opts: MaintenanceOnOptions): Promise<void> {
  const body = maintenanceBody(opts)
  const client = await connect(opts)
  try {
    const { state, nodes } = await setMaintenance(client, body)
    process.stdout.write(opts.json ? `${JSON.stringify(state)}\n` : `${formatMaintenance(state, Date.now())} (told ${nodes} node${nodes === 1 ? '' : 's'})\n`)
  } finally {
    await client.close()
  }
}

export async function adminMaintenanceOff(opts: ConnectOptions): Promise<void> {
  const client = await connect(opts)
  try {
    const { cleared, nodes } = await clearMaintenance(client)
    process.stdout.write(cleared ? `maintenance: off (told ${nodes} node${nodes === 1 ? '' : 's'})\n` : 'maintenance: was already off\n')
  } finally {
    await client.close()
  }
}

export async function adminMaintenanceStatus(opts: ConnectOptions & { json?: boolean }): Promise<void> {
  const client = await connect(opts)
  try {
    const { state, now } = await readMaintenance(client)
    process.stdout.write(opts.json ? `${JSON.stringify(state)}\n` : `${formatMaintenance(state, now)}\n`)
  } finally {
    await client.close()
  }
}
