/**
 * The state directory `espra-node up` writes and `espra-node admin` reads:
 * `<data-dir>/secret` (0600) and `<data-dir>/cluster.json` (where the seed is).
 */
import { randomBytes } from 'node:crypto'
import { mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import type { RoleName } from '../core/config.js'

export interface ClusterFile {
  /** Meta address of the seed, host:port. */
  seed: string
  /** pid of the `espra-node up` process that owns this cluster. */
  upPid: number
  startedAt: string
  nodes: { role: RoleName; port: number; metricsPort: number; pid: number; log: string }[]
}

export const clusterFilePath = (dataDir: string): string => join(dataDir, 'cluster.json')
export const secretPath = (dataDir: string): string => join(dataDir, 'secret')

/** Creates the state directory (0700) and a cluster secret (0600) unless one exists. */
export function ensureStateDir(dataDir: string): { secretFile: string; created: boolean } {
  mkdirSync(join(dataDir, 'logs'), { recursive: true, mode: 0o700 })
  const secretFile = secretPath(dataDir)
  try {
    writeFileSync(secretFile, `${randomBytes(32).toString('hex')}\n`, { flag: 'wx', mode: 0o600 })
    return { secretFile, created: true }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
  }
  if ((statSync(secretFile).mode & 0o077) !== 0) {
    throw new Error(`${secretFile} is readable by other users; run: chmod 600 ${secretFile}`)
  }
  return { secretFile, created: false }
}

export function readClusterFile(dataDir: string): ClusterFile | null {
  try {
    return JSON.parse(readFileSync(clusterFilePath(dataDir), 'utf8')) as ClusterFile
  } catch {
    return null
  }
}

/** Written atomically (temp file + rename) so a reader never sees half a file. */
export function writeClusterFile(dataDir: string, file: ClusterFile): void {
  const path = clusterFilePath(dataDir)
  writeFileSync(`${path}.tmp`, `${JSON.stringify(file, null, 2)}\n`, { mode: 0o600 })
  renameSync(`${path}.tmp`, path)
}
