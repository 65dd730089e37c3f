/**
 * A real seed and a real admin node (from dist: build first) with a tokens
 * file of three operators, and a small client for the admin API.
 */
import { chmodSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import type { Test } from 'tap'
import { adminTokenLine as tokensFileLine, newAdminToken } from '../../lib/core/options-admin.js'
import { freePort, startNode, type StartedNode } from './cluster.js'
import { send, type HttpAnswer } from './http.js'
import { testDir } from './temp-dir.js'

export const FAST = { 'heartbeat-interval': '200ms', 'heartbeat-timeout': '1s' }

export interface AdminApiCluster {
  seed: StartedNode
  admin: StartedNode
  metaPort: number
  seedAddress: string
  tokens: { operator: string; viewer: string; second: string }
  /** Calls the admin API; `token` null sends no Authorization. */
  api(method: string, path: string, opts?: ApiCallOptions): Promise<ApiAnswer>
}

export interface ApiCallOptions {
  token?: string | null
  body?: unknown
  /** Sent as is (no JSON encoding), e.g. for bad-input tests. */
  raw?: string | Buffer
  headers?: Record<string, string>
  /** The client address to call from (another loopback address, e.g. 127.0.0.2, counts apart). */
  from?: string
}

export interface ApiAnswer extends HttpAnswer {
  json: any
}

export async function apiCall(port: number, method: string, path: string, opts: ApiCallOptions = {}): Promise<ApiAnswer> {
  const body = opts.raw ?? (opts.body === undefined ? undefined : JSON.stringify(opts.body))
  const headers: Record<string, string> = {
    ...(opts.token ? { authorization: `Bearer ${opts.token}` } : {}),
    ...(opts.body !== undefined ? { 'content-type': 'application/json' } : {}),
    ...(body !== undefined ? { 'content-length': String(Buffer.byteLength(body)) } : {}),
    ...opts.headers,
  }
  const answer = await send({ host: '127.0.0.1', port, method, path, headers, agent: false, ...(opts.from ? { localAddress: opts.from } : {}) }, body)
  let json: unknown = null
  try {
    json = JSON.parse(answer.body)
  } catch {
    json = null
  }
  return { ...answer, json }
}

export async function startSeedProcess(t: Test, flags: Record<string, string | number> = {}) {
  const metaPort = await freePort()
  const seed = await startNode(t, 'seed', { 'meta-port': metaPort, 'seed-grace': '0', ...FAST, ...flags })
  return { seed, metaPort, seedAddress: `127.0.0.1:${metaPort}` }
}

export async function startAdminApi(t: Test, adminFlags: Record<string, string | number> = {}): Promise<AdminApiCluster> {
  const { seed, metaPort, seedAddress } = await startSeedProcess(t)
  const dir = testDir('espra-admin-api-')
  const tokens = { operator: newAdminToken(), viewer: newAdminToken(), second: newAdminToken() }
  const file = join(dir, 'admin-tokens')
  writeFileSync(file, `# test operators\n${tokensFileLine('ops', 'operator', tokens.operator)}\n${tokensFileLine('watcher', 'viewer', tokens.viewer)}\n${tokensFileLine('ops2', 'operator', tokens.second)}\n`)
  chmodSync(file, 0o600)
  const admin = await startNode(t, 'admin', { seed: seedAddress, children: 1, 'admin-tokens-file': file, ...FAST, ...adminFlags })
  return {
    seed, admin, metaPort, seedAddress, tokens,
    api: (method, path, opts = {}) => apiCall(admin.port, method, path, { token: tokens.operator, ...opts }),
  }
}

/** An admin node (one child unless `flags` say) with the three test operators on a seed started elsewhere. */
export async function startAdminOn(t: Test, seedAddress: string, flags: Record<string, string | number> = {}): Promise<Omit<AdminApiCluster, 'seed' | 'metaPort'>> {
  const dir = testDir('espra-admin-api-')
  const tokens = { operator: newAdminToken(), viewer: newAdminToken(), second: newAdminToken() }
  const file = join(dir, 'admin-tokens')
  writeFileSync(file, `${tokensFileLine('ops', 'operator', tokens.operator)}\n${tokensFileLine('watcher', 'viewer', tokens.viewer)}\n${tokensFileLine('ops2', 'operator', tokens.second)}\n`)
  chmodSync(file, 0o600)
  const admin = await startNode(t, 'admin', { seed: seedAddress, children: 1, 'admin-tokens-file': file, ...FAST, ...flags })
  return {
    admin, seedAddress, tokens,
    api: (method, path, opts = {}) => apiCall(admin.port, method, path, { token: tokens.operator, ...opts }),
  }
}
