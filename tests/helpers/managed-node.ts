/**
 * A node run the way the shipped systemd unit runs it (`Restart=on-failure` + `RestartForceExitStatus=75` +
 * `SuccessExitStatus=75`): a node that exits 75 (a restart order) or fails is started again with the same flags
 * and ports; a clean exit 0 is not. For `admin rolling-restart --mode restart` tests.
 */
import type { Test } from 'tap'
import { freePort, startNode, type StartedNode } from './cluster.js'

export interface Managed {
  current(): StartedNode
  /** Every process started, first to last. */
  readonly starts: StartedNode[]
  /** Exit codes seen, in order. */
  readonly exits: (number | null)[]
}

export async function managed(t: Test, role: string, flags: Record<string, string | number>): Promise<Managed> {
  const fixed = { ...flags, port: flags['port'] ?? (await freePort()), 'metrics-port': flags['metrics-port'] ?? (await freePort()) }
  const m: Managed = { current: () => m.starts.at(-1)!, starts: [], exits: [] }
  let stopping = false
  t.teardown(() => void (stopping = true))
  const start = async (): Promise<void> => {
    const node = await startNode(t, role, fixed)
    m.starts.push(node)
    void node.exited.then(({ code }) => {
      m.exits.push(code)
      if (!stopping && code !== 0) setTimeout(() => void start(), 200)
    })
  }
  await start()
  return m
}
