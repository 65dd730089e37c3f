/**
 * A real seed and app nodes for App-role tests: builds written to temp
 * directories and pushed with the real `admin push-build`, the admin CLI
 * with the cluster's secret, nodes killed at teardown (tests/helpers/cluster.ts).
 */
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import type { Test } from 'tap'
import { freePort, health, SECRET, startNode, waitFor, type StartedNode } from './cluster.js'
import { runCli } from './up.js'
import { testDir } from './temp-dir.js'

/** A build directory holding `files` (paths relative to the build root). */
export function writeBuild(files: Record<string, string>): string {
  const dir = testDir('espra-app-build-')
  for (const [path, content] of Object.entries(files)) {
    mkdirSync(join(dir, path, '..'), { recursive: true })
    writeFileSync(join(dir, path), content)
  }
  return dir
}

/** `espra-node admin <args>` with the test secret. */
export function admin(args: string[], env: NodeJS.ProcessEnv = {}) {
  return runCli(['admin', ...args], { env: { ...process.env, ESPRA_SECRET: SECRET, ...env } })
}

export interface AppCluster {
  readonly seed: StartedNode
  readonly seedAddress: string
  /** The blob directory the seed and its app nodes share (other nodes of the cluster use it too). */
  readonly blobDir: string
  /** Another app node on this seed (ids app-1, app-2, ...). */
  startApp(flags?: Record<string, string | number>): Promise<StartedNode>
  /** A fileserver node on this seed sharing the blob directory (ids fs-1, fs-2, ...). */
  startFileserver(flags?: Record<string, string | number>): Promise<StartedNode>
  /** Pushes a build directory; resolves once `push-build` printed the expected id. */
  push(dir: string, id: string): Promise<void>
  /** Waits until the node's health answer names the build. */
  serving(node: StartedNode, id: string): Promise<unknown>
}

/** A seed with fast heartbeats and a shared blob directory; app nodes get `appFlags` plus their own. */
export async function startAppCluster(t: Test, appFlags: Record<string, string | number> = {}, seedFlags: Record<string, string | number> = {}): Promise<AppCluster> {
  const metaPort = await freePort()
  const seedAddress = `127.0.0.1:${metaPort}`
  const blobDir = testDir('espra-app-blobs-')
  const fast = { 'heartbeat-interval': '100ms', 'heartbeat-timeout': '2s', 'seed-grace': '0', 'blob-dir': blobDir }
  const seed = await startNode(t, 'seed', { 'meta-port': metaPort, ...fast, ...seedFlags })
  let apps = 0
  let fileservers = 0
  return {
    seed,
    seedAddress,
    blobDir,
    async startApp(flags = {}) {
      const app = await startNode(t, 'app', { seed: seedAddress, 'node-id': `app-${++apps}`, ...fast, ...appFlags, ...flags })
      await waitFor('app registered', async () => (await health(app.port)).body['seedConnected'] === true)
      return app
    },
    async startFileserver(flags = {}) {
      const fs = await startNode(t, 'fileserver', { seed: seedAddress, 'node-id': `fs-${++fileservers}`, ...fast, ...flags })
      await waitFor('fileserver registered', async () => (await health(fs.port)).body['seedConnected'] === true)
      return fs
    },
    async push(dir, id) {
      const pushed = await admin(['push-build', dir, '--seed', seedAddress])
      if (pushed.code !== 0 || pushed.stdout !== `${id}\n`) throw new Error(`push-build failed: ${pushed.stderr}`)
    },
    serving: (node, id) => waitFor(`app serves ${id}`, async () => (await health(node.port)).body['build'] === id, 30_000),
  }
}

/** SIGKILL for a node's parent and every child it reported: nothing gets to clean up. */
export async function killHard(node: StartedNode): Promise<void> {
  for (const pid of [node.proc.pid!, ...node.childPids()]) {
    try {
      process.kill(pid, 'SIGKILL')
    } catch {
      // already gone
    }
  }
  await node.exited
}
