/**
 * A node's copy of the planned maintenance the seed last pushed, kept in its
 * data directory (`<data-dir>/state/<node-id>.maintenance.json`). A node
 * that restarts starts its children with it, so it never serves normally in
 * the moment before it has registered again, nor for as long as the seed is
 * unreachable. The seed's push on register replaces it; an expired copy is
 * ignored (every node ends a maintenance at `until` by its own clock).
 */
import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import type { NodeConfig } from '../core/config.js'
import type { Logger } from '../core/log.js'
import type { MaintenanceState } from '../core/node-state.js'
import { parseMaintenanceState } from '../http/maintenance.js'

const fileOf = (config: NodeConfig): string => join(config.dataDir, 'state', `${config.nodeId}.maintenance.json`)

/** The copy kept by the last run, or null (none, expired, or unreadable: said in the log). */
export function readMaintenanceFile(config: NodeConfig, log: Logger): MaintenanceState | null {
  let text: string
  try {
    text = readFileSync(fileOf(config), 'utf8')
  } catch {
    return null
  }
  let state: MaintenanceState | null = null
  try {
    state = parseMaintenanceState(JSON.parse(text))
  } catch {
    // state stays null
  }
  if (state === null) {
    log.warn({ file: fileOf(config) }, 'the kept copy of the maintenance state is malformed: ignored')
    return null
  }
  if (state.until <= Date.now()) return null
  log.info({ until: new Date(state.until).toISOString() }, 'maintenance kept from the last run: in force until the seed says otherwise')
  return state
}

/** Replaces the copy (null: removes it). A failure is logged: the seed's push on register still brings the state. */
export function writeMaintenanceFile(config: NodeConfig, state: MaintenanceState | null, log: Logger): void {
  const file = fileOf(config)
  try {
    if (state === null) return void rmSync(file, { force: true })
    mkdirSync(join(config.dataDir, 'state'), { recursive: true })
    writeFileSync(`${file}.tmp`, JSON.stringify(state))
    renameSync(`${file}.tmp`, file)
  } catch (err) {
    log.warn({ err, file }, 'could not keep a copy of the maintenance state')
  }
}
