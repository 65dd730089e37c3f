/**
 * Every port `espra-node up` binds, decided before anything starts and
 * checked all at once, so a cluster never half-starts on a taken port.
 *
 * With `--port-base B` the cluster takes exactly B … B+{@link UP_PORT_SPAN}-1:
 *
 * | port | what |
 * |---|---|
 * | B | the seed's meta port |
 * | B+1 … B+7 | public ports: seed, proxy, live, fileserver, app, mail, admin |
 * | B+8 … B+14 | metrics ports, same order |
 * | B+15 | the Live node's internal link (`--live-link-offset` 12 on every node; `--live-homes node`) |
 * | B+16 | the mail node's SMTP port |
 *
 * Without it, the documented defaults: meta 7000, each role's default port,
 * metrics at public port + 1000, the Live link at the live port + 2000, SMTP
 * 2525 (25 needs root).
 */
import { DEFAULT_PORTS, ROLE_NAMES, type RoleName } from '../core/config.js'
import { EspraError } from '../core/errors.js'
import { assertPortFree } from '../http/ports.js'

/** How many consecutive ports `--port-base` takes. */
export const UP_PORT_SPAN = 1 + 2 * ROLE_NAMES.length + 2
/** The highest base that keeps the whole range under 65536. */
export const MAX_PORT_BASE = 65536 - UP_PORT_SPAN

export interface UpPorts {
  /** The `--port-base`, or null for the defaults. */
  readonly base: number | null
  readonly meta: number
  readonly roles: Readonly<Record<RoleName, number>>
  readonly metrics: Readonly<Record<RoleName, number>>
  /** `--live-link-offset` for every node (the same on every node of a region). */
  readonly liveLinkOffset: number
  /** The mail node's `--smtp-port`. */
  readonly smtp: number
  /** Every port with what it is for, in the order above. */
  readonly all: readonly { readonly port: number; readonly what: string }[]
}

const DEFAULT_METRICS_OFFSET = 1000
const DEFAULT_LINK_OFFSET = 2000
const DEFAULT_SMTP_PORT = 2525

export function upPorts(portBase?: number): UpPorts {
  const byRole = (f: (role: RoleName, i: number) => number) => Object.fromEntries(ROLE_NAMES.map((r, i) => [r, f(r, i)])) as Record<RoleName, number>
  const meta = portBase ?? 7000
  const roles = portBase === undefined ? { ...DEFAULT_PORTS } : byRole((_r, i) => portBase + 1 + i)
  const metrics = portBase === undefined ? byRole((r) => DEFAULT_PORTS[r] + DEFAULT_METRICS_OFFSET) : byRole((_r, i) => portBase + 1 + ROLE_NAMES.length + i)
  const link = portBase === undefined ? roles.live + DEFAULT_LINK_OFFSET : portBase + UP_PORT_SPAN - 2
  const smtp = portBase === undefined ? DEFAULT_SMTP_PORT : portBase + UP_PORT_SPAN - 1
  const all = [
    { port: meta, what: 'seed meta port' },
    ...ROLE_NAMES.map((r) => ({ port: roles[r], what: `${r} port` })),
    ...ROLE_NAMES.map((r) => ({ port: metrics[r], what: `${r} metrics port` })),
    { port: link, what: 'live link port' },
    { port: smtp, what: 'mail SMTP port' },
  ]
  return { base: portBase ?? null, meta, roles, metrics, liveLinkOffset: link - roles.live, smtp, all }
}

/**
 * Checks every port of the plan on `host`; a taken one is one error naming
 * `--port-base`, the port and what it was for, and the range `up` needs.
 */
export async function assertUpPortsFree(host: string, ports: UpPorts): Promise<void> {
  const taken: string[] = []
  await Promise.all(
    ports.all.map(({ port, what }) =>
      assertPortFree(host, port, what).catch((err: EspraError) => {
        if (err.code !== 'ESPRA_ERR_NODE_LISTEN') throw err
        taken.push(`${port} (${what})`)
      }),
    ),
  )
  if (taken.length === 0) return
  const order = new Map(ports.all.map((p, i) => [`${p.port} (${p.what})`, i]))
  taken.sort((a, b) => order.get(a)! - order.get(b)!)
  const range = ports.base === null
    ? 'the default ports (meta 7000, 7001 and 8080-8085, metrics 8001 and 9080-9085, live link 10083, SMTP 2525)'
    : `${ports.base}-${ports.base + UP_PORT_SPAN - 1}`
  // Free text: NODE_LISTEN's template names one host:port; this one sentence names every taken port and the range up needs.
  throw new EspraError(
    'ESPRA_ERR_NODE_LISTEN',
    `--port-base: ${taken.length === 1 ? 'port' : 'ports'} ${taken.join(', ')} already in use; up needs ${range} free. ` +
      `Is another cluster running? Pick a free range with --port-base <port> (it takes ${UP_PORT_SPAN} ports from there)`,
    { option: '--port-base', taken },
  )
}
