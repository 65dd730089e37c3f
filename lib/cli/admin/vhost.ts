/**
 * `espra-node admin vhost set | rm | ls`: vhost mappings (host + path → an
 * uploaded file) over the seed's meta port. Writes go through the seed's
 * `vhost.set` / `vhost.rm` ops, which also tell every fileserver; reads are
 * `ds.list` on the datastore's `vhosts` kind. Host names and paths are
 * checked here first, so a typo exits 2 before anything is sent.
 */
import { createError } from '../../core/errors.js'
import { createDatastoreClient } from '../../storage/datastore-client.js'
import { listAll, type Datastore } from '../../storage/datastore.js'
import type { MetaClient } from '../../transport/meta-client.js'
import {
  fileSha256, HOST_KEY_PREFIX, hostPrefix, hostProblem, isVhostMapping, normalizeHost, pathProblem, type VhostMapping,
} from '../../vhosts/vhost.js'
import { connect, type ConnectOptions } from './cli.js'

const REQUEST_TIMEOUT_MS = 10_000

const usage = (what: string, value: string, problem: string) =>
  createError('ESPRA_ERR_CONFIG_INVALID', { option: what, reason: `${problem} (got ${JSON.stringify(value)})` })

function argHost(raw: string): string {
  const host = normalizeHost(raw)
  const problem = hostProblem(host)
  if (problem) throw usage('host', raw, problem)
  return host
}

function argPath(raw: string): string {
  const problem = pathProblem(raw)
  if (problem) throw usage('path', raw, problem)
  return raw
}

function formatBytes(n: number): string {
  return n < 1024 ? `${n} B` : n < 1024 ** 2 ? `${(n / 1024).toFixed(1)} KB` : `${(n / 1024 ** 2).toFixed(1)} MB`
}

/** Maps `host` + `path` to an uploaded file (`files/<sha256>`); the seed tells every fileserver (`vhost.set`). */
export async function setVhost(client: MetaClient, m: { host: string; path: string; sha256: string; force: boolean }): Promise<{ mapping: VhostMapping; previous: string | null }> {
  return client.request<{ mapping: VhostMapping; previous: string | null }>(
    'vhost.set', { host: m.host, path: m.path, file: `files/${m.sha256}`, ...(m.force ? { force: true } : {}) }, REQUEST_TIMEOUT_MS,
  )
}

/** Removes one mapping (`path`) or every mapping of `host`; `ESPRA_ERR_VHOST_NOT_FOUND` when there was none. */
export async function removeVhost(client: MetaClient, host: string, path: string | undefined): Promise<{ removed: number }> {
  const { removed } = await client.request<{ removed: number; registered: boolean }>(
    'vhost.rm', path === undefined ? { host } : { host, path }, REQUEST_TIMEOUT_MS,
  )
  if (removed === 0) throw createError('ESPRA_ERR_VHOST_NOT_FOUND', { mapping: `${host}${path ?? ''}`, host, ...(path === undefined ? {} : { path }) })
  return { removed }
}

/** Every mapping, or those of one host, read from the datastore's `vhosts` kind. */
export async function listVhosts(datastore: Datastore, only: string | undefined): Promise<VhostMapping[]> {
  const hosts: string[] = []
  if (only !== undefined) hosts.push(only)
  else for await (const entry of listAll(datastore, 'vhosts', HOST_KEY_PREFIX)) hosts.push(entry.key.slice(HOST_KEY_PREFIX.length))
  const mappings: VhostMapping[] = []
  for (const host of hosts) {
    for await (const entry of listAll(datastore, 'vhosts', hostPrefix(host))) if (isVhostMapping(entry.value)) mappings.push(entry.value)
  }
  return mappings
}

export async function adminVhostSet(rawHost: string, rawPath: string, rawFile: string, opts: ConnectOptions & { force?: boolean }): Promise<void> {
  const host = argHost(rawHost)
  const path = argPath(rawPath)
  const sha = fileSha256(rawFile)
  if (sha === null) throw usage('file', rawFile, 'must be the key an upload answered, files/<sha256> (64 lower-case hex digits)')
  const client = await connect(opts)
  try {
    const { mapping, previous } = await setVhost(client, { host, path, sha256: sha, force: opts.force === true })
    const was = previous === null ? '' : previous === mapping.file ? ' (unchanged)' : ` (was ${previous})`
    process.stdout.write(`${host}${path} -> ${mapping.file} (${mapping.type}, ${formatBytes(mapping.size)})${was}\n`)
  } finally {
    await client.close()
  }
}

export async function adminVhostRm(rawHost: string, rawPath: string | undefined, opts: ConnectOptions): Promise<void> {
  const host = argHost(rawHost)
  const path = rawPath === undefined ? undefined : argPath(rawPath)
  const client = await connect(opts)
  try {
    const { removed } = await removeVhost(client, host, path)
    process.stdout.write(`removed ${removed} mapping${removed === 1 ? '' : 's'} of ${host}\n`)
  } finally {
    await client.close()
  }
}

export function formatVhosts(mappings: readonly VhostMapping[]): string {
  if (mappings.length === 0) return '(no vhost mappings)'
  const columns: [string, (m: VhostMapping) => string][] = [
    ['HOST', (m) => m.host],
    ['PATH', (m) => m.path],
    ['FILE', (m) => m.file],
    ['TYPE', (m) => m.type],
    ['SIZE', (m) => formatBytes(m.size)],
    ['SET', (m) => new Date(m.at).toISOString().replace(/\.\d+Z$/, 'Z')],
  ]
  const rows = [columns.map(([title]) => title), ...mappings.map((m) => columns.map(([, cell]) => cell(m)))]
  const widths = columns.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)))
  return rows.map((r) => r.map((cell, i) => cell.padEnd(widths[i]!)).join('  ').trimEnd()).join('\n')
}

export async function adminVhostLs(rawHost: string | undefined, opts: ConnectOptions & { json?: boolean }): Promise<void> {
  const only = rawHost === undefined ? undefined : argHost(rawHost)
  const client = await connect(opts)
  try {
    const mappings = await listVhosts(createDatastoreClient(client), only)
    process.stdout.write(opts.json ? `${JSON.stringify(mappings)}\n` : `${formatVhosts(mappings)}\n`)
  } finally {
    await client.close()
  }
}
